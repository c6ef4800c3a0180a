import assert from "node:assert/strict";
import { test } from "node:test";

import { BackendSource, OPENAI_CODEX_BASE, baseUrlFor } from "../src/backend.ts";
import type { Status } from "../src/messages.ts";

test("only a backend other than OpenAI's is given to pi", () => {
	assert.equal(baseUrlFor(OPENAI_CODEX_BASE), undefined);
	assert.equal(baseUrlFor(`${OPENAI_CODEX_BASE}/`), undefined);
	assert.equal(baseUrlFor(""), undefined, "an older daemon that does not say");
	assert.equal(baseUrlFor("http://127.0.0.1:8787/backend-api/"), "http://127.0.0.1:8787/backend-api");
});

test("the daemon is asked once, and again after a failure", async () => {
	let asked = 0;
	let fail = true;
	const daemon = {
		async status(): Promise<Status> {
			asked++;
			if (fail) throw new Error("piauthd is not running");
			return { codexBaseUrl: "http://127.0.0.1:1/backend-api" } as Status;
		},
	};
	const src = new BackendSource(daemon);
	await assert.rejects(src.override(), /not running/);
	fail = false;
	assert.deepEqual(await src.override(), { baseUrl: "http://127.0.0.1:1/backend-api" });
	assert.deepEqual(await src.override(), { baseUrl: "http://127.0.0.1:1/backend-api" });
	assert.equal(asked, 2);
});
