/**
 * The completion a turn starts from pi's `onPayload`: taken by the `fetch`
 * of its session, given up for another, and ended when no `fetch` comes.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import type { Daemon } from "../src/daemon.ts";
import type { CompletionEvent } from "../src/messages.ts";
import { Turn } from "../src/turn.ts";

/** A daemon whose completions record what they were asked and end when cancelled. */
function recordingDaemon() {
	const calls: { body: string; session: string; signal: AbortSignal | undefined }[] = [];
	const daemon = {
		async *complete(body: Uint8Array, session: string, signal?: AbortSignal): AsyncGenerator<CompletionEvent[]> {
			calls.push({ body: new TextDecoder().decode(body), session, signal });
			yield [{ type: "response.created", dataJson: "", sse: new Uint8Array() }];
		},
	} as unknown as Daemon;
	return { daemon, calls };
}

const turnOver = () => new Promise((done) => setImmediate(() => setImmediate(done)));

test("the fetch of the body's session takes the completion started for it", async () => {
	const { daemon, calls } = recordingDaemon();
	const turn = new Turn(daemon, undefined);
	assert.equal(turn.start({ model: "m", prompt_cache_key: "s-1" }), true);
	assert.equal(turn.start({ model: "again" }), false, "one completion per call of pi's stream");
	assert.deepEqual(
		calls.map((c) => [c.body, c.session]),
		[['{"model":"m","prompt_cache_key":"s-1"}', "s-1"]],
	);
	const early = turn.claim("s-1", undefined);
	assert.ok(early);
	assert.equal((await early.first).value?.[0]?.type, "response.created");
	assert.equal(turn.claim("s-1", undefined), undefined, "a retry gets a call of its own");
	await turnOver();
	assert.equal(calls[0]?.signal?.aborted, false, "a claimed completion runs on");
});

test("a fetch for another session gives the early completion up", () => {
	const { daemon, calls } = recordingDaemon();
	const turn = new Turn(daemon, undefined);
	turn.start({ prompt_cache_key: "s-1" });
	assert.equal(turn.claim("s-2", undefined), undefined);
	assert.equal(calls[0]?.signal?.aborted, true);
});

test("a completion no fetch takes is ended at the loop's next turn", async () => {
	const { daemon, calls } = recordingDaemon();
	new Turn(daemon, undefined).start({ prompt_cache_key: "s-1" });
	assert.equal(calls[0]?.signal?.aborted, false);
	await turnOver();
	assert.equal(calls[0]?.signal?.aborted, true);
});

test("pi's abort, before or after the fetch, ends the completion", () => {
	const { daemon, calls } = recordingDaemon();
	const pi = new AbortController();
	const turn = new Turn(daemon, pi.signal);
	turn.start({});
	const fetchSignal = new AbortController();
	assert.ok(turn.claim("", fetchSignal.signal));
	fetchSignal.abort();
	assert.equal(calls[0]?.signal?.aborted, true, "the fetch's signal (pi's header timeout)");
	const other = new Turn(daemon, pi.signal);
	other.start({});
	pi.abort();
	assert.equal(calls[1]?.signal?.aborted, true, "pi's own signal");
	assert.equal(new Turn(daemon, pi.signal).start({}), false, "nothing starts once pi aborted");
});

test("a body that does not serialize starts nothing: pi fails on it itself", () => {
	const { daemon, calls } = recordingDaemon();
	const body: Record<string, unknown> = {};
	body.self = body;
	assert.equal(new Turn(daemon, undefined).start(body), false);
	assert.equal(calls.length, 0);
});
