import assert from "node:assert/strict";
import { test } from "node:test";

import type { Token } from "../src/messages.ts";
import { FRESH_MS, TokenSource, type TokenDaemon } from "../src/tokens.ts";

/** A daemon double: counts GetToken calls and lets the test push WatchToken messages. */
class FakeDaemon implements TokenDaemon {
	gets = 0;
	sessions: string[] = [];
	next: Token;
	private push: ((t: Token | Error) => void) | undefined;
	private queue: (Token | Error)[] = [];

	constructor(next: Token) {
		this.next = next;
	}

	/** Honours a signal, as the real client does, should one be passed. */
	async getToken(_minValidSecs: number, signal?: AbortSignal, session = ""): Promise<Token> {
		this.gets++;
		this.sessions.push(session);
		await new Promise<void>((resolve, reject) => {
			const timer = setTimeout(resolve, 5);
			signal?.addEventListener("abort", () => {
				clearTimeout(timer);
				reject(signal.reason);
			});
		});
		return this.next;
	}

	async *watchToken(signal: AbortSignal, session = ""): AsyncGenerator<Token> {
		this.sessions.push(`watch:${session}`);
		yield this.next;
		while (!signal.aborted) {
			const item = this.queue.shift() ?? (await new Promise<Token | Error>((r) => (this.push = r)));
			if (item instanceof Error) throw item;
			yield item;
		}
	}

	send(t: Token | Error): void {
		const p = this.push;
		this.push = undefined;
		if (p) p(t);
		else this.queue.push(t);
	}
}

const tok = (access: string, expiresAtMs: number): Token => ({
	provider: "openai-codex",
	accessToken: access,
	expiresAtMs,
	accountId: "acc",
});
const tick = () => new Promise((r) => setTimeout(r, 10));

test("after one GetToken, requests are served from memory", async () => {
	const now = 1_000_000;
	const d = new FakeDaemon(tok("t1", now + 3_600_000));
	const src = new TokenSource(d, () => now);
	assert.equal((await src.token()).accessToken, "t1");
	await tick();
	for (let i = 0; i < 100; i++) assert.equal((await src.token()).accessToken, "t1");
	assert.equal(d.gets, 1);
	src.reset();
});

test("concurrent cold callers share one GetToken", async () => {
	const d = new FakeDaemon(tok("t1", Date.now() + 3_600_000));
	const src = new TokenSource(d);
	const all = await Promise.all(Array.from({ length: 20 }, () => src.token()));
	assert.ok(all.every((t) => t.accessToken === "t1"));
	assert.equal(d.gets, 1);
	src.reset();
});

test("a cold caller that cancels leaves the shared GetToken to the others", async () => {
	const d = new FakeDaemon(tok("t1", Date.now() + 3_600_000));
	const src = new TokenSource(d);
	const first = new AbortController();
	const cancelled = src.token(first.signal);
	const others = Array.from({ length: 5 }, () => src.token());
	first.abort(new Error("the first caller gave up"));
	await assert.rejects(cancelled, /the first caller gave up/);
	const served = await Promise.all(others);
	assert.ok(served.every((t) => t.accessToken === "t1"));
	assert.equal(d.gets, 1, "one GetToken for all of them");
	await assert.rejects(src.token(AbortSignal.abort(new Error("already"))), /already/);
	src.reset();
});

test("a pushed token replaces the cached one without a GetToken", async () => {
	const d = new FakeDaemon(tok("t1", Date.now() + 3_600_000));
	const src = new TokenSource(d);
	await src.token();
	await tick();
	d.send(tok("t2", Date.now() + 7_200_000));
	await tick();
	assert.equal((await src.token()).accessToken, "t2");
	assert.equal(d.gets, 1);
	src.reset();
});

test("a dropped stream or a nearly expired token sends the next request to GetToken", async () => {
	let now = 1_000_000;
	const d = new FakeDaemon(tok("t1", now + 60_000));
	const src = new TokenSource(d, () => now);
	await src.token();
	await tick();
	d.send(new Error("daemon restarted"));
	await tick();
	assert.equal(src.cached, false);
	d.next = tok("t2", now + 60_000);
	assert.equal((await src.token()).accessToken, "t2");
	assert.equal(d.gets, 2);
	await tick();
	now += 60_000 - FRESH_MS + 1;
	assert.equal(src.cached, false);
	await src.token();
	assert.equal(d.gets, 3);
	src.reset();
});

test("a new session asks for its own token, and an adopted one is served at once", async () => {
	const now = 1_000_000;
	const d = new FakeDaemon(tok("t1", now + 3_600_000));
	const src = new TokenSource(d, () => now);
	await src.token();
	src.useSession("s-1");
	src.useSession("s-1");
	assert.equal(src.sessionId, "s-1");
	d.next = tok("t2", now + 3_600_000);
	assert.equal((await src.token()).accessToken, "t2");
	assert.deepEqual(
		d.sessions.filter((s) => !s.startsWith("watch:")),
		["", "s-1"],
		"one GetToken per session",
	);
	await tick();
	assert.ok(d.sessions.includes("watch:s-1"), "the stream follows the session");
	src.adopt({ ...tok("t3", now + 3_600_000), accountId: "acc-b" });
	assert.equal((await src.token()).accessToken, "t3");
	assert.equal(src.accountId, "acc-b");
	src.reset();
});
