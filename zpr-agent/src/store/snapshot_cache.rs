//! The last snapshot an agent applied, kept on its host, so an agent that
//! starts while its store is unreachable enforces what it last had rather
//! than nothing.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{
    Snapshot,
    records::{self, Records},
};

#[derive(Serialize, Deserialize)]
struct Cached {
    /// The store it came from: a cache of another tenancy is never used.
    location: String,
    revision: u64,
    /// The etcd cluster it was read from.
    #[serde(default)]
    cluster: Option<u64>,
    records: Records,
}

pub struct SnapshotCache {
    path: PathBuf,
    location: String,
}

impl SnapshotCache {
    pub fn new(run_dir: &Path, location: String) -> SnapshotCache {
        SnapshotCache {
            path: run_dir.join("store-snapshot.json"),
            location,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the cache atomically (a crash leaves the old one or the new).
    pub fn write(&self, snapshot: &Snapshot) -> anyhow::Result<()> {
        let cached = Cached {
            location: self.location.clone(),
            revision: snapshot.revision,
            cluster: snapshot.cluster,
            records: records::to_records(&snapshot.tenancy)?,
        };
        crate::private_file::replace(&self.path, &serde_json::to_vec(&cached)?)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// The snapshot kept in `path`, whichever store it came from.
    pub fn read_file(path: &Path) -> anyhow::Result<Snapshot> {
        let cache = SnapshotCache {
            path: path.to_owned(),
            location: String::new(),
        };
        let (_, snapshot) = cache
            .read_cached()?
            .with_context(|| format!("{} does not exist", path.display()))?;
        Ok(snapshot)
    }

    /// The cached snapshot of this store, if there is one.
    pub fn read(&self) -> anyhow::Result<Option<Snapshot>> {
        Ok(self
            .read_cached()?
            .filter(|(location, _)| *location == self.location)
            .map(|(_, snapshot)| snapshot))
    }

    /// The snapshot in the file, and the store it came from.
    fn read_cached(&self) -> anyhow::Result<Option<(String, Snapshot)>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).context(format!("reading {}", self.path.display())),
        };
        let cached: Cached = serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {}", self.path.display()))?;
        let tenancy = records::from_texts(&cached.records)
            .with_context(|| format!("reading {}", self.path.display()))?;
        Ok(Some((
            cached.location,
            Snapshot {
                tenancy,
                revision: cached.revision,
                cluster: cached.cluster,
            },
        )))
    }
}
