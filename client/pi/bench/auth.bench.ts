/**
 * What a pi request pays for its auth through the package, against the two
 * other ways pi 1.6.0 can get a codex token, all measured in one run:
 *
 * - `toAuth (warm)`, `apiKey.resolve (warm)`: the package's two paths with
 *   the WatchToken stream up (a memory read);
 * - `package cold`: a fresh connection and one GetToken (a new pi process,
 *   or a dropped stream);
 * - `pi stored credential`: pi's own `ModelRuntime.getAuth` on the same
 *   auth.json (its file store, under its lock), which the daemon keeps fresh;
 * - `spawn pi-authctl token`: what a `"!pi-authctl token"` apiKey costs
 *   (pi runs the command synchronously).
 *
 * usage: PIAUTHD_TEST_BIN_DIR=target/release PIAUTHD_TEST_PI16_DIR=tests/pi-current \
 *        node client/pi/bench/auth.bench.ts [--iterations N] [--rounds R]
 *
 * Each round measures every path in turn; the figures are the median over
 * the rounds of each round's p50 and p99. Prints a table, then one JSON line
 * per figure.
 */

import { execFileSync } from "node:child_process";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

import type { AuthContext, OAuthCredential } from "@earendil-works/pi-ai";

import { Daemon } from "../src/daemon.ts";
import { codexAuth } from "../src/provider.ts";
import { TokenSource } from "../src/tokens.ts";
import { Unavailable } from "../src/unavailable.ts";
import { Sandbox, bin, startDaemon, startMock, stop } from "../test/harness.ts";

const { values } = parseArgs({
	options: {
		iterations: { type: "string", default: "2000" },
		spawns: { type: "string", default: "200" },
		rounds: { type: "string", default: "3" },
	},
});
const iterations = Number(values.iterations);
const spawns = Number(values.spawns);
const rounds = Number(values.rounds);

/** p-th quantile of sorted samples (nearest rank). */
function quantile(sorted: number[], p: number): number {
	if (sorted.length === 0) return Number.NaN;
	const i = Math.min(sorted.length - 1, Math.round((sorted.length - 1) * p));
	return sorted[i] ?? Number.NaN;
}

function median(xs: number[]): number {
	return quantile([...xs].sort((a, b) => a - b), 0.5);
}

/** Runs `op` n times, one after another (as one pi session's requests are); µs each. */
async function time(n: number, op: () => Promise<unknown> | unknown): Promise<number[]> {
	await op(); // warm-up, not counted
	const out: number[] = [];
	for (let i = 0; i < n; i++) {
		const t = process.hrtime.bigint();
		await op();
		out.push(Number(process.hrtime.bigint() - t) / 1000);
	}
	return out.sort((a, b) => a - b);
}

interface PiRuntime {
	getModels(provider: string): unknown[];
	getAuth(model: unknown): Promise<{ auth?: { apiKey?: string } } | undefined>;
}

/** pi 1.6.0's own credential resolution, loaded from the suite's install. */
async function piRuntime(agentDir: string): Promise<{ runtime: PiRuntime; model: unknown }> {
	const dir = process.env.PIAUTHD_TEST_PI16_DIR;
	if (!dir) throw new Error("set PIAUTHD_TEST_PI16_DIR to a directory with pi 1.6.0 installed (tests/pi-current after tests/run)");
	process.env.PI_CODING_AGENT_DIR = agentDir;
	const entry = join(resolve(dir), "node_modules/@earendil-works/pi-coding-agent/dist/index.js");
	const pi = (await import(pathToFileURL(entry).href)) as {
		VERSION: string;
		ModelRuntime: { create(): Promise<PiRuntime> };
	};
	if (pi.VERSION !== "1.6.0") throw new Error(`expected pi 1.6.0 at ${entry}, found ${pi.VERSION}`);
	const runtime = await pi.ModelRuntime.create();
	const model = runtime.getModels("openai-codex")[0];
	if (!model) throw new Error("pi has no openai-codex model");
	return { runtime, model };
}

function must(v: string | undefined, what: string): string {
	if (!v) throw new Error(`${what} returned no token`);
	return v;
}

const sb = new Sandbox();
const mock = await startMock({ seedAuth: sb.authFile, expiresIn: 86_400 });
const child = await startDaemon(sb, mock);
try {
	const options = { socketPath: sb.socket, authctl: undefined };
	const daemon = new Daemon(options);
	const tokens = new TokenSource(daemon);
	const auth = codexAuth(daemon, tokens, new Unavailable());
	const cred = {} as OAuthCredential;
	const { runtime, model } = await piRuntime(sb.agentDir);
	const authctl = bin("pi-authctl");
	const env = sb.env();
	const signal = new AbortController().signal;
	const ctx: AuthContext = { env: async (name) => process.env[name], fileExists: async () => false };

	const paths: [string, number, () => Promise<unknown> | unknown][] = [
		["toauth_warm", iterations, async () => must((await auth.oauth.toAuth(cred)).apiKey, "toAuth")],
		["apikey_resolve_warm", iterations, async () => must((await auth.apiKey.resolve({ ctx, signal }))?.auth.apiKey, "resolve")],
		[
			"package_cold",
			iterations,
			async () => {
				const d = new Daemon(options);
				try {
					must((await new TokenSource(d).token()).accessToken, "GetToken");
				} finally {
					d.close();
				}
			},
		],
		["pi_stored_credential", iterations, async () => must((await runtime.getAuth(model))?.auth?.apiKey, "getAuth")],
		["spawn_authctl_token", spawns, () => must(execFileSync(authctl, ["--socket", sb.socket, "token"], { env, encoding: "utf8" }).trim(), "pi-authctl token")],
	];

	const perRound = new Map<string, { p50: number[]; p99: number[] }>();
	for (let r = 0; r < rounds; r++) {
		for (const [name, n, op] of paths) {
			const lat = await time(n, op);
			const slot = perRound.get(name) ?? { p50: [], p99: [] };
			slot.p50.push(quantile(lat, 0.5));
			slot.p99.push(quantile(lat, 0.99));
			perRound.set(name, slot);
		}
		tokens.reset(); // the next round's warm paths start cold once, then warm
	}

	const figures: { figure: string; value: number; unit: string }[] = [];
	const add = (figure: string, value: number, unit: string) => {
		figures.push({ figure, value, unit });
		console.log(`${figure.padEnd(48)} ${value.toFixed(3).padStart(12)} ${unit}`);
	};
	console.log(`node ${process.version}; ${rounds} rounds; median over rounds`);
	for (const [name, { p50, p99 }] of perRound) {
		add(`${name}_p50`, median(p50), "us");
		add(`${name}_p99`, median(p99), "us");
	}
	const p50 = (name: string) => median(perRound.get(name)?.p50 ?? []);
	for (const path of ["toauth_warm", "apikey_resolve_warm", "package_cold"]) {
		add(`${path}_p50_over_pi_stored_credential`, p50(path) / p50("pi_stored_credential"), "x");
		add(`${path}_p50_over_spawn_authctl_token`, p50(path) / p50("spawn_authctl_token"), "x");
	}
	console.log();
	for (const f of figures) console.log(JSON.stringify(f));
	daemon.close();
} finally {
	await stop(child);
	mock.stop();
	sb.remove();
}
