//! Carrying out one API request for one principal: authorise it against
//! the IAM statements, read or change the tenancy, and for a change: check
//! the result as the files are checked (nothing is written when invalid),
//! commit it only if nobody else committed since it was read, hand it to
//! the agent running beside the API (if one does), and record a work
//! request and an audit line.

use std::{
    hash::Hasher as _,
    path::Path,
    sync::{Mutex, MutexGuard},
    time::Instant,
};

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    audit::{AuditLog, AuditRecord},
    operations::{Operation, work_request_permission},
};
use crate::{
    clock::unix_now,
    compile::{Fnv1a64, Report, RevokedFlow, Tables, diff},
    http::message::{Request, Response},
    iam::{IamPolicy, Permission, Principal, Statement},
    inputs::{Checker, Inputs},
    lang::bounded,
    store::{
        Confirmation, Conflict, EndpointChanges, EndpointDetails, EndpointEdits, EndpointFilter,
        Imported, Refusal, RefusalKind, Snapshot, SnapshotChecker, Store, Tenancy, Unavailable,
        Validator, VcnDetails, WorkRequest, WorkRequestError, WorkRequestLog, parse_attribute_text,
    },
};

pub struct Service {
    pub iam: IamPolicy,
    pub audit: AuditLog,
    /// Checks every change, keeping what it read for the next: a change
    /// to a large tenancy parses and counts only what it touches. For the
    /// verdict only: no Plan is built.
    verdicts: Mutex<SnapshotChecker>,
    /// Checks dry runs, keeping what it read for the next: their impact
    /// is told from the Plans (every table's) before and after.
    impacts: Mutex<SnapshotChecker>,
}

impl Service {
    /// The IAM statements in force: the file's, plus the bootstrap
    /// admins' (`manage all-resources`); audit lines go to `run_dir`.
    pub fn new(
        iam_statements: Option<&Path>,
        bootstrap_admins: &[String],
        run_dir: &Path,
    ) -> anyhow::Result<Service> {
        let mut iam = IamPolicy::default();
        if let Some(path) = iam_statements {
            let (read, warnings) = IamPolicy::read(path)?;
            if !warnings.is_empty() {
                tracing::warn!("{}", warnings.trim_end());
            }
            iam = read;
        }
        iam.statements
            .extend(bootstrap_admins.iter().map(|group| Statement::admin(group)));
        tracing::info!(statements = iam.statements.len(), "IAM statements in force");
        Ok(Service {
            iam,
            audit: AuditLog::new(run_dir),
            verdicts: Mutex::new(verdict_checker()),
            impacts: Mutex::new(impact_checker()),
        })
    }
}

fn verdict_checker() -> SnapshotChecker {
    SnapshotChecker::new(Checker::remembering_verdicts())
}

fn impact_checker() -> SnapshotChecker {
    SnapshotChecker::new(Checker::remembering(Tables::Every))
}

/// The agent running beside the API, when one does (`zpr serve` on one
/// host): a committed change is enforced before the API answers.
pub trait Enforcer {
    /// Makes `snapshot` the agent's inputs; the generation it put in
    /// force, or why it could not (the previous policy stays). `None`:
    /// no agent runs here, the store's agents apply it.
    fn enforce(
        &mut self,
        snapshot: Snapshot,
        cause: &str,
        since: Instant,
    ) -> Option<Result<u32, String>>;

    /// The live connections on this host that going from `before` to
    /// `after` would cut (`None`: no agent runs here).
    fn live_cuts(
        &self,
        before: &Inputs,
        after: &Inputs,
    ) -> Option<anyhow::Result<Vec<RevokedFlow>>>;
}

/// For API servers without an agent beside them.
pub struct NoLocalAgent;

impl Enforcer for NoLocalAgent {
    fn enforce(&mut self, _: Snapshot, _: &str, _: Instant) -> Option<Result<u32, String>> {
        None
    }

    fn live_cuts(&self, _: &Inputs, _: &Inputs) -> Option<anyhow::Result<Vec<RevokedFlow>>> {
        None
    }
}

/// An answer other than success.
struct Failure {
    status: u16,
    code: &'static str,
    message: String,
    /// The checker's report, for invalid policies.
    diagnostics: Option<String>,
}

