/**
 * The package against the real piauthd and mock-openai: a real socket,
 * real gRPC, real child processes.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync } from "node:fs";
import net from "node:net";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";

import type { AuthEvent, AuthPrompt, ProviderAuthInteraction } from "@earendil-works/pi-ai";

import { formatStatus } from "../src/commands.ts";
import { Daemon, PiauthError } from "../src/daemon.ts";
import { runLogin } from "../src/login.ts";
import { TokenSource } from "../src/tokens.ts";
import { type Mock, Sandbox, bin, startDaemon, startMock, stop, waitListening } from "./harness.ts";

const stored = (file: string) => JSON.parse(readFileSync(file, "utf8"))["openai-codex"];

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
	const deadline = Date.now() + ms;
	while (Date.now() < deadline) {
		if (await cond()) return;
		await new Promise((r) => setTimeout(r, 20));
	}
	assert.fail(`timed out waiting for ${what}`);
}

describe("with a logged-in daemon", () => {
	const sb = new Sandbox();
	let mock: Mock;
	let child: Awaited<ReturnType<typeof startDaemon>>;
	let daemon: Daemon;

	before(async () => {
		mock = await startMock({ seedAuth: sb.authFile });
		child = await startDaemon(sb, mock);
		daemon = new Daemon({ socketPath: sb.socket, authctl: undefined });
	});
	after(async () => {
		daemon.close();
		await stop(child);
		mock.stop();
		sb.remove();
	});

	test("/piauth usage reads the daemon's Usage: a window the backend leaves out stays missing", async () => {
		const resetAt = Math.floor(Date.now() / 1000) + 86_400;
		const set = await fetch(`${mock.issuer}/_mock/usage`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({
				account_id: "acc-mock",
				primary: null,
				secondary: { used_percent: 12.5, window_minutes: 10080, reset_at: resetAt },
			}),
		});
		assert.equal(set.status, 200);
		const [account, ...rest] = await daemon.usage();
		assert.equal(rest.length, 0);
		assert.ok(account);
		assert.equal(account.accountId, "acc-mock");
		assert.equal(account.primary, undefined, "missing, not 0 %");
		assert.equal(account.secondary?.usedPercent, 12.5);
		assert.equal(account.secondary?.resetsAt, resetAt);
		assert.equal(account.source, "usage_endpoint");
	});

	test("the token is the daemon's; a rotation arrives by WatchToken, not by asking", async () => {
		const tokens = new TokenSource(daemon);
		const first = await tokens.token();
		assert.equal(first.accessToken, stored(sb.authFile).access);
		assert.equal(first.accountId, "acc-mock");
		await until("the watch stream", () => tokens.cached);

		execFileSync(bin("pi-authctl"), ["refresh"], { env: sb.env({ PIAUTHD_NO_AUTOSTART: "1" }), stdio: "ignore" });
		const rotated = stored(sb.authFile).access;
		assert.notEqual(rotated, first.accessToken);
		await until("the pushed token", async () => tokens.cached && (await tokens.token()).accessToken === rotated);
		const s = await mock.stats();
		assert.equal(s.refreshes, 1);
		assert.equal(s.reuse_attempts, 0);
		tokens.reset();
	});

	test("status shows the account, the store and the refresh", async () => {
		const s = await daemon.status();
		const codex = s.providers.find((p) => p.provider === "openai-codex");
		assert.equal(codex?.state, "valid");
		assert.equal(codex?.email, "user@example.com");
		assert.equal(s.store.kind, "file");
		assert.equal(s.socketPath, sb.socket);
		const text = formatStatus(s);
		assert.match(text, /openai-codex: valid · acc-mock · user@example.com · plus/);
		assert.match(text, /token expires in/);
		assert.ok(!text.includes(stored(sb.authFile).access), "no token in /piauth's text");
	});

	test("a daemon killed mid-session is found again by the next request", async () => {
		const tokens = new TokenSource(daemon);
		await tokens.token();
		await until("the watch stream", () => tokens.cached);
		await stop(child);
		await until("the stream to drop", () => !tokens.cached);
		await assert.rejects(tokens.token(), (e: unknown) => e instanceof PiauthError && /not running/.test(e.message));
		child = await startDaemon(sb, mock);
		assert.equal((await tokens.token()).accessToken, stored(sb.authFile).access);
		tokens.reset();
	});
});

describe("logging in from pi's dialog", () => {
	const sb = new Sandbox();
	let mock: Mock;
	let child: Awaited<ReturnType<typeof startDaemon>>;
	let daemon: Daemon;

	before(async () => {
		mock = await startMock();
		child = await startDaemon(sb, mock);
		daemon = new Daemon({ socketPath: sb.socket, authctl: undefined });
	});
	after(async () => {
		daemon.close();
		await stop(child);
		mock.stop();
		sb.remove();
	});

	/** pi's side of a login: records notices, answers prompts with `answer`. */
	function dialog(answer: (p: AuthPrompt, events: AuthEvent[]) => Promise<string>, esc = new AbortController()) {
		const events: AuthEvent[] = [];
		const interaction: ProviderAuthInteraction = {
			signal: esc.signal,
			notify: (e) => events.push(e),
			prompt: (p) => answer(p, events),
		};
		return { events, interaction };
	}

	/**
	 * What the browser does: open the daemon's one-time start URL (it sets
	 * the login's cookie and redirects to the issuer), then follow the
	 * issuer's redirect. Returns the callback URL and the cookie it needs.
	 */
	async function approve(url: string): Promise<{ callback: string; cookie: string }> {
		const start = await fetch(url, { redirect: "manual" });
		const cookie = (start.headers.get("set-cookie") ?? "").split(";")[0];
		const issuer = start.headers.get("location");
		assert.ok(start.status === 302 && cookie && issuer, `the start URL set a cookie and redirected (${start.status})`);
		const r = await fetch(issuer, { redirect: "manual" });
		const location = r.headers.get("location");
		assert.ok(location, `the issuer redirected (${r.status})`);
		return { callback: location, cookie };
	}

	test("not logged in: a request says to run /login", async () => {
		await assert.rejects(
			daemon.getToken(60),
			(e: unknown) => e instanceof PiauthError && e.reason === "ERROR_REASON_NOT_LOGGED_IN" && /run \/login/.test(e.message),
		);
	});

	test("browser login: the URL shows in pi, the callback completes it, the daemon stores it", async () => {
		const d = dialog(async (p) => {
			if (p.type === "select") return "browser";
			// Leave the paste prompt open until the login ends it.
			return new Promise((_, reject) => p.signal?.addEventListener("abort", () => reject(new Error("aborted"))));
		});
		const done = runLogin(daemon, d.interaction);
		await until("the authorize URL", () => d.events.some((e) => e.type === "auth_url"));
		const ev = d.events.find((e) => e.type === "auth_url");
		assert.ok(ev?.type === "auth_url");
		const browser = await approve(ev.url);
		const callback = new URL(browser.callback);
		callback.hostname = "127.0.0.1";
		const hit = await fetch(callback, { headers: { cookie: browser.cookie } });
		assert.equal(hit.status, 200);
		await done;
		assert.equal(stored(sb.authFile).accountId, "acc-login");
	});

	test("paste: a wrong paste is refused and asked again, the right one logs in", async () => {
		let pastes = 0;
		const d = dialog(async (p, events) => {
			if (p.type === "select") return "browser";
			pastes++;
			if (pastes === 1) return "not-a-code#wrong-state";
			const ev = events.find((e) => e.type === "auth_url");
			assert.ok(ev?.type === "auth_url");
			return (await approve(ev.url)).callback;
		});
		await runLogin(daemon, d.interaction);
		assert.equal(pastes, 2);
		assert.ok(
			d.events.some((e) => e.type === "progress" && /state mismatch/i.test(e.message)),
			"the refusal is shown",
		);
		assert.equal(stored(sb.authFile).accountId, "acc-login");
	});

	test("device code: the code shows in pi and the login completes, and pi hears where it went", async () => {
		const d = dialog(async () => "device_code");
		await runLogin(daemon, d.interaction);
		const ev = d.events.find((e) => e.type === "device_code");
		assert.ok(ev?.type === "device_code" && ev.userCode.length > 0);
		assert.ok(
			d.events.some((e) => e.type === "info" && e.message.includes(`piauthd saved this login in ${sb.authFile}`)),
			JSON.stringify(d.events),
		);
	});

	test("Esc during a login is pi's cancel, not an error", async () => {
		const esc = new AbortController();
		const d = dialog(async (p) => {
			if (p.type === "select") return "browser";
			return new Promise((_, reject) => p.signal?.addEventListener("abort", () => reject(new Error("aborted"))));
		}, esc);
		const done = runLogin(daemon, d.interaction);
		await until("the authorize URL", () => d.events.some((e) => e.type === "auth_url"));
		esc.abort();
		await assert.rejects(done, (e: unknown) => e instanceof Error && e.message === "Login cancelled");
	});

	test("logout goes through the daemon", async () => {
		assert.equal(await daemon.logout(), true);
		assert.equal(stored(sb.authFile), undefined);
		assert.equal(await daemon.logout(), false);
	});
});

