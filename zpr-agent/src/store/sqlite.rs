//! The embedded store of one host: the tenancy's records in one SQLite
//! table, with a revision that every commit moves on by one.
//!
//! SQLite (rusqlite, bundled): a commit is one ACID transaction that
//! compares the revision it was based on, so two writers never lose each
//! other's change; the bundled build pins the version and needs no system
//! library; and an operator can read a store with the stock `sqlite3`
//! shell (`SELECT key, value FROM record`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::{
    Conflict, Snapshot, WorkRequest, legacy_sqlite,
    records::{self, Records, Writes},
};

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS record (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revision (
    only INTEGER PRIMARY KEY CHECK (only = 0),
    revision INTEGER NOT NULL
);
INSERT OR IGNORE INTO revision (only, revision) VALUES (0, 0);
";

pub struct SqliteStore {
    path: PathBuf,
    connection: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`; a store of the
    /// earlier table-per-resource layout is converted in one transaction.
    pub fn open(path: &Path) -> anyhow::Result<SqliteStore> {
        if let Some(directory) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(directory)
                .with_context(|| format!("creating {}", directory.display()))?;
        }
        let mut connection = Connection::open(path)
            .with_context(|| format!("opening the store {}", path.display()))?;
        connection
            .execute_batch(SCHEMA)
            .with_context(|| format!("creating the schema of {}", path.display()))?;
        legacy_sqlite::convert(&mut connection)
            .with_context(|| format!("converting the store {}", path.display()))?;
        Ok(SqliteStore {
            path: path.to_owned(),
            connection,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn read(&self) -> anyhow::Result<Snapshot> {
        let transaction = self.connection.unchecked_transaction()?;
        let revision = revision(&transaction)?;
        let records = all_records(&transaction)?;
        Ok(Snapshot {
            tenancy: records::from_texts(&records)?,
            revision,
            cluster: None,
        })
    }

    /// Applies `writes` if the store is still at `base_revision`; returns
    /// the new revision.
    pub fn commit(&mut self, base_revision: u64, writes: &Writes) -> anyhow::Result<u64> {
        // IMMEDIATE: the write lock is taken before the revision is read, so
        // no other writer can slip in between the comparison and the writes.
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = revision(&transaction)?;
        if current != base_revision {
            return Err(Conflict {
                base_revision,
                current_revision: current,
            }
            .into());
        }
        put_records(&transaction, writes)?;
        let next = current + 1;
        transaction.execute("UPDATE revision SET revision = ?1", [next])?;
        transaction.commit()?;
        Ok(next)
    }

    /// Writes records outside the tenancy (work requests): no revision
    /// to compare, and none moves on.
    pub fn put_unconditionally(&mut self, writes: &Writes) -> anyhow::Result<()> {
        let transaction = self.connection.transaction()?;
        put_records(&transaction, writes)?;
        transaction.commit()?;
        Ok(())
    }

    pub fn work_requests(&self) -> anyhow::Result<Vec<WorkRequest>> {
        let mut query = self
            .connection
            .prepare("SELECT key, value FROM record WHERE key >= ?1 AND key < ?2")?;
        let (from, to) = prefix_range(records::WORK_REQUESTS);
        let rows: Vec<(String, String)> = query
            .query_map([from, to], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        records::work_requests(rows.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    pub fn work_request(&self, id: &str) -> anyhow::Result<Option<WorkRequest>> {
        let value: Option<String> = self
            .connection
            .query_row(
                "SELECT value FROM record WHERE key = ?1",
                [format!("{}{id}", records::WORK_REQUESTS)],
                |row| row.get(0),
            )
            .optional()?;
        Ok(value.map(|v| serde_json::from_str(&v)).transpose()?)
    }
}

fn revision(connection: &Connection) -> anyhow::Result<u64> {
    Ok(connection.query_row("SELECT revision FROM revision", [], |row| row.get(0))?)
}

fn all_records(connection: &Connection) -> anyhow::Result<Records> {
    let mut query = connection.prepare("SELECT key, value FROM record")?;
    let records = query
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(records)
}

pub(super) fn put_records(connection: &Connection, writes: &Writes) -> anyhow::Result<()> {
    for (key, value) in &writes.puts {
        connection.execute(
            "INSERT INTO record (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
    }
    for key in &writes.deletes {
        connection.execute("DELETE FROM record WHERE key = ?1", [key])?;
    }
    Ok(())
}

/// The keys that start with `prefix`: from `prefix` up to the next string
/// after every such key.
pub(super) fn prefix_range(prefix: &str) -> (String, String) {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    (
        prefix.to_owned(),
        String::from_utf8(end).expect("ASCII prefixes"),
    )
}
