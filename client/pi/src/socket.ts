/**
 * Where piauthd's socket is, and whether it is safe to talk to.
 *
 * The path is found as `pi-authctl` finds it: `PIAUTHD_SOCKET`, else
 * `$XDG_RUNTIME_DIR/piauthd/piauthd.sock`, else `/tmp/piauthd-<uid>/piauthd.sock`.
 * The last one lies in a world-writable directory, so another local user
 * could create it first and serve a fake daemon there: it would receive our
 * prompts and hand out tokens of its choosing. Before anything is sent, the
 * directory must be a real directory (not a symlink) owned by this user with
 * no access for anyone else (0700), and the socket must be this user's.
 */

import { lstatSync } from "node:fs";
import { dirname, join } from "node:path";

export const SOCKET_FILE = "piauthd.sock";

/** The socket path for this environment, without touching the file system. */
export function socketPath(env: NodeJS.ProcessEnv = process.env, uid = currentUid()): string {
	const explicit = env.PIAUTHD_SOCKET;
	if (explicit) return explicit;
	const runtime = env.XDG_RUNTIME_DIR;
	if (runtime) return join(runtime, "piauthd", SOCKET_FILE);
	return join(`/tmp/piauthd-${uid}`, SOCKET_FILE);
}

export function currentUid(): number {
	if (typeof process.getuid !== "function") throw new Error("piauthd needs a Unix system");
	return process.getuid();
}

/** The socket or its directory fails a check: do not connect. */
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
 * throws `UnsafeSocket` with a sentence saying what is wrong otherwise.
 */
export function verifySocket(path: string, uid = currentUid(), stat: Lstat = lstat): "ok" | "absent" {
	const dir = dirname(path);
	const d = stat(dir);
	if (d) {
		if (d.isSymlink || !d.isDirectory) {
			throw new UnsafeSocket(`${dir} is not a plain directory; refusing to use piauthd's socket there`);
		}
		if (d.uid !== uid) {
			throw new UnsafeSocket(`${dir} belongs to uid ${d.uid}, not to you (uid ${uid}); another user may be impersonating piauthd`);
		}
		if ((d.mode & 0o077) !== 0) {
			throw new UnsafeSocket(`${dir} is open to other users (mode ${d.mode.toString(8)}); it must be 0700: chmod 700 ${dir}`);
		}
	}
	const s = stat(path);
	if (!s) return "absent";
	if (!d) throw new UnsafeSocket(`cannot inspect ${dir}`);
	if (!s.isSocket || s.isSymlink) throw new UnsafeSocket(`${path} is not a socket`);
	if (s.uid !== uid) {
		throw new UnsafeSocket(`${path} belongs to uid ${s.uid}, not to you (uid ${uid}); another user may be impersonating piauthd`);
	}
	return "ok";
}
