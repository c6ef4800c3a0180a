//! Rust client for piauthd.
//!
//! ```no_run
//! # async fn demo() -> Result<(), piauth_client::Error> {
//! let mut client = piauth_client::Client::connect_default().await?;
//! let token = client.get_token("openai-codex", 60).await?;
//! // token.access_token is the bearer token; its Debug output is redacted.
//! # Ok(()) }
//! ```
//!
//! Errors are typed ([`Error`]) from the daemon's status code and its
//! `google.rpc.ErrorInfo` reason, so callers can tell "log in again" from
//! "try later" without parsing messages.
//!
//! Nothing is sent until the socket has been checked ([`verify`]): its
//! directory must be the caller's, 0700 and not a link, the socket the
//! caller's, and the server must run as the caller's uid. Otherwise
//! [`Error::Untrusted`] names whose it is.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use piauth_proto::v1 as pb;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

pub mod autostart;
mod error;
mod launch;
pub mod verify;

pub use autostart::StartError;
pub use error::{Error, Reason};
pub use piauth_proto as proto;
pub use piauth_proto::socket::default_path as default_socket_path;
pub use verify::{Owner, Untrusted};

/// A connection to piauthd.
#[derive(Debug, Clone)]
pub struct Client {
    auth: pb::auth_client::AuthClient<Channel>,
    completions: pb::completions_client::CompletionsClient<Channel>,
    socket: PathBuf,
}

/// Deadlines of the calls, so a wedged or hostile daemon never hangs a
/// client. A call that reads memory in the daemon gets [`QUICK`].
const QUICK: Duration = Duration::from_secs(10);
/// GetToken and Refresh may wait for a refresh in flight: pi's lock (up to
/// 40 s) and the issuer's answer (up to 60 s), with room to spare.
const TOKEN: Duration = Duration::from_secs(150);
/// A stream (WatchToken, Login, a completion) must start within this; once
/// it has, it lasts as long as it needs to.
const STREAM_START: Duration = Duration::from_secs(30);

/// `msg` as a request that fails with DEADLINE_EXCEEDED after `limit`.
fn deadline<T>(msg: T, limit: Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(limit);
    req
}

impl Client {
    /// Connects to the default socket (see [`default_socket_path`]), or to
    /// `$PIAUTHD_SOCKET` when set.
    pub async fn connect_default() -> Result<Client, Error> {
        let path = std::env::var_os("PIAUTHD_SOCKET")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(default_socket_path);
        Client::connect(path).await
    }

