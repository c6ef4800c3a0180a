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
 * - `login.ts`: `/login` through the daemon;
 * - `commands.ts`: `/piauth`.
 */

import { builtinProviders } from "@earendil-works/pi-ai/providers/all";
import type { ExtensionAPI } from "@earendil-works/pi-coding-agent";

import { registerCommands } from "./commands.ts";
import { Daemon } from "./daemon.ts";
import { CODEX } from "./messages.ts";
import { codexProvider } from "./provider.ts";
import { TokenSource } from "./tokens.ts";

export default function piauthd(pi: ExtensionAPI): void {
	const builtin = builtinProviders().find((p) => p.id === CODEX);
	if (!builtin) {
		throw new Error("piauthd: this pi has no built-in openai-codex provider; the package needs pi 1.6 or later");
	}
	const daemon = Daemon.fromEnv();
	const tokens = new TokenSource(daemon);
	pi.registerProvider(codexProvider(builtin, daemon, tokens));
	registerCommands(pi, daemon, tokens);
	pi.on("session_shutdown", () => {
		tokens.reset();
		daemon.close();
	});
}
