/**
 * pi's `openai-codex` provider with piauthd as its only source of tokens.
 *
 * pi's built-in provider is kept whole (its models, its Codex stream and
 * WebSocket transport); only `auth` is replaced. pi resolves credentials in
 * two ways and both end at the daemon:
 *
 * - A codex entry in auth.json (piauthd's file store): pi uses `oauth`.
 *   pi calls `refresh` while it holds its lock on auth.json. The daemon may
 *   be waiting for that very lock to refresh, so `refresh` must not ask it
 *   to: it returns nothing, pi writes nothing, and `toAuth` (called after
 *   the lock is released) takes the daemon's current token.
 * - No codex entry (the keyring store, a fresh machine): pi uses `apiKey`,
 *   whose `resolve` takes the daemon's token the same way.
 *
 * pi 1.6.0 treats an `undefined` result of `login` or `refresh` as "leave
 * the stored entry unchanged" (its credential store's `modify`). The daemon
 * has already stored the login, in auth.json or in the keyring, so pi must
 * not write a copy: in keyring mode that copy would put the tokens back in
 * a plain file, and the refresh token never leaves the daemon anyway.
 */

import {
	type ApiKeyAuth,
	type AssistantMessageEventStream,
	type OAuthAuth,
	type Provider,
	type Model,
	type StreamOptions,
	createAssistantMessageEventStream,
} from "@earendil-works/pi-ai";

import { BackendSource } from "./backend.ts";
import type { Daemon } from "./daemon.ts";
import { type Moved, type Run, accountOf, retryOnLimit } from "./limits.ts";
import { CODEX } from "./messages.ts";
import { runLogin } from "./login.ts";
import { RELAY_KEY, throughDaemon } from "./relay.ts";
import type { TokenSource } from "./tokens.ts";
import { Unavailable, failedStream } from "./unavailable.ts";

/**
 * pi's `OAuthAuth` as pi 1.6.0 calls it, which is wider than it declares:
 * `login` and `refresh` resolve to `undefined`, "leave the stored entry
 * unchanged". pi hands `refresh`'s result straight back to its credential
 * store's `modify` (`refreshStoredOAuthCredential` in pi-ai's
 * `auth/resolve.js`), whose callback already returns `undefined` for "no
 * change". What is returned here is stated as it is; the one conversion to
 * pi's declared type is `asPiOAuth`.
 */
interface UnchangingOAuth extends Omit<OAuthAuth, "login" | "refresh"> {
	login(interaction: Parameters<OAuthAuth["login"]>[0]): Promise<undefined>;
	refresh(): Promise<undefined>;
}

/** The declared type pi asks for; see `UnchangingOAuth`. */
function asPiOAuth(auth: UnchangingOAuth): OAuthAuth {
	return auth as unknown as OAuthAuth;
}

/** What a request is sent with: the key pi puts on it, and the backend to use. */
type RequestAuth = (signal?: AbortSignal) => Promise<{ apiKey: string; baseUrl?: string }>;

export function codexAuth(
	daemon: Daemon,
	tokens: TokenSource,
	unavailable: Unavailable,
): { oauth: OAuthAuth; apiKey: ApiKeyAuth } {
	const backend = new BackendSource(daemon);
	// The token and the backend, or a placeholder naming why not (see `unavailable.ts`).
	return authThrough(daemon, tokens, async (signal) => {
		try {
			return { apiKey: (await tokens.token(signal)).accessToken, ...(await backend.override()) };
		} catch (e) {
			if (signal?.aborted) throw e;
			return { apiKey: unavailable.mark(e) };
		}
	});
}

/** pi's two ways to resolve the provider's credentials, both ending at `auth`. */
function authThrough(daemon: Daemon, tokens: TokenSource, auth: RequestAuth): { oauth: OAuthAuth; apiKey: ApiKeyAuth } {
	const oauth = asPiOAuth({
		name: "ChatGPT Plus/Pro (through piauthd)",
		isSubscription: true,
		async login(interaction) {
			await runLogin(daemon, interaction);
			tokens.reset();
			return undefined;
		},
		async refresh() {
			return undefined;
		},
		async toAuth() {
			return auth();
		},
	});
	const apiKey: ApiKeyAuth = {
		name: "piauthd",
		// Always configured: tokens come from piauthd. Logged out or with the
		// daemon away, a request then says so in piauthd's words and names
		// what to type, where pi alone would say "No API key found".
		async check() {
			return { type: "oauth", source: "piauthd" };
		},
		async resolve({ signal }) {
			return { auth: await auth(signal), source: "piauthd" };
		},
	};
	return { oauth, apiKey };
}

/**
 * pi's built-in codex provider in relay mode (see `relay.ts`): its stream
 * goes through the daemon over SSE, with a placeholder for the key, so the
 * token never enters pi. The daemon moves a limited turn to another
 * account by itself.
 */
export function relayProvider(builtin: Provider, daemon: Daemon, tokens: TokenSource): Provider {
	const through = throughDaemon(daemon);
	return {
		...builtin,
		auth: authThrough(daemon, tokens, async () => ({ apiKey: RELAY_KEY })),
		stream(model, context, options) {
			return builtin.stream(model, context, through(options));
		},
		streamSimple(model, context, options) {
			return builtin.streamSimple(model, context, through(options));
		},
	};
}

/**
 * pi's built-in codex provider with piauthd's auth, whose streams move to
 * another account when a usage limit refuses a turn before any output
 * (see `limits.ts`). `onMoved` hears of each move.
 */
export function codexProvider(
	builtin: Provider,
	daemon: Daemon,
	tokens: TokenSource,
	onMoved: (moved: Moved) => void = () => {},
): Provider {
	const unavailable = new Unavailable();
	const guarded = (model: Model<string>, options: StreamOptions | undefined, run: Run): AssistantMessageEventStream => {
		const failure = unavailable.reason(options?.apiKey);
		if (failure) return failedStream(createAssistantMessageEventStream, model, failure);
		const session = options?.sessionId ?? "";
		tokens.useSession(session);
		const accessToken = options?.apiKey ?? "";
		const first = { provider: CODEX, accessToken, expiresAtMs: 0, accountId: accountOf(accessToken) };
		return retryOnLimit(createAssistantMessageEventStream, run, first, session, daemon, (moved) => {
			tokens.adopt(moved.to);
			onMoved(moved);
		});
	};
	return {
		...builtin,
		auth: codexAuth(daemon, tokens, unavailable),
		stream(model, context, options) {
			// The options pi gave, with the token of the account serving the turn.
			const withKey = (apiKey: string) => ({ ...options, apiKey }) as NonNullable<typeof options>;
			return guarded(model, options, (apiKey) => builtin.stream(model, context, withKey(apiKey)));
		},
		streamSimple(model, context, options) {
			return guarded(model, options, (apiKey) => builtin.streamSimple(model, context, { ...options, apiKey }));
		},
	};
}