impl Failure {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            status,
            code,
            message: message.into(),
            diagnostics: None,
        }
    }

    fn response(&self) -> Response {
        let mut body = json!({ "code": self.code, "message": bounded(&self.message) });
        if let Some(diagnostics) = &self.diagnostics {
            body["diagnostics"] = diagnostics.clone().into();
        }
        Response::json(self.status, &body)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        if let Some(conflict) = error.downcast_ref::<Conflict>() {
            return Failure::new(409, "Conflict", conflict.to_string());
        }
        if let Some(unavailable) = error.downcast_ref::<Unavailable>() {
            return Failure::new(
                503,
                "ServiceUnavailable",
                format!(
                    "{unavailable}; nothing changed, enforcement goes on unchanged; retry later"
                ),
            );
        }
        match error.downcast_ref::<Refusal>() {
            Some(refusal) => Failure::new(
                match refusal.kind {
                    RefusalKind::NotFound => 404,
                    RefusalKind::Conflict => 409,
                    RefusalKind::Invalid => 400,
                },
                match refusal.kind {
                    RefusalKind::NotFound => "NotFound",
                    RefusalKind::Conflict => "Conflict",
                    RefusalKind::Invalid => "InvalidParameter",
                },
                refusal.message.clone(),
            ),
            None => Failure::new(500, "InternalServerError", format!("{error:#}")),
        }
    }
}

