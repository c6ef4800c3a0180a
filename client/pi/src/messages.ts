/**
 * The piauth.v1 messages this package sends and reads, mirroring
 * `proto/piauth/v1/piauth.proto` field for field. Only what pi needs is here:
 * status, tokens, login, logout. Field numbers are the contract; names are
 * camel-cased the way protobuf's JSON mapping does.
 */

import { Writer, WireError, bool, bytes, fields, int64, string, uint } from "./wire.ts";

/** The provider piauthd serves for pi's ChatGPT login. */
export const CODEX = "openai-codex";

/**
 * What to type in pi to log in, in pi's words: its `/login` menu lists the
 * provider by its name, "OpenAI Codex" (a test checks it against pi-ai).
 */
export const LOGIN_HINT = "In pi, run /login and choose OpenAI Codex.";

/**
 * An access token from the daemon. `accessToken` is a secret: it never goes
 * into a log, an error message or a notification.
 */
export interface Token {
	provider: string;
	accessToken: string;
	/** Milliseconds since the epoch. */
	expiresAtMs: number;
	accountId: string;
}

export function encodeProvider(provider: string): Uint8Array {
	return new Writer().string(1, provider).finish();
}

/** WatchTokenRequest; `session` is pi's session id ("" for none). */
export function encodeWatchToken(provider: string, session: string): Uint8Array {
	return new Writer().string(1, provider).string(2, session).finish();
}

/** GetTokenRequest; `session` is pi's session id ("" for none). */
export function encodeGetToken(provider: string, minValidSecs: number, session = ""): Uint8Array {
	return new Writer().string(1, provider).varint(2, minValidSecs).string(3, session).finish();
}

/** LimitReport: `accountId`'s request in `session` met a usage limit. */
export function encodeLimitReport(session: string, accountId: string, resetsAt: number, minValidSecs: number): Uint8Array {
	return new Writer().string(1, session).string(2, accountId).varint(3, resetsAt).varint(4, minValidSecs).finish();
}

export function decodeToken(buf: Uint8Array): Token {
	const t: Token = { provider: "", accessToken: "", expiresAtMs: 0, accountId: "" };
	for (const f of fields(buf)) {
		if (f.field === 1) t.provider = string(f);
		else if (f.field === 2) t.accessToken = string(f);
		else if (f.field === 3) t.expiresAtMs = int64(f);
		else if (f.field === 4) t.accountId = string(f);
	}
	if (!t.accessToken) throw new WireError("a token reply without a token");
	return t;
}

/** StoreHealth and ProviderState, by their proto names less the prefix. */
const STORE_HEALTH = ["unspecified", "ok", "missing", "corrupt", "unreadable", "degraded"] as const;
const PROVIDER_STATE = [
	"unspecified",
	"not logged in",
	"valid",
	"expired",
	"refreshing",
	"needs login",
	"degraded",
	"static",
] as const;
const STORE_KIND = ["unspecified", "file", "keyring"] as const;

function named<T extends readonly string[]>(names: T, n: number): T[number] | "unknown" {
	return names[n] ?? "unknown";
}

export interface StoreStatus {
	kind: (typeof STORE_KIND)[number] | "unknown";
	path: string;
	health: (typeof STORE_HEALTH)[number] | "unknown";
	detail: string;
}

export interface ProviderStatus {
	provider: string;
	state: (typeof PROVIDER_STATE)[number] | "unknown";
	accountId: string;
	email: string;
	plan: string;
	expiresAtMs: number;
	lastRefreshMs: number;
	refreshCount: number;
	nextRefreshMs: number;
	lastError: string;
	hint: string;
}

export interface Status {
	daemonVersion: string;
	pid: number;
	nowMs: number;
	store: StoreStatus;
	providers: ProviderStatus[];
	socketPath: string;
	/** The issuer, the Codex backend and the config file the daemon uses. */
	issuer: string;
	codexBaseUrl: string;
	configFile: string;
}

