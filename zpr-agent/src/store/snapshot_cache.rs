//! The last snapshot an agent applied, kept on its host, so an agent that
//! starts while its store is unreachable enforces what it last had rather
//! than nothing.

use std::{
    any::Any,
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{
    Snapshot,
    records::{self, RecordSink, Records},
};

/// The file: where the snapshot came from, and its records.
#[derive(Serialize, Deserialize)]
struct Cached {
    /// The store it came from: a cache of another tenancy is never used.
    location: String,
    revision: u64,
    /// The etcd cluster it was read from.
    #[serde(default)]
    cluster: Option<u64>,
    /// Each record's JSON as it is.
    #[serde(default, skip_serializing)]
    values: Option<BTreeMap<String, Box<RawValue>>>,
    /// Each record's JSON text as a string, as caches were written
    /// before `values`: still read.
    #[serde(default, skip_serializing)]
    records: Option<Records>,
}

/// Records written straight into the file as JSON values: a map of their
/// texts, encoded again as strings, was most of an agent's time writing
/// a large tenancy's cache after every change.
struct RecordsWriter<'a> {
    file: Vec<u8>,
    first: bool,
    /// What the writes made of each shared resource, updated by this one.
    kept: &'a mut KeptRecords,
    /// This write's number: a kept record this write did not meet is gone.
    write: u64,
}

/// Each shared resource written, by key: the resource itself (held, so
/// that its address names it alone while kept), its JSON, and the last
/// write that met it.
type KeptRecords = HashMap<String, KeptRecord>;

struct KeptRecord {
    resource: Arc<dyn Any + Send + Sync>,
    json: Box<[u8]>,
    write: u64,
}

impl RecordsWriter<'_> {
    fn key(&mut self, key: &str) -> anyhow::Result<()> {
        if !std::mem::take(&mut self.first) {
            self.file.push(b',');
        }
        serde_json::to_writer(&mut self.file, key)?;
        self.file.push(b':');
        Ok(())
    }
}

impl RecordSink for RecordsWriter<'_> {
    fn put<T: Serialize>(&mut self, key: &str, value: &T) -> anyhow::Result<()> {
        self.key(key)?;
        serde_json::to_writer(&mut self.file, value)?;
        Ok(())
    }

    /// A resource met last time is not serialized again: at 100,000
    /// statements that was most of writing the cache after a change.
    fn put_shared<T: Serialize + Send + Sync + 'static>(
        &mut self,
        key: &str,
        value: &Arc<T>,
    ) -> anyhow::Result<()> {
        self.key(key)?;
        let same =
            |kept: &KeptRecord| std::ptr::addr_eq(Arc::as_ptr(&kept.resource), Arc::as_ptr(value));
        match self.kept.get_mut(key) {
            Some(kept) if same(kept) => kept.write = self.write,
            _ => {
                let record = KeptRecord {
                    resource: value.clone(),
                    json: serde_json::to_vec(value)?.into_boxed_slice(),
                    write: self.write,
                };
                self.kept.insert(key.to_owned(), record);
            }
        }
        self.file.extend_from_slice(&self.kept[key].json);
        Ok(())
    }
}

pub struct SnapshotCache {
    path: PathBuf,
    location: String,
    kept: KeptRecords,
    writes: u64,
    /// The size of the last file written: the next is about as large.
    last_size: usize,
}

