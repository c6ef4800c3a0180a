import assert from "node:assert/strict";
import { test } from "node:test";

import { formatStatus, span } from "../src/commands.ts";
import { CANCELLED, step, storedWhere } from "../src/login.ts";
import type { Status } from "../src/messages.ts";

test("span shows the two largest units", () => {
	assert.equal(span(0), "0s");
	assert.equal(span(40_000), "40s");
	assert.equal(span(12 * 60_000 + 5_000), "12m 5s");
	assert.equal(span(3 * 86_400_000 + 4 * 3_600_000 + 5_000), "3d 4h");
});

test("/piauth shows the daemon, the store, the account, expiry and last refresh, never a token", () => {
	const now = 1_800_000_000_000;
	const s: Status = {
		daemonVersion: "0.1.0",
		pid: 42,
		nowMs: now,
		socketPath: "/run/user/1/piauthd/piauthd.sock",
		issuer: "https://auth.openai.com",
		codexBaseUrl: "https://chatgpt.com/backend-api",
		configFile: "",
		store: { kind: "file", path: "/home/u/.pi/agent/auth.json", health: "ok", detail: "" },
		providers: [
			{
				provider: "openai-codex",
				state: "valid",
				accountId: "acc-1",
				email: "u@example.com",
				plan: "plus",
				expiresAtMs: now + 2 * 3_600_000,
				lastRefreshMs: now - 5 * 60_000,
				refreshCount: 3,
				nextRefreshMs: now + 85 * 60_000,
				lastError: "",
				hint: "",
			},
			{ ...emptyProvider(), provider: "anthropic", state: "static" },
		],
	};
	assert.equal(
		formatStatus(s),
		[
			"piauthd 0.1.0 (pid 42) on /run/user/1/piauthd/piauthd.sock · store: file /home/u/.pi/agent/auth.json (ok)",
			"openai-codex: valid · acc-1 · u@example.com · plus",
			"  token expires in 2h · last refresh 5m ago (3 by this daemon) · next refresh in 1h 25m",
		].join("\n"),
	);
});

function emptyProvider() {
	return {
		provider: "",
		state: "unspecified" as const,
		accountId: "",
		email: "",
		plan: "",
		expiresAtMs: 0,
		lastRefreshMs: 0,
		refreshCount: 0,
		nextRefreshMs: 0,
		lastError: "",
		hint: "",
	};
}

test("a logged-out daemon's status says what to do", () => {
	const text = formatStatus({
		daemonVersion: "0.1.0",
		pid: 1,
		nowMs: 0,
		socketPath: "/s",
		issuer: "https://auth.openai.com",
		codexBaseUrl: "https://chatgpt.com/backend-api",
		configFile: "",
		store: { kind: "keyring", path: "", health: "missing", detail: "" },
		providers: [{ ...emptyProvider(), provider: "openai-codex", state: "not logged in", hint: "run `pi-authctl login`" }],
	});
	assert.match(text, /store: keyring \(missing\)/);
	assert.match(text, /openai-codex: not logged in\n {2}run `pi-authctl login`/);
});

test("login events map onto pi's dialog", () => {
	const url = step(
		{ type: "authorize_url", url: "http://localhost:1455/start/s", callbackAddr: "127.0.0.1:1455", issuerUrl: "http://i/authorize?x" },
		0,
	);
	assert.equal(url.kind, "notify");
	assert.ok(url.kind === "notify" && url.offerPaste && url.event.type === "auth_url" && url.event.url === "http://localhost:1455/start/s");
	// Over SSH: the issuer's own URL is shown too, to open on another machine.
	assert.ok(url.kind === "notify" && url.event.type === "auth_url" && url.event.instructions?.includes("Browser on another machine? Open this link there instead"));
	assert.ok(url.kind === "notify" && url.event.type === "auth_url" && url.event.instructions?.endsWith("http://i/authorize?x"));
	const same = step({ type: "authorize_url", url: "http://i/authorize?x", callbackAddr: "", issuerUrl: "http://i/authorize?x" }, 0);
	assert.ok(same.kind === "notify" && same.event.type === "auth_url" && !same.event.instructions?.includes("another machine"));
	const dev = step({ type: "device_code", verificationUrl: "https://v", userCode: "AB-12", expiresAtMs: 900_000 }, 0);
	assert.ok(dev.kind === "notify" && dev.event.type === "device_code" && dev.event.expiresInSeconds === 900);
	assert.deepEqual(step({ type: "success", provider: "", accountId: "", email: "", plan: "" }, 0), { kind: "done" });
	assert.deepEqual(step({ type: "failure", kind: 1, message: "access_denied" }, 0), {
		kind: "fail",
		message: "Login failed: access_denied",
	});
	assert.deepEqual(step({ type: "cancelled", message: "" }, 0), { kind: "fail", message: "Login cancelled" });
});

test("after a login pi is told where the daemon keeps it", () => {
	const status = (kind: string, path: string) => ({ store: { kind, path, health: "ok", detail: "" } }) as unknown as Status;
	assert.match(storedWhere(status("keyring", "keyring")), /OS keyring, not in pi's auth\.json/);
	assert.match(storedWhere(status("file", "/h/.pi/agent/auth.json")), /saved this login in \/h\/\.pi\/agent\/auth\.json/);
	assert.equal(CANCELLED, "Login cancelled", "pi's exact words for a cancel");
});
