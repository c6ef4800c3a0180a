//! The shelf: where the ChatGPT accounts other than the one in pi's
//! `auth.json` are kept, one file each, in piauthd's own data directory
//! (never beside pi's files). Each file has the shape of pi's `auth.json`
//! with one `openai-codex` entry, so each account's keeper is the same
//! broker as the active one's, on a store of its own.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::broker::{Broker, Clock, Duties, Refresher, Slot, inflight::InFlight};
use crate::paths::StoreId;
use crate::store::CredentialStore;

/// What every shelved account's keeper is made of.
#[derive(Debug, Clone)]
pub struct Shelf {
    /// `None`: there is nowhere to keep a second account.
    dir: Option<PathBuf>,
    /// Why there is none, for people.
    without: &'static str,
    /// Where the records of refreshes on the wire go.
    state_dir: PathBuf,
    issuer: Arc<dyn Refresher>,
    lead_ms: i64,
    clock: Clock,
}

/// Why an account cannot be kept on the shelf.
#[derive(Debug, thiserror::Error)]
pub enum ShelfError {
    #[error(
        "piauthd keeps only one account here ({why}); remove the current one with \
         `pi-authctl logout` first to log in as another"
    )]
    NoDirectory { why: &'static str },
    #[error("cannot list the accounts in {}: {cause}", dir.display())]
    List { dir: PathBuf, cause: io::Error },
}

impl Shelf {
    /// A shelf in `dir`; without one, `without` says why.
    pub fn new(
        dir: Option<PathBuf>,
        without: &'static str,
        state_dir: PathBuf,
        issuer: Arc<dyn Refresher>,
        lead_ms: i64,
        clock: Clock,
    ) -> Shelf {
        Shelf {
            dir,
            without,
            state_dir,
            issuer,
            lead_ms,
            clock,
        }
    }

    /// The store and record of `account`'s file.
    pub fn slot(&self, account: &str) -> Result<Slot, ShelfError> {
        let dir = self
            .dir
            .as_deref()
            .ok_or(ShelfError::NoDirectory { why: self.without })?;
        let path = dir.join(file_name(account));
        Ok(Slot {
            inflight: InFlight::new(
                &self.state_dir,
                &StoreId::named(&path.display().to_string()),
            ),
            store: CredentialStore::file(path),
        })
    }

    /// Starts the keeper of a shelved account, with its schedule: a
    /// limited account keeps being refreshed, so it works the moment its
    /// window resets.
    pub async fn start(&self, slot: Slot) -> Arc<Broker> {
        let broker = Broker::with_parts(
            slot.store,
            self.issuer.clone(),
            self.lead_ms,
            slot.inflight,
            self.clock.clone(),
            Duties {
                schedule: true,
                changes: None,
            },
        );
        broker.reload().await;
        broker
    }

    /// The accounts on the shelf, by the names of their files. Blocking.
    pub fn list(&self) -> Result<Vec<String>, ShelfError> {
        let Some(dir) = self.dir.as_deref() else {
            return Ok(Vec::new());
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(cause) => {
                return Err(ShelfError::List {
                    dir: dir.to_owned(),
                    cause,
                });
            }
        };
        let mut accounts: Vec<String> = entries
            .flatten()
            .filter_map(|e| account_of(&e.path()))
            .collect();
        accounts.sort();
        Ok(accounts)
    }

    /// Deletes `account`'s file (after it moved into `auth.json`, or was
    /// removed). Blocking; a file already gone is fine.
    pub fn delete(&self, account: &str) -> io::Result<()> {
        let Some(dir) = self.dir.as_deref() else {
            return Ok(());
        };
        match std::fs::remove_file(dir.join(file_name(account))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl Shelf {
    /// The account `pi-authctl accounts use` prefers, if any. Blocking.
    pub fn preference(&self) -> Option<String> {
        let path = self.dir.as_deref()?.join(PREFERENCE);
        let text = std::fs::read_to_string(path).ok()?;
        let id = text.trim();
        (!id.is_empty()).then(|| id.to_owned())
    }

    /// Records the preferred account (`None`: choose by headroom).
    /// Blocking; 0600, written durably.
    pub fn set_preference(&self, account: Option<&str>) -> io::Result<()> {
        let Some(dir) = self.dir.as_deref() else {
            return Ok(());
        };
        crate::store::ensure_dir(dir)?;
        let path = dir.join(PREFERENCE);
        match account {
            Some(id) => crate::store::durable::write(&path, format!("{id}\n").as_bytes()),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }
}

/// The file that names the preferred account (not a `.json`, so never
/// taken for an account).
const PREFERENCE: &str = "preferred";

/// The file an account is kept in: its id, with anything but ASCII
/// letters, digits, `-` and `_` written as `%XX`, so no id can name a
/// path elsewhere. Pure.
pub fn file_name(account: &str) -> String {
    let mut name = String::with_capacity(account.len() + 5);
    for b in account.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name.push_str(".json");
    name
}

/// The account a shelf file keeps, from its name; `None` for anything
/// else in the directory (a lock, a temporary file). Pure.
pub fn account_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?.strip_suffix(".json")?;
    let mut out = Vec::with_capacity(name.len());
    let mut bytes = name.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            b if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' => out.push(b),
            _ => return None,
        }
    }
    let account = String::from_utf8(out).ok()?;
    (!account.is_empty() && file_name(&account) == name.to_owned() + ".json").then_some(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_account_id_has_one_file_inside_the_shelf() {
        for id in [
            "acc-1",
            "a1b2c3d4-e5f6",
            "../../etc/passwd",
            "a/b",
            "ü",
            "x%41",
        ] {
            let name = file_name(id);
            assert!(!name.contains('/') && !name.starts_with('.'), "{name}");
            assert_eq!(
                account_of(Path::new(&name)).as_deref(),
                Some(id),
                "{id} -> {name}"
            );
        }
        assert_eq!(file_name("acc-1"), "acc-1.json");
        for other in [
            "acc-1.json.lock",
            "acc-1.json.tmp",
            ".json",
            "%4.json",
            "a.b.json",
        ] {
            assert_eq!(account_of(Path::new(other)), None, "{other}");
        }
        // One spelling per account: an escape where none is needed is not
        // a second name for it.
        assert_eq!(account_of(Path::new("%41.json")), None);
    }
}