function decodeStore(buf: Uint8Array): StoreStatus {
	const s: StoreStatus = { kind: "unspecified", path: "", health: "unspecified", detail: "" };
	for (const f of fields(buf)) {
		if (f.field === 1) s.kind = named(STORE_KIND, uint(f));
		else if (f.field === 2) s.path = string(f);
		else if (f.field === 3) s.health = named(STORE_HEALTH, uint(f));
		else if (f.field === 4) s.detail = string(f);
	}
	return s;
}

function decodeProvider(buf: Uint8Array): ProviderStatus {
	const p: ProviderStatus = {
		provider: "",
		state: "unspecified",
		accountId: "",
		email: "",
		plan: "",
		expiresAtMs: 0,
		lastRefreshMs: 0,
		refreshCount: 0,
		nextRefreshMs: 0,
		lastError: "",
		hint: "",
	};
	for (const f of fields(buf)) {
		switch (f.field) {
			case 1: p.provider = string(f); break;
			case 3: p.state = named(PROVIDER_STATE, uint(f)); break;
			case 4: p.accountId = string(f); break;
			case 5: p.email = string(f); break;
			case 6: p.plan = string(f); break;
			case 7: p.expiresAtMs = int64(f); break;
			case 8: p.lastRefreshMs = int64(f); break;
			case 9: p.refreshCount = uint(f); break;
			case 10: p.nextRefreshMs = int64(f); break;
			case 11: p.lastError = string(f); break;
			case 12: p.hint = string(f); break;
		}
	}
	return p;
}

export function decodeStatus(buf: Uint8Array): Status {
	const s: Status = {
		daemonVersion: "",
		pid: 0,
		nowMs: 0,
		store: { kind: "unspecified", path: "", health: "unspecified", detail: "" },
		providers: [],
		socketPath: "",
		issuer: "",
		codexBaseUrl: "",
		configFile: "",
	};
	for (const f of fields(buf)) {
		switch (f.field) {
			case 1: s.daemonVersion = string(f); break;
			case 2: s.pid = uint(f); break;
			case 3: s.nowMs = int64(f); break;
			case 4: s.store = decodeStore(bytes(f)); break;
			case 5: s.providers.push(decodeProvider(bytes(f))); break;
			case 6: s.socketPath = string(f); break;
			case 7: s.issuer = string(f); break;
			case 8: s.codexBaseUrl = string(f); break;
			case 9: s.configFile = string(f); break;
		}
	}
	return s;
}

/** LoginMethod. */
export const LoginMethod = { browser: 1, deviceCode: 2 } as const;
export type LoginMethod = (typeof LoginMethod)[keyof typeof LoginMethod];

export function encodeLogin(provider: string, method: LoginMethod, timeoutSecs: number): Uint8Array {
	return new Writer().string(1, provider).varint(2, method).varint(3, timeoutSecs).finish();
}

export function encodeSubmitCode(provider: string, input: string): Uint8Array {
	return new Writer().string(1, provider).string(2, input).finish();
}

/** One step of a login, as the daemon reports it. */
export type LoginEvent =
	| { type: "authorize_url"; url: string; callbackAddr: string; issuerUrl: string }
	| { type: "waiting"; message: string }
	| { type: "device_code"; verificationUrl: string; userCode: string; expiresAtMs: number }
	| { type: "callback_unavailable"; message: string }
	| { type: "success"; provider: string; accountId: string; email: string; plan: string }
	| { type: "failure"; kind: number; message: string }
	| { type: "cancelled"; message: string }
	| { type: "unknown" };

/** Reads the string fields of a small message into an array by field number. */
function strings(buf: Uint8Array): string[] {
	const out: string[] = [];
	for (const f of fields(buf)) if (f.wire === 2) out[f.field] = string(f);
	return out;
}

