/**
 * Where pi sends its Codex requests: OpenAI's backend, unless the daemon
 * relays to another one (mock-openai, a proxy). Then pi's provider is
 * pointed at the daemon's backend through the auth it resolves (pi-ai
 * applies an auth's `baseUrl` to the request), so a token the daemon got
 * from a test issuer never goes to OpenAI, and no `models.json` is needed.
 */

import type { Status } from "./messages.ts";

/** pi's own Codex backend, as the daemon names it by default. */
export const OPENAI_CODEX_BASE = "https://chatgpt.com/backend-api";

/** What the backend lookup needs from the daemon (a seam for tests). */
export interface BackendDaemon {
	status(): Promise<Status>;
}

/** The base URL pi must use instead of its own, or undefined for OpenAI's. Pure. */
export function baseUrlFor(daemonBase: string): string | undefined {
	const base = daemonBase.trim().replace(/\/+$/, "");
	return base && base !== OPENAI_CODEX_BASE ? base : undefined;
}

/** The daemon's backend, asked once per process. */
export class BackendSource {
	private readonly daemon: BackendDaemon;
	private known: Promise<string | undefined> | undefined;

	constructor(daemon: BackendDaemon) {
		this.daemon = daemon;
	}

	/** `{ baseUrl }` to add to an auth when the daemon's backend is not OpenAI's. */
	async override(): Promise<{ baseUrl?: string }> {
		this.known ??= this.daemon.status().then(
			(s) => baseUrlFor(s.codexBaseUrl),
			(e: unknown) => {
				this.known = undefined; // asked again next time
				throw e;
			},
		);
		const baseUrl = await this.known;
		return baseUrl ? { baseUrl } : {};
	}
}
