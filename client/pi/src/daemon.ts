/**
 * piauthd's Auth service, typed, as this package uses it.
 *
 * Every connection is checked first (see `socket.ts`). When nothing listens,
 * the daemon is started the way `pi-authctl` starts it, by running
 * `pi-authctl status` once: that is where the start-up race lock, the log
 * file and the "service installed but stopped" advice live, so they exist in
 * one place only. Failures become one sentence saying what to run; never a
 * stack trace, and never a fallback to pi refreshing by itself.
 */

import { execFile } from "node:child_process";

import { Channel, Code, NotListening, RpcError } from "./grpc.ts";
import {
	CODEX,
	LOGIN_HINT,
	type CompletionEvent,
	type LoginEvent,
	type LoginMethod,
	type Status,
	type Token,
	decodeCompletionEvent,
	decodeLoginEvent,
	decodeLogout,
	decodeStatus,
	decodeToken,
	encodeCompletionRequest,
	encodeGetToken,
	encodeLimitReport,
	encodeLogin,
	encodeProvider,
	encodeSubmitCode,
	encodeWatchToken,
} from "./messages.ts";
import { socketPath, startCommand, verifySocket } from "./socket.ts";
import { type AccountUsage, decodeUsage } from "./usage.ts";

const AUTH = "/piauth.v1.Auth";
const COMPLETIONS = "/piauth.v1.Completions";

/** Deadlines for unary calls. GetToken may wait for a refresh in flight. */
const STATUS_DEADLINE_MS = 5_000;
const TOKEN_DEADLINE_MS = 30_000;
const AUTOSTART_TIMEOUT_MS = 20_000;

/** A failure a person can act on; `reason` is the daemon's ErrorInfo reason when it sent one. */
export class PiauthError extends Error {
	readonly reason: string | undefined;
	readonly code: number | undefined;
	/** The daemon's ErrorInfo metadata, e.g. a usage limit's `resets_at`. */
	readonly metadata: Record<string, string>;

	constructor(
		message: string,
		options: { reason?: string; code?: number; metadata?: Record<string, string>; cause?: unknown } = {},
	) {
		super(message, { cause: options.cause });
		this.name = "PiauthError";
		this.reason = options.reason;
		this.code = options.code;
		this.metadata = options.metadata ?? {};
	}
}

export interface DaemonOptions {
	socketPath: string;
	/** The `pi-authctl` binary used to start the daemon; undefined turns autostart off. */
	authctl: string | undefined;
}

/** Reads the options from the environment, as `pi-authctl` does. */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): DaemonOptions {
	const off = env.PIAUTHD_NO_AUTOSTART;
	const autostart = off === undefined || off === "0";
	return { socketPath: socketPath(env), authctl: autostart ? env.PIAUTHD_AUTHCTL || "pi-authctl" : undefined };
}

const LOGIN_REASONS = new Set(["ERROR_REASON_NOT_LOGGED_IN", "ERROR_REASON_NEEDS_LOGIN"]);

/** Turns a low-level failure into one sentence. */
export function explain(e: unknown, path: string): Error {
	if (e instanceof PiauthError) return e;
	if (e instanceof RpcError) {
		if (e.reason && LOGIN_REASONS.has(e.reason)) {
			// The daemon's own advice names pi-authctl; in pi, pi's /login does it.
			const what = e.message.replace(/:\s*run `pi-authctl login`\s*$/, "");
			return new PiauthError(`piauthd: ${what}. ${LOGIN_HINT}`, { reason: e.reason, code: e.code, cause: e });
		}
		return new PiauthError(`piauthd: ${e.message}`, { reason: e.reason, code: e.code, metadata: e.metadata, cause: e });
	}
	if (e instanceof NotListening) {
		return new PiauthError(`piauthd is not running (nothing listens on ${path}): ${howToStart(path)}`, { cause: e });
	}
	const message = e instanceof Error ? e.message : String(e);
	return new PiauthError(`piauthd: ${message}`, { cause: e });
}

/** How to start the daemon for `socket`: as it was started last, when it said. */
function howToStart(socket: string): string {
	const command = startCommand(socket);
	return command ? `start it again as it was started: \`${command}\`` : "start it with `piauthd`";
}

/** The last non-empty line of a command's error output. */
function lastLine(text: string): string {
	const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
	return lines[lines.length - 1] ?? "";
}

export class Daemon {
	readonly options: DaemonOptions;
	private readonly channel: Channel;
	private starting: Promise<void> | undefined;

	constructor(options: DaemonOptions) {
		this.options = options;
		const path = options.socketPath;
		this.channel = new Channel(path, () => {
			if (verifySocket(path) === "absent") throw new NotListening(path, undefined);
		});
	}

	static fromEnv(): Daemon {
		return new Daemon(optionsFromEnv());
	}

	get socketPath(): string {
		return this.options.socketPath;
	}

	/** Drops the connection (tests; session shutdown). */
	close(): void {
		this.channel.close();
	}

	/** Runs `op`, starting the daemon once first if nothing listens. */
	private async running<T>(op: () => Promise<T>): Promise<T> {
		try {
			return await op();
		} catch (e) {
			if (!(e instanceof NotListening)) throw explain(e, this.socketPath);
		}
		await this.start();
		try {
			return await op();
		} catch (e) {
			throw explain(e, this.socketPath);
		}
	}

	private start(): Promise<void> {
		this.starting ??= this.autostart().finally(() => {
			this.starting = undefined;
		});
		return this.starting;
	}

