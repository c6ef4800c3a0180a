//! The OS keyring as the credential store (`--store keyring`).
//!
//! The document piauthd manages (the `openai-codex` entry, in `auth.json`'s
//! format) is one keyring item: service `piauthd`, account `auth.json`. The
//! `keyring` crate is blocking, and its Secret Service backend must not run
//! on the async runtime, so every call runs on a thread of its own.
//!
//! At start-up [`KeyringStore::self_test`] writes, reads and deletes a probe
//! item. If the store is missing, locked or does not give back what was
//! written, the daemon refuses to start rather than run with credentials it
//! cannot keep.

use std::io;

/// The keyring service name of every piauthd item.
pub const SERVICE: &str = "piauthd";
/// The item holding the credential document.
pub const ACCOUNT: &str = "auth.json";

/// The OS keyring (macOS Keychain, Secret Service, Windows Credential Manager).
#[derive(Debug, Clone)]
pub struct KeyringStore {
    service: String,
    account: String,
}

impl Default for KeyringStore {
    fn default() -> Self {
        KeyringStore {
            service: SERVICE.into(),
            account: ACCOUNT.into(),
        }
    }
}

/// Runs `f` on a thread of its own, off the async runtime. No deadline: the
/// keyring may be waiting for the user to unlock it.
async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    super::off_runtime("piauthd-keyring", f).await
}

fn to_io(e: keyring::Error) -> io::Error {
    io::Error::other(format!("OS keyring: {e}"))
}

impl KeyringStore {
    /// Where to find it, for people.
    pub fn describe(&self) -> String {
        format!(
            "OS keyring (service {:?}, account {:?})",
            self.service, self.account
        )
    }

    /// Reads the stored document; `Ok(None)` when there is none.
    pub async fn read(&self) -> io::Result<Option<Vec<u8>>> {
        let (service, account) = (self.service.clone(), self.account.clone());
        off_runtime(move || {
            let entry = keyring::Entry::new(&service, &account).map_err(to_io)?;
            match entry.get_secret() {
                Ok(bytes) => Ok(Some(bytes)),
                Err(keyring::Error::NoEntry) => Ok(None),
                Err(e) => Err(to_io(e)),
            }
        })
        .await?
    }

    /// Replaces the stored document.
    pub async fn write(&self, bytes: Vec<u8>) -> io::Result<()> {
        let (service, account) = (self.service.clone(), self.account.clone());
        off_runtime(move || {
            let entry = keyring::Entry::new(&service, &account).map_err(to_io)?;
            entry.set_secret(&bytes).map_err(to_io)
        })
        .await?
    }

    /// Removes the stored document, if any.
    pub async fn delete(&self) -> io::Result<()> {
        let (service, account) = (self.service.clone(), self.account.clone());
        off_runtime(move || {
            let entry = keyring::Entry::new(&service, &account).map_err(to_io)?;
            match entry.delete_credential() {
                Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                Err(e) => Err(to_io(e)),
            }
        })
        .await?
    }

    /// Writes, reads back and deletes a probe item.
    pub async fn self_test(&self) -> io::Result<()> {
        let service = self.service.clone();
        off_runtime(move || {
            let probe = format!("probe-{}", std::process::id());
            let entry = keyring::Entry::new(&service, &probe).map_err(to_io)?;
            let value = format!("piauthd self-test {}", std::process::id());
            entry.set_password(&value).map_err(to_io)?;
            let back = entry.get_password().map_err(to_io);
            let _ = entry.delete_credential();
            match back {
                Ok(v) if v == value => Ok(()),
                Ok(_) => Err(io::Error::other(
                    "OS keyring gave back something else than was written",
                )),
                Err(e) => Err(e),
            }
        })
        .await?
    }
}
