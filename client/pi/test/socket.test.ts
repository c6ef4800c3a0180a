import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import net from "node:net";
import { join } from "node:path";
import { test } from "node:test";

import {
	type Entry,
	type Host,
	UnsafeSocket,
	defaultSocket,
	describeUid,
	socketPath,
	startCommand,
	verifySocket,
} from "../src/socket.ts";

const linux: Host = { platform: "linux", darwinUserTempDir: () => undefined };
const mac: Host = { platform: "darwin", darwinUserTempDir: () => "/var/folders/ab/xyz/T/" };

test("the socket path follows pi-authctl: PIAUTHD_SOCKET, XDG_RUNTIME_DIR, then per-user, never /tmp by default", () => {
	assert.equal(socketPath({ PIAUTHD_SOCKET: "/x/s.sock", XDG_RUNTIME_DIR: "/run/user/7" }, 7, linux), "/x/s.sock");
	assert.equal(socketPath({ XDG_RUNTIME_DIR: "/run/user/7", HOME: "/home/me" }, 7, mac), "/run/user/7/piauthd/piauthd.sock");
	assert.equal(socketPath({ PIAUTHD_SOCKET: "", XDG_RUNTIME_DIR: "", HOME: "/home/me" }, 7, linux), "/home/me/.local/state/piauthd/piauthd.sock");
	assert.equal(socketPath({ HOME: "/home/me", XDG_STATE_HOME: "/home/me/st" }, 7, linux), "/home/me/st/piauthd/piauthd.sock");
	// A relative XDG_STATE_HOME is ignored, as the XDG spec says.
	assert.equal(socketPath({ HOME: "/home/me", XDG_STATE_HOME: "st" }, 7, linux), "/home/me/.local/state/piauthd/piauthd.sock");
	assert.equal(socketPath({ HOME: "/Users/me" }, 7, mac), "/var/folders/ab/xyz/T/piauthd/piauthd.sock");
	assert.equal(defaultSocket({ HOME: "/home/me" }, 7, linux).note, undefined);
});

test("past the socket-path limit, or with no home, the /tmp fallback is taken and said", () => {
	const long = `/home/${"x".repeat(80)}`;
	const d = defaultSocket({ HOME: long }, 1000, linux);
	assert.equal(d.path, "/tmp/piauthd-1000/piauthd.sock");
	assert.match(d.note ?? "", /over this system's limit of 107/);
	assert.match(d.note ?? "", /PIAUTHD_SOCKET/);
	// Exactly at the limit still fits (the same case as the Rust unit test).
	const exact = `/h/${"y".repeat(107 - "/h//.local/state/piauthd/piauthd.sock".length)}`;
	assert.equal(Buffer.byteLength(defaultSocket({ HOME: exact }, 1, linux).path), 107);
	assert.equal(defaultSocket({ HOME: exact }, 1, mac).path.startsWith("/var/folders/"), true);
	assert.match(defaultSocket({}, 7, linux).note ?? "", /neither XDG_RUNTIME_DIR nor HOME/);
});

test("owners are named from /etc/passwd when listed", () => {
	const passwd = () => "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
	assert.equal(describeUid(65534, passwd), "uid 65534 (nobody)");
	assert.equal(describeUid(4242, passwd), "uid 4242");
	assert.equal(describeUid(0), "uid 0 (root)");
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
		[dir({ uid: 65534 }), sock(), /belongs to uid 65534.*not to you \(uid 1000.*impersonating piauthd.*PIAUTHD_SOCKET/],
		[dir({ uid: 65534 }), undefined, /belongs to uid 65534/],
		[dir({ mode: 0o755 }), sock(), /mode 755\), so piauthd's socket may not be there/],
		[dir({ mode: 0o1777, uid: 0 }), undefined, /shared with other users \(mode 1777\): no piauthd serves a socket there/],
		[dir({ mode: 0o701 }), undefined, /can be entered by other users/],
		[dir({ isSymlink: true, isDirectory: false }), sock(), /is a symbolic link, not a directory/],
		[dir({ isDirectory: false }), sock(), /is not a directory/],
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
			assert.throws(() => verifySocket(join(link, "piauthd.sock"), uid), /is a symbolic link/);
		} finally {
			server.close();
		}
	} finally {
		rmSync(root, { recursive: true, force: true });
	}
});

test("the start command left beside a socket is read only when it is the user's own plain line", () => {
	const dir = mkdtempSync(join(tmpdir(), "piauthd-start-"));
	try {
		const sock = join(dir, "piauthd.sock");
		assert.equal(startCommand(sock), undefined, "none left");
		writeFileSync(`${sock}.start`, "PIAUTHD_ISSUER=http://127.0.0.1:7 piauthd --agent-dir /a\n", { mode: 0o600 });
		assert.equal(startCommand(sock), "PIAUTHD_ISSUER=http://127.0.0.1:7 piauthd --agent-dir /a");
		assert.equal(startCommand(sock, process.getuid?.() === 0 ? 1 : 0), undefined, "another user's file");
		writeFileSync(`${sock}.start`, "rm -rf ~\n");
		assert.equal(startCommand(sock), undefined, "not a piauthd command");
		writeFileSync(`${sock}.start`, "piauthd\u001b[2J\n");
		assert.equal(startCommand(sock), undefined, "control characters");
		rmSync(`${sock}.start`);
		writeFileSync(join(dir, "elsewhere"), "piauthd --socket /x\n");
		symlinkSync(join(dir, "elsewhere"), `${sock}.start`);
		assert.equal(startCommand(sock), undefined, "a link is not followed");
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
});
