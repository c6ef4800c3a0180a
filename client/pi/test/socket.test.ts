import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { test } from "node:test";

import { type Entry, UnsafeSocket, socketPath, verifySocket } from "../src/socket.ts";

test("the socket path follows pi-authctl: PIAUTHD_SOCKET, XDG_RUNTIME_DIR, /tmp", () => {
	assert.equal(socketPath({ PIAUTHD_SOCKET: "/x/s.sock", XDG_RUNTIME_DIR: "/run/user/7" }, 7), "/x/s.sock");
	assert.equal(socketPath({ XDG_RUNTIME_DIR: "/run/user/7" }, 7), "/run/user/7/piauthd/piauthd.sock");
	assert.equal(socketPath({ PIAUTHD_SOCKET: "", XDG_RUNTIME_DIR: "" }, 7), "/tmp/piauthd-7/piauthd.sock");
});

const dir = (over: Partial<Entry> = {}): Entry => ({
	isDirectory: true,
	isSocket: false,
	isSymlink: false,
	uid: 1000,
	mode: 0o700,
	...over,
});
const sock = (over: Partial<Entry> = {}): Entry => ({
	isDirectory: false,
	isSocket: true,
	isSymlink: false,
	uid: 1000,
	mode: 0o600,
	...over,
});
const fake =
	(d: Entry | undefined, s: Entry | undefined) =>
	(path: string): Entry | undefined =>
		path.endsWith(".sock") ? s : d;

test("a socket in the user's own 0700 directory passes; none yet is 'absent'", () => {
	assert.equal(verifySocket("/tmp/piauthd-1000/piauthd.sock", 1000, fake(dir(), sock())), "ok");
	assert.equal(verifySocket("/tmp/piauthd-1000/piauthd.sock", 1000, fake(dir(), undefined)), "absent");
	assert.equal(verifySocket("/tmp/piauthd-1000/piauthd.sock", 1000, fake(undefined, undefined)), "absent");
});

test("another user's directory, an open directory, a symlink or a foreign socket are refused", () => {
	const p = "/tmp/piauthd-1000/piauthd.sock";
	const cases: [Entry | undefined, Entry | undefined, RegExp][] = [
		[dir({ uid: 65534 }), sock(), /belongs to uid 65534/],
		[dir({ mode: 0o755 }), sock(), /mode 755.*0700/],
		[dir({ mode: 0o701 }), undefined, /open to other users/],
		[dir({ isSymlink: true, isDirectory: false }), sock(), /not a plain directory/],
		[dir(), sock({ uid: 65534 }), /belongs to uid 65534/],
		[dir(), sock({ isSocket: false }), /not a socket/],
	];
	for (const [d, s, why] of cases) {
		assert.throws(() => verifySocket(p, 1000, fake(d, s)), (e: unknown) => e instanceof UnsafeSocket && why.test(e.message));
	}
});

test("real files: a listening socket in a 0700 directory passes, 0755 or a symlinked directory does not", async () => {
	const root = mkdtempSync("/tmp/piauth-sock-");
	try {
		const run = join(root, "run");
		mkdirSync(run, { mode: 0o700 });
		const path = join(run, "piauthd.sock");
		const server = net.createServer();
		await new Promise<void>((resolve) => server.listen(path, resolve));
		try {
			const uid = process.getuid?.() ?? -1;
			assert.equal(verifySocket(path, uid), "ok");
			chmodSync(run, 0o755);
			assert.throws(() => verifySocket(path, uid), UnsafeSocket);
			chmodSync(run, 0o700);
			const link = join(root, "link");
			symlinkSync(run, link);
			assert.throws(() => verifySocket(join(link, "piauthd.sock"), uid), /not a plain directory/);
		} finally {
			server.close();
		}
	} finally {
		rmSync(root, { recursive: true, force: true });
	}
});
