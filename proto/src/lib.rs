//! The piauthd wire contract, `piauth.v1`, generated from
//! `proto/piauth/v1/piauth.proto`.
//!
//! This crate holds wire types only. The daemon converts them to its own
//! domain types at the `rpc` edge; nothing else in the daemon sees them.

/// Generated messages and services of package `piauth.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("piauth.v1");

    /// Serialized `FileDescriptorSet`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("piauth_descriptor");

    // Messages that carry secrets format them redacted, so a client that
    // logs a response with `{:?}` does not leak the token.
    impl std::fmt::Debug for Token {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Token")
                .field("provider", &self.provider)
                .field("access_token", &"<redacted>")
                .field("expires_at_ms", &self.expires_at_ms)
                .field("account_id", &self.account_id)
                .finish()
        }
    }

    impl std::fmt::Debug for SubmitCodeRequest {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SubmitCodeRequest")
                .field("provider", &self.provider)
                .field("input", &"<redacted>")
                .finish()
        }
    }
}

/// The provider id used when a request leaves `provider` empty.
pub const DEFAULT_PROVIDER: &str = "openai-codex";

/// The `google.rpc.ErrorInfo.domain` of every error the daemon returns.
pub const ERROR_DOMAIN: &str = "piauth.v1";

pub mod paths;
pub mod restart;

pub mod socket {
    //! Where the daemon's socket lives, so the daemon and every client agree.
    //!
    //! The socket must sit in a directory only its user can enter: a client
    //! that finds a socket in a directory another user created could be talking
    //! to that user's fake daemon. So the default is always a per-user place:
    //!
    //! 1. `$XDG_RUNTIME_DIR/piauthd/` (systemd user sessions);
    //! 2. on macOS, `confstr(_CS_DARWIN_USER_TEMP_DIR)` + `piauthd/` (the
    //!    per-user `/var/folders/.../T/`, 0700, made by the system);
    //! 3. elsewhere, `$XDG_STATE_HOME/piauthd/` or `~/.local/state/piauthd/`
    //!    (ssh without pam_systemd, `su`, cron, containers);
    //! 4. only when none of those fits the socket-path limit (or there is no
    //!    home), `/tmp/piauthd-<uid>/`, with a [`DefaultSocket::note`] saying
    //!    so. Another user can create that directory first, but clients check
    //!    its owner and mode before they send anything, so the worst such a
    //!    squatter achieves is a refusal that names it.
    //!
    //! `PIAUTHD_SOCKET` (read by the callers) overrides all of this.

    use std::path::PathBuf;

    use crate::paths::BaseDirs;

    /// The socket's file name inside its directory.
    pub const FILE_NAME: &str = "piauthd.sock";

    /// The directory the socket goes in under the chosen base.
    pub const DIR_NAME: &str = crate::paths::PIAUTHD;

    /// Longest socket path the platform's `sun_path` takes, excluding the
    /// final NUL (104 bytes on macOS, 108 on Linux).
    #[cfg(target_os = "macos")]
    pub const MAX_PATH_BYTES: usize = 103;
    /// Longest socket path the platform's `sun_path` takes, excluding the
    /// final NUL (104 bytes on macOS, 108 on Linux).
    #[cfg(not(target_os = "macos"))]
    pub const MAX_PATH_BYTES: usize = 107;

