/**
 * One call of pi's Codex stream in relay mode, and the completion it
 * starts early.
 *
 * pi hands its body to `onPayload`, then serializes and zstd-compresses it
 * and calls `fetch`, all without waiting on anything. Started from
 * `onPayload`, the completion is on its way to the daemon (and the daemon
 * on its way upstream) while pi compresses a body the relay does not need.
 */

import type { Daemon } from "./daemon.ts";
import type { CompletionEvent } from "./messages.ts";

/** A completion started from pi's body before pi's `fetch` asked for it. */
export interface Early {
	session: string;
	events: AsyncGenerator<CompletionEvent[]>;
	first: Promise<IteratorResult<CompletionEvent[]>>;
	cancel: AbortController;
}

/**
 * One call of pi's Codex stream: `onPayload` starts the completion
 * ([`Turn.start`]), and `fetch` takes it ([`Turn.claim`]). A retry of pi's,
 * or a `fetch` for another session, gets a call of its own.
 */
export class Turn {
	private readonly daemon: Daemon;
	private readonly signal: AbortSignal | undefined;
	private early: Early | undefined;
	private started = false;

	constructor(daemon: Daemon, signal: AbortSignal | undefined) {
		this.daemon = daemon;
		this.signal = signal;
	}

	/** Starts the completion of pi's `body`, once per call of pi's stream; false when it did not. */
	start(body: unknown): boolean {
		if (this.started || this.signal?.aborted) return false;
		this.started = true;
		let json: string;
		try {
			json = JSON.stringify(body);
		} catch {
			return false; // pi's own JSON.stringify fails the same way
		}
		// pi sends the body's `prompt_cache_key` as its `session-id`.
		const key = (body as { prompt_cache_key?: unknown } | null)?.prompt_cache_key;
		const session = typeof key === "string" ? key : "";
		const cancel = new AbortController();
		this.signal?.addEventListener("abort", () => cancel.abort(), { once: true });
		const events = this.daemon.complete(new TextEncoder().encode(json), session, cancel.signal);
		const first = events.next();
		first.catch(() => {}); // read by `fetch`, or dropped with the call
		const early = { session, events, first, cancel };
		this.early = early;
		// pi calls `fetch` as soon as `onPayload` returns, with nothing to
		// wait for in between; `onPayload` returns at the loop's next turn.
		// If pi has not called it by the turn after (it failed in between),
		// nobody will read this call: end it.
		setImmediate(() =>
			setImmediate(() => {
				if (this.early === early) this.drop();
			}),
		);
		return true;
	}

	/** The call started for pi's `fetch` of `session`, if one is waiting. */
	claim(session: string, signal: AbortSignal | undefined): Early | undefined {
		const early = this.early;
		this.early = undefined;
		if (!early) return undefined;
		if (early.session !== session) {
			early.cancel.abort();
			return undefined;
		}
		signal?.addEventListener("abort", () => early.cancel.abort(), { once: true });
		if (signal?.aborted) early.cancel.abort();
		return early;
	}

	private drop(): void {
		this.early?.cancel.abort();
		this.early = undefined;
	}
}
