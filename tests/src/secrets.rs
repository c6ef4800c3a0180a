//! A real Secret Service for keyring tests: a private D-Bus session bus
//! with an unlocked gnome-keyring on it, torn down on drop.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SecretService {
    /// `DBUS_SESSION_BUS_ADDRESS` for clients.
    pub address: String,
    bus: Child,
    keyring: Child,
    _dir: tempfile::TempDir,
}

impl SecretService {
    /// Starts one, or returns `None` when the tools are missing outside CI
    /// (in CI, `CI` set, a missing tool fails). Anything else failing panics.
    pub fn start() -> Option<SecretService> {
        let tools = ["dbus-daemon", "gnome-keyring-daemon", "dbus-send"];
        if !tools.iter().all(|t| crate::host::have_tool(t)) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("ss")
            .tempdir_in("/tmp")
            .expect("a directory for the keyring");
        let socket = dir.path().join("bus");
        let address = format!("unix:path={}", socket.display());
        for sub in ["data", "runtime"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("the keyring's directories");
        }
        let bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon");
        wait(Duration::from_secs(10), || socket.exists());
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_RUNTIME_DIR", dir.path().join("runtime"))
            .env("HOME", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon");
        if let Some(mut stdin) = keyring.stdin.take() {
            let _ = stdin.write_all(b"test-password");
        }
        let ss = SecretService {
            address,
            bus,
            keyring,
            _dir: dir,
        };
        let ready = wait(Duration::from_secs(15), || ss.name_owned());
        assert!(ready, "gnome-keyring did not appear on the session bus");
        Some(ss)
    }

    fn name_owned(&self) -> bool {
        Command::new("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ])
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
    }

    /// The runtime directory given to the keyring (unused by clients).
    pub fn dir(&self) -> PathBuf {
        self._dir.path().to_owned()
    }
}

fn wait(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for SecretService {
    fn drop(&mut self) {
        let _ = self.keyring.kill();
        let _ = self.keyring.wait();
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}
