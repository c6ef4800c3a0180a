/**
 * `/piauth usage`: the plan's rate-limit windows, as the daemon reports them
 * (`Auth.Usage`). A window the backend does not report is said to be
 * missing, never shown as 0 %.
 */

import { LOGIN_HINT } from "./messages.ts";
import { bool, bytes, double, fields, int64, string, uint } from "./wire.ts";

export interface UsageWindow {
	usedPercent: number;
	windowMinutes: number;
	/** Epoch seconds; 0 when not said. */
	resetsAt: number;
}

export interface AccountUsage {
	accountId: string;
	email: string;
	plan: string;
	/** The 5-hour window; undefined when the backend does not report it. */
	primary: UsageWindow | undefined;
	/** The weekly window; undefined likewise. */
	secondary: UsageWindow | undefined;
	limitReached: boolean;
	source: string;
	/** Epoch seconds. */
	fetchedAt: number;
}

function decodeWindow(buf: Uint8Array): UsageWindow {
	const w: UsageWindow = { usedPercent: 0, windowMinutes: 0, resetsAt: 0 };
	for (const f of fields(buf)) {
		if (f.field === 1) w.usedPercent = double(f);
		else if (f.field === 2) w.windowMinutes = uint(f);
		else if (f.field === 3) w.resetsAt = int64(f);
	}
	return w;
}

function decodeAccount(buf: Uint8Array): AccountUsage {
	const a: AccountUsage = {
		accountId: "",
		email: "",
		plan: "",
		primary: undefined,
		secondary: undefined,
		limitReached: false,
		source: "",
		fetchedAt: 0,
	};
	for (const f of fields(buf)) {
		switch (f.field) {
			case 1: a.accountId = string(f); break;
			case 2: a.email = string(f); break;
			case 3: a.plan = string(f); break;
			case 4: a.primary = decodeWindow(bytes(f)); break;
			case 5: a.secondary = decodeWindow(bytes(f)); break;
			case 6: a.limitReached = bool(f); break;
			case 7: a.source = string(f); break;
			case 8: a.fetchedAt = int64(f); break;
		}
	}
	return a;
}

/** UsageResponse: its accounts. */
export function decodeUsage(buf: Uint8Array): AccountUsage[] {
	const out: AccountUsage[] = [];
	for (const f of fields(buf)) {
		if (f.field === 1) out.push(decodeAccount(bytes(f)));
	}
	return out;
}

/** A 20-cell bar for a percentage. */
export function bar(percent: number): string {
	const full = Math.round((Math.min(100, Math.max(0, percent)) / 100) * 20);
	return `[${"#".repeat(full)}${".".repeat(20 - full)}]`;
}

function until(secs: number): string {
	const s = Math.max(0, Math.round(secs));
	if (s >= 86_400) return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3_600)}h`;
	if (s >= 3_600) return `${Math.floor(s / 3_600)}h ${Math.floor((s % 3_600) / 60)}m`;
	if (s >= 60) return `${Math.floor(s / 60)}m`;
	return `${s}s`;
}

function windowLine(name: string, w: UsageWindow | undefined, nowS: number): string {
	if (!w) return `  ${name.padEnd(7)}  not reported by the backend`;
	const reset = w.resetsAt ? `, resets in ${until(w.resetsAt - nowS)}` : "";
	return `  ${name.padEnd(7)}  ${bar(w.usedPercent)} ${w.usedPercent.toFixed(1)}% used${reset}`;
}

/**
 * The footer: the account serving this session and its 5-hour use, e.g.
 * "ChatGPT b@example.com · 5h 12%". Undefined when the account is unknown.
 */
export function footerText(accounts: AccountUsage[], accountId: string): string | undefined {
	const a = accounts.find((x) => x.accountId === accountId);
	if (!a) return undefined;
	const five = a.primary ? `5h ${Math.round(a.primary.usedPercent)}%` : "5h not reported";
	const limited = a.limitReached ? " · limit reached" : "";
	return `ChatGPT ${a.email || a.accountId} · ${five}${limited}`;
}

/** The text `/piauth usage` shows (pure: `nowMs` is the clock). */
export function formatUsage(accounts: AccountUsage[], nowMs: number): string {
	if (accounts.length === 0) return `piauthd: no ChatGPT account. ${LOGIN_HINT}`;
	const nowS = Math.floor(nowMs / 1000);
	const lines: string[] = [];
	for (const a of accounts) {
		lines.push(`${a.email || a.accountId} (${a.plan || "plan unknown"})`);
		lines.push(windowLine("5-hour", a.primary, nowS));
		lines.push(windowLine("weekly", a.secondary, nowS));
		if (a.limitReached) lines.push("  the usage limit is reached: requests fail until a window resets");
	}
	return lines.join("\n");
}
