import assert from "node:assert/strict";
import { test } from "node:test";

import { decodeCompletionEvent, decodeErrorInfo, decodeLoginEvent, encodeCompletionRequest, decodeStatus, decodeToken, encodeGetToken } from "../src/messages.ts";
import { WireError, Writer, fields, int64, string } from "../src/wire.ts";

test("fields round-trip through the writer, defaults omitted", () => {
	const buf = new Writer().string(1, "openai-codex").varint(2, 60).varint(3, 0).string(4, "").finish();
	const got = [...fields(buf)].map((f) => [f.field, f.wire]);
	assert.deepEqual(got, [
		[1, 2],
		[2, 0],
	]);
	assert.deepEqual([...encodeGetToken("openai-codex", 60)], [...buf]);
});

test("int64 survives large and negative values", () => {
	const ms = 1_767_225_600_123;
	const buf = new Writer().varint(3, ms).varint(5, -1).finish();
	const [a, b] = [...fields(buf)];
	assert.ok(a && b);
	assert.equal(int64(a), ms);
	assert.equal(int64(b), -1);
});

test("a token decodes, unknown fields are skipped", () => {
	const buf = new Writer()
		.string(1, "openai-codex")
		.string(2, "header.payload.sig")
		.varint(3, 1_800_000_000_000)
		.string(4, "acc-1")
		.string(99, "from a newer daemon")
		.finish();
	assert.deepEqual(decodeToken(buf), {
		provider: "openai-codex",
		accessToken: "header.payload.sig",
		expiresAtMs: 1_800_000_000_000,
		accountId: "acc-1",
	});
});

test("malformed bytes give a WireError, never a crash or a half message", () => {
	assert.throws(() => [...fields(Uint8Array.from([0x0a, 0x05, 0x61]))], WireError); // length past the end
	assert.throws(() => [...fields(Uint8Array.from([0x08, 0xff]))], WireError); // truncated varint
	assert.throws(() => [...fields(Uint8Array.from([0x0b]))], WireError); // wire type 3
	assert.throws(() => decodeToken(new Uint8Array()), WireError); // no token
	const badUtf8 = Uint8Array.from([0x12, 0x02, 0xc3, 0x28]);
	assert.throws(() => {
		for (const f of fields(badUtf8)) string(f);
	}, WireError);
});

test("status decodes nested store and providers", () => {
	const store = new Writer().varint(1, 1).string(2, "/home/u/.pi/agent/auth.json").varint(3, 1).finish();
	const provider = new Writer()
		.string(1, "openai-codex")
		.varint(2, 1)
		.varint(3, 2)
		.string(4, "acc-1")
		.string(5, "u@example.com")
		.string(6, "plus")
		.varint(7, 2_000)
		.varint(9, 3)
		.finish();
	const buf = new Writer()
		.string(1, "0.1.0")
		.varint(2, 42)
		.varint(3, 1_000)
		.bytes(4, store)
		.bytes(5, provider)
		.string(6, "/run/user/1/piauthd/piauthd.sock")
		.finish();
	const s = decodeStatus(buf);
	assert.equal(s.pid, 42);
	assert.deepEqual(s.store, { kind: "file", path: "/home/u/.pi/agent/auth.json", health: "ok", detail: "" });
	assert.equal(s.providers.length, 1);
	assert.equal(s.providers[0]?.state, "valid");
	assert.equal(s.providers[0]?.refreshCount, 3);
	assert.equal(s.providers[0]?.plan, "plus");
});

test("login events decode by their oneof field", () => {
	const url = new Writer()
		.string(1, "http://localhost:1455/start/x")
		.string(2, "127.0.0.1:1455")
		.string(3, "http://x/authorize")
		.finish();
	assert.deepEqual(decodeLoginEvent(new Writer().bytes(1, url).finish()), {
		type: "authorize_url",
		url: "http://localhost:1455/start/x",
		callbackAddr: "127.0.0.1:1455",
		issuerUrl: "http://x/authorize",
	});
	const device = new Writer().string(1, "https://v").string(2, "ABCD-1234").varint(3, 5_000).finish();
	assert.deepEqual(decodeLoginEvent(new Writer().bytes(3, device).finish()), {
		type: "device_code",
		verificationUrl: "https://v",
		userCode: "ABCD-1234",
		expiresAtMs: 5_000,
	});
	const failure = new Writer().varint(1, 2).string(2, "State mismatch").finish();
	assert.deepEqual(decodeLoginEvent(new Writer().bytes(6, failure).finish()), {
		type: "failure",
		kind: 2,
		message: "State mismatch",
	});
	assert.deepEqual(decodeLoginEvent(new Writer().bytes(5, new Uint8Array()).finish()).type, "success");
	assert.deepEqual(decodeLoginEvent(new Uint8Array()), { type: "unknown" });
});

test("the ErrorInfo reason and metadata are read from google.rpc.Status details", () => {
	const entry = new Writer().string(1, "resets_at").string(2, "4102444800").finish();
	const info = new Writer().string(1, "ERROR_REASON_USAGE_LIMIT").string(2, "piauth.v1").bytes(3, entry).finish();
	const any = new Writer().string(1, "type.googleapis.com/google.rpc.ErrorInfo").bytes(2, info).finish();
	const status = new Writer().varint(1, 8).string(2, "limit").bytes(3, any).finish();
	assert.deepEqual(decodeErrorInfo(status), {
		reason: "ERROR_REASON_USAGE_LIMIT",
		metadata: { resets_at: "4102444800" },
	});
	const other = new Writer().string(1, "type.googleapis.com/google.rpc.DebugInfo").bytes(2, info).finish();
	assert.deepEqual(decodeErrorInfo(new Writer().bytes(3, other).finish()), { reason: undefined, metadata: {} });
});

test("a completion request carries the body whole, and events decode", () => {
	const body = new TextEncoder().encode(JSON.stringify({ model: "m", input: "x".repeat(100_000) }));
	const request = encodeCompletionRequest(body, "s-1");
	const seen: Record<number, number> = {};
	for (const f of fields(request)) seen[f.field] = f.wire === 2 ? f.value.length : -1;
	assert.deepEqual(seen, { 1: 12, 6: 3, 7: body.length });
	const batched: Record<number, number> = {};
	for (const f of fields(encodeCompletionRequest(body, "s-1", true))) batched[f.field] = f.wire === 2 ? f.value.length : Number(f.value);
	assert.deepEqual(batched, { 1: 12, 6: 3, 7: body.length, 8: 1 });
	const event = new Writer().string(1, "response.created").string(2, '{"type":"response.created"}').finish();
	assert.deepEqual(decodeCompletionEvent(event), {
		type: "response.created",
		dataJson: '{"type":"response.created"}',
		sse: new Uint8Array(),
	});
	const sse = new TextEncoder().encode('data: {"type":"response.created"}\n\n');
	const batch = decodeCompletionEvent(new Writer().string(1, "response.created").bytes(5, sse).finish());
	assert.deepEqual([batch.type, batch.dataJson, new TextDecoder().decode(batch.sse)], [
		"response.created",
		"",
		'data: {"type":"response.created"}\n\n',
	]);
});
