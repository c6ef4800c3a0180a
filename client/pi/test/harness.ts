/**
 * Real processes for the end-to-end tests: mock-openai (the issuer and the
 * Codex backend, over HTTP) and piauthd (over its Unix socket), both built
 * by cargo. A missing binary fails the test with what to run; it never skips.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const BIN_DIR = process.env.PIAUTHD_TEST_BIN_DIR || resolve(here, "../../../target/debug");

export function bin(name: string): string {
	const path = join(BIN_DIR, name);
	if (!existsSync(path)) {
		throw new Error(`${path} is missing: build it with \`cargo build --workspace\` (tests/run does), or set PIAUTHD_TEST_BIN_DIR`);
	}
	return path;
}

export class Sandbox {
	readonly root: string;
	readonly agentDir: string;
	readonly socket: string;

	constructor() {
		// Short: Unix socket paths are limited to about 104 bytes.
		this.root = mkdtempSync("/tmp/piauth-node-");
		this.agentDir = join(this.root, "agent");
		mkdirSync(this.agentDir, { mode: 0o700 });
		// The default socket of env() (XDG_STATE_HOME is the root), so
		// pi-authctl may autostart a daemon on it.
		this.socket = join(this.root, "piauthd", "piauthd.sock");
	}

	get authFile(): string {
		return join(this.agentDir, "auth.json");
	}

	/** What every child gets: no user config, only the sandbox's paths. */
	env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
		return {
			PATH: `${BIN_DIR}:${process.env.PATH ?? ""}`,
			HOME: this.root,
			XDG_CONFIG_HOME: join(this.root, "config"),
			XDG_STATE_HOME: this.root,
			XDG_RUNTIME_DIR: "",
			PI_CODING_AGENT_DIR: this.agentDir,
			PIAUTHD_SOCKET: this.socket,
			...extra,
		};
	}

	remove(): void {
		rmSync(this.root, { recursive: true, force: true });
	}
}

export interface Mock {
	child: ChildProcess;
	issuer: string;
	codexBase: string;
	stats(): Promise<Record<string, number>>;
	stop(): void;
}

/** Starts mock-openai on a free port; `seedAuth` writes a login into that auth.json. */
export async function startMock(opts: { expiresIn?: number; seedAuth?: string } = {}): Promise<Mock> {
	const args = ["--port", "0", "--expires-in", String(opts.expiresIn ?? 3600)];
	if (opts.seedAuth) args.push("--seed-auth", opts.seedAuth);
	const child = spawn(bin("mock-openai"), args, { stdio: ["ignore", "pipe", "inherit"] });
	let issuer = "";
	let codexBase = "";
	const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
	await new Promise<void>((ok, fail) => {
		const timer = setTimeout(() => fail(new Error("mock-openai did not start within 10 s")), 10_000);
		child.once("exit", (code) => fail(new Error(`mock-openai exited (${code})`)));
		lines.on("line", (line) => {
			const i = /PIAUTHD_ISSUER=(\S+)/.exec(line);
			if (i?.[1]) issuer = i[1];
			const c = /PIAUTHD_CODEX_BASE_URL=(\S+)/.exec(line);
			if (c?.[1]) codexBase = c[1];
			const ready = issuer && codexBase && (!opts.seedAuth || /wrote a login/.test(line));
			if (ready) {
				clearTimeout(timer);
				ok();
			}
		});
	});
	return {
		child,
		issuer,
		codexBase,
		async stats() {
			const r = await fetch(`${issuer}/_mock/stats`);
			return (await r.json()) as Record<string, number>;
		},
		stop() {
			child.kill("SIGKILL");
		},
	};
}

function connects(path: string): Promise<boolean> {
	return new Promise((ok) => {
		const s = net.connect(path);
		s.once("connect", () => {
			s.destroy();
			ok(true);
		});
		s.once("error", () => ok(false));
	});
}

/** Waits until something accepts connections on `path`. */
export async function waitListening(path: string, child?: ChildProcess, ms = 15_000): Promise<void> {
	const deadline = Date.now() + ms;
	while (Date.now() < deadline) {
		if (child && child.exitCode !== null) throw new Error(`piauthd exited (${child.exitCode}) before serving`);
		if (await connects(path)) return;
		await new Promise((r) => setTimeout(r, 20));
	}
	throw new Error(`nothing listened on ${path} within ${ms} ms`);
}

/** Starts piauthd against the mock and waits until it serves. */
export async function startDaemon(sb: Sandbox, mock: Mock, extra: Record<string, string> = {}): Promise<ChildProcess> {
	const child = spawn(bin("piauthd"), [], {
		env: sb.env({ PIAUTHD_ISSUER: mock.issuer, PIAUTHD_CODEX_BASE_URL: mock.codexBase, ...extra }),
		stdio: ["ignore", "ignore", "pipe"],
	});
	let log = "";
	child.stderr?.on("data", (d: Buffer) => {
		log += d.toString();
	});
	try {
		await waitListening(sb.socket, child);
	} catch (e) {
		child.kill("SIGKILL");
		throw new Error(`${(e as Error).message}\n${log}`);
	}
	return child;
}

export function stop(child: ChildProcess | undefined): Promise<void> {
	if (!child || child.exitCode !== null) return Promise.resolve();
	return new Promise((ok) => {
		child.once("exit", () => ok());
		child.kill("SIGKILL");
	});
}
