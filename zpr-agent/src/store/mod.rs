//! Where a tenancy's state lives when it is changed through the management
//! API: policies, security-attribute namespaces and attributes, endpoints
//! (and VCNs) with the attributes applied to them, the configuration, and
//! the API's work requests.
//!
//! The state is one [`Tenancy`] value; the API changes it with pure
//! functions and a store keeps it as keyed records ([`records`]), read as
//! a [`Snapshot`] at one revision and changed by a commit that holds only
//! if nothing else committed since that revision. A snapshot turns into
//! the same checked inputs as files do ([`Snapshot::inputs`]), so the
//! agent compiles, validates and reloads a store exactly as it does files.

mod endpoints;
pub mod etcd;
mod etcd_follow;
pub mod etcd_roles;
pub mod fleet;
mod legacy_sqlite;
pub mod records;
mod seed;
pub mod signing;
mod snapshot_cache;
mod sqlite;
mod tenancy;
mod work_request;

use std::{collections::BTreeMap, path::Path, sync::Arc};

use anyhow::bail;

use crate::inputs::{self, Checker, InputText, Loaded};
pub use endpoints::{
    EndpointChanges, EndpointDetails, EndpointEdits, EndpointFilter, Imported, VcnDetails,
};
pub use etcd::{EtcdAccess, EtcdLocation, EtcdStore};
pub use etcd_follow::{EtcdFollower, Followed};
pub use snapshot_cache::SnapshotCache;
pub use sqlite::SqliteStore;
pub use tenancy::*;
pub use work_request::*;

/// The tenancy as of one revision of its store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub tenancy: Tenancy,
    /// Grows with every commit; what a fleet's agents report enforcing.
    pub revision: u64,
    /// The id of the etcd cluster it was read from (a fleet's store).
    pub cluster: Option<u64>,
}

impl Snapshot {
    /// The snapshot's inputs as the agent of `node` reads them (see
    /// [`Tenancy::inventory_document`]), checked as files are.
    pub fn inputs(&self, node: Option<&str>) -> anyhow::Result<Loaded> {
        SnapshotChecker::new(Checker::once()).check(&self.tenancy, node)
    }
}

/// Checks snapshot after snapshot: its checker keeps what it read, and
/// it keeps the last inventory text it made with what it was made from.
/// Most changes are to policies: comparing 10,000 endpoints costs less
/// than writing them out again, and the checker then knows the text.
pub struct SnapshotChecker {
    pub checker: Checker,
    last_inventory: Option<(InventorySource, InputText)>,
}

/// The parts of a tenancy [`Tenancy::inventory_document`] may read. Named
/// by taking the tenancy apart whole: a part added to [`Tenancy`] does not
/// compile until it is said here whether the document reads it, so a kept
/// text is never reused past a change it depends on.
type InventoryParts<'a> = (
    &'a BTreeMap<String, SecurityAttributeNamespace>,
    &'a BTreeMap<String, StoredAttribute>,
    &'a BTreeMap<String, Vcn>,
    &'a BTreeMap<String, Arc<StoredEndpoint>>,
    &'a Configuration,
    &'a Vec<String>,
);

fn inventory_parts(tenancy: &Tenancy) -> InventoryParts<'_> {
    let Tenancy {
        policies: _,
        namespaces,
        attributes,
        vcns,
        endpoints,
        configuration,
        osn_services,
        next_id: _,
        tenancy_id: _,
        confirmation: _,
        signature: _,
    } = tenancy;
    (
        namespaces,
        attributes,
        vcns,
        endpoints,
        configuration,
        osn_services,
    )
}

/// What an inventory text was made from: the node it was made for, and
/// the tenancy as it was, without its policies (the document does not read
/// them; endpoints and policies are shared with the tenancy, not copied).
struct InventorySource {
    node: Option<String>,
    tenancy: Tenancy,
}

impl InventorySource {
    fn holds(&self, tenancy: &Tenancy, node: Option<&str>) -> bool {
        self.node.as_deref() == node && inventory_parts(tenancy) == inventory_parts(&self.tenancy)
    }

    fn of(tenancy: &Tenancy, node: Option<&str>) -> InventorySource {
        InventorySource {
            node: node.map(str::to_owned),
            tenancy: Tenancy {
                policies: BTreeMap::new(),
                ..tenancy.clone()
            },
        }
    }
}

impl SnapshotChecker {
    pub fn new(checker: Checker) -> SnapshotChecker {
        SnapshotChecker {
            checker,
            last_inventory: None,
        }
    }

