// Drives the real pi's credential code (AuthStorage.getApiKey) against an
// auth.json that piauthd manages, for the interop test in tests/suite.
//
// usage: node pi-client.mjs <agentDir> <issuerBase> <durationMs> <intervalMs>
//
// pi's OpenAI token URL is hard-coded to https://auth.openai.com, so global
// fetch is wrapped to send that origin to the mock issuer instead. Prints
// one JSON line per call: {"t": <ms at the end>, "ms": <call duration>,
// "key": "<token>"} or {"t", "ms", "error"}, then
// {"done": true, "redirected": N, "startupMs": <Node start to credentials loaded>}.
// It makes at least one call, so a durationMs of 0 is a single cold start:
// AuthStorage.create() reads auth.json under pi's lock, and an error there
// is reported with that first call.

const [agentDir, issuerBase, durationMs, intervalMs] = process.argv.slice(2);
if (!intervalMs) {
  console.error("usage: node pi-client.mjs <agentDir> <issuerBase> <durationMs> <intervalMs>");
  process.exit(2);
}
process.env.PI_CODING_AGENT_DIR = agentDir;

const upstream = globalThis.fetch;
let redirected = 0;
globalThis.fetch = (input, init) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  if (url.origin !== "https://auth.openai.com") {
    return upstream(input, init);
  }
  redirected += 1;
  const target = new URL(url.pathname + url.search, issuerBase);
  return input instanceof Request ? upstream(new Request(target, input), init) : upstream(target, init);
};

const { AuthStorage } = await import("@mariozechner/pi-coding-agent");
const auth = AuthStorage.create();
// Milliseconds from Node's start until pi's credentials are loaded.
const startupMs = performance.now();
// The run lasts durationMs from the first call, so a slow start-up never
// shortens it. With PI_CLIENT_READY set, the first call also leaves the
// file $PI_CLIENT_READY.<pid>, so a test can wait until every session runs.
let end = Infinity;
const ready = async () => {
  end = Date.now() + Number(durationMs);
  if (process.env.PI_CLIENT_READY) {
    const { writeFileSync } = await import("node:fs");
    writeFileSync(`${process.env.PI_CLIENT_READY}.${process.pid}`, "");
  }
};
for (;;) {
  const start = performance.now();
  let line;
  try {
    const key = await auth.getApiKey("openai-codex");
    line = key ? { key } : { error: "no key" };
  } catch (e) {
    line = { error: String(e?.message ?? e) };
  }
  line.ms = performance.now() - start;
  line.t = Date.now();
  for (const e of auth.drainErrors?.() ?? []) {
    line.error = (line.error ? line.error + "; " : "") + String(e?.message ?? e);
  }
  console.log(JSON.stringify(line));
  if (end === Infinity) await ready();
  if (Date.now() >= end) break;
  await new Promise((r) => setTimeout(r, Number(intervalMs)));
}
console.log(JSON.stringify({ done: true, redirected, startupMs }));
