/**
 * piauthd for pi: pi's ChatGPT (`openai-codex`) provider takes its tokens
 * from the piauthd daemon over its private Unix socket, so that every pi
 * session shares one login that only the daemon refreshes.
 *
 * Layout, one module per concern:
 * - `wire.ts`, `messages.ts`: the protobuf encoding of piauth.v1;
 * - `grpc.ts`: gRPC over HTTP/2 on the Unix socket;
 * - `socket.ts`: finding and checking the socket;
 * - `daemon.ts`: the Auth service, autostart and one-line errors;
 * - `tokens.ts`: the token kept fresh by WatchToken;
 * - `provider.ts`: the provider pi calls;
 * - `relay.ts`: relay mode, pi's Codex stream through the daemon;
 * - `limits.ts`: a turn refused by a usage limit goes to the next account;
 * - `login.ts`: `/login` through the daemon;
 * - `commands.ts`: `/piauth`.
 */

import { builtinProviders } from "@earendil-works/pi-ai/providers/all";
import type { ExtensionAPI, ExtensionContext } from "@earendil-works/pi-coding-agent";

import { registerCommands } from "./commands.ts";
import { Daemon } from "./daemon.ts";
import { CODEX } from "./messages.ts";
import { codexProvider, relayProvider } from "./provider.ts";
import { relayEnabled } from "./relay.ts";
import { TokenSource } from "./tokens.ts";
import { footerText } from "./usage.ts";

export default function piauthd(pi: ExtensionAPI): void {
	const builtin = builtinProviders().find((p) => p.id === CODEX);
	if (!builtin) {
		throw new Error("piauthd: this pi has no built-in openai-codex provider; the package needs pi 1.6 or later");
	}
	const daemon = Daemon.fromEnv();
	const tokens = new TokenSource(daemon);
	// The footer shows the account serving this session and its 5-hour use.
	let ui: ExtensionContext | undefined;
	const showAccount = async () => {
		if (!ui?.hasUI || !tokens.accountId) return;
		try {
			ui.ui.setStatus("piauthd", footerText(await daemon.usage(), tokens.accountId));
		} catch {
			// The footer is a courtesy: a failed read leaves the last one.
		}
	};
	pi.registerProvider(
		relayEnabled()
			? relayProvider(builtin, daemon, tokens)
			: codexProvider(builtin, daemon, tokens, () => void showAccount()),
	);
	registerCommands(pi, daemon, tokens);
	// With several accounts, pi's session keeps its account while it has room.
	pi.on("session_start", (_event, ctx) => {
		ui = ctx;
		tokens.useSession(ctx.sessionManager.getSessionId());
	});
	pi.on("turn_end", (_event, ctx) => {
		ui = ctx;
		void showAccount();
	});
	pi.on("session_shutdown", () => {
		tokens.reset();
		daemon.close();
	});
}
