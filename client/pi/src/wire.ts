/**
 * Protocol Buffers wire format: just what piauth.v1's messages need.
 *
 * The package carries no runtime dependencies, because pi loads a local
 * package from where it lies without installing anything. So instead of a
 * generated client, the few messages of `proto/piauth/v1/piauth.proto` are
 * encoded and decoded here by hand: varints, length-delimited fields and
 * nested messages. Unknown fields are skipped, as protobuf requires, so a
 * newer daemon that adds fields never breaks an older package.
 */

/** Wire types of the protobuf encoding. */
export const WireType = { varint: 0, fixed64: 1, bytes: 2, fixed32: 5 } as const;

/** A field that cannot be decoded: the bytes are not the message we expect. */
export class WireError extends Error {
	constructor(message: string) {
		super(`malformed reply from piauthd: ${message}`);
		this.name = "WireError";
	}
}

/** Appends fields to a growing buffer. */
export class Writer {
	private readonly chunks: number[] = [];
	/** Finished parts: a long `bytes` field goes in whole, not byte by byte. */
	private readonly parts: Uint8Array[] = [];

	varint(field: number, value: number | bigint): this {
		if (value === 0 || value === 0n) return this; // proto3 default: omitted
		this.tag(field, WireType.varint);
		this.rawVarint(BigInt(value));
		return this;
	}

	bool(field: number, value: boolean): this {
		return this.varint(field, value ? 1 : 0);
	}

	string(field: number, value: string): this {
		if (value === "") return this;
		return this.bytes(field, new TextEncoder().encode(value));
	}

	bytes(field: number, value: Uint8Array): this {
		this.tag(field, WireType.bytes);
		this.rawVarint(BigInt(value.length));
		this.parts.push(Uint8Array.from(this.chunks.splice(0)), value);
		return this;
	}

	/** A `double` field (fixed64, little-endian IEEE 754). */
	double(field: number, value: number): this {
		if (value === 0) return this;
		this.tag(field, WireType.fixed64);
		const b = new Uint8Array(8);
		new DataView(b.buffer).setFloat64(0, value, true);
		for (const x of b) this.chunks.push(x);
		return this;
	}

	finish(): Uint8Array {
		this.parts.push(Uint8Array.from(this.chunks.splice(0)));
		const out = new Uint8Array(this.parts.reduce((n, p) => n + p.length, 0));
		let at = 0;
		for (const p of this.parts) {
			out.set(p, at);
			at += p.length;
		}
		this.parts.length = 0;
		return out;
	}

	private tag(field: number, wire: number): void {
		this.rawVarint(BigInt((field << 3) | wire));
	}

	private rawVarint(value: bigint): void {
		// Negative int64 values are sent as their two's complement, ten bytes.
		let v = value < 0n ? value + (1n << 64n) : value;
		do {
			let byte = Number(v & 0x7fn);
			v >>= 7n;
			if (v !== 0n) byte |= 0x80;
			this.chunks.push(byte);
		} while (v !== 0n);
	}
}

/** One decoded field: its number, and its value as the wire type gives it. */
export type Field =
	| { field: number; wire: typeof WireType.varint; value: bigint }
	| { field: number; wire: typeof WireType.bytes; value: Uint8Array }
	| { field: number; wire: typeof WireType.fixed64 | typeof WireType.fixed32; value: Uint8Array };

/** Splits a message into its fields, in order. */
export function* fields(buf: Uint8Array): Generator<Field> {
	let pos = 0;
	const varint = (): bigint => {
		let result = 0n;
		for (let shift = 0n; shift < 70n; shift += 7n) {
			if (pos >= buf.length) throw new WireError("truncated varint");
			const byte = buf[pos++] as number;
			result |= BigInt(byte & 0x7f) << shift;
			if ((byte & 0x80) === 0) return result;
		}
		throw new WireError("varint longer than 10 bytes");
	};
	const take = (n: number): Uint8Array => {
		if (n < 0 || pos + n > buf.length) throw new WireError("field runs past the end");
		const out = buf.subarray(pos, pos + n);
		pos += n;
		return out;
	};
	while (pos < buf.length) {
		const key = varint();
		const field = Number(key >> 3n);
		const wire = Number(key & 7n);
		if (field === 0) throw new WireError("field number 0");
		switch (wire) {
			case WireType.varint:
				yield { field, wire, value: varint() };
				break;
			case WireType.bytes:
				yield { field, wire, value: take(Number(varint())) };
				break;
			case WireType.fixed64:
				yield { field, wire, value: take(8) };
				break;
			case WireType.fixed32:
				yield { field, wire, value: take(4) };
				break;
			default:
				throw new WireError(`unsupported wire type ${wire}`);
		}
	}
}

/** Reads a varint field as a JavaScript number (int64 values here are milliseconds). */
export function int64(f: Field): number {
	if (f.wire !== WireType.varint) throw new WireError(`field ${f.field} is not a varint`);
	return Number(BigInt.asIntN(64, f.value));
}

export function uint(f: Field): number {
	if (f.wire !== WireType.varint) throw new WireError(`field ${f.field} is not a varint`);
	return Number(BigInt.asUintN(64, f.value));
}

/** Reads a `double` field. */
export function double(f: Field): number {
	if (f.wire !== WireType.fixed64) throw new WireError(`field ${f.field} is not a double`);
	return new DataView(f.value.buffer, f.value.byteOffset, 8).getFloat64(0, true);
}

export function bool(f: Field): boolean {
	return uint(f) !== 0;
}

export function bytes(f: Field): Uint8Array {
	if (f.wire !== WireType.bytes) throw new WireError(`field ${f.field} is not length-delimited`);
	return f.value;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

export function string(f: Field): string {
	try {
		return utf8.decode(bytes(f));
	} catch (e) {
		if (e instanceof WireError) throw e;
		throw new WireError(`field ${f.field} is not UTF-8`);
	}
}