fn body<T: for<'de> Deserialize<'de>>(request: &Request) -> Result<T, Failure> {
    serde_json::from_slice(&request.body).map_err(|error| {
        Failure::new(
            400,
            "InvalidParameter",
            format!("the request body: {error}"),
        )
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreatePolicy {
    name: String,
    #[serde(default)]
    description: String,
    statements: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdatePolicy {
    description: Option<String>,
    statements: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateConfiguration {
    zpr_status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateNamed {
    name: String,
    #[serde(default)]
    description: String,
    validator: Option<Validator>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateNamespace {
    description: Option<String>,
    is_retired: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SecurityAttributes {
    security_attributes: Vec<String>,
}

/// `ImportEndpoints`: an inventory file's text.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportEndpoints {
    inventory: String,
    #[serde(default)]
    prune: bool,
}

/// A list page holds at most this many endpoints (`limit` asks for fewer).
const PAGE_LIMIT: usize = 1000;

/// The namespaces of the attributes in one list and not the other: what
/// changing an endpoint's attributes from `before` to `after` needs `use` on.
fn changed_namespaces(before: &[String], after: &[String]) -> Result<Vec<String>, Failure> {
    let mut namespaces = Vec::new();
    for text in before
        .iter()
        .filter(|text| !after.contains(text))
        .chain(after.iter().filter(|text| !before.contains(text)))
    {
        let namespace = parse_attribute_text(text)?.namespace().to_owned();
        if !namespaces.contains(&namespace) {
            namespaces.push(namespace);
        }
    }
    Ok(namespaces)
}

impl Service {
    /// A checker; after a check that panicked, a new one (what the old
    /// one kept may be half updated).
    fn checker<'a>(
        checker: &'a Mutex<SnapshotChecker>,
        new: fn() -> SnapshotChecker,
    ) -> MutexGuard<'a, SnapshotChecker> {
        checker.lock().unwrap_or_else(|poisoned| {
            let mut held = poisoned.into_inner();
            *held = new();
            checker.clear_poison();
            held
        })
    }

    pub async fn handle(
        &self,
        store: &mut Store,
        enforcer: &mut impl Enforcer,
        principal: &Principal,
        request: &Request,
    ) -> Response {
        let since = Instant::now();
        let operation = match Operation::route(&request.method, &request.path) {
            Ok(operation) => operation,
            Err(message) => return Failure::new(404, "NotFound", message).response(),
        };
        let snapshot = match store.read().await {
            Ok(snapshot) => snapshot,
            Err(error) => {
                let failure = Failure::from(error);
                if operation.mutates() {
                    // Refused before IAM could be asked (it needs the
                    // tenancy): audited all the same, here if not there.
                    let mut record = AuditRecord::refused(principal, &operation, &failure.message);
                    record.dry_run = request.dry_run;
                    self.record(store, &record).await;
                }
                return failure.response();
            }
        };
        if let Err(failure) = self.authorize(&snapshot.tenancy, principal, &operation, request) {
            if operation.mutates() {
                let mut record = AuditRecord::denied(principal, &operation, &failure.message);
                record.dry_run = request.dry_run;
                self.record(store, &record).await;
            }
            return failure.response();
        }
        if !operation.mutates() {
            return match self
                .read(store, &snapshot.tenancy, principal, &operation, request)
                .await
            {
                Ok(value) => tagged(200, value, operation.has_etag()),
                Err(failure) => failure.response(),
            };
        }
        if request.dry_run {
            return self
                .dry_run(store, enforcer, &snapshot, principal, &operation, request)
                .await;
        }
        self.mutate(
            store, enforcer, snapshot, principal, &operation, request, since,
        )
        .await
    }

    /// What a change would do, without doing it: checked as the real call
    /// is, its impact on what may connect computed against what the store
    /// holds now, then rolled back. No work request, no generation.
    async fn dry_run(
        &self,
        store: &mut Store,
        enforcer: &impl Enforcer,
        snapshot: &Snapshot,
        principal: &Principal,
        operation: &Operation,
        request: &Request,
    ) -> Response {
        let mut checker = Service::checker(&self.impacts, impact_checker);
        let outcome = impact(&mut checker, enforcer, snapshot, operation, request);
        drop(checker);
        let failure = outcome
            .as_ref()
            .err()
            .map(|failure| failure.message.as_str());
        let record = AuditRecord::dry_run(principal, operation, target_text(operation), failure);
        self.record(store, &record).await;
        match outcome {
            Ok(answer) => Response::json(200, &answer),
            Err(failure) => failure.response(),
        }
    }

    /// Audits a call: in this host's audit log, and in a fleet's store
    /// (where every API server's records meet).
    async fn record(&self, store: &mut Store, record: &AuditRecord<'_>) {
        self.audit.record(record);
        if let Err(error) = store.put_audit_record(record).await {
            tracing::warn!("cannot keep the audit record in the store: {error:#}");
        }
    }

    /// Checks the permissions the operation needs; a 403 names the missing one.
    fn authorize(
        &self,
        tenancy: &Tenancy,
        principal: &Principal,
        operation: &Operation,
        request: &Request,
    ) -> Result<(), Failure> {
        let mut needed: Vec<(Permission, Option<String>)> = Vec::new();
        match operation {
            Operation::CreateSecurityAttributeNamespace => {
                let create: CreateNamed = body(request)?;
                needed.push((
                    Permission::SecurityAttributeNamespaceCreate,
                    Some(create.name),
                ));
            }
            Operation::ApplySecurityAttributes { .. }
            | Operation::RemoveSecurityAttributes { .. } => {
                let attributes: SecurityAttributes = body(request)?;
                for text in &attributes.security_attributes {
                    let attribute = parse_attribute_text(text)?;
                    needed.push((
                        Permission::SecurityAttributeNamespaceUse,
                        Some(attribute.namespace().to_owned()),
                    ));
                }
            }
            Operation::CreateEndpoint => {
                let details: EndpointDetails = body(request)?;
                needed.push((Permission::VnicCreate, None));
                for namespace in changed_namespaces(&[], &details.security_attributes)? {
                    needed.push((Permission::SecurityAttributeNamespaceUse, Some(namespace)));
                }
            }
            Operation::UpdateEndpoint { name } => {
                let changes: EndpointChanges = body(request)?;
                needed.push((Permission::VnicUpdate, None));
                if let Some(after) = &changes.security_attributes {
                    let before = tenancy.get_endpoint(name)?.security_attributes;
                    for namespace in changed_namespaces(&before, after)? {
                        needed.push((Permission::SecurityAttributeNamespaceUse, Some(namespace)));
                    }
                }
            }
            Operation::ImportEndpoints | Operation::BulkEditEndpoints => {
                let mut after = tenancy.clone();
                let imported = edit_endpoints(&mut after, operation, request)?;
                for (changed, permission) in [
                    (&imported.created, Permission::VnicCreate),
                    (&imported.updated, Permission::VnicUpdate),
                    (&imported.deleted, Permission::VnicDelete),
                    (&imported.vcns_created, Permission::VcnCreate),
                    (&imported.vcns_updated, Permission::VcnUpdate),
                ] {
                    if !changed.is_empty() {
                        needed.push((permission, None));
                    }
                }
                for name in imported.created.iter().chain(&imported.updated) {
                    let before = tenancy
                        .get_endpoint(name)
                        .map(|endpoint| endpoint.security_attributes)
                        .unwrap_or_default();
                    let after = after.get_endpoint(name)?.security_attributes;
                    for namespace in changed_namespaces(&before, &after)? {
                        if !needed.iter().any(|(_, n)| n.as_ref() == Some(&namespace)) {
                            needed
                                .push((Permission::SecurityAttributeNamespaceUse, Some(namespace)));
                        }
                    }
                }
            }
            _ => {
                if let Some(permission) = operation.permission() {
                    // Ids name the namespace too: conditions compare names.
                    let namespace = operation.namespace().map(|namespace| {
                        tenancy
                            .get_namespace(namespace)
                            .map_or_else(|_| namespace.to_owned(), |found| found.name)
                    });
                    needed.push((permission, namespace));
                }
            }
        }
        for (permission, namespace) in needed {
            if !self.iam.allows(principal, permission, namespace.as_deref()) {
                return Err(denied(
                    principal,
                    operation.name(),
                    permission,
                    namespace.as_deref(),
                ));
            }
        }
        Ok(())
    }

    async fn read(
        &self,
        store: &Store,
        tenancy: &Tenancy,
        principal: &Principal,
        operation: &Operation,
        request: &Request,
    ) -> Result<Value, Failure> {
        let items = |items: Vec<Value>| json!({ "items": items });
        Ok(match operation {
            Operation::ListZprPolicies => {
                items(tenancy.list_policies().iter().map(to_json).collect())
            }
            Operation::GetZprPolicy { id } => to_json(&tenancy.get_policy(id)?),
            Operation::GetConfiguration => to_json(&tenancy.configuration),
            Operation::ListSecurityAttributeNamespaces => {
                let all = tenancy.list_namespaces();
                let permission = Permission::SecurityAttributeNamespaceInspect;
                let visible: Vec<Value> = all
                    .iter()
                    .filter(|n| self.iam.allows(principal, permission, Some(&n.name)))
                    .map(to_json)
                    .collect();
                if visible.is_empty() && !all.is_empty() {
                    return Err(denied(principal, operation.name(), permission, None));
                }
                items(visible)
            }
            Operation::GetSecurityAttributeNamespace { namespace } => {
                to_json(&tenancy.get_namespace(namespace)?)
            }
            Operation::ListSecurityAttributes { namespace } => items(
                tenancy
                    .list_attributes(namespace)?
                    .iter()
                    .map(to_json)
                    .collect(),
            ),
            Operation::GetSecurityAttribute { namespace, name } => {
                to_json(&tenancy.get_attribute(namespace, name)?)
            }
            Operation::ListEndpoints => {
                let filter = EndpointFilter {
                    node: request.query("node").map(str::to_owned),
                    vcn: request.query("vcn").map(str::to_owned),
                    attribute: request.query("attribute").map(str::to_owned),
                };
                let limit = match request.query("limit") {
                    Some(text) => text
                        .parse::<usize>()
                        .ok()
                        .filter(|limit| (1..=PAGE_LIMIT).contains(limit))
                        .ok_or_else(|| {
                            Failure::new(
                                400,
                                "InvalidParameter",
                                format!("limit '{text}': give a number from 1 to {PAGE_LIMIT}"),
                            )
                        })?,
                    None => PAGE_LIMIT,
                };
                let page = tenancy.list_endpoints(&filter, request.query("page"), limit);
                // The next page starts after the last name of this one.
                let next = (page.len() == limit)
                    .then(|| page.last().map(|endpoint| endpoint.name.clone()))
                    .flatten();
                json!({ "items": page.iter().map(to_json).collect::<Vec<_>>(), "nextPage": next })
            }
            Operation::GetEndpoint { name } => to_json(&tenancy.get_endpoint(name)?),
            Operation::ListVcns => items(tenancy.list_vcns().iter().map(to_json).collect()),
            Operation::GetVcn { name } => to_json(&tenancy.get_vcn(name)?),
            Operation::ListWorkRequests => items(
                store
                    .work_requests()
                    .await?
                    .iter()
                    .filter(|request| self.may_see(principal, request))
                    .map(to_json)
                    .collect(),
            ),
            Operation::GetWorkRequest { id } => {
                let request = store.work_request(id).await?;
                if !self.may_see(principal, &request) {
                    let permission = work_request_permission(&request.resource_type);
                    return Err(denied(
                        principal,
                        operation.name(),
                        permission,
                        request.namespace.as_deref(),
                    ));
                }
                to_json(&request)
            }
            _ => unreachable!("{} changes things", operation.name()),
        })
    }

    fn may_see(&self, principal: &Principal, request: &WorkRequest) -> bool {
        let permission = work_request_permission(&request.resource_type);
        self.iam
            .allows(principal, permission, request.namespace.as_deref())
    }

    #[allow(clippy::too_many_arguments)]
    async fn mutate(
        &self,
        store: &mut Store,
        enforcer: &mut impl Enforcer,
        snapshot: Snapshot,
        principal: &Principal,
        operation: &Operation,
        request: &Request,
        since: Instant,
    ) -> Response {
        let accepted = unix_now();
        let mut after = snapshot.tenancy.clone();
        let mut checker = Service::checker(&self.verdicts, verdict_checker);
        let outcome = checked_change(&mut checker, &mut after, operation, request);
        drop(checker);
        let outcome = outcome.and_then(|checked| {
            confirm_unprotect(&snapshot.tenancy, &mut after, principal, operation, request)?;
            Ok(checked)
        });
        let (resource, namespace) = match &outcome {
            Ok((value, namespace, _)) => (
                value["id"]
                    .as_str()
                    .or(value["name"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
                namespace.clone(),
            ),
            Err(_) => (
                target_text(operation),
                operation.namespace().map(str::to_owned),
            ),
        };
        let mut work_request = WorkRequest {
            id: new_work_request_id(),
            operation_type: operation.name().to_owned(),
            status: String::new(),
            resource_type: operation.resource_type().name().to_owned(),
            namespace,
            resource,
            principal: principal.to_string(),
            revision: None,
            generation: None,
            percent_complete: 100.0,
            errors: Vec::new(),
            logs: Vec::new(),
            time_accepted: accepted,
            time_finished: accepted,
        };
        let outcome = match outcome {
            Ok((value, _, _)) => {
                // Recorded with the change itself, so a change is never in
                // the store without its work request; completed below.
                work_request.status = "SUCCEEDED".to_owned();
                work_request.logs.push(WorkRequestLog {
                    message: "stored".to_owned(),
                    timestamp: unix_now(),
                });
                match store
                    .commit(&snapshot, &mut after, Some(&work_request))
                    .await
                {
                    Ok(revision) => {
                        work_request.revision = Some(revision);
                        let committed = Snapshot {
                            tenancy: after,
                            revision,
                            cluster: snapshot.cluster,
                        };
                        self.enforce(enforcer, committed, operation, since, &mut work_request)
                            .map(|()| value)
                    }
                    Err(error) => Err(Failure::from(error)),
                }
            }
            Err(failure) => Err(failure),
        };
        let now = unix_now();
        work_request.time_finished = now;
        let mut response = match &outcome {
            Ok(value) => tagged(200, value.clone(), operation.has_etag()),
            Err(failure) => {
                work_request.status = "FAILED".to_owned();
                work_request.errors.push(WorkRequestError {
                    code: failure.code.to_owned(),
                    message: match &failure.diagnostics {
                        Some(diagnostics) => format!("{}\n{diagnostics}", failure.message),
                        None => failure.message.clone(),
                    },
                    timestamp: now,
                });
                failure.response()
            }
        };
        // Its final state (a committed change's record only said "stored").
        if let Err(error) = store.put_work_request(&work_request).await {
            tracing::warn!("cannot record the work request: {error:#}");
        }
        response
            .headers
            .push(("opc-work-request-id".to_owned(), work_request.id.clone()));
        if let Some(revision) = work_request.revision {
            response
                .headers
                .push(("zpr-revision".to_owned(), revision.to_string()));
        }
        if let Some(generation) = work_request.generation {
            response
                .headers
                .push(("zpr-generation".to_owned(), generation.to_string()));
        }
        let record = AuditRecord::carried_out(principal, operation, &work_request);
        self.record(store, &record).await;
        response
    }

    /// Hands a committed change to the agent beside the API, if one runs.
    fn enforce(
        &self,
        enforcer: &mut impl Enforcer,
        committed: Snapshot,
        operation: &Operation,
        since: Instant,
        work_request: &mut WorkRequest,
    ) -> Result<(), Failure> {
        let revision = committed.revision;
        match enforcer.enforce(committed, operation.name(), since) {
            None => {
                work_request.logs.push(WorkRequestLog {
                    message: format!(
                        "stored at revision {revision}; each host's agent applies it \
                         (`zpr fleet status`)"
                    ),
                    timestamp: unix_now(),
                });
                Ok(())
            }
            Some(Ok(generation)) => {
                work_request.generation = Some(generation);
                work_request.logs.push(WorkRequestLog {
                    message: format!("applied as policy generation {generation}"),
                    timestamp: unix_now(),
                });
                Ok(())
            }
            Some(Err(error)) => Err(Failure::new(
                500,
                "InternalServerError",
                format!(
                    "stored, but the reload failed (the previous policy stays in force): {error}"
                ),
            )),
        }
    }
}

/// Work request ids are not drawn from the tenancy's ids: a refused
/// change records one without changing the tenancy. Nanoseconds keep
/// them unique and in order.
fn new_work_request_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("ocid1.zprworkrequest.zpr.{nanos}")
}

/// A change that stops protecting more than half of some node's
/// protected endpoints is refused unless the caller confirmed it
/// (`allowUnprotect`); then the commit carries the confirmation, which
/// the nodes' agents check against the state they read. Any other change
/// carries none.
fn confirm_unprotect(
    before: &Tenancy,
    after: &mut Tenancy,
    principal: &Principal,
    operation: &Operation,
    request: &Request,
) -> Result<(), Failure> {
    after.confirmation = None;
    let unprotects = before.unprotects(after);
    if unprotects.is_empty() {
        return Ok(());
    }
    let lines: Vec<&str> = unprotects.iter().map(|(_, line)| line.as_str()).collect();
    if !request.allow_unprotect {
        return Err(Failure::new(
            409,
            "IncorrectState",
            format!(
                "{} {}: each node's agent would hold it back. Nothing changed; if this is \
                 meant, make the change again with --allow-unprotect (see it first with \
                 --dry-run)",
                operation.name(),
                lines.join("; ")
            ),
        ));
    }
    let digest = after
        .digest()
        .map_err(|error| Failure::new(500, "InternalServerError", format!("{error:#}")))?;
    after.confirmation = Some(Confirmation {
        principal: principal.to_string(),
        operation: operation.name().to_owned(),
        time: unix_now(),
        nodes: unprotects.into_iter().map(|(node, _)| node).collect(),
        digest,
    });
    Ok(())
}

/// A dry run's answer: the resource as the change would leave it, and the
/// change's impact as `zpr diff --live` reports it (with the live
/// connections it would cut where an agent runs beside the API). Nothing
/// is written.
fn impact(
    checker: &mut SnapshotChecker,
    enforcer: &impl Enforcer,
    snapshot: &Snapshot,
    operation: &Operation,
    request: &Request,
) -> Result<Value, Failure> {
    let Some(before) = checker.check(&snapshot.tenancy, None)?.inputs else {
        return Err(Failure::new(
            500,
            "InternalServerError",
            "the store's current inputs do not check: no impact can be computed",
        ));
    };
    let mut after_tenancy = snapshot.tenancy.clone();
    let (value, _, after) = checked_change(checker, &mut after_tenancy, operation, request)?;
    let Some(after) = after else {
        return Err(Failure::new(
            500,
            "InternalServerError",
            "the change checks, but its inputs were not kept: no impact can be computed",
        ));
    };
    let unprotects: Vec<String> = snapshot
        .tenancy
        .unprotects(&after_tenancy)
        .into_iter()
        .map(|(_, line)| line)
        .collect();
    let mut report = Report::new(&diff(&before.plan, &after.plan));
    report.revoked = enforcer
        .live_cuts(&before, &after)
        .transpose()
        .map_err(|error| {
            Failure::new(
                500,
                "InternalServerError",
                format!("reading the live connections: {error:#}"),
            )
        })?;
    Ok(json!({
        "dryRun": true,
        "resource": value,
        "impact": to_json(&report),
        "impactText": unprotects
            .iter()
            .map(|line| format!("unprotects: {line} (needs --allow-unprotect)\n"))
            .collect::<String>()
            + &report.to_string(),
        "unprotects": unprotects,
    }))
}

/// The change, made to `tenancy`, when `if-match` holds and the result
/// checks: the resource, its namespace and the inputs it leaves (when the
/// checker builds them; one for verdicts does not).
fn checked_change(
    checker: &mut SnapshotChecker,
    tenancy: &mut Tenancy,
    operation: &Operation,
    request: &Request,
) -> Result<(Value, Option<String>, Option<Inputs>), Failure> {
    if let Some(expected) = &request.if_match {
        let current = current(tenancy, operation)?;
        let current = etag(&current);
        if *expected != current {
            return Err(Failure::new(
                412,
                "NoEtagMatch",
                format!(
                    "the resource changed since it was read (if-match {expected}, its etag \
                     is now {current}): read it again, redo the change, and send the new \
                     etag; nothing changed"
                ),
            ));
        }
    }
    let (value, namespace) = change(tenancy, operation, request)?;
    let loaded = checker.check(tenancy, None)?;
    if loaded.errors > 0 {
        return Err(Failure {
            diagnostics: Some(loaded.report),
            ..Failure::new(
                400,
                "InvalidParameter",
                format!(
                    "{} rejected: the result does not check, nothing changed",
                    operation.name()
                ),
            )
        });
    }
    Ok((value, namespace, loaded.inputs))
}

/// The change itself.
fn change(
    tenancy: &mut Tenancy,
    operation: &Operation,
    request: &Request,
) -> Result<(Value, Option<String>), Failure> {
    let namespace_of = |tenancy: &Tenancy, name: &str| -> Result<Option<String>, Failure> {
        Ok(Some(tenancy.get_namespace(name)?.name))
    };
    Ok(match operation {
        Operation::CreateZprPolicy => {
            let create: CreatePolicy = body(request)?;
            let policy =
                tenancy.create_policy(&create.name, &create.description, &create.statements)?;
            (to_json(&policy), None)
        }
        Operation::UpdateZprPolicy { id } => {
            let update: UpdatePolicy = body(request)?;
            let policy = tenancy.update_policy(
                id,
                update.description.as_deref(),
                update.statements.as_deref(),
            )?;
            (to_json(&policy), None)
        }
        Operation::DeleteZprPolicy { id } => (to_json(&tenancy.delete_policy(id)?), None),
        Operation::UpdateConfiguration => {
            let update: UpdateConfiguration = body(request)?;
            (to_json(&tenancy.set_zpr_status(&update.zpr_status)?), None)
        }
        Operation::CreateSecurityAttributeNamespace => {
            let create: CreateNamed = body(request)?;
            let namespace = tenancy.create_namespace(&create.name, &create.description)?;
            let name = Some(namespace.name.clone());
            (to_json(&namespace), name)
        }
        Operation::UpdateSecurityAttributeNamespace { namespace } => {
            let update: UpdateNamespace = body(request)?;
            let updated = tenancy.update_namespace(
                namespace,
                update.description.as_deref(),
                update.is_retired,
            )?;
            let name = Some(updated.name.clone());
            (to_json(&updated), name)
        }
        Operation::DeleteSecurityAttributeNamespace { namespace }
        | Operation::CascadeDeleteSecurityAttributeNamespace { namespace } => {
            let cascade = matches!(
                operation,
                Operation::CascadeDeleteSecurityAttributeNamespace { .. }
            );
            let deleted = tenancy.delete_namespace(namespace, cascade)?;
            let name = Some(deleted.name.clone());
            (to_json(&deleted), name)
        }
        Operation::CreateSecurityAttribute { namespace } => {
            let create: CreateNamed = body(request)?;
            let attribute = tenancy.create_attribute(
                namespace,
                &create.name,
                &create.description,
                create.validator.as_ref(),
            )?;
            (to_json(&attribute), namespace_of(tenancy, namespace)?)
        }
        Operation::UpdateSecurityAttribute { namespace, name } => {
            let update: Value = body(request)?;
            let description = update.get("description").and_then(Value::as_str);
            // Absent: unchanged; null: freeform; an object: the new values.
            let validator: Option<Option<Validator>> = match update.get("validator") {
                None => None,
                Some(value) => Some(serde_json::from_value(value.clone()).map_err(|error| {
                    Failure::new(400, "InvalidParameter", format!("validator: {error}"))
                })?),
            };
            let attribute = tenancy.update_attribute(
                namespace,
                name,
                description,
                validator.as_ref().map(Option::as_ref),
            )?;
            (to_json(&attribute), namespace_of(tenancy, namespace)?)
        }
        Operation::DeleteSecurityAttribute { namespace, name } => {
            let attribute = tenancy.delete_attribute(namespace, name)?;
            (to_json(&attribute), namespace_of(tenancy, namespace)?)
        }
        Operation::ApplySecurityAttributes { endpoint }
        | Operation::RemoveSecurityAttributes { endpoint } => {
            let attributes: SecurityAttributes = body(request)?;
            let mut namespaces = Vec::new();
            for text in &attributes.security_attributes {
                let namespace = parse_attribute_text(text)?.namespace().to_owned();
                if matches!(operation, Operation::ApplySecurityAttributes { .. }) {
                    tenancy.apply_attribute(endpoint, text)?;
                } else {
                    tenancy.remove_attribute(endpoint, text)?;
                }
                namespaces.push(namespace);
            }
            namespaces.dedup();
            (
                to_json(&tenancy.get_endpoint(endpoint)?),
                Some(namespaces.join(",")),
            )
        }
        Operation::CreateEndpoint => {
            let details: EndpointDetails = body(request)?;
            (to_json(&tenancy.create_endpoint(details)?), None)
        }
        Operation::UpdateEndpoint { name } => {
            let changes: EndpointChanges = body(request)?;
            (to_json(&tenancy.update_endpoint(name, changes)?), None)
        }
        Operation::DeleteEndpoint { name } => (to_json(&tenancy.delete_endpoint(name)?), None),
        Operation::ImportEndpoints | Operation::BulkEditEndpoints => {
            (to_json(&edit_endpoints(tenancy, operation, request)?), None)
        }
        Operation::CreateVcn => {
            let details: VcnDetails = body(request)?;
            (to_json(&tenancy.create_vcn(details)?), None)
        }
        Operation::UpdateVcn { name } => {
            let changes: VcnDetails = body(request)?;
            (to_json(&tenancy.update_vcn(name, changes)?), None)
        }
        Operation::DeleteVcn { name } => (to_json(&tenancy.delete_vcn(name)?), None),
        _ => unreachable!("{} changes nothing", operation.name()),
    })
}

/// The endpoints an import or a bulk edit creates, replaces and deletes,
/// made to `tenancy`.
fn edit_endpoints(
    tenancy: &mut Tenancy,
    operation: &Operation,
    request: &Request,
) -> Result<Imported, Failure> {
    Ok(match operation {
        Operation::ImportEndpoints => {
            let import: ImportEndpoints = body(request)?;
            tenancy.import_endpoints("the inventory", &import.inventory, import.prune)?
        }
        _ => tenancy.edit_endpoints(body::<EndpointEdits>(request)?)?,
    })
}

/// A resource's etag: a hash of its JSON, so any change to it changes it.
fn etag(resource: &Value) -> String {
    let mut hasher = Fnv1a64::default();
    hasher.write(&serde_json::to_vec(resource).unwrap_or_default());
    format!("{:016x}", hasher.finish())
}

/// An answer; one resource with an etag carries it (header `etag`, and
/// field `etag` for readers of the body).
fn tagged(status: u16, mut value: Value, has_etag: bool) -> Response {
    if !has_etag || !value.is_object() {
        return Response::json(status, &value);
    }
    let tag = etag(&value);
    value["etag"] = tag.clone().into();
    let mut response = Response::json(status, &value);
    response.headers.push(("etag".to_owned(), tag));
    response
}

/// The resource a change acts on as it is now (what `if-match` compares).
fn current(tenancy: &Tenancy, operation: &Operation) -> Result<Value, Failure> {
    use Operation::*;
    Ok(match operation {
        UpdateZprPolicy { id } | DeleteZprPolicy { id } => to_json(&tenancy.get_policy(id)?),
        UpdateConfiguration => to_json(&tenancy.configuration),
        UpdateSecurityAttributeNamespace { namespace }
        | DeleteSecurityAttributeNamespace { namespace }
        | CascadeDeleteSecurityAttributeNamespace { namespace } => {
            to_json(&tenancy.get_namespace(namespace)?)
        }
        UpdateSecurityAttribute { namespace, name }
        | DeleteSecurityAttribute { namespace, name } => {
            to_json(&tenancy.get_attribute(namespace, name)?)
        }
        UpdateEndpoint { name } | DeleteEndpoint { name } => to_json(&tenancy.get_endpoint(name)?),
        UpdateVcn { name } | DeleteVcn { name } => to_json(&tenancy.get_vcn(name)?),
        _ => {
            return Err(Failure::new(
                400,
                "InvalidParameter",
                format!(
                    "{} takes no if-match: it does not change one existing resource",
                    operation.name()
                ),
            ));
        }
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// What a failed request was about, for its work request.
fn target_text(operation: &Operation) -> String {
    use Operation::*;
    match operation {
        GetZprPolicy { id } | UpdateZprPolicy { id } | DeleteZprPolicy { id } => id.clone(),
        ApplySecurityAttributes { endpoint } | RemoveSecurityAttributes { endpoint } => {
            endpoint.clone()
        }
        GetEndpoint { name }
        | UpdateEndpoint { name }
        | DeleteEndpoint { name }
        | GetVcn { name }
        | UpdateVcn { name }
        | DeleteVcn { name } => name.clone(),
        _ => operation.namespace().unwrap_or_default().to_owned(),
    }
}

/// The 403: who lacked which permission for what, and a statement that
/// would grant it.
fn denied(
    principal: &Principal,
    operation: &str,
    permission: Permission,
    namespace: Option<&str>,
) -> Failure {
    let (resource, verb) = permission.granted_by();
    let condition = namespace
        .map(|n| format!(" where target.security-attribute-namespace.name = '{n}'"))
        .unwrap_or_default();
    Failure::new(
        403,
        "NotAuthorized",
        format!(
            "{principal} lacks {permission}, which {operation} needs{}; a statement such as \
             'Allow group <GROUP> to {} {} in tenancy{condition}' grants it",
            namespace
                .map(|n| format!(" on namespace '{n}'"))
                .unwrap_or_default(),
            verb.name(),
            resource.name(),
        ),
    )
}
