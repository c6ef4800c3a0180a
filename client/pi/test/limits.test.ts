import assert from "node:assert/strict";
import { test } from "node:test";

import type { AssistantMessage, AssistantMessageEvent, AssistantMessageEventStream } from "@earendil-works/pi-ai";

// pi-ai itself, as pi 1.6.0 loads it: the package has no node_modules of its own.
import { createAssistantMessageEventStream } from "../../../tests/pi-current/node_modules/@earendil-works/pi-ai/dist/index.js";

import { type LimitDaemon, type Moved, accountOf, isUsageLimit, resetsAtFrom, retryOnLimit } from "../src/limits.ts";
import type { Token } from "../src/messages.ts";

const LIMIT = "You have hit your ChatGPT usage limit (plus plan). Try again in ~42 min.";

function message(stopReason: AssistantMessage["stopReason"], errorMessage?: string): AssistantMessage {
	return {
		role: "assistant",
		content: [],
		api: "openai-codex-responses",
		provider: "openai-codex",
		model: "m",
		usage: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, totalTokens: 0, cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, total: 0 } },
		stopReason,
		errorMessage,
		timestamp: Date.now(),
	} as AssistantMessage;
}

const start = (): AssistantMessageEvent => ({ type: "start", partial: message("stop") });
const text = (delta: string): AssistantMessageEvent => ({ type: "text_delta", contentIndex: 0, delta, partial: message("stop") });
const done = (): AssistantMessageEvent => ({ type: "done", reason: "stop", message: message("stop") });
const failed = (why: string): AssistantMessageEvent => ({ type: "error", reason: "error", error: message("error", why) });

function streamOf(events: AssistantMessageEvent[]): AssistantMessageEventStream {
	const s = createAssistantMessageEventStream();
	queueMicrotask(() => {
		for (const e of events) s.push(e);
		s.end();
	});
	return s;
}

const token = (account: string): Token => ({ provider: "openai-codex", accessToken: `tok-${account}`, expiresAtMs: 0, accountId: account });

class FakeDaemon implements LimitDaemon {
	reports: [string, string, number][] = [];
	private readonly next: Token | Error;
	constructor(next: Token | Error) {
		this.next = next;
	}
	async reportLimit(session: string, accountId: string, resetsAt: number): Promise<Token> {
		this.reports.push([session, accountId, resetsAt]);
		if (this.next instanceof Error) throw this.next;
		return this.next;
	}
}

async function collect(s: AssistantMessageEventStream): Promise<string[]> {
	const out: string[] = [];
	for await (const e of s) out.push(e.type === "text_delta" ? `text:${e.delta}` : e.type);
	return out;
}

test("a limit before any output sends the turn once more on the next account", async () => {
	const runs: string[] = [];
	const run = (key: string) => {
		runs.push(key);
		return key === "tok-a" ? streamOf([start(), failed(LIMIT)]) : streamOf([start(), text("hi"), done()]);
	};
	const daemon = new FakeDaemon(token("b"));
	const moved: Moved[] = [];
	const now = 1_000_000_000;
	const events = await collect(
		retryOnLimit(createAssistantMessageEventStream, run, token("a"), "sess", daemon, (m) => moved.push(m), () => now),
	);
	assert.deepEqual(runs, ["tok-a", "tok-b"]);
	assert.deepEqual(events, ["start", "text:hi", "done"], "pi sees only the second run");
	assert.deepEqual(daemon.reports, [["sess", "a", now / 1000 + 42 * 60]]);
	assert.equal(moved.length, 1);
	assert.equal(moved[0]?.from, "a");
	assert.equal(moved[0]?.to.accountId, "b");
});

test("after output, or with no other account, or for another error, nothing is retried", async () => {
	const cases: [string, AssistantMessageEvent[], Token | Error, string[], number][] = [
		["after output", [start(), text("par"), failed(LIMIT)], token("b"), ["start", "text:par", "error"], 0],
		["same account back", [start(), failed(LIMIT)], token("a"), ["start", "error"], 1],
		["every account limited", [start(), failed(LIMIT)], new Error("RESOURCE_EXHAUSTED"), ["start", "error"], 1],
		["another error", [start(), failed("server overloaded")], token("b"), ["start", "error"], 0],
	];
	for (const [label, events, next, want, reports] of cases) {
		let runs = 0;
		const daemon = new FakeDaemon(next);
		const got = await collect(
			retryOnLimit(
				createAssistantMessageEventStream,
				() => {
					runs++;
					return streamOf(events);
				},
				token("a"),
				"s",
				daemon,
				() => assert.fail(`${label}: no move`),
			),
		);
		assert.deepEqual(got, want, label);
		assert.equal(runs, 1, `${label}: one run`);
		assert.equal(daemon.reports.length, reports, `${label}: reports`);
	}
});

test("the limit's words, its reset and the token's account are read", () => {
	assert.ok(isUsageLimit(LIMIT));
	assert.ok(isUsageLimit("429 usage_limit_reached"));
	assert.ok(!isUsageLimit("context_length_exceeded"));
	assert.ok(!isUsageLimit(undefined));
	assert.equal(resetsAtFrom(LIMIT, 60_000), 60 + 42 * 60);
	assert.equal(resetsAtFrom("You have hit your ChatGPT usage limit.", 60_000), 0);
	const claims = Buffer.from(JSON.stringify({ "https://api.openai.com/auth": { chatgpt_account_id: "acc-9" } })).toString("base64url");
	assert.equal(accountOf(`h.${claims}.s`), "acc-9");
	assert.equal(accountOf("not-a-jwt"), "");
	assert.equal(accountOf("a.%%%.c"), "");
});

test("a placeholder for a failure answers with the daemon's sentence and no request", async () => {
	const { Unavailable, failedStream } = await import("../src/unavailable.ts");
	const u = new Unavailable();
	const key = u.mark(new Error("piauthd: not logged in to openai-codex. In pi, run /login and choose OpenAI Codex."));
	assert.equal(u.reason("a.real.token"), undefined);
	assert.match(u.reason(key) ?? "", /^piauthd: not logged in/);
	for (let i = 0; i < 40; i++) u.mark(new Error(`failure ${i}`));
	assert.match(u.reason(key) ?? "", /try again/, "old placeholders are forgotten, and still say something");
	const model = { api: "openai-codex-responses", provider: "openai-codex", id: "m" } as Parameters<typeof failedStream>[1];
	const events: AssistantMessageEvent[] = [];
	for await (const e of failedStream(createAssistantMessageEventStream, model, "piauthd: why")) events.push(e);
	assert.equal(events.length, 1);
	const [only] = events;
	assert.ok(only?.type === "error" && only.error.errorMessage === "piauthd: why");
});
