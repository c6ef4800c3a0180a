/**
 * The access token, kept in memory by a WatchToken stream.
 *
 * The daemon pushes each new token as it issues it, so a request's auth is
 * a memory read. When there is no live stream (a cold start, or the daemon
 * went away), one GetToken fetches the token and the stream is opened again.
 * Nothing here ever refreshes: that is the daemon's job alone.
 */

import type { Token } from "./messages.ts";

/** What the cache needs from the daemon (a seam for tests). */
export interface TokenDaemon {
	getToken(minValidSecs: number, signal?: AbortSignal, session?: string): Promise<Token>;
	watchToken(signal: AbortSignal, session?: string): AsyncGenerator<Token>;
}

/** A cached token is served only while it has at least this long to live. */
export const FRESH_MS = 5_000;
/** What GetToken asks for; the daemon caps it at half the token's lifetime. */
export const MIN_VALID_SECS = 60;

export class TokenSource {
	private readonly daemon: TokenDaemon;
	private readonly now: () => number;
	private current: Token | undefined;
	private watch: AbortController | undefined;
	private fetching: Promise<Token> | undefined;
	/** pi's session: with several accounts, it keeps its account while that has room. */
	private session = "";

	constructor(daemon: TokenDaemon, now: () => number = Date.now) {
		this.daemon = daemon;
		this.now = now;
	}

	/** True when the next `token()` is served from memory. */
	get cached(): boolean {
		const t = this.current;
		return this.watch !== undefined && t !== undefined && t.expiresAtMs - this.now() >= FRESH_MS;
	}

	async token(signal?: AbortSignal): Promise<Token> {
		signal?.throwIfAborted();
		if (this.cached && this.current) return this.current;
		// Concurrent cold callers share one GetToken. It carries no caller's
		// signal (it is bounded by its own deadline): one caller giving up
		// must not fail the others, so each stops waiting on its own signal.
		const session = this.session;
		const fetching = (this.fetching ??= this.daemon
			.getToken(MIN_VALID_SECS, undefined, session)
			.then((fresh) => {
				if (this.session === session) {
					this.current = fresh;
					this.startWatch();
				}
				return fresh;
			})
			.finally(() => {
				if (this.fetching === fetching) this.fetching = undefined;
			}));
		return untilAborted(fetching, signal);
	}

	/** Serves pi's session `id` from now on; a new session starts from a new token. */
	useSession(id: string): void {
		if (id === this.session) return;
		this.reset();
		this.fetching = undefined;
		this.session = id;
	}

	/** The account of the token in hand; "" before the first. */
	get accountId(): string {
		return this.current?.accountId ?? "";
	}

	/** The session served. */
	get sessionId(): string {
		return this.session;
	}

	/** Takes a token the daemon handed over another way (after a reported limit). */
	adopt(token: Token): void {
		this.current = token;
		this.startWatch();
	}

	/** Forgets the token and closes the stream (logout, shutdown). */
	reset(): void {
		this.watch?.abort();
		this.watch = undefined;
		this.current = undefined;
	}

	private startWatch(): void {
		if (this.watch) return;
		const ctl = new AbortController();
		this.watch = ctl;
		void (async () => {
			try {
				for await (const t of this.daemon.watchToken(ctl.signal, this.session)) {
					if (this.watch === ctl) this.current = t;
				}
			} catch {
				// Dropped (daemon restarted, logged out): the next request asks again.
			} finally {
				if (this.watch === ctl) this.watch = undefined;
			}
		})();
	}
}

/** `work`, or the reason `signal` gives when it aborts first. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
	if (!signal) return work;
	return new Promise<T>((resolve, reject) => {
		const onAbort = () => reject(signal.reason);
		signal.addEventListener("abort", onAbort, { once: true });
		work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
	});
}
