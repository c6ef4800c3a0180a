/**
 * Where piauthd's socket is, and whether it is safe to talk to.
 *
 * The path is found as `pi-authctl` finds it (`proto/src/lib.rs`,
 * `socket::choose`): `PIAUTHD_SOCKET`, else
 * `$XDG_RUNTIME_DIR/piauthd/piauthd.sock`, else a per-user directory (on
 * macOS the user's temporary directory, `getconf DARWIN_USER_TEMP_DIR`;
 * elsewhere `$XDG_STATE_HOME/piauthd/` or `~/.local/state/piauthd/`), and
 * only when none of those fits the socket-path limit `/tmp/piauthd-<uid>/`.
 *
 * Whatever the path, another local user may have created its directory
 * first and serve a fake daemon there: it would receive our prompts and hand
 * out tokens of its choosing. Before anything is sent, the directory must be
 * a real directory (not a symlink) owned by this user (effective uid) with
 * no access for anyone else (0700), and the socket must be this user's. Node
 * has no API for the server's peer credentials, which the Rust client also
 * checks; these file checks are enough on their own, because nobody but the
 * owner (and root) can create an entry in a 0700 directory.
 */

import { execFileSync } from "node:child_process";
import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve as resolvePath } from "node:path";

export const SOCKET_FILE = "piauthd.sock";

/** Longest socket path `sun_path` takes, without its NUL (104 on macOS, 108 on Linux). */
export function maxSocketBytes(platform: NodeJS.Platform = process.platform): number {
	return platform === "darwin" ? 103 : 107;
}

/** The OS facts the default path depends on (a seam for tests). */
export interface Host {
	platform: NodeJS.Platform;
	/** macOS's per-user temporary directory, or undefined. */
	darwinUserTempDir: () => string | undefined;
}

/** `getconf DARWIN_USER_TEMP_DIR`: the per-user 0700 `/var/folders/.../T/` (`confstr` in the Rust client). */
function darwinUserTempDir(): string | undefined {
	try {
		const dir = execFileSync("/usr/bin/getconf", ["DARWIN_USER_TEMP_DIR"], { encoding: "utf8", timeout: 2000 }).trim();
		return isAbsolute(dir) ? dir : undefined;
	} catch {
		return undefined;
	}
}

const realHost: Host = {
	platform: process.platform,
	darwinUserTempDir: () => (process.platform === "darwin" ? darwinUserTempDir() : undefined),
};

/** The default socket and, when the shared `/tmp` fallback was taken, a sentence saying why. */
export interface DefaultSocket {
	path: string;
	note?: string;
}

/** The default socket for this environment, without touching the file system. */
export function defaultSocket(env: NodeJS.ProcessEnv = process.env, uid = currentUid(), host: Host = realHost): DefaultSocket {
	const absolute = (p: string | undefined) => (p && isAbsolute(p) ? p : undefined);
	const home = absolute(env.HOME);
	const stateHome = absolute(env.XDG_STATE_HOME) ?? (home ? join(home, ".local", "state") : undefined);
	// Lazily: the macOS lookup runs a command, needed only without XDG_RUNTIME_DIR.
	const bases = [() => absolute(env.XDG_RUNTIME_DIR), () => (host.platform === "darwin" ? host.darwinUserTempDir() : undefined), () => stateHome];
	const max = maxSocketBytes(host.platform);
	let tooLong: string | undefined;
	for (const next of bases) {
		const base = next();
		if (!base) continue;
		const path = join(base, "piauthd", SOCKET_FILE);
		if (Buffer.byteLength(path) <= max) return { path };
		tooLong ??= path;
	}
	const path = join(`/tmp/piauthd-${uid}`, SOCKET_FILE);
	const why = tooLong
		? `the per-user socket path ${tooLong} is ${Buffer.byteLength(tooLong)} bytes, over this system's limit of ${max}`
		: "neither XDG_RUNTIME_DIR nor HOME is set";
	return {
		path,
		note: `${why}; using ${path} instead, which is used only while that directory is yours and 0700. Set PIAUTHD_SOCKET (or XDG_RUNTIME_DIR) to a short directory of your own to avoid it`,
	};
}

/** The socket path: `PIAUTHD_SOCKET`, else [`defaultSocket`]. */
export function socketPath(env: NodeJS.ProcessEnv = process.env, uid = currentUid(), host: Host = realHost): string {
	const explicit = env.PIAUTHD_SOCKET;
	if (explicit) return explicit;
	return defaultSocket(env, uid, host).path;
}

/** The effective uid: whose daemon this process may talk to. */
export function currentUid(): number {
	if (typeof process.geteuid === "function") return process.geteuid();
	if (typeof process.getuid !== "function") throw new Error("piauthd needs a Unix system");
	return process.getuid();
}

/** `uid 65534 (nobody)`: the uid with its name from /etc/passwd when listed there. */
export function describeUid(uid: number, passwd: () => string = readPasswd): string {
	let name: string | undefined;
	try {
		for (const line of passwd().split("\n")) {
			const f = line.split(":");
			if (f.length > 2 && f[2] === String(uid) && f[0]) {
				name = f[0];
				break;
			}
		}
	} catch {
		name = undefined;
	}
	return name ? `uid ${uid} (${name})` : `uid ${uid}`;
}

