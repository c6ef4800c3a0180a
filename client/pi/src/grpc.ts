/**
 * gRPC over HTTP/2 on a Unix socket, with Node's own `node:http2`.
 *
 * One HTTP/2 connection per socket path, opened on first use and opened
 * again after the daemon restarts. A connection does not keep pi's process
 * alive on its own: it is referenced only while a unary call is waiting, so
 * `pi -p` still exits when its work is done although a WatchToken stream
 * stays open.
 *
 * Every status the daemon sends carries a google.rpc.ErrorInfo reason; it is
 * kept on the error so callers decide on the reason, not on message text.
 */

import http2 from "node:http2";
import net from "node:net";

import { decodeErrorInfo } from "./messages.ts";

/** gRPC status codes used here. */
export const Code = {
	ok: 0,
	cancelled: 1,
	unknown: 2,
	invalidArgument: 3,
	deadlineExceeded: 4,
	notFound: 5,
	permissionDenied: 7,
	resourceExhausted: 8,
	failedPrecondition: 9,
	unavailable: 14,
	unauthenticated: 16,
} as const;

/**
 * Replies larger than this are refused: it is the most the daemon sends
 * (a relayed event alone can be that large).
 */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** How many bytes the daemon may send ahead of what this process has read. */
const RECEIVE_WINDOW = 8 * 1024 * 1024;

/** A gRPC status other than OK, as the daemon sent it. */
export class RpcError extends Error {
	readonly code: number;
	/** ErrorInfo reason, e.g. "ERROR_REASON_NOT_LOGGED_IN". */
	readonly reason: string | undefined;
	/** ErrorInfo metadata, e.g. a usage limit's `resets_at`. */
	readonly metadata: Record<string, string>;

	constructor(code: number, message: string, reason?: string, metadata: Record<string, string> = {}) {
		super(message);
		this.name = "RpcError";
		this.code = code;
		this.reason = reason;
		this.metadata = metadata;
	}
}

/** Nothing listens on the socket (no file, or a stale one). */
export class NotListening extends Error {
	readonly socketPath: string;

	constructor(socketPath: string, cause: unknown) {
		super(`nothing is listening on ${socketPath}`, { cause });
		this.name = "NotListening";
		this.socketPath = socketPath;
	}
}

export interface CallOptions {
	/** Relative deadline; none for long-lived streams. */
	deadlineMs?: number;
	signal?: AbortSignal;
	/** Whether this call keeps the process alive while it waits (unary calls do). */
	holdsProcess?: boolean;
}

function frame(message: Uint8Array): Buffer {
	const out = Buffer.alloc(5 + message.length);
	out.writeUInt8(0, 0);
	out.writeUInt32BE(message.length, 1);
	out.set(message, 5);
	return out;
}

function statusFrom(headers: http2.IncomingHttpHeaders): RpcError | null | undefined {
	const raw = headers["grpc-status"];
	if (raw === undefined) return undefined;
	const code = Number(raw);
	if (code === Code.ok) return null;
	let message = String(headers["grpc-message"] ?? "");
	try {
		message = decodeURIComponent(message);
	} catch {
		// Keep the raw text: a badly encoded message is still worth showing.
	}
	let info = { reason: undefined as string | undefined, metadata: {} as Record<string, string> };
	const details = headers["grpc-status-details-bin"];
	if (typeof details === "string") {
		try {
			info = decodeErrorInfo(Buffer.from(details, "base64"));
		} catch {
			// A detail that does not decode: the status and message still stand.
		}
	}
	const text = message || `gRPC status ${raw}`;
	return new RpcError(Number.isInteger(code) ? code : Code.unknown, text, info.reason, info.metadata);
}

/** A push queue read with `for await`: the bridge from stream events to an iterator. */
class Inbox<T> {
	private readonly items: T[] = [];
	private waiter: (() => void) | undefined;
	private error: unknown;
	private done = false;

	push(item: T): void {
		this.items.push(item);
		this.wake();
	}

	close(error?: unknown): void {
		if (this.done) return;
		this.done = true;
		this.error = error;
		this.wake();
	}

	private wake(): void {
		const w = this.waiter;
		this.waiter = undefined;
		w?.();
	}

	/** Every item queued since the last batch, as one batch. */
	async *drain(): AsyncGenerator<T[]> {
		for (;;) {
			if (this.items.length > 0) {
				yield this.items.splice(0);
				continue;
			}
			if (this.done) {
				if (this.error !== undefined) throw this.error;
				return;
			}
			await new Promise<void>((resolve) => {
				this.waiter = resolve;
			});
		}
	}
}

/** One HTTP/2 connection to the daemon's socket, re-opened as needed. */
export class Channel {
	readonly socketPath: string;
	private readonly verify: () => void;
	private session: http2.ClientHttp2Session | undefined;
	private opening: Promise<http2.ClientHttp2Session> | undefined;
	private holds = 0;

	/** `verify` runs before every new connection and throws to refuse it. */
	constructor(socketPath: string, verify: () => void = () => {}) {
		this.socketPath = socketPath;
		this.verify = verify;
	}

	/** Closes the connection; the next call opens a new one. */
	close(): void {
		this.session?.destroy();
		this.session = undefined;
	}

	private async connect(): Promise<http2.ClientHttp2Session> {
		const live = this.session;
		if (live && !live.closed && !live.destroyed) return live;
		this.opening ??= this.open().finally(() => {
			this.opening = undefined;
		});
		return this.opening;
	}

