/**
 * A usage limit costs the user nothing.
 *
 * pi's own Codex stream runs as it always does (its WebSocket or SSE
 * transport, its prompt cache), with the token of the account that serves
 * pi's session. When that stream fails on a usage limit before any output,
 * the daemon is told: it skips that account until its reset and moves the
 * session to the next account with room. The same turn is then sent once
 * more with the new account's token, so the user never types the prompt
 * again. pi itself does not retry a usage limit.
 *
 * After any output nothing is retried: the user has seen part of an answer.
 */

import type { AssistantMessageEvent, AssistantMessageEventStream } from "@earendil-works/pi-ai";

import type { Token } from "./messages.ts";

/** What the retry needs from the daemon (a seam for tests). */
export interface LimitDaemon {
	reportLimit(session: string, accountId: string, resetsAt: number, minValidSecs: number): Promise<Token>;
}

/** A run of pi's stream with the given access token. */
export type Run = (accessToken: string) => AssistantMessageEventStream;

/** pi-ai's `createAssistantMessageEventStream`, handed in by whoever has pi-ai loaded. */
export type NewStream = () => AssistantMessageEventStream;

/** What a retried turn reports, for the footer and the counts. */
export interface Moved {
	from: string;
	to: Token;
}

/** Events that carry output: after one, nothing is retried. */
const OUTPUT: ReadonlySet<AssistantMessageEvent["type"]> = new Set([
	"text_start",
	"text_delta",
	"text_end",
	"thinking_start",
	"thinking_delta",
	"thinking_end",
	"toolcall_start",
	"toolcall_delta",
	"toolcall_end",
]);

/** What GetToken asks for after a limit; as `tokens.ts` asks. */
const MIN_VALID_SECS = 60;

/** Whether a failed turn's message is a usage limit (pi's words or the backend's code). Pure. */
export function isUsageLimit(message: string | undefined): boolean {
	return /usage limit|usage_limit_reached|rate_limit_exceeded/i.test(message ?? "");
}

/** When the limit resets, from pi's "Try again in ~N min." (epoch seconds; 0 when unsaid). Pure. */
export function resetsAtFrom(message: string | undefined, nowMs: number): number {
	const m = /try again in ~?(\d+)\s*min/i.exec(message ?? "");
	return m ? Math.floor(nowMs / 1000) + Number(m[1]) * 60 : 0;
}

/** The ChatGPT account an access token is for, from its JWT claim; "" when unreadable. Pure. */
export function accountOf(accessToken: string): string {
	const payload = accessToken.split(".")[1];
	if (!payload) return "";
	try {
		const claims: unknown = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
		const auth = (claims as Record<string, unknown> | null)?.["https://api.openai.com/auth"];
		const id = (auth as Record<string, unknown> | undefined)?.["chatgpt_account_id"];
		return typeof id === "string" ? id : "";
	} catch {
		return "";
	}
}

/**
 * pi's stream for one turn, sent once more on another account when it
 * fails on a usage limit before any output. `token` is the one the first
 * run uses; `onMoved` hears of a move (and takes the new token).
 */
export function retryOnLimit(
	newStream: NewStream,
	run: Run,
	token: Token,
	session: string,
	daemon: LimitDaemon,
	onMoved: (moved: Moved) => void,
	now: () => number = Date.now,
): AssistantMessageEventStream {
	const out = newStream();
	void relay(out, run, token, session, daemon, onMoved, now).catch(() => out.end());
	return out;
}

async function relay(
	out: AssistantMessageEventStream,
	run: Run,
	first: Token,
	session: string,
	daemon: LimitDaemon,
	onMoved: (moved: Moved) => void,
	now: () => number,
): Promise<void> {
	let token = first;
	let retried = false;
	for (;;) {
		const held: AssistantMessageEvent[] = [];
		let output = false;
		let moved = false;
		for await (const event of run(token.accessToken)) {
			if (!output && !retried && limitEvent(event)) {
				const next = await moveOn(daemon, session, token, event, now);
				if (next) {
					onMoved({ from: token.accountId, to: next });
					token = next;
					retried = true;
					moved = true;
					break;
				}
			}
			if (!output && !OUTPUT.has(event.type) && event.type !== "done" && event.type !== "error") {
				held.push(event); // "start": sent with the first output, so a retry starts clean
				continue;
			}
			output = true;
			for (const h of held.splice(0)) out.push(h);
			out.push(event);
		}
		if (moved) continue;
		for (const h of held) out.push(h);
		out.end();
		return;
	}
}

function limitEvent(event: AssistantMessageEvent): event is Extract<AssistantMessageEvent, { type: "error" }> {
	return event.type === "error" && event.reason === "error" && isUsageLimit(event.error.errorMessage);
}

/** The next account's token, or undefined when there is none with room (the limit then reaches pi as it is). */
async function moveOn(
	daemon: LimitDaemon,
	session: string,
	token: Token,
	event: Extract<AssistantMessageEvent, { type: "error" }>,
	now: () => number,
): Promise<Token | undefined> {
	const account = token.accountId || accountOf(token.accessToken);
	if (!account) return undefined;
	try {
		const next = await daemon.reportLimit(session, account, resetsAtFrom(event.error.errorMessage, now()), MIN_VALID_SECS);
		return next.accountId && next.accountId !== account ? next : undefined;
	} catch {
		return undefined;
	}
}
