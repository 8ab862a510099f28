//! The state store behind `zpr serve`: policies, security-attribute
//! namespaces and attributes, the endpoints (and VCNs) with the attributes
//! applied to them, the configuration, and the work requests of the API.
//!
//! SQLite (rusqlite, bundled) rather than redb: every change is one ACID
//! transaction that the API opens, changes, *validates through the same
//! checker as the files* and then commits or rolls back, which SQLite
//! gives with plain statements; foreign keys with `ON DELETE CASCADE`
//! implement the cascade deletes; and an operator can inspect or repair a
//! store with the stock `sqlite3` shell. redb would need all of that
//! written by hand over key-value tables. The bundled build pins the SQLite
//! version and needs no system library.
//!
//! The store turns into the same [`Loaded`] inputs as the files do
//! ([`Store::load`]): an inventory document and policy texts, checked by
//! [`inputs::check`]. So the agent compiles, validates and reloads a store
//! exactly as it does files.

mod resources;
mod seed;

use std::path::Path;

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension as _, Transaction};

use crate::inputs::{self, InputText, Loaded};
pub use resources::*;

pub struct Store {
    connection: Connection,
}

const SCHEMA: &str = include_str!("schema.sql");

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        if let Some(directory) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(directory)
                .with_context(|| format!("creating {}", directory.display()))?;
        }
        let connection = Connection::open(path)
            .with_context(|| format!("opening the store {}", path.display()))?;
        connection
            .execute_batch(SCHEMA)
            .with_context(|| format!("creating the schema of {}", path.display()))?;
        Ok(Store { connection })
    }

    /// A transaction: dropped without [`Transaction::commit`], it changes
    /// nothing.
    pub fn transaction(&mut self) -> anyhow::Result<Transaction<'_>> {
        Ok(self.connection.transaction()?)
    }

    /// The store's inputs, checked as files are.
    pub fn load(&self) -> anyhow::Result<Loaded> {
        load(&self.connection)
    }

    /// Imports an inventory file into a store that has no endpoints yet;
    /// returns false (and changes nothing) when it already has some.
    pub fn seed(&mut self, inventory_path: &Path) -> anyhow::Result<bool> {
        let transaction = self.connection.transaction()?;
        if count(&transaction, "endpoint")? > 0 {
            return Ok(false);
        }
        seed::import(&transaction, inventory_path)?;
        transaction.commit()?;
        Ok(true)
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }
}

/// The inputs as a connection (or a transaction in progress) sees them.
pub fn load(connection: &Connection) -> anyhow::Result<Loaded> {
    let inventory = InputText::inventory(
        "store inventory".to_owned(),
        serde_json::to_string_pretty(&resources::inventory_document(connection)?)?,
    );
    let policies: Vec<InputText> = list_policies(connection)?
        .into_iter()
        .map(|policy| InputText::policy(policy.name.clone(), policy.name.clone(), policy.source()))
        .collect();
    Ok(inputs::check(Some(&inventory), &policies))
}

fn count(connection: &Connection, table: &str) -> anyhow::Result<u64> {
    Ok(
        connection.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })?,
    )
}

/// A value of the `meta` table.
fn meta(connection: &Connection, key: &str) -> anyhow::Result<Option<String>> {
    Ok(connection
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
            row.get(0)
        })
        .optional()?)
}

fn set_meta(connection: &Connection, key: &str, value: &str) -> anyhow::Result<()> {
    connection.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

/// A new OCID-like id: `ocid1.<kind>.zpr.<n>`, never reused.
fn new_id(connection: &Connection, kind: &str) -> anyhow::Result<String> {
    let next: u64 = meta(connection, "next-id")?
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    set_meta(connection, "next-id", &(next + 1).to_string())?;
    Ok(format!("ocid1.{kind}.zpr.{next}"))
}

#[cfg(test)]
mod tests;