describe("without a daemon", () => {
	test("autostart off: one line saying what to run", async () => {
		const sb = new Sandbox();
		try {
			const d = new Daemon({ socketPath: sb.socket, authctl: undefined });
			await assert.rejects(d.getToken(60), (e: unknown) => {
				assert.ok(e instanceof PiauthError);
				assert.match(e.message, /^piauthd is not running \(nothing listens on .*\) and autostart is off: start it with `piauthd`$/);
				return true;
			});
		} finally {
			sb.remove();
		}
	});

	test("no pi-authctl to start it: one line", async () => {
		const sb = new Sandbox();
		try {
			const d = new Daemon({ socketPath: sb.socket, authctl: join(sb.root, "no-such-pi-authctl") });
			await assert.rejects(d.getToken(60), /was not found to start it: put piauthd and pi-authctl on PATH/);
		} finally {
			sb.remove();
		}
	});

	test("autostart: the first request starts piauthd through pi-authctl and gets a token", async () => {
		const sb = new Sandbox();
		const mock = await startMock({ seedAuth: sb.authFile });
		const saved = { ...process.env };
		Object.assign(process.env, sb.env({ PIAUTHD_ISSUER: mock.issuer, PIAUTHD_CODEX_BASE_URL: mock.codexBase }));
		delete process.env.PIAUTHD_NO_AUTOSTART;
		let pid = 0;
		try {
			const d = new Daemon({ socketPath: sb.socket, authctl: bin("pi-authctl") });
			const t = await d.getToken(60);
			assert.equal(t.accessToken, stored(sb.authFile).access);
			pid = (await d.status()).pid;
			assert.ok(pid > 0);
			d.close();
		} finally {
			process.env = saved;
			if (pid) process.kill(pid, "SIGKILL");
			mock.stop();
			sb.remove();
		}
	});

	test("an open socket directory is refused before anything is sent", async () => {
		const sb = new Sandbox();
		const run = dirname(sb.socket);
		mkdirSync(run, { mode: 0o700 });
		let connections = 0;
		const server = net.createServer((c) => {
			connections++;
			c.destroy();
		});
		await new Promise<void>((ok) => server.listen(sb.socket, ok));
		try {
			await waitListening(sb.socket);
			connections = 0;
			chmodSync(run, 0o777);
			const d = new Daemon({ socketPath: sb.socket, authctl: undefined });
			await assert.rejects(d.getToken(60), /shared with other users \(mode 777\): no piauthd serves a socket there/);
			await assert.rejects(d.status(), /shared with other users/);
			assert.equal(connections, 0);
		} finally {
			server.close();
			sb.remove();
		}
	});
});
