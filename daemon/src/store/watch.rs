//! Notices when another process (pi, or another piauthd) changes `auth.json`.
//!
//! The file is replaced by rename (by us) or rewritten in place (by pi), so the
//! watch is on the directory and filters by name. Events only say "look
//! again"; the receiver coalesces bursts and re-reads the file, so a missed
//! or duplicated event is harmless. This uses the OS's notification API
//! (inotify, kqueue): no polling, no CPU while idle.

use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

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
