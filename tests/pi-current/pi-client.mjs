// Drives pi 1.6.0's own credential resolution for openai-codex against an
// auth.json that piauthd manages, for the interop test in tests/suite.
//
// usage: node pi-client.mjs <agentDir> <durationMs> <intervalMs>
// (Node >= 22.19: pi 1.6.0 needs it.)
//
// It goes the way a pi request goes: ModelRuntime.create() backs pi-ai's
// Models with pi's file credential store (auth.json under pi's lock), and
// getAuth(model) resolves the stored oauth entry with pi's 5-minute refresh
// rule, refreshing under pi's lock when it decides to. HTTP is set up as pi's
// CLI sets it up (undici's EnvHttpProxyAgent as the global dispatcher), so a
// refresh by pi goes to HTTPS_PROXY, which the test points at a listener that
// refuses and counts. Prints one JSON line per call:
// {"t": <ms at the end>, "ms": <call duration>, "key": "<token>"} or
// {"t", "ms", "error"}, then {"done": true, "calls": N,
// "startupMs": <Node start to credentials loaded>}. It makes at least
// one call, so a durationMs of 0 is a single cold start.

const [agentDir, durationMs, intervalMs] = process.argv.slice(2);
if (!intervalMs) {
  console.error("usage: node pi-client.mjs <agentDir> <durationMs> <intervalMs>");
  process.exit(2);
}
process.env.PI_CODING_AGENT_DIR = agentDir;

const pkg = new URL("./node_modules/@earendil-works/pi-coding-agent/", import.meta.url);
// pi's CLI calls this before anything else; the package's index does not
// export it, so it is loaded from its own module.
const { configureHttpDispatcher } = await import(new URL("dist/core/http-dispatcher.js", pkg));
configureHttpDispatcher();

const { ModelRuntime, VERSION } = await import("@earendil-works/pi-coding-agent");
if (VERSION !== "1.6.0") {
  console.error(`expected pi 1.6.0, found ${VERSION}`);
  process.exit(2);
}
const runtime = await ModelRuntime.create();
// Milliseconds from Node's start until pi's credentials are loaded.
const startupMs = performance.now();
const model = runtime.getModels("openai-codex")[0];
if (!model) {
  console.error("pi has no openai-codex model");
  process.exit(2);
}

const describe = (e) => {
  const parts = [];
  for (let c = e; c; c = c.cause) parts.push(String(c?.message ?? c));
  return parts.join(": ");
};

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
let calls = 0;
for (;;) {
  const start = performance.now();
  let line;
  try {
    const resolution = await runtime.getAuth(model);
    const key = resolution?.auth?.apiKey;
    line = key ? { key } : { error: "no auth" };
  } catch (e) {
    line = { error: describe(e) };
  }
  line.ms = performance.now() - start;
  line.t = Date.now();
  calls += 1;
  console.log(JSON.stringify(line));
  if (end === Infinity) await ready();
  if (Date.now() >= end) break;
  await new Promise((r) => setTimeout(r, Number(intervalMs)));
}
console.log(JSON.stringify({ done: true, calls, startupMs }));
