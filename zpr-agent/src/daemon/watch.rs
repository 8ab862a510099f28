//! Waiting for the inputs to change: inotify on the directories holding
//! them (editors replace files by renaming), filtered by file name.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use inotify::{EventStream, Inotify, WatchDescriptor, WatchMask};

use super::{AgentConfig, InputSource};

/// Changes arriving this close together are one reload.
const SETTLE: Duration = Duration::from_millis(5);

pub struct InputWatch {
    events: EventStream<Vec<u8>>,
    /// Directory watch -> the file names of inputs in it.
    inputs: BTreeMap<WatchDescriptor, BTreeSet<OsString>>,
    /// When a change was seen that no reload has answered yet. Kept here,
    /// not in the future, because the run loop's `select!` drops
    /// [`InputWatch::changed`] whenever another event wins the race.
    pending: Option<Instant>,
}

impl InputWatch {
    pub fn new(config: &AgentConfig) -> anyhow::Result<InputWatch> {
        let inotify = Inotify::init().context("inotify_init")?;
        let mut by_directory: BTreeMap<PathBuf, BTreeSet<OsString>> = BTreeMap::new();
        let InputSource::Files {
            inventory,
            policies,
        } = &config.inputs
        else {
            anyhow::bail!("only input files are watched");
        };
        for path in std::iter::once(inventory).chain(policies) {
            let (directory, name) = split(path)?;
            by_directory.entry(directory).or_default().insert(name);
        }
        let mut inputs = BTreeMap::new();
        for (directory, names) in by_directory {
            let mask = WatchMask::CLOSE_WRITE
                | WatchMask::MOVED_TO
                | WatchMask::CREATE
                | WatchMask::DELETE
                | WatchMask::MODIFY;
            let watch = inotify
                .watches()
                .add(&directory, mask)
                .with_context(|| format!("watching {}", directory.display()))?;
            inputs.insert(watch, names);
        }
        Ok(InputWatch {
            events: inotify.into_event_stream(vec![0; 4096])?,
            inputs,
            pending: None,
        })
    }

    /// Waits until an input file changes; returns when the first change
    /// was seen (for reload latency), after the burst has settled.
    /// Cancel-safe: a change seen before the future was dropped is
    /// returned by the next call.
    pub async fn changed(&mut self) -> anyhow::Result<Instant> {
        while self.pending.is_none() {
            let event = self.events.next().await.context("inotify stream ended")??;
            if self.concerns(&event.wd, event.name.as_ref()) {
                self.pending = Some(Instant::now());
            }
        }
        while let Ok(Some(_)) = tokio::time::timeout(SETTLE, self.events.next()).await {}
        Ok(self.pending.take().unwrap_or_else(Instant::now))
    }

    fn concerns(&self, watch: &WatchDescriptor, name: Option<&OsString>) -> bool {
        name.is_some_and(|name| {
            self.inputs
                .get(watch)
                .is_some_and(|names| names.contains(name))
        })
    }
}

fn split(path: &Path) -> anyhow::Result<(PathBuf, OsString)> {
    let absolute = std::path::absolute(path)?;
    let name = absolute
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?
        .to_owned();
    let directory = absolute
        .parent()
        .with_context(|| format!("{} has no directory", path.display()))?
        .to_path_buf();
    Ok((directory, name))
}
