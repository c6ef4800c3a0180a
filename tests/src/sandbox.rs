//! The sandbox a test runs in: a private temporary directory holding pi's
//! agent directory, the socket and the logs, and the environment every
//! child process gets.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Path of a workspace binary (`piauthd`, `pi-authctl`), built next to the
/// test executable. `cargo test --workspace` builds them before any test runs.
///
/// `PIAUTHD_TEST_DAEMON`, when set, names another `piauthd` to run instead
/// (an older build, to measure what an attack achieved before a fix).
pub fn bin_path(name: &str) -> PathBuf {
    if name == "piauthd"
        && let Some(other) = std::env::var_os("PIAUTHD_TEST_DAEMON").filter(|p| !p.is_empty())
    {
        return PathBuf::from(other);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run the suite with `cargo test --workspace`",
        path.display()
    );
    path
}

/// A private directory holding pi's agent dir, the socket and the logs.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    /// Run every child as this uid (through `setpriv`), when set.
    pub run_as: Option<u32>,
}

/// The uid unprivileged sandboxes run as when the tests run as root.
pub const NOBODY: u32 = 65534;

/// Lets other users traverse every directory above `path` (adds `o+x`), so
/// a child run as another uid can execute the workspace binaries.
pub fn make_reachable(path: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut p = path;
    while let Some(parent) = p.parent() {
        if let Ok(meta) = fs::metadata(p) {
            let mode = meta.mode();
            if meta.is_dir() && mode & 0o001 == 0 {
                let _ = fs::set_permissions(p, fs::Permissions::from_mode(mode | 0o001));
            }
        }
        p = parent;
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        // Short paths: Unix socket paths are limited to ~104 bytes.
        let dir = tempfile::Builder::new()
            .prefix("piauth")
            .tempdir_in("/tmp")
            .expect("temp dir");
        fs::create_dir_all(dir.path().join("agent")).expect("agent dir");
        Sandbox { dir, run_as: None }
    }

    /// A sandbox whose children run without root's powers, so file modes
    /// bind them: as uid 65534 when the tests run as root, else as the
    /// current user.
    pub fn unprivileged() -> Sandbox {
        let mut sb = Sandbox::new();
        if rustix::process::getuid().as_raw() == 0 {
            for entry in [sb.dir.path().to_owned(), sb.agent_dir()] {
                std::os::unix::fs::chown(&entry, Some(NOBODY), Some(NOBODY)).expect("chown");
            }
            make_reachable(&bin_path("piauthd"));
            sb.run_as = Some(NOBODY);
        }
        sb
    }

    /// `HOME` of the sandbox's processes.
    pub fn home(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn agent_dir(&self) -> PathBuf {
        self.dir.path().join("agent")
    }

    pub fn auth_file(&self) -> PathBuf {
        self.agent_dir().join("auth.json")
    }

    /// The default socket of the sandbox's environment (`XDG_STATE_HOME`
    /// is the sandbox), so clients may autostart a daemon on it.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("piauthd").join("piauthd.sock")
    }

    /// Writes `auth.json` as pi would (owned by the sandbox's user).
    pub fn write_auth(&self, json: &str) {
        fs::write(self.auth_file(), json).expect("write auth.json");
        self.own(&self.auth_file());
    }

    /// Gives `path` to the sandbox's user, if it has its own.
    pub fn own(&self, path: &Path) {
        if let Some(uid) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(uid)).expect("chown");
        }
    }

    /// Environment every child gets: no user config, the sandbox's paths.
    pub fn command(&self, bin: &str) -> Command {
        let mut cmd = match self.run_as {
            None => Command::new(bin_path(bin)),
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(bin_path(bin));
                c
            }
        };
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_STATE_HOME", self.dir.path())
            .env("PI_CODING_AGENT_DIR", self.agent_dir())
            .env("PIAUTHD_SOCKET", self.socket())
            // Tests start daemons themselves; the autostart test removes this.
            .env("PIAUTHD_NO_AUTOSTART", "1")
            .env("PIAUTHD_ISSUER", "http://127.0.0.1:9")
            .env("PIAUTHD_CODEX_BASE_URL", "http://127.0.0.1:9/backend-api");
        cmd
    }

    /// Runs `pi-authctl` with `args` and returns its output.
    pub fn authctl(&self, args: &[&str]) -> std::process::Output {
        self.command("pi-authctl")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run pi-authctl")
    }
}
