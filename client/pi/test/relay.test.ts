/**
 * Relay mode: pi-ai's own Codex stream, given the relay's `fetch`, against
 * the real piauthd and mock-openai.
 */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import type { AssistantMessageEvent, Context, Model, Provider, TranscriptContext } from "@earendil-works/pi-ai";

// pi's own modules, from the pi the tests install (the package has none of
// its own: pi loads it beside pi's copy).
import * as piProviders from "../../../tests/pi-current/node_modules/@earendil-works/pi-ai/dist/providers/all.js";
import * as piTranscript from "../../../tests/pi-current/node_modules/@earendil-works/pi-ai/dist/utils/transcript.js";

import { Daemon, PiauthError } from "../src/daemon.ts";
import { Code } from "../src/grpc.ts";
import { RELAY_KEY, failureResponse, relayEnabled, sseOf, throughDaemon } from "../src/relay.ts";
import { type Mock, Sandbox, startDaemon, startMock, stop } from "./harness.ts";

test("relay mode is a setting: PIAUTHD_RELAY", () => {
	for (const on of ["1", "true", "YES", " on "]) assert.equal(relayEnabled({ PIAUTHD_RELAY: on }), true, on);
	for (const off of [undefined, "", "0", "false", "relay"]) assert.equal(relayEnabled({ PIAUTHD_RELAY: off }), false);
});

test("the placeholder key has the shape pi reads an account from, and no secret", () => {
	const [, payload, signature] = RELAY_KEY.split(".");
	const claims = JSON.parse(Buffer.from(payload ?? "", "base64url").toString());
	assert.equal(claims["https://api.openai.com/auth"].chatgpt_account_id, "piauthd-relay");
	assert.equal(signature, "relay");
});

test("a batch is the SSE the daemon wrote; a single event from an older daemon is written here", () => {
	const text = (b: Uint8Array) => new TextDecoder().decode(b);
	const sse = new TextEncoder().encode('data: {"a":1}\n\ndata: {"b":2}\n\n');
	assert.equal(text(sseOf([{ type: "b", dataJson: "", sse }])), 'data: {"a":1}\n\ndata: {"b":2}\n\n');
	const older = (dataJson: string) => ({ type: "t", dataJson, sse: new Uint8Array() });
	assert.equal(text(sseOf([older('{"a":1}'), older('{\n"b":2}')])), 'data: {"a":1}\n\ndata: {\ndata: "b":2}\n\n');
});

test("a usage limit before any event is pi's own 429; other failures are thrown as they are", async () => {
	const limit = new PiauthError("piauthd: every account is limited", {
		code: Code.resourceExhausted,
		reason: "ERROR_REASON_USAGE_LIMIT",
		metadata: { resets_at: "4102444800", plan_type: "plus" },
	});
	const r = failureResponse(limit);
	assert.equal(r.status, 429);
	assert.deepEqual(await r.json(), {
		error: {
			code: "usage_limit_reached",
			message: "piauthd: every account is limited",
			plan_type: "plus",
			resets_at: 4102444800,
		},
	});
	const other = new PiauthError("piauthd: not logged in to openai-codex.", { code: Code.unauthenticated });
	assert.throws(() => failureResponse(other), other);
});