	private autostart(): Promise<void> {
		const authctl = this.options.authctl;
		const path = this.socketPath;
		if (!authctl) {
			return Promise.reject(
				new PiauthError(`piauthd is not running (nothing listens on ${path}) and autostart is off: ${howToStart(path)}`),
			);
		}
		return new Promise((resolve, reject) => {
			execFile(
				authctl,
				["--socket", path, "status", "--json"],
				{ timeout: AUTOSTART_TIMEOUT_MS, env: process.env },
				(error, _stdout, stderr) => {
					if (!error) return resolve();
					const code = (error as NodeJS.ErrnoException).code;
					if (code === "ENOENT") {
						return reject(
							new PiauthError(
								`piauthd is not running, and \`${authctl}\` was not found to start it: put piauthd and pi-authctl on PATH, or start \`piauthd\` yourself`,
								{ cause: error },
							),
						);
					}
					// Exit 4 (not logged in) still means a daemon now serves.
					if (error.code === 4) return resolve();
					const why = lastLine(String(stderr)) || error.message;
					reject(new PiauthError(`piauthd is not running and could not be started: ${why.replace(/^pi-authctl: /, "")}`, { cause: error }));
				},
			);
		});
	}

	async status(): Promise<Status> {
		return this.running(async () =>
			decodeStatus(await this.channel.unary(`${AUTH}/Status`, new Uint8Array(), { deadlineMs: STATUS_DEADLINE_MS })),
		);
	}

	/**
	 * A token valid for at least `minValidSecs` (the daemon caps it at half
	 * the token's life), of the account that serves `session` (pi's session
	 * id; with several accounts a session keeps its account while it has room).
	 */
	async getToken(minValidSecs: number, signal?: AbortSignal, session = ""): Promise<Token> {
		return this.running(async () =>
			decodeToken(
				await this.channel.unary(`${AUTH}/GetToken`, encodeGetToken(CODEX, minValidSecs, session), {
					deadlineMs: TOKEN_DEADLINE_MS,
					signal,
				}),
			),
		);
	}

	/**
	 * Says that `accountId`'s request in `session` met a usage limit before
	 * any output (`resetsAt`: epoch seconds, 0 unknown); returns the token of
	 * the account that serves the session now, valid `minValidSecs`.
	 */
	async reportLimit(session: string, accountId: string, resetsAt: number, minValidSecs: number): Promise<Token> {
		return this.running(async () =>
			decodeToken(
				await this.channel.unary(`${AUTH}/ReportLimit`, encodeLimitReport(session, accountId, resetsAt, minValidSecs), {
					deadlineMs: TOKEN_DEADLINE_MS,
				}),
			),
		);
	}

	/** The current token, then each new one (another account's when the session moves). Ends (throws) when the stream drops. */
	async *watchToken(signal: AbortSignal, session = ""): AsyncGenerator<Token> {
		try {
			for await (const m of this.channel.call(`${AUTH}/WatchToken`, encodeWatchToken(CODEX, session), { signal })) {
				yield decodeToken(m);
			}
		} catch (e) {
			throw explain(e, this.socketPath);
		}
	}

	/** Runs a login and yields its events; aborting `signal` cancels it at the daemon. */
	async *login(method: LoginMethod, signal: AbortSignal): AsyncGenerator<LoginEvent> {
		await this.status(); // starts the daemon when needed, with its one-line errors
		try {
			for await (const m of this.channel.call(`${AUTH}/Login`, encodeLogin(CODEX, method, 0), {
				signal,
				holdsProcess: true,
			})) {
				yield decodeLoginEvent(m);
			}
		} catch (e) {
			if (e instanceof RpcError && e.code === Code.cancelled) throw new PiauthError("Login cancelled", { cause: e });
			throw explain(e, this.socketPath);
		}
	}

	/**
	 * Streams a completion of `body` (a whole Responses body, as pi's Codex
	 * stream builds it) through the daemon for `session`, in SSE batches:
	 * each batch is the messages that arrived together, in order.
	 * Aborting `signal` cancels it at the daemon, which aborts the upstream
	 * request. A daemon that is not running is started first, as for tokens.
	 */
	async *complete(body: Uint8Array, session: string, signal?: AbortSignal): AsyncGenerator<CompletionEvent[]> {
		const request = encodeCompletionRequest(body, session, true);
		const call = () =>
			this.channel.batches(`${COMPLETIONS}/Stream`, request, { signal, holdsProcess: true })[Symbol.asyncIterator]();
		let replies = call();
		let first: IteratorResult<Uint8Array[]>;
		try {
			first = await replies.next();
		} catch (e) {
			if (!(e instanceof NotListening)) throw explain(e, this.socketPath);
			await this.start();
			replies = call();
			try {
				first = await replies.next();
			} catch (again) {
				throw explain(again, this.socketPath);
			}
		}
		try {
			for (let r = first; !r.done; r = await replies.next()) yield r.value.map(decodeCompletionEvent);
		} catch (e) {
			throw explain(e, this.socketPath);
		} finally {
			await replies.return?.(undefined);
		}
	}

	/** Hands a pasted redirect URL or code to the login in progress. */
	async submitCode(input: string): Promise<void> {
		await this.running(() =>
			this.channel.unary(`${AUTH}/SubmitCode`, encodeSubmitCode(CODEX, input), { deadlineMs: TOKEN_DEADLINE_MS }),
		);
	}

	/** Removes the ChatGPT login; true when there was one. */
	/** The plan's rate-limit windows per account. */
	async usage(): Promise<AccountUsage[]> {
		return this.running(async () =>
			decodeUsage(await this.channel.unary(`${AUTH}/Usage`, new Uint8Array(), { deadlineMs: TOKEN_DEADLINE_MS })),
		);
	}

	async logout(): Promise<boolean> {
		return this.running(async () =>
			decodeLogout(
				await this.channel.unary(`${AUTH}/Logout`, encodeProvider(CODEX), { deadlineMs: STATUS_DEADLINE_MS }),
			).removed,
		);
	}
}
