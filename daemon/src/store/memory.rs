//! A credential document held in memory: the broker's logic under test,
//! with no disk, no lock and no D-Bus. Nobody else can write it, so it is
//! not locked. Clones share the one document.

use std::sync::{Arc, Mutex};

/// A document in memory, named for people.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    name: String,
    doc: Arc<Mutex<Option<Vec<u8>>>>,
}

impl MemoryStore {
    /// A store named `name` holding `bytes` (`None`: nothing stored yet).
    pub fn new(name: &str, bytes: Option<&[u8]>) -> MemoryStore {
        MemoryStore {
            name: name.to_owned(),
            doc: Arc::new(Mutex::new(bytes.map(<[u8]>::to_vec))),
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

    /// Replaces the stored bytes.
    pub fn write(&self, bytes: Vec<u8>) {
        *self.doc.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
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
        a.write(b"{}".to_vec());
        assert_eq!(b.read().as_deref(), Some(&b"{}"[..]));
        assert!(a.describe().contains("\"m\""));
    }
}