impl SnapshotCache {
    pub fn new(run_dir: &Path, location: String) -> SnapshotCache {
        SnapshotCache {
            path: run_dir.join("store-snapshot.json"),
            location,
            kept: KeptRecords::new(),
            writes: 0,
            last_size: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the cache atomically (a crash leaves the old one or the new).
    pub fn write(&mut self, snapshot: &Snapshot) -> anyhow::Result<()> {
        // A [`Cached`] whose values are written one by one as they come.
        let header = serde_json::to_string(&Cached {
            location: self.location.clone(),
            revision: snapshot.revision,
            cluster: snapshot.cluster,
            values: None,
            records: None,
        })?;
        let header = header
            .strip_suffix('}')
            .context("a cache's header is a JSON object")?;
        self.writes += 1;
        let mut file = Vec::with_capacity(self.last_size + self.last_size / 8);
        file.extend_from_slice(format!("{header},\"values\":{{").as_bytes());
        let mut writer = RecordsWriter {
            file,
            first: true,
            kept: &mut self.kept,
            write: self.writes,
        };
        let written = records::write_records(&snapshot.tenancy, &mut writer);
        let mut file = writer.file;
        let write = self.writes;
        self.kept.retain(|_, kept| kept.write == write);
        written?;
        file.extend_from_slice(b"}}");
        self.last_size = file.len();
        crate::private_file::replace(&self.path, &file)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// The snapshot kept in `path`, whichever store it came from.
    pub fn read_file(path: &Path) -> anyhow::Result<Snapshot> {
        let cache = SnapshotCache {
            path: path.to_owned(),
            location: String::new(),
            kept: KeptRecords::new(),
            writes: 0,
            last_size: 0,
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
        let texts = match (cached.values, cached.records) {
            (Some(values), None) => values
                .into_iter()
                .map(|(key, value)| (key, value.get().to_owned()))
                .collect(),
            (None, Some(texts)) => texts,
            _ => anyhow::bail!(
                "reading {}: it holds neither `values` nor `records`, or both",
                self.path.display()
            ),
        };
        let tenancy = records::from_texts(&texts)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::seeded_tenancy;

    fn cache() -> (PathBuf, SnapshotCache) {
        let directory = std::env::temp_dir().join(format!(
            "zpr-snapshot-cache-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&directory).unwrap();
        let cache = SnapshotCache::new(&directory, "etcd://127.0.0.1:2379/t".to_owned());
        (directory, cache)
    }

    #[test]
    fn a_written_snapshot_reads_back_as_it_was_and_a_file_of_the_old_layout_still_reads() {
        let (directory, mut cache) = cache();
        let mut tenancy = seeded_tenancy();
        tenancy.tenancy_id = Some("t \"quoted\" \u{e9}".to_owned());
        let snapshot = Snapshot {
            tenancy,
            revision: 42,
            cluster: Some(7),
        };
        cache.write(&snapshot).unwrap();
        let read = cache.read().unwrap().expect("written");
        assert_eq!(
            (read.tenancy, read.revision, read.cluster),
            (snapshot.tenancy.clone(), 42, Some(7))
        );
        // Written again, changed: what was kept of the unchanged
        // resources is used again, the changed ones are written anew.
        let first = std::fs::read(cache.path()).unwrap();
        cache.write(&snapshot).unwrap();
        assert_eq!(
            std::fs::read(cache.path()).unwrap(),
            first,
            "the same snapshot"
        );
        let mut changed = Snapshot {
            tenancy: snapshot.tenancy.clone(),
            revision: 43,
            cluster: Some(7),
        };
        let endpoint = changed.tenancy.endpoints.values_mut().next().unwrap();
        Arc::make_mut(endpoint).mode = "audit".to_owned();
        changed.tenancy.endpoints.pop_last();
        cache.write(&changed).unwrap();
        let read = cache.read().unwrap().expect("written");
        assert_eq!((read.tenancy, read.revision), (changed.tenancy, 43));
        cache.write(&snapshot).unwrap();
        assert_eq!(
            std::fs::read(cache.path()).unwrap(),
            first,
            "back as it was"
        );

        let other_store = SnapshotCache::new(&directory, "etcd://elsewhere/t".to_owned());
        assert!(other_store.read().unwrap().is_none(), "another store's");

        // Each record's value a JSON string: how caches were written before.
        let old = serde_json::json!({
            "location": cache.location,
            "revision": 41,
            "records": records::to_records(&snapshot.tenancy).unwrap(),
        });
        std::fs::write(cache.path(), serde_json::to_vec(&old).unwrap()).unwrap();
        let read = cache.read().unwrap().expect("written");
        assert_eq!((read.tenancy, read.revision), (snapshot.tenancy, 41));

        std::fs::write(cache.path(), b"{\"location\":1}").unwrap();
        assert!(cache.read().is_err(), "a damaged cache is an error");
        std::fs::remove_dir_all(directory).unwrap();
    }
}