    /// Connects to the daemon at `socket`, after checking that it is this
    /// user's (see [`verify`]); every later reconnect is checked the same
    /// way. Nothing is sent to a socket that fails a check.
    pub async fn connect(socket: impl AsRef<Path>) -> Result<Client, Error> {
        let socket = socket.as_ref().to_owned();
        let first = dial(&socket).await?;
        // The first connection is already made; later reconnects dial again.
        let first = Arc::new(Mutex::new(Some(first)));
        let path = socket.clone();
        // The authority is a fixed host name: HTTP/2 rejects a socket path there.
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_| {
                let first = first.lock().ok().and_then(|mut f| f.take());
                let path = path.clone();
                async move {
                    let stream = match first {
                        Some(s) => s,
                        None => dial(&path).await.map_err(io::Error::other)?,
                    };
                    Ok::<_, io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| Error::Connect {
                socket: socket.clone(),
                source: io::Error::other(e),
            })?;
        Ok(Client {
            auth: pb::auth_client::AuthClient::new(channel.clone()),
            completions: pb::completions_client::CompletionsClient::new(channel),
            socket,
        })
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Daemon, store and provider state.
    pub async fn status(&mut self) -> Result<pb::StatusResponse, Error> {
        Ok(self
            .auth
            .status(deadline(pb::StatusRequest {}, QUICK))
            .await?
            .into_inner())
    }

    /// An access token for `provider` (empty: `openai-codex`) that stays
    /// valid for at least `min_valid_secs`.
    pub async fn get_token(
        &mut self,
        provider: &str,
        min_valid_secs: u32,
    ) -> Result<pb::Token, Error> {
        self.session_token("", provider, min_valid_secs).await
    }

    /// [`Client::get_token`] for `session` (pi's session id): with several
    /// accounts, a session keeps its account while that account has room.
    pub async fn session_token(
        &mut self,
        session: &str,
        provider: &str,
        min_valid_secs: u32,
    ) -> Result<pb::Token, Error> {
        let req = pb::GetTokenRequest {
            provider: provider.to_owned(),
            min_valid_secs,
            session_id: session.to_owned(),
        };
        Ok(self
            .auth
            .get_token(deadline(req, TOKEN))
            .await?
            .into_inner())
    }

    /// The plan's usage limits per account. `fresh` asks the daemon to
    /// read the backend now rather than serve a read under a minute old.
    pub async fn usage(&mut self, fresh: bool) -> Result<pb::UsageResponse, Error> {
        let req = pb::UsageRequest { fresh };
        Ok(self.auth.usage(deadline(req, TOKEN)).await?.into_inner())
    }

    /// The ChatGPT accounts the daemon keeps, the active one first.
    pub async fn accounts(&mut self) -> Result<pb::AccountsResponse, Error> {
        let req = pb::AccountsRequest {};
        Ok(self.auth.accounts(deadline(req, QUICK)).await?.into_inner())
    }

    /// Makes `account_id` the active account (the one in pi's auth.json).
    pub async fn use_account(&mut self, account_id: &str) -> Result<pb::AccountsResponse, Error> {
        let req = pb::UseAccountRequest {
            account_id: account_id.to_owned(),
            automatic: false,
        };
        Ok(self
            .auth
            .use_account(deadline(req, TOKEN))
            .await?
            .into_inner())
    }

    /// Tells the daemon that a request of `session` on `account_id` met a
    /// usage limit (resetting at `resets_at`, epoch seconds, or 0 when
    /// unknown) before any output; returns the token of the account that
    /// now serves the session.
    pub async fn report_limit(
        &mut self,
        session: &str,
        account_id: &str,
        resets_at: i64,
    ) -> Result<pb::Token, Error> {
        let req = pb::LimitReport {
            session_id: session.to_owned(),
            account_id: account_id.to_owned(),
            resets_at,
            min_valid_secs: 60,
        };
        Ok(self
            .auth
            .report_limit(deadline(req, TOKEN))
            .await?
            .into_inner())
    }

    /// Undoes [`Client::use_account`]: the account is chosen by headroom.
    pub async fn automatic_account(&mut self) -> Result<pb::AccountsResponse, Error> {
        let req = pb::UseAccountRequest {
            account_id: String::new(),
            automatic: true,
        };
        Ok(self
            .auth
            .use_account(deadline(req, QUICK))
            .await?
            .into_inner())
    }

    /// Removes `account_id`; removing the active one makes another active.
    pub async fn remove_account(
        &mut self,
        account_id: &str,
    ) -> Result<pb::AccountsResponse, Error> {
        let req = pb::RemoveAccountRequest {
            account_id: account_id.to_owned(),
        };
        Ok(self
            .auth
            .remove_account(deadline(req, TOKEN))
            .await?
            .into_inner())
    }

    /// Forces a refresh now (through the daemon's single flight) and returns
    /// the new token.
    pub async fn refresh(&mut self, provider: &str) -> Result<pb::Token, Error> {
        let req = pb::RefreshRequest {
            provider: provider.to_owned(),
        };
        Ok(self.auth.refresh(deadline(req, TOKEN)).await?.into_inner())
    }

    /// The current token, then each new one as the daemon obtains it.
    pub async fn watch_token(&mut self, provider: &str) -> Result<TokenStream, Error> {
        self.watch_session_token("", provider).await
    }

    /// [`Client::watch_token`] for `session`: when the session moves to
    /// another account, the stream sends that account's token.
    pub async fn watch_session_token(
        &mut self,
        session: &str,
        provider: &str,
    ) -> Result<TokenStream, Error> {
        let req = pb::WatchTokenRequest {
            provider: provider.to_owned(),
            session_id: session.to_owned(),
        };
        Ok(TokenStream(
            self.auth
                .watch_token(deadline(req, STREAM_START))
                .await?
                .into_inner(),
        ))
    }

    /// Starts a login; its progress arrives on the stream. Dropping the
    /// stream cancels the login.
    pub async fn login(
        &mut self,
        provider: &str,
        method: pb::LoginMethod,
        timeout_secs: u32,
    ) -> Result<LoginStream, Error> {
        let req = pb::LoginRequest {
            provider: provider.to_owned(),
            method: method as i32,
            timeout_secs,
        };
        Ok(LoginStream(
            self.auth
                .login(deadline(req, STREAM_START))
                .await?
                .into_inner(),
        ))
    }

    /// Hands a pasted redirect URL or code to the login in progress.
    pub async fn submit_code(&mut self, provider: &str, input: &str) -> Result<(), Error> {
        let req = pb::SubmitCodeRequest {
            provider: provider.to_owned(),
            input: input.to_owned(),
        };
        self.auth.submit_code(deadline(req, QUICK)).await?;
        Ok(())
    }

    /// Removes the provider's credential. Returns whether there was one.
    pub async fn logout(&mut self, provider: &str) -> Result<bool, Error> {
        let req = pb::LogoutRequest {
            provider: provider.to_owned(),
        };
        Ok(self
            .auth
            .logout(deadline(req, QUICK))
            .await?
            .into_inner()
            .removed)
    }

    /// The generated Auth client, for calls this wrapper does not cover yet.
    pub fn auth(&mut self) -> &mut pb::auth_client::AuthClient<Channel> {
        &mut self.auth
    }

    /// Streams a completion through the daemon (which holds the token).
    pub async fn complete(
        &mut self,
        req: pb::CompletionRequest,
    ) -> Result<CompletionStream, Error> {
        Ok(CompletionStream(
            self.completions
                .stream(deadline(req, STREAM_START))
                .await?
                .into_inner(),
        ))
    }

    /// The models the daemon knows.
    pub async fn list_models(&mut self) -> Result<Vec<pb::Model>, Error> {
        let req = pb::ListModelsRequest::default();
        Ok(self
            .completions
            .list_models(deadline(req, QUICK))
            .await?
            .into_inner()
            .models)
    }

    /// The generated Completions client.
    pub fn completions(&mut self) -> &mut pb::completions_client::CompletionsClient<Channel> {
        &mut self.completions
    }
}

/// Refuses a path that exists and is not a socket, before anything is
/// created beside it (the daemon's instance lock, the autostart lock).
pub fn check_not_other_file(socket: &Path) -> Result<(), Error> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::metadata(socket) else {
        return Ok(());
    };
    let t = meta.file_type();
    let kind = if t.is_socket() {
        return Ok(());
    } else if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else {
        "a special file"
    };
    Err(Error::NotASocket {
        socket: socket.to_owned(),
        kind,
        default: default_socket_path(),
    })
}

/// Checks the socket's directory and the socket, connects, and checks the
/// server's uid: only then is the stream handed to gRPC.
/// How the daemon last on `socket` was started, from the file it left
/// beside it (`piauth_proto::restart`): only a regular file of ours, not a
/// link, holding one plausible line. The socket's directory was checked
/// (ours, 0700) before this is read.
fn restart_command(socket: &Path, euid: u32) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(piauth_proto::restart::path_for(socket))
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.uid() != euid || meta.len() > piauth_proto::restart::MAX_BYTES as u64
    {
        return None;
    }
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let line = text.trim_end_matches('\n');
    piauth_proto::restart::plausible(line).then(|| line.to_owned())
}