export function decodeLoginEvent(buf: Uint8Array): LoginEvent {
	for (const f of fields(buf)) {
		if (f.wire !== 2) continue;
		const inner = bytes(f);
		const s = strings(inner);
		switch (f.field) {
			case 1: return { type: "authorize_url", url: s[1] ?? "", callbackAddr: s[2] ?? "", issuerUrl: s[3] ?? "" };
			case 2: return { type: "waiting", message: s[1] ?? "" };
			case 3: {
				let expiresAtMs = 0;
				for (const g of fields(inner)) if (g.field === 3) expiresAtMs = int64(g);
				return { type: "device_code", verificationUrl: s[1] ?? "", userCode: s[2] ?? "", expiresAtMs };
			}
			case 4: return { type: "callback_unavailable", message: s[1] ?? "" };
			case 5: return { type: "success", provider: s[1] ?? "", accountId: s[2] ?? "", email: s[3] ?? "", plan: s[4] ?? "" };
			case 6: {
				let kind = 0;
				for (const g of fields(inner)) if (g.field === 1) kind = uint(g);
				return { type: "failure", kind, message: s[2] ?? "" };
			}
			case 7: return { type: "cancelled", message: s[1] ?? "" };
		}
	}
	return { type: "unknown" };
}

export function decodeLogout(buf: Uint8Array): { removed: boolean } {
	let removed = false;
	for (const f of fields(buf)) if (f.field === 1) removed = bool(f);
	return { removed };
}

/** The google.rpc.ErrorInfo piauthd attaches to every error. */
export interface ErrorInfo {
	/** E.g. "ERROR_REASON_NOT_LOGGED_IN". */
	reason: string | undefined;
	/** E.g. `resets_at` and `plan_type` of a usage limit. */
	metadata: Record<string, string>;
}

/** google.rpc.Status from `grpc-status-details-bin`, reduced to its ErrorInfo. */
export function decodeErrorInfo(buf: Uint8Array): ErrorInfo {
	const info: ErrorInfo = { reason: undefined, metadata: {} };
	for (const f of fields(buf)) {
		if (f.field !== 3 || f.wire !== 2) continue; // repeated Any details
		let typeUrl = "";
		let value: Uint8Array | undefined;
		for (const g of fields(bytes(f))) {
			if (g.field === 1) typeUrl = string(g);
			else if (g.field === 2) value = bytes(g);
		}
		if (!typeUrl.endsWith("/google.rpc.ErrorInfo") || !value) continue;
		for (const h of fields(value)) {
			if (h.field === 1) info.reason = string(h);
			else if (h.field === 3) {
				let key = "";
				let val = "";
				for (const e of fields(bytes(h))) {
					if (e.field === 1) key = string(e);
					else if (e.field === 2) val = string(e);
				}
				info.metadata[key] = val;
			}
		}
		return info;
	}
	return info;
}

/**
 * CompletionRequest with a whole Responses body, for `session` (pi's session
 * id); with `sseBatches`, the answer comes as batches of SSE.
 */
export function encodeCompletionRequest(bodyJson: Uint8Array, session: string, sseBatches = false): Uint8Array {
	return new Writer().string(1, CODEX).string(6, session).bytes(7, bodyJson).bool(8, sseBatches).finish();
}

/**
 * One message of a relayed stream, with the events as the backend sent
 * them: one event (its type and JSON), or in SSE batches, the events that
 * were ready together as SSE and the type of the last of them.
 */
export interface CompletionEvent {
	type: string;
	dataJson: string;
	sse: Uint8Array;
}

export function decodeCompletionEvent(buf: Uint8Array): CompletionEvent {
	const e: CompletionEvent = { type: "", dataJson: "", sse: new Uint8Array() };
	for (const f of fields(buf)) {
		if (f.field === 1) e.type = string(f);
		else if (f.field === 2) e.dataJson = string(f);
		else if (f.field === 5) e.sse = bytes(f);
	}
	return e;
}
