/**
 * Relay mode (`PIAUTHD_RELAY=1`): pi's `openai-codex` turns stream through
 * the daemon's `Completions.Stream`, so no token ever enters pi's process.
 *
 * pi's own Codex stream still does all the work it does alone: it builds
 * the body, reads the events, and reports text, reasoning, tool calls,
 * usage and errors. Only its transport changes. It is told to use SSE with
 * a `fetch` that hands the body to the daemon and writes the daemon's events
 * back as the SSE pi reads; the daemon goes upstream over a WebSocket with
 * continuation, and moves a turn refused by a usage limit to another
 * account before pi sees anything. The call starts from pi's `onPayload`,
 * before pi compresses the body it then hands `fetch` (see `turn.ts`).
 *
 * pi needs an API key shaped like a ChatGPT access token (it reads the
 * account id from it, for a header the daemon replaces). [`RELAY_KEY`] is
 * that shape and nothing more: it is not a credential, and nothing ever
 * sends it anywhere.
 */

import type { Daemon } from "./daemon.ts";
import { PiauthError } from "./daemon.ts";
import { Code } from "./grpc.ts";
import type { CompletionEvent } from "./messages.ts";
import { Turn } from "./turn.ts";

/** Whether relay mode is on: `PIAUTHD_RELAY` set to 1, true, yes or on. */
export function relayEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
	return /^(1|true|yes|on)$/i.test((env.PIAUTHD_RELAY ?? "").trim());
}

function base64url(text: string): string {
	return Buffer.from(text).toString("base64url");
}

/** The placeholder pi takes as its API key in relay mode (see above). */
export const RELAY_KEY = [
	base64url(JSON.stringify({ alg: "none", typ: "JWT" })),
	base64url(JSON.stringify({ "https://api.openai.com/auth": { chatgpt_account_id: "piauthd-relay" } })),
	"relay",
].join(".");

/** The request body as JSON bytes: pi's SSE bodies come zstd-compressed. */
function bodyBytes(body: unknown, encoding: string | null): Uint8Array {
	const raw =
		typeof body === "string"
			? new TextEncoder().encode(body)
			: body instanceof Uint8Array
				? body
				: body instanceof ArrayBuffer
					? new Uint8Array(body)
					: undefined;
	if (!raw) throw new PiauthError("piauthd: pi sent a request body of a kind the relay cannot read");
	if ((encoding ?? "").toLowerCase() !== "zstd") return raw;
	const zlib = process.getBuiltinModule("node:zlib");
	return new Uint8Array(zlib.zstdDecompressSync(raw));
}

/**
 * The SSE text pi reads for a batch of the daemon's messages. Each message
 * carries its events already written as SSE; one from a daemon that
 * predates SSE batches carries a single event's JSON, written here.
 */
export function sseOf(batch: CompletionEvent[]): Uint8Array {
	const parts = batch.map((e) =>
		e.sse.length > 0 || e.dataJson === "" ? e.sse : Buffer.from(`data: ${e.dataJson.split("\n").join("\ndata: ")}\n\n`),
	);
	return parts.length === 1 ? (parts[0] as Uint8Array) : Buffer.concat(parts);
}

/**
 * The answer pi reads for a failure before any event. A usage limit every
 * account met is pi's own 429 (pi says "You have hit your ChatGPT usage
 * limit … Try again in ~N min"); anything else is the daemon's sentence.
 */
export function failureResponse(e: unknown): Response {
	if (e instanceof PiauthError && e.code === Code.resourceExhausted && e.reason === "ERROR_REASON_USAGE_LIMIT") {
		const resetsAt = Number(e.metadata.resets_at ?? 0);
		const error = {
			code: "usage_limit_reached",
			message: e.message,
			...(e.metadata.plan_type ? { plan_type: e.metadata.plan_type } : {}),
			...(resetsAt > 0 ? { resets_at: resetsAt } : {}),
		};
		return new Response(JSON.stringify({ error }), { status: 429 });
	}
	throw e instanceof Error ? e : new Error(String(e));
}

/**
 * What pi's Codex stream is given in relay mode, over the options pi gave:
 * the placeholder key, SSE, the relay's `fetch`, and an `onPayload` that
 * starts the completion as soon as pi has built the body (after any
 * `onPayload` of pi's own, whose body it sends).
 */
export function throughDaemon(daemon: Daemon): <T extends object>(options: T | undefined) => T {
	return <T extends object>(options: T | undefined) => {
		const given = options as { signal?: AbortSignal; onPayload?: OnPayload } | undefined;
		const turn = new Turn(daemon, given?.signal);
		const onPayload: OnPayload = async (payload, model) => {
			const replaced = await given?.onPayload?.(payload, model);
			// Node writes HTTP/2 frames when its event loop next turns: it
			// turns here, so the call is on its way before pi goes on.
			if (turn.start(replaced ?? payload)) await new Promise((sent) => setImmediate(sent));
			return replaced;
		};
		return { ...options, apiKey: RELAY_KEY, transport: "sse", onPayload, fetch: relayFetch(daemon, turn) } as T;
	};
}

type OnPayload = (payload: unknown, model: never) => unknown;

/**
 * A `fetch` for pi's Codex SSE request that goes through the daemon: the
 * body and pi's `session-id` go to `Completions.Stream` (unless `turn`
 * already started that call), and the events come back as the SSE answer.
 * pi's abort signal cancels the call, and with it the upstream request.
 */
export function relayFetch(daemon: Daemon, turn?: Turn): typeof fetch {
	return async (_url, init) => {
		const headers = new Headers(init?.headers);
		const session = headers.get("session-id") ?? "";
		const signal = init?.signal ?? undefined;
		const early = turn?.claim(session, signal);
		let events: AsyncGenerator<CompletionEvent[]>;
		let first: IteratorResult<CompletionEvent[]>;
		try {
			if (early) {
				events = early.events;
				first = await early.first;
			} else {
				events = daemon.complete(bodyBytes(init?.body, headers.get("content-encoding")), session, signal);
				first = await events.next();
			}
		} catch (e) {
			if (signal?.aborted || early?.cancel.signal.aborted) throw new Error("Request was aborted");
			return failureResponse(e);
		}
		let next = first;
		let failed = false;
		const stream = new ReadableStream<Uint8Array>({
			async pull(controller) {
				if (next.done) return controller.close();
				// One chunk per batch, as a network read gives pi several
				// events; the daemon already wrote them as SSE.
				const batch = next.value;
				// A failure event is always the last one of its message.
				failed ||= batch.some((e) => e.type === "response.failed" || e.type === "error");
				controller.enqueue(sseOf(batch));
				try {
					next = await events.next();
				} catch (e) {
					// A failure event already told pi; otherwise the stream broke.
					if (failed) next = { done: true, value: undefined };
					else controller.error(e instanceof Error ? e : new Error(String(e)));
				}
			},
			async cancel() {
				await events.return(undefined);
			},
		});
		return new Response(stream, { status: 200, headers: { "content-type": "text/event-stream" } });
	};
}
