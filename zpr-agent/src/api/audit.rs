//! The audit log: one JSON line per mutating call, allowed or denied, in
//! `<run-dir>/audit.jsonl` (who, what, the outcome, the generation it
//! produced and its work request). What a caller wrote is quoted bounded:
//! a huge bad name must not make a huge line.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::Serialize;
use tracing::warn;

use super::operations::Operation;
use crate::{clock::unix_now, iam::Principal, lang::bounded, store::WorkRequest};

pub struct AuditLog {
    path: PathBuf,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord<'a> {
    pub time: u64,
    pub principal: &'a Principal,
    pub operation: &'static str,
    /// Whether IAM allowed the call.
    pub allowed: bool,
    /// `denied`, `SUCCEEDED` or `FAILED` (`allowed` false: refused before
    /// IAM could decide, as when the store is unavailable).
    pub outcome: String,
    /// A dry run: the change was checked and its impact computed, and
    /// nothing was changed.
    pub dry_run: bool,
    pub resource: Option<String>,
    pub generation: Option<u32>,
    pub work_request_id: Option<String>,
    pub message: Option<String>,
}

impl<'a> AuditRecord<'a> {
    pub fn denied(principal: &'a Principal, operation: &Operation, why: &str) -> AuditRecord<'a> {
        AuditRecord {
            time: unix_now(),
            principal,
            operation: operation.name(),
            allowed: false,
            outcome: "denied".to_owned(),
            dry_run: false,
            resource: None,
            generation: None,
            work_request_id: None,
            message: Some(bounded(why)),
        }
    }

    /// A call refused before IAM was asked: the store could not be read.
    pub fn refused(principal: &'a Principal, operation: &Operation, why: &str) -> AuditRecord<'a> {
        AuditRecord {
            outcome: "FAILED".to_owned(),
            ..AuditRecord::denied(principal, operation, why)
        }
    }

    /// A dry run: `SUCCEEDED` when the change checks (its impact was
    /// answered), else `FAILED` with why.
    pub fn dry_run(
        principal: &'a Principal,
        operation: &Operation,
        resource: String,
        failure: Option<&str>,
    ) -> AuditRecord<'a> {
        AuditRecord {
            time: unix_now(),
            principal,
            operation: operation.name(),
            allowed: true,
            outcome: if failure.is_some() {
                "FAILED"
            } else {
                "SUCCEEDED"
            }
            .to_owned(),
            dry_run: true,
            resource: Some(bounded(&resource)),
            generation: None,
            work_request_id: None,
            message: failure.map(bounded),
        }
    }

    pub fn carried_out(
        principal: &'a Principal,
        operation: &Operation,
        work_request: &WorkRequest,
    ) -> AuditRecord<'a> {
        AuditRecord {
            time: unix_now(),
            principal,
            operation: operation.name(),
            allowed: true,
            outcome: work_request.status.clone(),
            dry_run: false,
            resource: Some(bounded(&work_request.resource)),
            generation: work_request.generation,
            work_request_id: Some(work_request.id.clone()),
            message: work_request.errors.first().map(|e| bounded(&e.message)),
        }
    }
}

impl AuditLog {
    pub fn new(run_dir: &Path) -> AuditLog {
        AuditLog {
            path: run_dir.join("audit.jsonl"),
        }
    }

    /// Appends one line; a log that cannot be written is reported, not fatal.
    pub fn record(&self, record: &AuditRecord) {
        let written = serde_json::to_string(record)
            .map_err(std::io::Error::other)
            .and_then(|line| {
                let mut file = crate::private_file::append(&self.path)?;
                writeln!(file, "{line}")
            });
        if let Err(error) = written {
            warn!(
                "cannot write the audit log {}: {error}",
                self.path.display()
            );
        }
    }
}