    /// The tenancy's inputs as the agent of `node` reads them, checked.
    pub fn check(&mut self, tenancy: &Tenancy, node: Option<&str>) -> anyhow::Result<Loaded> {
        let kept = self
            .last_inventory
            .as_ref()
            .is_some_and(|(source, _)| source.holds(tenancy, node));
        if !kept {
            let text = InputText::inventory(
                "store inventory".to_owned(),
                serde_json::to_string_pretty(&tenancy.inventory_document(node))?,
            );
            self.last_inventory = Some((InventorySource::of(tenancy, node), text));
        }
        let (_, inventory) = self.last_inventory.as_ref().expect("made above");
        let policies: Vec<InputText> = tenancy
            .list_policies()
            .into_iter()
            .map(|policy| {
                InputText::policy(policy.name.clone(), policy.name.clone(), policy.source())
            })
            .collect();
        Ok(self.checker.check(Some(inventory), &policies))
    }
}

/// Records per step of a seed (etcd takes 128 operations per transaction,
/// one of which is the commit marker).
const SEED_STEP: usize = 100;

/// A commit based on a revision that is no longer the store's latest:
/// someone else changed the tenancy meanwhile. Nothing was written.
#[derive(Debug)]
pub struct Conflict {
    pub base_revision: u64,
    pub current_revision: u64,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the tenancy changed while this change was being made (read at revision {}, now \
             at {}): nothing changed; read again and retry",
            self.base_revision, self.current_revision
        )
    }
}

impl std::error::Error for Conflict {}

/// The store could not be reached (or answered too late); nothing is
/// known to have changed.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the store is unavailable: {}", self.0)
    }
}

impl std::error::Error for Unavailable {}

/// A store the API can change, and the key that signs what it commits
/// there (when one is configured).
pub struct Store {
    backend: Backend,
    signer: Option<signing::Signer>,
}

enum Backend {
    Sqlite(SqliteStore),
    /// Boxed: its client is large, and a store is moved around whole.
    Etcd(Box<EtcdStore>),
}

impl Store {
    /// A fleet's tenancy in etcd.
    pub async fn open_etcd(location: EtcdLocation) -> anyhow::Result<Store> {
        Ok(Store::of(Backend::Etcd(Box::new(
            EtcdStore::open(location).await?,
        ))))
    }

    /// Opens (creating if needed) the SQLite store at `path`.
    pub fn open_sqlite(path: &Path) -> anyhow::Result<Store> {
        Ok(Store::of(Backend::Sqlite(SqliteStore::open(path)?)))
    }

    fn of(backend: Backend) -> Store {
        Store {
            backend,
            signer: None,
        }
    }

    /// Signs every state committed from now on with `signer`.
    pub fn sign_with(&mut self, signer: signing::Signer) {
        self.signer = Some(signer);
    }