    /// The chosen default socket.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct DefaultSocket {
        pub path: PathBuf,
        /// Set when the per-user places did not fit and the shared-`/tmp`
        /// fallback was taken: a sentence for the user saying why and what to
        /// do. Callers print it (once) so the weaker place is never silent.
        pub note: Option<String>,
    }

    /// What the default depends on: the environment, read by [`current_inputs`].
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Inputs {
        /// `HOME` and the `XDG_*` directories (the runtime and state ones
        /// count here).
        pub dirs: BaseDirs,
        /// macOS's per-user temporary directory; `None` elsewhere.
        pub darwin_user_temp_dir: Option<PathBuf>,
        pub uid: u32,
    }

    /// Picks the default socket from `inputs` (pure; see the module doc for
    /// the order). `max_bytes` is the platform limit, [`MAX_PATH_BYTES`].
    pub fn choose(inputs: &Inputs, max_bytes: usize) -> DefaultSocket {
        let candidates = [
            inputs.dirs.runtime_dir(),
            inputs
                .darwin_user_temp_dir
                .clone()
                .filter(|p| p.is_absolute()),
            inputs.dirs.state_home(),
        ];
        let mut too_long = None;
        for base in candidates.into_iter().flatten() {
            let path = base.join(DIR_NAME).join(FILE_NAME);
            if path.as_os_str().len() <= max_bytes {
                return DefaultSocket { path, note: None };
            }
            too_long.get_or_insert(path);
        }
        let path = PathBuf::from(format!("/tmp/piauthd-{}", inputs.uid)).join(FILE_NAME);
        let why = match too_long {
            Some(long) => format!(
                "the per-user socket path {} is {} bytes, over this system's limit of {max_bytes}",
                long.display(),
                long.as_os_str().len()
            ),
            None => "neither XDG_RUNTIME_DIR nor HOME is set".to_owned(),
        };
        let note = format!(
            "{why}; using {} instead, which clients accept only while that directory is yours and 0700. \
             Set PIAUTHD_SOCKET (or XDG_RUNTIME_DIR) to a short directory of your own to avoid it",
            path.display()
        );
        DefaultSocket {
            path,
            note: Some(note),
        }
    }

    /// The default socket for this process's user and environment.
    pub fn default_socket() -> DefaultSocket {
        choose(&current_inputs(), MAX_PATH_BYTES)
    }

    /// The default socket path for this process's user: see [`choose`].
    pub fn default_path() -> PathBuf {
        default_socket().path
    }

    /// The default socket path with the base directories and uid given (the
    /// daemon's config reads those itself); macOS's per-user temporary
    /// directory is asked of the OS as [`current_inputs`] does.
    pub fn default_path_for(dirs: &BaseDirs, uid: u32) -> PathBuf {
        let inputs = Inputs {
            dirs: dirs.clone(),
            darwin_user_temp_dir: darwin_user_temp_dir(),
            uid,
        };
        choose(&inputs, MAX_PATH_BYTES).path
    }

    /// Reads the inputs of [`choose`] from the environment and the OS. The
    /// uid is the effective one: it is whose files the socket may be in.
    pub fn current_inputs() -> Inputs {
        Inputs {
            dirs: BaseDirs::from_env(),
            darwin_user_temp_dir: darwin_user_temp_dir(),
            uid: rustix::process::geteuid().as_raw(),
        }
    }

    /// `confstr(_CS_DARWIN_USER_TEMP_DIR)`: the per-user temporary directory
    /// the system creates 0700 for each user, unlike the shared `/tmp`.
    #[cfg(target_os = "macos")]
    fn darwin_user_temp_dir() -> Option<PathBuf> {
        use std::os::unix::ffi::OsStringExt;
        let mut buf = vec![0u8; 1024];
        // SAFETY: buf is writable for buf.len() bytes; confstr writes at most
        // that many, NUL-terminated, and returns the length it needed.
        let needed = unsafe {
            libc::confstr(
                libc::_CS_DARWIN_USER_TEMP_DIR,
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if needed == 0 || needed > buf.len() {
            return None;
        }
        buf.truncate(needed - 1);
        let dir = PathBuf::from(std::ffi::OsString::from_vec(buf));
        dir.is_absolute().then_some(dir)
    }

    #[cfg(not(target_os = "macos"))]
    fn darwin_user_temp_dir() -> Option<PathBuf> {
        None
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::path::Path;

        fn inputs() -> Inputs {
            with_dirs(BaseDirs {
                home: Some("/home/me".into()),
                ..BaseDirs::default()
            })
        }

        fn with_dirs(dirs: BaseDirs) -> Inputs {
            Inputs {
                dirs,
                uid: 1000,
                darwin_user_temp_dir: None,
            }
        }

        #[test]
        fn the_runtime_dir_comes_first() {
            let i = Inputs {
                darwin_user_temp_dir: Some("/var/folders/ab/xyz/T".into()),
                ..with_dirs(BaseDirs {
                    xdg_runtime_dir: Some("/run/user/1000".into()),
                    ..inputs().dirs
                })
            };
            let d = choose(&i, 107);
            assert_eq!(d.path, Path::new("/run/user/1000/piauthd/piauthd.sock"));
            assert_eq!(d.note, None);
        }

        #[test]
        fn without_a_runtime_dir_it_is_per_user_never_tmp() {
            let d = choose(&inputs(), 107);
            assert_eq!(
                d.path,
                Path::new("/home/me/.local/state/piauthd/piauthd.sock")
            );
            assert_eq!(d.note, None);
            let state = with_dirs(BaseDirs {
                xdg_state_home: Some("/home/me/st".into()),
                ..inputs().dirs
            });
            assert_eq!(
                choose(&state, 107).path,
                Path::new("/home/me/st/piauthd/piauthd.sock")
            );
            // A relative XDG_STATE_HOME is ignored, as the spec says.
            let relative = with_dirs(BaseDirs {
                xdg_state_home: Some("st".into()),
                ..inputs().dirs
            });
            assert_eq!(choose(&relative, 107).path, choose(&inputs(), 107).path);
            let mac = Inputs {
                darwin_user_temp_dir: Some("/var/folders/ab/xyz/T".into()),
                ..inputs()
            };
            assert_eq!(
                choose(&mac, 103).path,
                Path::new("/var/folders/ab/xyz/T/piauthd/piauthd.sock")
            );
        }

        #[test]
        fn a_path_over_the_limit_falls_back_and_says_so() {
            let long = format!("/home/{}", "x".repeat(80));
            let i = with_dirs(BaseDirs {
                home: Some(long.clone().into()),
                ..BaseDirs::default()
            });
            let d = choose(&i, 107);
            assert_eq!(d.path, Path::new("/tmp/piauthd-1000/piauthd.sock"));
            let note = d.note.expect("the fallback is never silent");
            assert!(note.contains(&long), "{note}");
            assert!(note.contains("over this system's limit of 107"), "{note}");
            assert!(note.contains("PIAUTHD_SOCKET"), "{note}");
            // Exactly at the limit still fits.
            let exact =
                "/h/".to_owned() + &"y".repeat(107 - "/h//.local/state/piauthd/piauthd.sock".len());
            let i = with_dirs(BaseDirs {
                home: Some(exact.into()),
                ..BaseDirs::default()
            });
            let d = choose(&i, 107);
            assert_eq!(d.path.as_os_str().len(), 107);
            assert_eq!(d.note, None);
        }

        #[test]
        fn no_home_at_all_falls_back_and_says_so() {
            let d = choose(
                &Inputs {
                    uid: 7,
                    ..Inputs::default()
                },
                107,
            );
            assert_eq!(d.path, Path::new("/tmp/piauthd-7/piauthd.sock"));
            assert!(d.note.unwrap().contains("neither XDG_RUNTIME_DIR nor HOME"));
        }
    }
}