function readPasswd(): string {
	return readFileSync("/etc/passwd", "utf8");
}

export class UnsafeSocket extends Error {
	constructor(message: string) {
		super(message);
		this.name = "UnsafeSocket";
	}
}

/** What the file system says, reduced to what the checks read (a seam for tests). */
export interface Entry {
	isDirectory: boolean;
	isSocket: boolean;
	isSymlink: boolean;
	uid: number;
	mode: number;
}

export type Lstat = (path: string) => Entry | undefined;

export const lstat: Lstat = (path) => {
	try {
		const s = lstatSync(path);
		return {
			isDirectory: s.isDirectory(),
			isSocket: s.isSocket(),
			isSymlink: s.isSymbolicLink(),
			uid: s.uid,
			mode: s.mode & 0o7777,
		};
	} catch (e) {
		if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
		throw e;
	}
};

/**
 * Checks the socket's directory and the socket. Returns "absent" when there
 * is no socket yet (the daemon may be started), "ok" when both pass, and
 * throws `UnsafeSocket` with a sentence saying what is wrong, whose it is,
 * and what to do otherwise. The same checks, in the same order and words,
 * as the Rust client's `verify` module.
 */
export function verifySocket(path: string, uid = currentUid(), stat: Lstat = lstat, who: (uid: number) => string = describeUid): "ok" | "absent" {
	// Named as the user can act on it: `.` says nothing in a message.
	const dir = resolvePath(dirname(path));
	const d = stat(dir);
	if (d) {
		if (d.isSymlink) {
			throw new UnsafeSocket(
				`${dir} is a symbolic link, not a directory; piauthd's socket must be in a real directory of yours. Remove the link, or set PIAUTHD_SOCKET to a path in a directory of your own`,
			);
		}
		if (!d.isDirectory) {
			throw new UnsafeSocket(`${dir} is not a directory; remove it, or set PIAUTHD_SOCKET to a path in a directory of your own`);
		}
		// Sticky or writable by others (/tmp): whoever owns it, it is shared,
		// and a chmod is never the answer.
		if ((d.mode & 0o1002) !== 0) {
			throw new UnsafeSocket(
				`${dir} is shared with other users (mode ${d.mode.toString(8)}): no piauthd serves a socket there, and no client talks to one there. Leave out PIAUTHD_SOCKET to use the default socket, or give a path in a directory only you can enter, such as $XDG_RUNTIME_DIR/piauthd/piauthd.sock`,
			);
		}
		if (d.uid !== uid) {
			throw new UnsafeSocket(
				`${dir} belongs to ${who(d.uid)}, not to you (${who(uid)}): that user may be impersonating piauthd there. Ask them or an administrator to remove it, or set PIAUTHD_SOCKET (or XDG_RUNTIME_DIR) to a directory of your own`,
			);
		}
		if ((d.mode & 0o077) !== 0) {
			throw new UnsafeSocket(
				`${dir} can be entered by other users (mode ${d.mode.toString(8)}), so piauthd's socket may not be there. Use a directory only you can enter (mkdir -m 700 DIR), or leave out PIAUTHD_SOCKET to use the default socket; chmod 700 ${dir} only if nothing else needs it open`,
			);
		}
	}
	const s = stat(path);
	if (!s) return "absent";
	if (!d) throw new UnsafeSocket(`cannot inspect ${dir}`);
	if (!s.isSocket || s.isSymlink) throw new UnsafeSocket(`${path} is not a socket; remove it (piauthd creates its socket itself)`);
	if (s.uid !== uid) {
		throw new UnsafeSocket(
			`${path} belongs to ${who(s.uid)}, not to you (${who(uid)}): that user may be impersonating piauthd. Ask them or an administrator to remove it, or set PIAUTHD_SOCKET to a path in a directory of your own`,
		);
	}
	return "ok";
}

/** The longest start command kept beside a socket (as the daemon writes it). */
const MAX_START_BYTES = 4096;

/**
 * How the daemon last on `socket` was started, from the `<socket>.start`
 * file it leaves beside it: only a regular file of this user's, not a link,
 * holding one line that starts piauthd. Undefined otherwise. Read only
 * after the socket's directory was checked (`verifySocket`).
 */
export function startCommand(socket: string, uid = currentUid()): string | undefined {
	let fd: number | undefined;
	try {
		fd = openSync(`${socket}.start`, constants.O_RDONLY | constants.O_NOFOLLOW);
		const st = fstatSync(fd);
		if (!st.isFile() || st.uid !== uid || st.size > MAX_START_BYTES) return undefined;
		const line = readFileSync(fd, "utf8").replace(/\n$/, "");
		const plausible = !/[\u0000-\u001f\u007f]/.test(line) && line.split(" ").includes("piauthd");
		return plausible ? line : undefined;
	} catch {
		return undefined;
	} finally {
		if (fd !== undefined) closeSync(fd);
	}
}
