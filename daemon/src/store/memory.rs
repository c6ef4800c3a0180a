//! A credential document held in memory: the broker's logic under test,
//! with no disk, no lock and no D-Bus. Nobody else can write it, so it is
//! not locked. Clones share the one document.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A document in memory, named for people.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    name: String,
    doc: Arc<Mutex<Option<Vec<u8>>>>,
    /// Writes fail while set, as a full disk's would.
    full: Arc<AtomicBool>,
}

impl MemoryStore {
    /// A store named `name` holding `bytes` (`None`: nothing stored yet).
    pub fn new(name: &str, bytes: Option<&[u8]>) -> MemoryStore {
        MemoryStore {
            name: name.to_owned(),
            doc: Arc::new(Mutex::new(bytes.map(<[u8]>::to_vec))),
            full: Arc::new(AtomicBool::new(false)),
        }
    }

    /// What it is, for people.
    pub fn describe(&self) -> String {
        format!("the store in memory {:?}", self.name)
    }

    /// The stored bytes, if any.
    pub fn read(&self) -> Option<Vec<u8>> {
        self.doc.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the stored bytes, unless the store is full
    /// ([`MemoryStore::set_full`]).
    pub fn write(&self, bytes: Vec<u8>) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        *self.doc.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        Ok(())
    }

    /// Makes every write fail (`true`) or succeed again, as a disk that
    /// fills up and is cleared.
    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_document() {
        let a = MemoryStore::new("m", None);
        let b = a.clone();
        assert_eq!(b.read(), None);
        a.write(b"{}".to_vec()).unwrap();
        assert_eq!(b.read().as_deref(), Some(&b"{}"[..]));
        b.set_full(true);
        assert!(a.write(b"[]".to_vec()).is_err());
        assert_eq!(
            a.read().as_deref(),
            Some(&b"{}"[..]),
            "a failed write changes nothing"
        );
        assert!(a.describe().contains("\"m\""));
    }
}
