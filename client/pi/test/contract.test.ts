/**
 * The hand-written codec in messages.ts against proto/piauth/v1/piauth.proto:
 * every field number the package reads or writes must be the one the
 * contract gives, so a change to the .proto that breaks the package fails here.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const proto = readFileSync(resolve(dirname(fileURLToPath(import.meta.url)), "../../../proto/piauth/v1/piauth.proto"), "utf8");

/** `name = number` for each field of `message`, from the .proto text. */
function fieldsOf(message: string): Map<string, number> {
	const body = new RegExp(`message ${message} \\{([\\s\\S]*?)\\n\\}`).exec(proto)?.[1];
	assert.ok(body, `message ${message} is in the proto`);
	const out = new Map<string, number>();
	for (const m of body.matchAll(/^\s*(?:repeated\s+)?[\w.<>, ]+?\s+(\w+)\s*=\s*(\d+);/gm)) {
		if (m[1] && m[2]) out.set(m[1], Number(m[2]));
	}
	return out;
}

/** What messages.ts assumes: message, field, number. */
const USED: [string, string, number][] = [
	["GetTokenRequest", "provider", 1],
	["GetTokenRequest", "min_valid_secs", 2],
	["GetTokenRequest", "session_id", 3],
	["WatchTokenRequest", "session_id", 2],
	["LimitReport", "session_id", 1],
	["LimitReport", "account_id", 2],
	["LimitReport", "resets_at", 3],
	["LimitReport", "min_valid_secs", 4],
	["Token", "provider", 1],
	["Token", "access_token", 2],
	["Token", "expires_at_ms", 3],
	["Token", "account_id", 4],
	["WatchTokenRequest", "provider", 1],
	["StatusResponse", "daemon_version", 1],
	["StatusResponse", "pid", 2],
	["StatusResponse", "now_ms", 3],
	["StatusResponse", "store", 4],
	["StatusResponse", "providers", 5],
	["StatusResponse", "socket_path", 6],
	["StatusResponse", "issuer", 7],
	["StatusResponse", "codex_base_url", 8],
	["StatusResponse", "config_file", 9],
	["StoreStatus", "kind", 1],
	["StoreStatus", "path", 2],
	["StoreStatus", "health", 3],
	["StoreStatus", "detail", 4],
	["ProviderStatus", "provider", 1],
	["ProviderStatus", "state", 3],
	["ProviderStatus", "account_id", 4],
	["ProviderStatus", "email", 5],
	["ProviderStatus", "plan", 6],
	["ProviderStatus", "expires_at_ms", 7],
	["ProviderStatus", "last_refresh_ms", 8],
	["ProviderStatus", "refresh_count", 9],
	["ProviderStatus", "next_refresh_ms", 10],
	["ProviderStatus", "last_error", 11],
	["ProviderStatus", "hint", 12],
	["UsageResponse", "accounts", 1],
	["AccountUsage", "account_id", 1],
	["AccountUsage", "email", 2],
	["AccountUsage", "plan", 3],
	["AccountUsage", "primary", 4],
	["AccountUsage", "secondary", 5],
	["AccountUsage", "limit_reached", 6],
	["AccountUsage", "source", 7],
	["AccountUsage", "fetched_at", 8],
	["UsageWindow", "used_percent", 1],
	["UsageWindow", "window_minutes", 2],
	["UsageWindow", "resets_at", 3],
	["LoginRequest", "provider", 1],
	["LoginRequest", "method", 2],
	["LoginRequest", "timeout_secs", 3],
	["LoginEvent", "authorize_url", 1],
	["LoginEvent", "waiting", 2],
	["LoginEvent", "device_code", 3],
	["LoginEvent", "callback_unavailable", 4],
	["LoginEvent", "success", 5],
	["LoginEvent", "failure", 6],
	["LoginEvent", "cancelled", 7],
	["AuthorizeUrl", "url", 1],
	["AuthorizeUrl", "callback_addr", 2],
	["AuthorizeUrl", "issuer_url", 3],
	["DeviceCode", "verification_url", 1],
	["DeviceCode", "user_code", 2],
	["DeviceCode", "expires_at_ms", 3],
	["LoginFailure", "kind", 1],
	["LoginFailure", "message", 2],
	["SubmitCodeRequest", "provider", 1],
	["SubmitCodeRequest", "input", 2],
	["LogoutRequest", "provider", 1],
	["LogoutResponse", "removed", 1],
];

test("every field the package encodes or decodes has the contract's number", () => {
	for (const [message, field, number] of USED) {
		assert.equal(fieldsOf(message).get(field), number, `${message}.${field}`);
	}
});

test("the enums the package names keep their numbers", () => {
	const order = (e: string) =>
		[...(new RegExp(`enum ${e} \\{([\\s\\S]*?)\\n\\}`).exec(proto)?.[1] ?? "").matchAll(/(\w+) = (\d+);/g)].map(
			(m) => `${m[1]}=${m[2]}`,
		);
	assert.deepEqual(order("StoreKind"), ["STORE_KIND_UNSPECIFIED=0", "STORE_KIND_FILE=1", "STORE_KIND_KEYRING=2"]);
	assert.deepEqual(order("LoginMethod"), ["LOGIN_METHOD_UNSPECIFIED=0", "LOGIN_METHOD_BROWSER=1", "LOGIN_METHOD_DEVICE_CODE=2"]);
	assert.deepEqual(
		order("StoreHealth").map((s) => s.split("=")[1]),
		["0", "1", "2", "3", "4", "5"],
	);
	assert.ok(order("ProviderState").includes("PROVIDER_STATE_STATIC=7"));
	assert.ok(order("ProviderState").includes("PROVIDER_STATE_NEEDS_LOGIN=5"));
	assert.ok(proto.includes("ERROR_REASON_PASTE_REJECTED = 14;"));
});

test("the login hint names the menu item pi 1.6.0 shows", async () => {
	const { LOGIN_HINT } = await import("../src/messages.ts");
	const { openaiCodexProvider } = await import(
		"../../../tests/pi-current/node_modules/@earendil-works/pi-ai/dist/providers/openai-codex.js"
	);
	const name: string = openaiCodexProvider().name;
	assert.equal(name, "OpenAI Codex");
	assert.ok(LOGIN_HINT.includes(`/login and choose ${name}`), LOGIN_HINT);
});

test("pi lists the extension as piauthd", async () => {
	// pi 1.6.0 labels an extension by the directory of its index.ts
	// (`getCompactExtensionLabels`): the entry must sit in a "piauthd" directory.
	const manifest = JSON.parse(readFileSync(resolve(dirname(fileURLToPath(import.meta.url)), "../package.json"), "utf8"));
	assert.deepEqual(manifest.pi.extensions, ["./piauthd/index.ts"]);
	assert.ok(manifest.files.includes("piauthd"));
	// Real pi loads it in the suite (tests/suite/pi_package.rs); here, that
	// it is the extension's entry and nothing else.
	const entry = readFileSync(resolve(dirname(fileURLToPath(import.meta.url)), "../piauthd/index.ts"), "utf8");
	assert.match(entry, /^export \{ default \} from "\.\.\/src\/index\.ts";$/m);
});
