//! Notices when another process (pi, or another piauthd) changes `auth.json`.
//!
//! The file is replaced by rename (by us) or rewritten in place (by pi), so the
//! watch is on the directory and filters by name. Events only say "look
//! again"; the receiver coalesces bursts and re-reads the file, so a missed
//! or duplicated event is harmless. This uses the OS's notification API
//! (inotify, kqueue): no polling, no CPU while idle.

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Whether an event can mean new contents. Opening, reading and closing
/// the file without writing are not changes: reacting to them would make
/// every reload trigger the next one.
pub fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        _ => true,
    }
}

/// Keeps the OS watch alive; dropping it stops the notifications.
pub struct FileWatcher {
    _inner: notify::RecommendedWatcher,
}

impl std::fmt::Debug for FileWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileWatcher")
    }
}

/// Watches `path` (and, if it is a symlink, its target). The receiver gets a
/// unit each time the file may have changed; bursts collapse into one.
pub fn watch_file(path: &Path) -> notify::Result<(FileWatcher, mpsc::Receiver<()>)> {
    let mut names: Vec<PathBuf> = vec![path.to_owned()];
    if let Ok(real) = std::fs::canonicalize(path)
        && real != path
    {
        names.push(real);
    }
    let watched_names = names.clone();
    let (tx, rx) = mpsc::channel(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(ev) if !changes_content(&ev.kind) => false,
            Ok(ev) => ev
                .paths
                .iter()
                .any(|p| watched_names.iter().any(|n| p.file_name() == n.file_name())),
            // On an overflow or error, look again to be safe.
            Err(_) => true,
        };
        if relevant {
            // A full channel already holds a pending "look again".
            let _ = tx.try_send(());
        }
    })?;
    let mut dirs: Vec<PathBuf> = names
        .iter()
        .filter_map(|n| n.parent().map(Path::to_owned))
        .collect();
    dirs.dedup();
    for dir in dirs {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    }
    Ok((FileWatcher { _inner: watcher }, rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RenameMode};

    #[test]
    fn reads_are_not_changes() {
        assert!(!changes_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!changes_content(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::Any
        ))));
        assert!(changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(changes_content(&EventKind::Create(CreateKind::File)));
    }
}
