/**
 * pi's `/login` for ChatGPT, run by the daemon and shown in pi's own UI.
 *
 * The daemon does the whole login (PKCE, the loopback callback, the code
 * exchange, the device code) and stores the result; pi only shows what the
 * daemon reports and passes on what the user pastes. A bad paste leaves the
 * login open and asks again.
 */

import type { ProviderAuthInteraction } from "@earendil-works/pi-ai";

import type { Daemon } from "./daemon.ts";
import { PiauthError } from "./daemon.ts";
import { type LoginEvent, LoginMethod, type Status } from "./messages.ts";

const BROWSER = "browser";
const DEVICE = "device_code";

/** pi takes a failure of exactly this message for the user's cancel, and says nothing. */
export const CANCELLED = "Login cancelled";

export const PASTE_PROMPT = "Finish in your browser, or paste the URL it ends on (or the code) here:";

/** What one login event means for pi's dialog: a notice, or the end. */
export type Step =
	| { kind: "notify"; event: Parameters<ProviderAuthInteraction["notify"]>[0]; offerPaste: boolean }
	| { kind: "done" }
	| { kind: "fail"; message: string }
	| { kind: "ignore" };

/** Maps a daemon login event to pi's AuthEvent vocabulary (pure). */
export function step(e: LoginEvent, nowMs: number): Step {
	switch (e.type) {
		case "authorize_url": {
			const here = `Sign in with your ChatGPT account. piauthd listens for the browser on ${e.callbackAddr || "localhost"}.`;
			// Over SSH the link above opens nothing: the issuer's own URL, opened
			// on the user's machine, ends on a page whose URL is pasted here.
			const elsewhere =
				e.issuerUrl && e.issuerUrl !== e.url
					? ` Browser on another machine? Open this link there instead, then paste the URL it ends on (it will not load) here: ${e.issuerUrl}`
					: "";
			return {
				kind: "notify",
				event: { type: "auth_url", url: e.url, instructions: here + elsewhere },
				offerPaste: true,
			};
		}
		case "device_code":
			return {
				kind: "notify",
				event: {
					type: "device_code",
					userCode: e.userCode,
					verificationUri: e.verificationUrl,
					expiresInSeconds: e.expiresAtMs > nowMs ? Math.round((e.expiresAtMs - nowMs) / 1000) : undefined,
				},
				offerPaste: false,
			};
		case "waiting":
			return { kind: "notify", event: { type: "progress", message: e.message }, offerPaste: false };
		case "callback_unavailable":
			return { kind: "notify", event: { type: "info", message: e.message }, offerPaste: false };
		case "success":
			return { kind: "done" };
		case "failure":
			return { kind: "fail", message: `Login failed: ${e.message}` };
		case "cancelled":
			return { kind: "fail", message: CANCELLED };
		default:
			return { kind: "ignore" };
	}
}

/** Asks for pastes until one is accepted or the login ends. */
async function pasteLoop(daemon: Daemon, interaction: ProviderAuthInteraction, signal: AbortSignal): Promise<void> {
	while (!signal.aborted) {
		let input: string;
		try {
			input = await interaction.prompt({
				type: "manual_code",
				message: PASTE_PROMPT,
				placeholder: "http://localhost:1455/auth/callback?code=…&state=…",
				signal,
			});
		} catch {
			return; // the login ended, or the user left the prompt
		}
		try {
			await daemon.submitCode(input);
			return;
		} catch (e) {
			if (signal.aborted) return;
			const rejected = e instanceof PiauthError && e.reason === "ERROR_REASON_PASTE_REJECTED";
			interaction.notify({ type: "progress", message: e instanceof Error ? e.message : String(e) });
			if (!rejected) return;
		}
	}
}

/**
 * Runs a login through the daemon; resolves once the daemon has stored it,
 * after saying where. Esc (pi's abort) is a cancel, never an error.
 */
export async function runLogin(daemon: Daemon, interaction: ProviderAuthInteraction): Promise<void> {
	try {
		await loginSteps(daemon, interaction);
	} catch (e) {
		if (interaction.signal.aborted) throw new PiauthError(CANCELLED, { cause: e });
		throw e;
	}
	try {
		interaction.notify({ type: "info", message: storedWhere(await daemon.status()) });
	} catch {
		// Where it went is a courtesy; the login itself is done.
	}
}

/** Where the daemon keeps the login, for pi's dialog (pure). */
export function storedWhere(status: Status): string {
	const store = status.store;
	if (store?.kind === "keyring") {
		return "piauthd keeps this login in the OS keyring, not in pi's auth.json; every pi session gets it through piauthd.";
	}
	return `piauthd saved this login in ${store?.path || "pi's auth.json"}; every pi session gets it through piauthd.`;
}

async function loginSteps(daemon: Daemon, interaction: ProviderAuthInteraction): Promise<void> {
	const choice = await interaction.prompt({
		type: "select",
		message: "Sign in to ChatGPT (piauthd keeps the login for every pi session):",
		options: [
			{ id: BROWSER, label: "Browser login (default)", description: "or paste the URL the browser ends on" },
			{ id: DEVICE, label: "Device code login (headless)", description: "enter a code on any device" },
		],
	});
	const method = choice === DEVICE ? LoginMethod.deviceCode : LoginMethod.browser;
	const paste = new AbortController();
	const stop = () => paste.abort();
	interaction.signal.addEventListener("abort", stop, { once: true });
	try {
		for await (const e of daemon.login(method, interaction.signal)) {
			const s = step(e, Date.now());
			if (s.kind === "done") return;
			if (s.kind === "fail") throw new PiauthError(s.message);
			if (s.kind === "notify") {
				interaction.notify(s.event);
				if (s.offerPaste) void pasteLoop(daemon, interaction, paste.signal);
			}
		}
		throw new PiauthError("piauthd ended the login without a result; try /login again");
	} finally {
		interaction.signal.removeEventListener("abort", stop);
		stop();
	}
}