async fn dial(socket: &Path) -> Result<UnixStream, Error> {
    check_not_other_file(socket)?;
    let euid = verify::euid();
    let checked = |e: verify::CheckError| match e {
        verify::CheckError::Untrusted(problem) => Error::Untrusted {
            socket: socket.to_owned(),
            problem,
        },
        verify::CheckError::Io { path, source } => Error::Connect {
            socket: path,
            source,
        },
    };
    if verify::check_path(socket, euid).map_err(checked)? == verify::Presence::Absent {
        return Err(Error::NotRunning {
            socket: socket.to_owned(),
            default: default_socket_path(),
            restart: restart_command(socket, euid),
            source: io::ErrorKind::NotFound.into(),
        });
    }
    let stream = UnixStream::connect(socket).await.map_err(|source| {
        let absent = matches!(
            source.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
        );
        if absent {
            Error::NotRunning {
                socket: socket.to_owned(),
                default: default_socket_path(),
                restart: restart_command(socket, euid),
                source,
            }
        } else {
            Error::Connect {
                socket: socket.to_owned(),
                source,
            }
        }
    })?;
    verify::check_peer(&stream, socket, euid).map_err(checked)?;
    Ok(stream)
}

/// Tokens from [`Client::watch_token`].
#[derive(Debug)]
pub struct TokenStream(tonic::Streaming<pb::Token>);

