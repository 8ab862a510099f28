//! What brings the agent its inputs' changes, sharing the agent's loop:
//! the watched files of `zpr run`, or (composed by the CLI) the management
//! API serving a store, or a fleet store's watch. The agent knows only
//! this interface, so the API and the stores sit beside it, not under it.

use std::{path::PathBuf, time::Instant};

use super::{Agent, Guard, watch::InputWatch};
use crate::store::Snapshot;

#[allow(
    async_fn_in_trait,
    reason = "run on the agent's own one-thread runtime"
)]
pub trait Companion {
    /// Called once the agent holds its lock, before it starts: for inputs
    /// from a store, the snapshot to start from.
    async fn prepare(&mut self) -> anyhow::Result<Option<Snapshot>>;

    /// Called once the agent runs (its first generation is applied or it
    /// kept the pinned one).
    fn started(&mut self, agent: &mut Agent) -> anyhow::Result<()>;

    /// Waits for the next change (or request) and carries it out with the
    /// agent. An error stops the agent (enforcement stays pinned).
    async fn next(&mut self, agent: &mut Agent) -> anyhow::Result<()>;

    /// The agent wrote new statement usage (`zpr usage`): a fleet's agent
    /// reports it in its node record.
    fn usage_written(&mut self, _agent: &Agent) {}
}

/// `zpr run`'s inputs: files, reloaded when a complete change lands.
pub struct FileInputs {
    files: Vec<PathBuf>,
    /// Made in the agent's runtime, before the agent first reads the files
    /// (a change between the two is not missed).
    watch: Option<InputWatch>,
}

impl FileInputs {
    pub fn new(inventory: PathBuf, policies: Vec<PathBuf>) -> FileInputs {
        FileInputs {
            files: std::iter::once(inventory).chain(policies).collect(),
            watch: None,
        }
    }
}

impl Companion for FileInputs {
    async fn prepare(&mut self) -> anyhow::Result<Option<Snapshot>> {
        self.watch = Some(InputWatch::new(self.files.clone())?);
        Ok(None)
    }

    fn started(&mut self, _agent: &mut Agent) -> anyhow::Result<()> {
        Ok(())
    }

    async fn next(&mut self, agent: &mut Agent) -> anyhow::Result<()> {
        let Some(watch) = self.watch.as_mut() else {
            return std::future::pending().await;
        };
        let since: Instant = watch.changed().await?;
        agent.reload("input files changed", since, Guard::Unprotect);
        Ok(())
    }
}
