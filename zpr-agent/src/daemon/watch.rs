//! Waiting for the inputs to change, and only for complete changes: a
//! file closed after writing, or a name renamed, created as a symlink or
//! deleted. A file being written (opened, truncated, written for a while)
//! is not read until its writer closes it.
//!
//! Inputs behind symlinks are followed: every symlink on the way from an
//! input's path to the file it ends at is watched in its directory, so
//! editing the target in place, pointing a symlink elsewhere, or swapping
//! a directory symlink the way Kubernetes updates a ConfigMap
//! (`..data -> ..2024_01_01`) each make a reload. The chains are worked
//! out again after every change.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    path::{Component, Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use inotify::{EventMask, EventStream, Inotify, WatchDescriptor, WatchMask, Watches};
use tracing::warn;

/// Changes arriving this close together are one reload.
const SETTLE: Duration = Duration::from_millis(5);

/// Symlinks followed from one input before giving up (as the kernel's
/// own limit for path resolution).
const MAX_SYMLINKS: usize = 40;

/// Directory -> the names in it whose change can change an input.
type Chains = BTreeMap<PathBuf, BTreeSet<OsString>>;

pub struct InputWatch {
    events: EventStream<Vec<u8>>,
    watches: Watches,
    inputs: Vec<PathBuf>,
    /// Each watched directory, with the names that matter in it.
    watched: BTreeMap<WatchDescriptor, (PathBuf, BTreeSet<OsString>)>,
    /// When a change was seen that no reload has answered yet. Kept here,
    /// not in the future, because the run loop's `select!` drops
    /// [`InputWatch::changed`] whenever another event wins the race.
    pending: Option<Instant>,
}

impl InputWatch {
    /// Watches `inputs` (the inventory and the policy files).
    pub fn new(inputs: Vec<PathBuf>) -> anyhow::Result<InputWatch> {
        let inotify = Inotify::init().context("inotify_init")?;
        let events = inotify.into_event_stream(vec![0; 4096])?;
        let mut watch = InputWatch {
            watches: events.watches(),
            events,
            inputs: inputs
                .iter()
                .map(std::path::absolute)
                .collect::<Result<_, _>>()?,
            watched: BTreeMap::new(),
            pending: None,
        };
        watch.rewatch()?;
        Ok(watch)
    }

    /// Waits until an input changed completely; returns when the first
    /// change was seen (for reload latency), after the burst has settled.
    /// Cancel-safe: a change seen before the future was dropped is
    /// returned by the next call.
    pub async fn changed(&mut self) -> anyhow::Result<Instant> {
        while self.pending.is_none() {
            let event = self.events.next().await.context("inotify stream ended")??;
            if self.concerns(&event.wd, event.mask, event.name.as_ref()) {
                self.pending = Some(Instant::now());
            }
        }
        while let Ok(Some(_)) = tokio::time::timeout(SETTLE, self.events.next()).await {}
        if let Err(err) = self.rewatch() {
            warn!("following the inputs' symlinks again: {err:#}");
        }
        Ok(self.pending.take().unwrap_or_else(Instant::now))
    }

    fn concerns(&self, watch: &WatchDescriptor, mask: EventMask, name: Option<&OsString>) -> bool {
        let Some((directory, names)) = self.watched.get(watch) else {
            return false;
        };
        let Some(name) = name.filter(|name| names.contains(*name)) else {
            return false;
        };
        // A regular file just created is empty: its writer's close follows.
        !mask.contains(EventMask::CREATE) || directory.join(name).is_symlink()
    }

    /// Watches the directories of every input's chain of symlinks as it
    /// is now, and nothing else.
    fn rewatch(&mut self) -> anyhow::Result<()> {
        let mut chains = Chains::new();
        for input in &self.inputs {
            chain(input, &mut chains, &mut 0);
        }
        let mask = WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::CREATE
            | WatchMask::DELETE;
        let mut watched = BTreeMap::new();
        for (directory, names) in chains {
            match self.watches.add(&directory, mask) {
                Ok(watch) => {
                    watched.insert(watch, (directory, names));
                }
                // Only a directory of an input as given must exist; one a
                // dangling symlink points into is watched when it appears.
                Err(_) if !self.inputs.iter().any(|i| i.parent() == Some(&directory)) => {}
                Err(err) => {
                    Err(err).with_context(|| format!("watching {}", directory.display()))?
                }
            }
        }
        for stale in self.watched.keys() {
            if !watched.contains_key(stale) {
                let _ = self.watches.remove(stale.clone());
            }
        }
        self.watched = watched;
        Ok(())
    }
}

/// Adds to `chains` every (directory, name) on the way from `path` to the
/// file it ends at: the path's own name, each symlink in its directories,
/// and the same for every symlink's target.
fn chain(path: &Path, chains: &mut Chains, followed: &mut usize) {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let directory = resolve(parent, chains, followed);
    chains
        .entry(directory.clone())
        .or_default()
        .insert(name.to_owned());
    if let Ok(target) = std::fs::read_link(directory.join(name))
        && *followed < MAX_SYMLINKS
    {
        *followed += 1;
        chain(&directory.join(target), chains, followed);
    }
}

/// `directory` with its symlinks resolved, each recorded in `chains`.
fn resolve(directory: &Path, chains: &mut Chains, followed: &mut usize) -> PathBuf {
    let mut resolved = PathBuf::from("/");
    for component in directory.components() {
        match component {
            Component::Normal(name) => {
                let candidate = resolved.join(name);
                match std::fs::read_link(&candidate) {
                    Ok(target) if *followed < MAX_SYMLINKS => {
                        *followed += 1;
                        chains
                            .entry(resolved.clone())
                            .or_default()
                            .insert(name.to_owned());
                        resolved = resolve(&resolved.join(target), chains, followed);
                    }
                    _ => resolved = candidate,
                }
            }
            Component::ParentDir => {
                resolved.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_follow_file_and_directory_symlinks() {
        let root = std::env::temp_dir().join(format!("zpr-chain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("..2024_01")).unwrap();
        std::fs::write(root.join("..2024_01/p.zpr"), "").unwrap();
        std::os::unix::fs::symlink("..2024_01", root.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/p.zpr", root.join("p.zpr")).unwrap();
        let mut chains = Chains::new();
        chain(&root.join("p.zpr"), &mut chains, &mut 0);
        let names = |directory: &Path| -> Vec<String> {
            chains[directory]
                .iter()
                .map(|n| n.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(&root), ["..data", "p.zpr"]);
        assert_eq!(names(&root.join("..2024_01")), ["p.zpr"]);
        let _ = std::fs::remove_dir_all(&root);
    }
}