describe("through a logged-in daemon", () => {
	const sb = new Sandbox();
	let mock: Mock;
	let child: Awaited<ReturnType<typeof startDaemon>>;
	let daemon: Daemon;
	const providers = piProviders.builtinProviders as () => Provider[];
	const builtin = providers().find((p) => p.id === "openai-codex");
	assert.ok(builtin, "pi-ai has the openai-codex provider");
	const model = { ...(builtin.getModels().find((m) => m.id === "gpt-6.2-sol") as Model<string>) };
	const asked: Context = { messages: [{ role: "user", content: "hi", timestamp: Date.now() }] };
	const context = (piTranscript.normalizeContext as (c: Context) => TranscriptContext)(asked);
	/** pi's Codex stream as relay mode runs it (see `relayProvider`). */
	const relayed = (options: { sessionId: string; signal?: AbortSignal; timeoutMs?: number; onPayload?: (p: unknown) => unknown }) =>
		(builtin as Provider).stream(model, context, throughDaemon(daemon)(options));
	const reply = (shape: object) =>
		fetch(`${mock.issuer}/_mock/reply`, { method: "POST", body: JSON.stringify(shape), headers: { "content-type": "application/json" } });
	/**
	 * Sessions whose turn completed: each keeps one WebSocket, cached for its
	 * next turn. A turn cut short leaves none.
	 */
	const completed = new Set<string>();
	/** Reads the mock's stats until `settled` holds, or 2 s have passed. */
	const settle = async (settled: (stats: Record<string, number>) => boolean) => {
		const deadline = Date.now() + 2_000;
		let stats = await mock.stats();
		while (!settled(stats) && Date.now() < deadline) stats = await mock.stats();
		return stats;
	};

	before(async () => {
		mock = await startMock({ seedAuth: sb.authFile });
		child = await startDaemon(sb, mock);
		daemon = new Daemon({ socketPath: sb.socket, authctl: undefined });
		// pi's own URL: the relay never goes there.
		model.baseUrl = "http://127.0.0.1:9/nowhere";
	});
	after(async () => {
		daemon.close();
		await stop(child);
		mock.stop();
		sb.remove();
	});

	test("pi's stream is answered by the mock through the daemon, with the token never in pi", async () => {
		const events: AssistantMessageEvent[] = [];
		for await (const e of relayed({ sessionId: "relay-1" })) events.push(e);
		const last = events.at(-1);
		assert.equal(last?.type, "done", JSON.stringify(last));
		const text = last?.type === "done" ? last.message.content.map((c) => (c.type === "text" ? c.text : "")).join("") : "";
		assert.equal(text, "Hello from the mock Codex backend.");
		const stats = await mock.stats();
		assert.equal(stats.websocket_requests, 1, "the daemon went upstream over its WebSocket");
		const seen = (await (await fetch(`${mock.issuer}/_mock/responses`)).json()) as { session_id_dash: string }[];
		assert.equal(seen.at(-1)?.session_id_dash, "relay-1");
		completed.add("relay-1");
	});

	test("the body a hook of pi's gives back is the one that goes upstream", async () => {
		await reply({});
		const events: AssistantMessageEvent[] = [];
		const onPayload = (p: unknown) => ({ ...(p as object), max_output_tokens: 4321 });
		for await (const e of relayed({ sessionId: "relay-hook", onPayload })) events.push(e);
		assert.equal(events.at(-1)?.type, "done");
		const seen = (await (await fetch(`${mock.issuer}/_mock/responses`)).json()) as {
			session_id_dash: string;
			max_output_tokens: number;
		}[];
		assert.deepEqual([seen.at(-1)?.session_id_dash, seen.at(-1)?.max_output_tokens], ["relay-hook", 4321]);
		completed.add("relay-hook");
	});

	test("a turn pi gives up after building its body leaves nothing upstream", async () => {
		// Long enough that a completion nobody reads would still be streaming.
		await reply({ deltas: 10_000, delay_ms: 10 });
		const before = await mock.stats();
		const events: string[] = [];
		// pi checks `timeoutMs` after `onPayload`, so this turn fails there.
		for await (const e of relayed({ sessionId: "relay-given-up", timeoutMs: -1 })) events.push(e.type);
		assert.equal(events.at(-1), "error");
		// Ended, its WebSocket with it (one mid-turn is never cached). The
		// next test's end state, read the same way, holds this turn too.
		const stats = await settle((s) => s.open_streams === 0 && s.websocket_open === completed.size);
		assert.equal(stats.open_streams, 0, "the completion pi did not fetch was ended");
		assert.equal(stats.websocket_open, completed.size, "no WebSocket of this turn's is left open");
		assert.ok((stats.websocket_requests ?? 0) - (before.websocket_requests ?? 0) <= 1, "no second call");
	});

	test("aborting in pi ends the upstream request at once", async () => {
		await reply({ deltas: 10_000, delay_ms: 10 });
		const abort = new AbortController();
		const events: string[] = [];
		for await (const e of relayed({ sessionId: "relay-2", signal: abort.signal })) {
			events.push(e.type);
			if (e.type === "text_delta" && !abort.signal.aborted) abort.abort();
		}
		assert.equal(events.at(-1), "error");
		const stats = await settle((s) => s.open_streams === 0 && s.websocket_open === completed.size);
		assert.equal(stats.open_streams, 0, "the mock stopped sending");
		assert.equal(stats.websocket_open, completed.size, "this turn's upstream WebSocket is closed");
	});
});
