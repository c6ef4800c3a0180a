//! A real OpenSSH server on loopback, for the follower tests: Debian's
//! `sshd` with a generated host key, one generated client key, and a
//! client command (`PIAUTHD_SSH`) that trusts exactly that host key.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const SSHD: &str = "/usr/sbin/sshd";

/// A running `sshd`. Killed on drop.
pub struct Sshd {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("run ssh-keygen");
    assert!(ok.success(), "ssh-keygen failed");
}

/// Whether this host can run the server (root, and OpenSSH installed);
/// outside CI a missing part skips the test, in CI it fails it.
pub fn available() -> bool {
    if rustix::process::geteuid().as_raw() != 0 {
        crate::host::skip_outside_ci("root (sshd runs as root)");
        return false;
    }
    Path::new(SSHD).exists() || {
        crate::host::skip_outside_ci("sshd (Debian's openssh-server)");
        false
    }
}

impl Sshd {
    /// Starts `sshd` on a free loopback port, keys and config in `dir`,
    /// and waits until it listens.
    pub fn start(dir: &Path) -> Sshd {
        fs::create_dir_all(dir).expect("sshd dir");
        // Privilege separation wants its empty directory.
        fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let host_key = dir.join("host_key");
        let client_key = dir.join("client_key");
        for key in [&host_key, &client_key] {
            if !key.exists() {
                keygen(key);
            }
        }
        fs::copy(
            client_key.with_extension("pub"),
            dir.join("authorized_keys"),
        )
        .expect("authorized_keys");
        let port = crate::host::free_addr().port();
        let host_pub = fs::read_to_string(host_key.with_extension("pub")).expect("host key");
        let mut words = host_pub.split_whitespace();
        let (kind, key) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        fs::write(
            dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {kind} {key}\n"),
        )
        .expect("known_hosts");
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 AllowStreamLocalForwarding yes\nAcceptEnv PIAUTHD_SOCKET\nLogLevel VERBOSE\n",
                host_key.display(),
                dir.join("authorized_keys").display()
            ),
        )
        .expect("sshd_config");
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sshd");
        let stderr = child.stderr.take().expect("sshd stderr");
        let (tx, rx) = mpsc::channel();
        let log = dir.join("sshd.log");
        std::thread::spawn(move || {
            let mut out = fs::File::create(log).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(out) = out.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(out, "{line}");
                }
                let _ = tx.send(line);
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains("Server listening on 127.0.0.1") => break,
                Ok(_) => {}
                Err(_) => panic!("sshd did not listen within 20 s (log in {})", dir.display()),
            }
        }
        Sshd {
            child,
            port,
            dir: dir.to_owned(),
        }
    }

    /// `PIAUTHD_SSH` for a client with `key`: no user config, and only this
    /// server's host key trusted.
    pub fn ssh_with_key(&self, key: &Path) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} \
             -o StrictHostKeyChecking=yes",
            key.display(),
            self.dir.join("known_hosts").display()
        )
    }

    /// `PIAUTHD_SSH` with the authorized client key.
    pub fn ssh(&self) -> String {
        self.ssh_with_key(&self.dir.join("client_key"))
    }

    /// A key the server does not accept.
    pub fn stranger_key(&self) -> PathBuf {
        let key = self.dir.join("stranger_key");
        if !key.exists() {
            keygen(&key);
        }
        key
    }

    /// `ssh://root@127.0.0.1:PORT` plus `path`.
    pub fn target(&self, path: &Path) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, path.display())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pids of `ssh` processes whose parent is `parent`.
pub fn ssh_children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((comm_end, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let comm = comm_end.split_once(" (").map_or("", |(_, c)| c);
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if comm == "ssh" && ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}
