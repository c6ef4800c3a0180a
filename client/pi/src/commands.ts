/**
 * `/piauth`: the daemon's view of the ChatGPT login, and logout through it.
 */

import type { ExtensionAPI, ExtensionCommandContext } from "@earendil-works/pi-coding-agent";

import type { Daemon } from "./daemon.ts";
import { CODEX, type ProviderStatus, type Status } from "./messages.ts";
import type { TokenSource } from "./tokens.ts";
import { formatUsage } from "./usage.ts";

/** "3d 4h", "12m", "40s": the two largest units of a duration. */
export function span(ms: number): string {
	const s = Math.max(0, Math.round(ms / 1000));
	const units: [number, string][] = [
		[86_400, "d"],
		[3_600, "h"],
		[60, "m"],
		[1, "s"],
	];
	const parts: string[] = [];
	let rest = s;
	for (const [size, name] of units) {
		if (parts.length === 2) break;
		const n = Math.floor(rest / size);
		if (n > 0 || (parts.length === 0 && size === 1)) parts.push(`${n}${name}`);
		if (n > 0) rest -= n * size;
		else if (parts.length > 0) break;
	}
	return parts.join(" ");
}

function when(atMs: number, nowMs: number): string {
	if (!atMs) return "never";
	return atMs >= nowMs ? `in ${span(atMs - nowMs)}` : `${span(nowMs - atMs)} ago`;
}

function providerLines(p: ProviderStatus, now: number): string[] {
	const who = [p.accountId, p.email, p.plan].filter(Boolean).join(" · ");
	const lines = [`${p.provider}: ${p.state}${who ? ` · ${who}` : ""}`];
	if (p.expiresAtMs) {
		const exp = p.expiresAtMs >= now ? `expires ${when(p.expiresAtMs, now)}` : `expired ${when(p.expiresAtMs, now)}`;
		const last = p.lastRefreshMs
			? `last refresh ${when(p.lastRefreshMs, now)} (${p.refreshCount} by this daemon)`
			: "not refreshed by this daemon yet";
		const next = p.nextRefreshMs ? ` · next refresh ${when(p.nextRefreshMs, now)}` : "";
		lines.push(`  token ${exp} · ${last}${next}`);
	}
	if (p.lastError) lines.push(`  last error: ${p.lastError}`);
	if (p.hint) lines.push(`  ${p.hint}`);
	return lines;
}

/** The text `/piauth` shows (pure: times are relative to the daemon's clock). */
export function formatStatus(s: Status): string {
	const now = s.nowMs;
	const store = `${s.store.kind}${s.store.path ? ` ${s.store.path}` : ""} (${s.store.health})`;
	const lines = [`piauthd ${s.daemonVersion} (pid ${s.pid}) on ${s.socketPath} · store: ${store}`];
	if (s.store.detail) lines.push(`  ${s.store.detail}`);
	const codex = s.providers.filter((p) => p.provider === CODEX);
	for (const p of codex) lines.push(...providerLines(p, now));
	return lines.join("\n");
}

const USAGE = "Usage: /piauth [status|usage|logout]";

type Level = "info" | "warning" | "error";

/** In pi's UI, a notice; in print mode (`pi -p /piauth`), plain output. */
function show(ctx: ExtensionCommandContext, text: string, level: Level): void {
	if (ctx.hasUI) ctx.ui.notify(text, level);
	else if (level === "info") process.stdout.write(`${text}\n`);
	else process.stderr.write(`${text}\n`);
}

export function registerCommands(pi: ExtensionAPI, daemon: Daemon, tokens: TokenSource): void {
	pi.registerCommand("piauth", {
		description: "piauthd: show the ChatGPT login (status), its limits (usage), or log out of it (logout)",
		getArgumentCompletions: (prefix) =>
			["status", "usage", "logout"].filter((c) => c.startsWith(prefix)).map((c) => ({ value: c, label: c })),
		handler: async (args, ctx) => {
			const verb = args.trim() || "status";
			try {
				if (verb === "status") {
					show(ctx, formatStatus(await daemon.status()), "info");
				} else if (verb === "usage") {
					show(ctx, formatUsage(await daemon.usage(), Date.now()), "info");
				} else if (verb === "logout") {
					const removed = await daemon.logout();
					tokens.reset();
					show(ctx, removed ? "Logged out of ChatGPT: piauthd removed the login." : "piauthd had no ChatGPT login to remove.", "info");
				} else {
					show(ctx, USAGE, "warning");
				}
			} catch (e) {
				show(ctx, e instanceof Error ? e.message : String(e), "error");
			}
		},
	});
}
