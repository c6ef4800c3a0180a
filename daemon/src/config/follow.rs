//! What a follower follows: `--follow TARGET` (`PIAUTHD_FOLLOW`, `follow`
//! in the config file).
//!
//! A follower serves the tokens of another piauthd, the owner, and never
//! refreshes itself. The owner is reached through a Unix socket: one the
//! follower forwards itself over OpenSSH (`ssh://...`), or one that is
//! already there (an absolute path: a container's bind mount, the user's
//! own `ssh -L`).

use std::fmt;
use std::path::PathBuf;

/// The owner a follower serves from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowTarget {
    /// Reach the owner over OpenSSH, forwarding its socket.
    Ssh(SshTarget),
    /// The owner's socket is already at this path on this machine.
    Socket(PathBuf),
}

/// `ssh://[user@]host[:port][/absolute/remote/socket/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// The owner's socket on the remote machine; `None`: the remote user's
    /// default socket, found over the same connection.
    pub remote_socket: Option<PathBuf>,
}

impl SshTarget {
    /// The destination as `ssh` takes it: `[user@]host`.
    pub fn destination(&self) -> String {
        match &self.user {
            Some(user) => format!("{user}@{}", self.host),
            None => self.host.clone(),
        }
    }
}

impl fmt::Display for FollowTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FollowTarget::Socket(path) => write!(f, "{}", path.display()),
            FollowTarget::Ssh(t) => {
                write!(f, "ssh://{}", t.destination())?;
                if let Some(port) = t.port {
                    write!(f, ":{port}")?;
                }
                if let Some(path) = &t.remote_socket {
                    write!(f, "{}", path.display())?;
                }
                Ok(())
            }
        }
    }
}

/// Why a follow target does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "follow (--follow, PIAUTHD_FOLLOW) {value:?}: {why}. Give ssh://[user@]host[:port][/remote/socket] \
     or the absolute path of a socket already forwarded to this machine"
)]
pub struct BadTarget {
    pub value: String,
    pub why: &'static str,
}

/// Parses a follow target (pure).
pub fn parse(value: &str) -> Result<FollowTarget, BadTarget> {
    let bad = |why| BadTarget {
        value: value.to_owned(),
        why,
    };
    if value.starts_with('/') {
        return Ok(FollowTarget::Socket(PathBuf::from(value)));
    }
    let Some(rest) = value.strip_prefix("ssh://") else {
        return Err(bad("it is neither an ssh:// URL nor an absolute path"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, hp)) => (Some(user), hp),
        None => (None, authority),
    };
    if user.is_some_and(|u| u.is_empty() || u.starts_with('-') || !u.bytes().all(plain_byte)) {
        return Err(bad(
            "the user name is empty or has characters ssh would misread",
        ));
    }
    let (host, port) =
        split_port(host_port).ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
    if host.is_empty() || host.starts_with('-') || !host.bytes().all(|b| plain_byte(b) || b == b':')
    {
        return Err(bad("the host is empty or has characters ssh would misread"));
    }
    let remote_socket = match path {
        None | Some("/") => None,
        Some(p) if p.contains('\0') || p.contains("/../") || p.ends_with("/..") => {
            return Err(bad("the remote socket path must be a plain absolute path"));
        }
        Some(p) => Some(PathBuf::from(p)),
    };
    Ok(FollowTarget::Ssh(SshTarget {
        user: user.map(str::to_owned),
        host: host.to_owned(),
        port,
        remote_socket,
    }))
}

/// A byte of a host or user name that no shell or ssh option reads
/// specially.
fn plain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

/// `host[:port]`, with a bracketed IPv6 host (`[::1]:22`).
fn split_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    match port {
        None => Some((host, None)),
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .map(|p| (host, Some(p))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(value: &str) -> SshTarget {
        match parse(value) {
            Ok(FollowTarget::Ssh(t)) => t,
            other => panic!("{value}: {other:?}"),
        }
    }

    #[test]
    fn an_ssh_url_gives_user_host_port_and_path() {
        let t = ssh("ssh://me@box.example:2222/run/user/1000/piauthd/piauthd.sock");
        assert_eq!(t.user.as_deref(), Some("me"));
        assert_eq!(t.host, "box.example");
        assert_eq!(t.port, Some(2222));
        assert_eq!(
            t.remote_socket.as_deref(),
            Some(std::path::Path::new("/run/user/1000/piauthd/piauthd.sock"))
        );
        assert_eq!(t.destination(), "me@box.example");
        assert_eq!(
            parse("ssh://me@box.example:2222/run/x.sock")
                .unwrap()
                .to_string(),
            "ssh://me@box.example:2222/run/x.sock"
        );
    }

    #[test]
    fn the_parts_are_optional() {
        let t = ssh("ssh://devbox");
        assert_eq!((t.user, t.port, t.remote_socket), (None, None, None));
        assert_eq!(ssh("ssh://devbox/").remote_socket, None);
        let v6 = ssh("ssh://[::1]:22");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", Some(22)));
    }

    #[test]
    fn an_absolute_path_is_a_forwarded_socket() {
        assert_eq!(
            parse("/run/owner.sock").unwrap(),
            FollowTarget::Socket("/run/owner.sock".into())
        );
    }

    #[test]
    fn what_ssh_could_misread_is_refused_with_the_reason() {
        for (value, why) in [
            ("devbox", "neither"),
            ("relative/x.sock", "neither"),
            ("ssh://", "host"),
            ("ssh://-oProxyCommand=x", "host"),
            ("ssh://a b", "host"),
            ("ssh://@host", "user name"),
            ("ssh://-l@host", "user name"),
            ("ssh://host:0", "port"),
            ("ssh://host:99999", "port"),
            ("ssh://host/run/../etc/x", "plain absolute"),
        ] {
            let err = parse(value).unwrap_err();
            assert!(err.to_string().contains(why), "{value}: {err}");
            assert!(err.to_string().contains("ssh://[user@]host"), "{err}");
        }
    }
}
