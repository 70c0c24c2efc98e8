//! Backups of the running store: with `--backup-dir`, `pled serve` writes a consistent copy
//! of the whole store (every org) at start and every `--backup-every`, and keeps the newest
//! `--backup-keep`.
//!
//! Each copy is a RocksDB checkpoint ([`Store::checkpoint`]), written under a `.partial-`
//! name and renamed to `pled-<UTC time>` once complete, so a directory named `pled-…` is
//! always a whole store: `pled verify --data-dir` checks it, `pled serve --data-dir` runs on
//! (a copy of) it. On the same filesystem as the data directory a checkpoint hard-links the
//! table files, so it is quick and takes little space, but it is on the same disk: copy
//! finished backups elsewhere for disaster recovery.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pled_core::RecordedAt;
use pled_store::Store;
use tokio::sync::watch;

/// The prefix of a finished backup's directory name.
pub const PREFIX: &str = "pled-";
/// The prefix of a backup being written.
const PARTIAL: &str = ".partial-";

/// Writes one backup into `dir` (created if needed), then removes all but the newest `keep`
/// (and what an interrupted backup left). Returns the new backup's path.
pub fn take(store: &Store, dir: &Path, keep: usize) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating the backup directory {}", dir.display()))?;
    // RFC 3339 without the characters file systems and shells dislike; it sorts in time order.
    let name = format!("{PREFIX}{}", RecordedAt::now().as_str().replace([':', '.'], ""));
    let partial = dir.join(format!("{PARTIAL}{name}"));
    let done = dir.join(&name);
    store.checkpoint(&partial).map_err(|e| anyhow::anyhow!("checkpoint into {}: {e}", partial.display()))?;
    std::fs::rename(&partial, &done).with_context(|| format!("renaming {} to {name}", partial.display()))?;
    prune(dir, keep)?;
    Ok(done)
}

/// Removes the leftovers of interrupted backups and all finished ones but the newest `keep`.
fn prune(dir: &Path, keep: usize) -> std::io::Result<()> {
    let mut finished = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(PARTIAL) {
            std::fs::remove_dir_all(entry.path())?;
        } else if name.starts_with(PREFIX) {
            finished.push(name);
        }
    }
    finished.sort_unstable();
    let stale = finished.len().saturating_sub(keep.max(1));
    for name in &finished[..stale] {
        std::fs::remove_dir_all(dir.join(name))?;
    }
    Ok(())
}

/// Takes a backup now and then every `every`, until `stopped`. A failed backup is logged and
/// counted; the next one is tried at the next interval.
pub async fn run(store: Store, dir: PathBuf, every: Duration, keep: usize, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => return,
        }
        let (store, dir2) = (store.clone(), dir.clone());
        let started = Instant::now();
        let taken = tokio::task::spawn_blocking(move || take(&store, &dir2, keep)).await;
        match taken.unwrap_or_else(|e| Err(anyhow::anyhow!("the backup task failed: {e}"))) {
            Ok(path) => {
                metrics::counter!("pled_backups_total", "result" => "ok").increment(1);
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                metrics::gauge!("pled_backup_last_success_timestamp_seconds").set(now.as_secs_f64());
                tracing::info!(path = %path.display(), ms = started.elapsed().as_millis() as u64, "backup written");
            }
            Err(e) => {
                metrics::counter!("pled_backups_total", "result" => "failed").increment(1);
                tracing::error!(dir = %dir.display(), error = format!("{e:#}"), "backup failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn pruning_keeps_the_newest_and_removes_interrupted_backups() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["pled-2026-12-03T100000000000Z", "pled-2026-12-03T110000000000Z", "pled-2026-12-03T090000000000Z"]
        {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        std::fs::create_dir(dir.path().join(".partial-pled-2026-12-03T120000000000Z")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "kept").unwrap();
        prune(dir.path(), 2).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["notes.txt", "pled-2026-12-03T100000000000Z", "pled-2026-12-03T110000000000Z"]);
    }
}