	private async open(): Promise<http2.ClientHttp2Session> {
		this.verify();
		const socket = await new Promise<net.Socket>((resolve, reject) => {
			const s = net.connect(this.socketPath);
			s.once("connect", () => resolve(s));
			s.once("error", (e: NodeJS.ErrnoException) => {
				s.destroy();
				const gone = e.code === "ENOENT" || e.code === "ECONNREFUSED" || e.code === "ENOTSOCK";
				reject(gone ? new NotListening(this.socketPath, e) : e);
			});
		});
		// A wide receive window: with HTTP/2's default of 64 KiB, a fast
		// stream stalls the daemon on every window update this event loop
		// is too busy to send at once.
		const session = http2.connect("http://localhost", {
			createConnection: () => socket,
			settings: { initialWindowSize: RECEIVE_WINDOW },
		});
		session.setLocalWindowSize(RECEIVE_WINDOW);
		session.on("error", () => {
			// Reported to each open stream; the session is dropped on close.
		});
		session.on("close", () => {
			if (this.session === session) this.session = undefined;
		});
		this.session = session;
		this.applyHold();
		return session;
	}

	private applyHold(): void {
		if (!this.session || this.session.destroyed) return;
		if (this.holds > 0) this.session.ref();
		else this.session.unref();
	}

	/** Sends one request and yields each reply message until the status arrives. */
	async *call(path: string, request: Uint8Array, opts: CallOptions = {}): AsyncGenerator<Uint8Array> {
		for await (const batch of this.batches(path, request, opts)) yield* batch;
	}

	/**
	 * [`call`], yielding the reply messages that arrived together as one
	 * batch: a fast stream costs a wake-up per read, not per message.
	 */
	async *batches(path: string, request: Uint8Array, opts: CallOptions = {}): AsyncGenerator<Uint8Array[]> {
		if (opts.holdsProcess) {
			this.holds++;
		}
		try {
			const session = await this.connect();
			this.applyHold();
			yield* this.exchange(session, path, request, opts);
		} finally {
			if (opts.holdsProcess) {
				this.holds--;
				this.applyHold();
			}
		}
	}

	private async *exchange(
		session: http2.ClientHttp2Session,
		path: string,
		request: Uint8Array,
		opts: CallOptions,
	): AsyncGenerator<Uint8Array[]> {
		const headers: http2.OutgoingHttpHeaders = {
			":method": "POST",
			":path": path,
			":scheme": "http",
			":authority": "localhost",
			"content-type": "application/grpc",
			te: "trailers",
		};
		if (opts.deadlineMs !== undefined) headers["grpc-timeout"] = `${Math.max(1, Math.ceil(opts.deadlineMs))}m`;
		const stream = session.request(headers);
		const inbox = new Inbox<Uint8Array>();
		let pending: Buffer = Buffer.alloc(0);
		let status: RpcError | null | undefined;
		const fail = (e: unknown) => {
			inbox.close(e);
			stream.close(http2.constants.NGHTTP2_CANCEL);
		};
		const timer =
			opts.deadlineMs === undefined
				? undefined
				: setTimeout(
						() => fail(new RpcError(Code.deadlineExceeded, `piauthd did not answer within ${opts.deadlineMs} ms`)),
						opts.deadlineMs + 250,
					);
		timer?.unref();
		const onAbort = () => fail(new RpcError(Code.cancelled, "cancelled"));
		opts.signal?.addEventListener("abort", onAbort, { once: true });
		if (opts.signal?.aborted) onAbort();

		stream.on("response", (h) => {
			const http = Number(h[":status"]);
			if (http !== 200) {
				fail(new RpcError(Code.unknown, `piauthd answered HTTP ${http}, not gRPC`));
				return;
			}
			const trailersOnly = statusFrom(h);
			if (trailersOnly !== undefined) status = trailersOnly;
		});
		stream.on("trailers", (h) => {
			const s = statusFrom(h);
			if (s !== undefined) status = s;
		});
		stream.on("data", (chunk: Buffer) => {
			pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
			while (pending.length >= 5) {
				const len = pending.readUInt32BE(1);
				if (pending.readUInt8(0) !== 0) return fail(new RpcError(Code.unknown, "compressed replies are not supported"));
				if (len > MAX_MESSAGE_BYTES) return fail(new RpcError(Code.resourceExhausted, `reply of ${len} bytes is too large`));
				if (pending.length < 5 + len) break;
				inbox.push(new Uint8Array(pending.subarray(5, 5 + len)));
				pending = pending.subarray(5 + len);
			}
		});
		stream.on("error", (e) => fail(new RpcError(Code.unavailable, `connection to piauthd failed: ${e.message}`)));
		stream.on("close", () => {
			if (status === null) inbox.close();
			else if (status) inbox.close(status);
			else inbox.close(new RpcError(Code.unavailable, "piauthd closed the connection without an answer"));
		});
		stream.end(frame(request));

		try {
			yield* inbox.drain();
		} finally {
			if (timer) clearTimeout(timer);
			opts.signal?.removeEventListener("abort", onAbort);
			if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
		}
	}

	/** A call with exactly one reply. */
	async unary(path: string, request: Uint8Array, opts: Omit<CallOptions, "holdsProcess"> = {}): Promise<Uint8Array> {
		let reply: Uint8Array | undefined;
		for await (const message of this.call(path, request, { ...opts, holdsProcess: true })) reply ??= message;
		if (!reply) throw new RpcError(Code.unknown, `piauthd sent no reply to ${path}`);
		return reply;
	}
}