    /// Where it is, for status and logs.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(store) => store.path().display().to_string(),
            Backend::Etcd(store) => store.location().to_string(),
        }
    }

    pub async fn read(&self) -> anyhow::Result<Snapshot> {
        match &self.backend {
            Backend::Sqlite(store) => store.read(),
            Backend::Etcd(store) => store.read().await,
        }
    }

    /// Makes the tenancy `after`, if the store is still at `base`'s
    /// revision ([`Conflict`] otherwise), recording `work_request` with it;
    /// returns the new revision.
    /// With a signing key, `after` is signed as the successor of `base`
    /// first (its signature is part of what is written).
    pub async fn commit(
        &mut self,
        base: &Snapshot,
        after: &mut Tenancy,
        work_request: Option<&WorkRequest>,
    ) -> anyhow::Result<u64> {
        self.sign(&base.tenancy, after)?;
        let mut writes = records::writes(&base.tenancy, after)?;
        if let Some(request) = work_request {
            writes = writes.with_work_request(request)?;
        }
        self.commit_writes(base.revision, &writes).await
    }

    /// Signs `after` as the successor of `base`; without a signing key,
    /// takes off a signature it carried over (it would not verify).
    fn sign(&self, base: &Tenancy, after: &mut Tenancy) -> anyhow::Result<()> {
        match &self.signer {
            Some(signer) => signer.sign(base, after),
            None => {
                after.signature = None;
                Ok(())
            }
        }
    }

    async fn commit_writes(
        &mut self,
        base_revision: u64,
        writes: &records::Writes,
    ) -> anyhow::Result<u64> {
        match &mut self.backend {
            Backend::Sqlite(store) => store.commit(base_revision, writes),
            Backend::Etcd(store) => store.commit(base_revision, writes).await,
        }
    }

    /// Records (or replaces) a work request, whatever the revision.
    pub async fn put_work_request(&mut self, request: &WorkRequest) -> anyhow::Result<()> {
        let writes = records::Writes::default().with_work_request(request)?;
        match &mut self.backend {
            Backend::Sqlite(store) => store.put_unconditionally(&writes),
            Backend::Etcd(store) => store.put_unconditionally(&writes).await,
        }
    }

    /// Keeps an audit record in a fleet's store, where the records of
    /// every API server meet. A single host's audit log is its file
    /// (`<run-dir>/audit.jsonl`), so SQLite keeps none.
    pub async fn put_audit_record(&mut self, record: &impl serde::Serialize) -> anyhow::Result<()> {
        match &mut self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Etcd(store) => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |elapsed| elapsed.as_nanos());
                let writes = records::Writes {
                    puts: vec![(
                        format!("{}{nanos:024}", records::AUDIT),
                        serde_json::to_string(record)?,
                    )],
                    deletes: Vec::new(),
                };
                store.put_unconditionally(&writes).await
            }
        }
    }

    pub async fn work_requests(&self) -> anyhow::Result<Vec<WorkRequest>> {
        match &self.backend {
            Backend::Sqlite(store) => store.work_requests(),
            Backend::Etcd(store) => store.work_requests().await,
        }
    }

    pub async fn work_request(&self, id: &str) -> anyhow::Result<WorkRequest> {
        let found = match &self.backend {
            Backend::Sqlite(store) => store.work_request(id)?,
            Backend::Etcd(store) => store.work_request(id).await?,
        };
        match found {
            Some(request) => Ok(request),
            None => refuse(RefusalKind::NotFound, format!("no work request '{id}'")),
        }
    }

    /// Imports an inventory file into an empty tenancy; returns false
    /// (and changes nothing) when the tenancy is whole already. A seed
    /// goes in steps: one that stopped halfway is completed. A seed never
    /// changes or deletes a record: a store that holds records the seed
    /// would not write (policies, API changes), but lacks `next-id` (the
    /// seed's last record), is refused, not wiped to match.
    pub async fn seed(&mut self, inventory_path: &Path) -> anyhow::Result<bool> {
        let base = self.read().await?;
        if base.tenancy.next_id != 0 {
            tracing::info!(
                "the store already holds a tenancy: the seed inventory is not imported again"
            );
            if base.tenancy.tenancy_id.is_none() {
                // A tenancy seeded before tenancy ids: it gets one now.
                let mut identified = base.tenancy.clone();
                identified.tenancy_id = Some(Tenancy::draw_id()?);
                self.commit(&base, &mut identified, None).await?;
            }
            return Ok(false);
        }
        let text = inputs::text::read_text(
            inventory_path,
            "inventory",
            inputs::open::Symlinks::Followed,
        )?;
        let mut seeded = Tenancy {
            tenancy_id: base.tenancy.tenancy_id.clone(),
            ..Tenancy::default()
        };
        seed::import(&mut seeded, &inventory_path.display().to_string(), &text)?;
        if seeded.tenancy_id.is_none() {
            seeded.tenancy_id = Some(Tenancy::draw_id()?);
        }
        self.sign(&base.tenancy, &mut seeded)?;
        self.write_into_empty(&base, &seeded, &inventory_path.display().to_string())
            .await?;
        tracing::info!(inventory = %inventory_path.display(), "imported into the empty store");
        Ok(true)
    }

    /// Writes a host's cached snapshot of a tenancy into an empty one (see
    /// `zpr fleet restore`); returns the store's revision after it.
    pub async fn restore(&mut self, tenancy: &Tenancy) -> anyhow::Result<u64> {
        let base = self.read().await?;
        let empty = Tenancy::default();
        let has_records = records::to_records(&base.tenancy)? != records::to_records(&empty)?;
        if has_records {
            bail!(
                "{} is not empty: a restore writes only into an empty tenancy (nothing was \
                 written)",
                self.describe()
            );
        }
        self.write_into_empty(&base, tenancy, "the snapshot").await
    }

    /// Writes `whole` in steps, each a valid tenancy (what endpoints refer
    /// to first), each based on the revision of the step before; `next-id`
    /// last, so that its presence says the tenancy is whole. Records
    /// `base` holds already are kept as they are (a seed that stopped
    /// halfway wrote them); refused when `base` holds a record `whole`
    /// has not, which writing it would delete.
    async fn write_into_empty(
        &mut self,
        base: &Snapshot,
        whole: &Tenancy,
        origin: &str,
    ) -> anyhow::Result<u64> {
        let mut writes = records::writes(&base.tenancy, whole)?;
        if !writes.deletes.is_empty() {
            bail!(
                "{} holds records that {origin} would not write, but no `next-id` (the record \
                 a whole tenancy has): it is not empty, and not a seed that stopped halfway. \
                 Nothing was written; the store is never wiped to match. Records it would \
                 delete: {}",
                self.describe(),
                writes
                    .deletes
                    .iter()
                    .take(10)
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let before = records::to_records(&base.tenancy)?;
        let empty = records::to_records(&Tenancy::default())?;
        writes.puts.retain(|(key, _)| {
            key == records::NEXT_ID
                || before
                    .get(key)
                    .is_none_or(|value| empty.get(key) == Some(value))
        });
        let mut revision = base.revision;
        for step in writes.in_steps(SEED_STEP) {
            revision = self.commit_writes(revision, &step).await?;
        }
        Ok(revision)
    }
}

#[cfg(test)]
mod tests;