impl TokenStream {
    /// The next token; `Ok(None)` when the daemon ends the stream (shutdown).
    pub async fn next(&mut self) -> Result<Option<pb::Token>, Error> {
        Ok(self.0.message().await?)
    }
}

/// Events from [`Client::login`].
#[derive(Debug)]
pub struct LoginStream(tonic::Streaming<pb::LoginEvent>);

impl LoginStream {
    /// The next event; `Ok(None)` when the daemon ends the stream.
    pub async fn next(&mut self) -> Result<Option<pb::login_event::Event>, Error> {
        loop {
            match self.0.message().await? {
                None => return Ok(None),
                Some(pb::LoginEvent { event: Some(e) }) => return Ok(Some(e)),
                // An event this client does not know (a newer daemon): skip.
                Some(pb::LoginEvent { event: None }) => {}
            }
        }
    }
}

/// The events of a completion, in upstream order. Dropping it cancels the
/// completion (the daemon aborts the upstream request).
#[derive(Debug)]
pub struct CompletionStream(tonic::Streaming<pb::CompletionEvent>);

/// The event type of a text delta.
pub const TEXT_DELTA: &str = "response.output_text.delta";

impl CompletionStream {
    /// The next event; `Ok(None)` after the terminal event.
    pub async fn next(&mut self) -> Result<Option<pb::CompletionEvent>, Error> {
        Ok(self.0.message().await?)
    }

    /// The next piece of output text, skipping every other event;
    /// `Ok(None)` at the end.
    pub async fn next_text(&mut self) -> Result<Option<String>, Error> {
        while let Some(event) = self.next().await? {
            if let Some(text) = text_delta(&event) {
                return Ok(Some(text));
            }
        }
        Ok(None)
    }

    /// The events as a `Stream`.
    pub fn into_stream(
        self,
    ) -> impl tokio_stream::Stream<Item = Result<pb::CompletionEvent, Error>> {
        use tokio_stream::StreamExt;
        self.0.map(|r| r.map_err(Error::from))
    }

    /// Only the text deltas, as a `Stream`.
    pub fn text_deltas(self) -> impl tokio_stream::Stream<Item = Result<String, Error>> {
        use tokio_stream::StreamExt;
        self.into_stream().filter_map(|r| match r {
            Ok(event) => text_delta(&event).map(Ok),
            Err(e) => Some(Err(e)),
        })
    }
}

/// The text of a `response.output_text.delta` event.
pub fn text_delta(event: &pb::CompletionEvent) -> Option<String> {
    if event.r#type != TEXT_DELTA {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&event.data_json).ok()?;
    v.get("delta")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_regular_file_is_not_taken_for_a_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let auth = tmp.path().join("auth.json");
        std::fs::write(&auth, b"{}").unwrap();
        let err = super::check_not_other_file(&auth).unwrap_err();
        assert!(matches!(err, super::Error::NotASocket { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("is a regular file, not a socket"), "{msg}");
        assert!(msg.contains("--socket"), "{msg}");
        assert!(super::check_not_other_file(&tmp.path().join("absent.sock")).is_ok());
    }

    use super::*;

    /// A daemon that accepts and then says nothing never hangs a call: it
    /// fails with DEADLINE_EXCEEDED after the call's deadline.
    #[tokio::test]
    async fn a_silent_daemon_fails_a_call_at_its_deadline() {
        let dir = tempfile::Builder::new()
            .prefix("dl")
            .tempdir_in("/tmp")
            .expect("tempdir");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod 700");
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                conns.push(c);
            }
        });
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(60), async {
            let mut c = Client::connect(&path).await?;
            c.status().await.map(|_| ())
        })
        .await
        .expect("the call ends by itself");
        let took = started.elapsed();
        let err = outcome.expect_err("a silent daemon answers nothing");
        eprintln!("{err}");
        assert!(
            took >= QUICK && took < QUICK + Duration::from_secs(5),
            "ended after {took:?}: {err}"
        );
        held.abort();
    }
}
