/**
 * When the daemon gives no token, pi hears why in piauthd's words.
 *
 * Thrown from the provider's auth, the daemon's sentence would reach the
 * user behind pi's own prefix ("API key auth failed for provider
 * openai-codex: …", "OAuth auth derivation failed …"), which speaks of an
 * API key that does not exist. So the auth resolves to a placeholder key
 * that names the failure instead, and the provider's stream answers that
 * key with one error event carrying the sentence, before any request: the
 * placeholder never leaves the process.
 */

import type { AssistantMessage, AssistantMessageEventStream, Model } from "@earendil-works/pi-ai";

/** Every placeholder starts with this; no real token does. */
const PREFIX = "piauthd-unavailable-";
/** Failures remembered at once (each request asks anew). */
const KEPT = 16;

export class Unavailable {
	private readonly reasons = new Map<string, string>();
	private count = 0;

	/** A placeholder key standing for `failure`. */
	mark(failure: unknown): string {
		const key = `${PREFIX}${++this.count}`;
		this.reasons.set(key, failure instanceof Error ? failure.message : String(failure));
		for (const old of this.reasons.keys()) {
			if (this.reasons.size <= KEPT) break;
			this.reasons.delete(old);
		}
		return key;
	}

	/** The failure `apiKey` stands for; undefined for a real token. */
	reason(apiKey: string | undefined): string | undefined {
		if (!apiKey?.startsWith(PREFIX)) return undefined;
		return this.reasons.get(apiKey) ?? "piauthd gave no token for this request; try again";
	}
}

/** A stream of one error event saying `reason`, for `model`. */
export function failedStream(
	newStream: () => AssistantMessageEventStream,
	model: Model<string>,
	reason: string,
): AssistantMessageEventStream {
	const out = newStream();
	const error: AssistantMessage = {
		role: "assistant",
		content: [],
		api: model.api,
		provider: model.provider,
		model: model.id,
		usage: {
			input: 0,
			output: 0,
			cacheRead: 0,
			cacheWrite: 0,
			totalTokens: 0,
			cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, total: 0 },
		},
		stopReason: "error",
		errorMessage: reason,
		timestamp: Date.now(),
	};
	out.push({ type: "error", reason: "error", error });
	out.end();
	return out;
}
