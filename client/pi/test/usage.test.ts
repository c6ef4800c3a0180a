import assert from "node:assert/strict";
import { test } from "node:test";

import { bar, decodeUsage, footerText, formatUsage } from "../src/usage.ts";
import { Writer } from "../src/wire.ts";

const NOW_MS = 1_800_000_000_000;
const nowS = NOW_MS / 1000;

function response(): Uint8Array {
	const weekly = new Writer().double(1, 42.5).varint(2, 10_080).varint(3, nowS + 2 * 86_400 + 3 * 3_600).finish();
	const account = new Writer()
		.string(1, "acc-1")
		.string(2, "u@example.com")
		.string(3, "plus")
		.bytes(5, weekly)
		.string(7, "usage_endpoint")
		.varint(8, nowS - 5)
		.finish();
	return new Writer().bytes(1, account).finish();
}

test("a usage response decodes with a missing window left missing", () => {
	const [a, ...rest] = decodeUsage(response());
	assert.equal(rest.length, 0);
	assert.ok(a);
	assert.equal(a.accountId, "acc-1");
	assert.equal(a.primary, undefined, "missing, not 0 %");
	assert.equal(a.secondary?.usedPercent, 42.5);
	assert.equal(a.secondary?.windowMinutes, 10_080);
	assert.equal(a.fetchedAt, nowS - 5);
	assert.equal(a.limitReached, false);
});

test("/piauth usage shows bars, percent and time to reset", () => {
	const text = formatUsage(decodeUsage(response()), NOW_MS);
	assert.match(text, /u@example\.com \(plus\)/);
	assert.match(text, /5-hour {3}not reported by the backend/);
	assert.match(text, /weekly {3}\[#{9}\.{11}\] 42\.5% used, resets in 2d 3h/);
	assert.equal(bar(150), `[${"#".repeat(20)}]`);
	assert.match(formatUsage([], NOW_MS), /no ChatGPT account/);
});

test("the footer names the session's account and its 5-hour use", () => {
	const [a] = decodeUsage(response());
	assert.ok(a);
	assert.equal(footerText([a], "acc-1"), "ChatGPT u@example.com · 5h not reported");
	const busy = { ...a, primary: { usedPercent: 12.4, windowMinutes: 300, resetsAt: 0 }, limitReached: true };
	assert.equal(footerText([busy], "acc-1"), "ChatGPT u@example.com · 5h 12% · limit reached");
	assert.equal(footerText([a], "acc-other"), undefined);
});
