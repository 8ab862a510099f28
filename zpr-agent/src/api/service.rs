//! Carrying out one API request for one principal: authorise it against
//! the IAM statements, read or change the store, and for a change: check
//! the result as the files are checked (rolled back when invalid), commit,
//! reload the agent through its one reload path, and record a work request
//! and an audit line.

use std::time::Instant;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    audit::{AuditLog, AuditRecord},
    http::{Request, Response},
    operations::{Operation, work_request_permission},
};
use std::hash::Hasher as _;

use crate::cli::diff_report::Report;
use crate::compile::{Fnv1a64, diff};
use crate::daemon::Guard;
use crate::inputs::Inputs;
use crate::lang::bounded;
use crate::{
    daemon::{Agent, unix_now},
    iam::{IamPolicy, Permission, Principal},
    store::{self, Refusal, RefusalKind, Validator, WorkRequest, WorkRequestError, WorkRequestLog},
};

pub struct Service {
    pub iam: IamPolicy,
    pub audit: AuditLog,
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

impl Service {
    pub fn handle(&self, agent: &mut Agent, principal: &Principal, request: &Request) -> Response {
        let since = Instant::now();
        let operation = match Operation::route(&request.method, &request.path) {
            Ok(operation) => operation,
            Err(message) => return Failure::new(404, "NotFound", message).response(),
        };
        let Some(store) = agent.store() else {
            return Failure::new(
                500,
                "InternalServerError",
                "the agent serves files, not a store",
            )
            .response();
        };
        if let Err(failure) = self.authorize(store.connection(), principal, &operation, request) {
            if operation.mutates() {
                let mut record = AuditRecord::denied(principal, &operation, &failure.message);
                record.dry_run = request.dry_run;
                self.audit.record(&record);
            }
            return failure.response();
        }
        if !operation.mutates() {
            return match self.read(store.connection(), principal, &operation) {
                Ok(value) => tagged(200, value, operation.has_etag()),
                Err(failure) => failure.response(),
            };
        }
        if request.dry_run {
            return self.dry_run(agent, principal, &operation, request);
        }
        self.mutate(agent, principal, &operation, request, since)
    }

    /// What a change would do, without doing it: checked as the real call
    /// is, its impact on what may connect computed against what the store
    /// holds now, then rolled back. No work request, no generation.
    fn dry_run(
        &self,
        agent: &mut Agent,
        principal: &Principal,
        operation: &Operation,
        request: &Request,
    ) -> Response {
        let outcome = impact(agent, operation, request);
        let failure = outcome
            .as_ref()
            .err()
            .map(|failure| failure.message.as_str());
        self.audit.record(&AuditRecord::dry_run(
            principal,
            operation,
            target_text(operation),
            failure,
        ));
        match outcome {
            Ok(answer) => Response::json(200, &answer),
            Err(failure) => failure.response(),
        }
    }

    /// Checks the permissions the operation needs; a 403 names the missing one.
    fn authorize(
        &self,
        connection: &rusqlite::Connection,
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
                    let attribute = store::parse_attribute_text(text)?;
                    needed.push((
                        Permission::SecurityAttributeNamespaceUse,
                        Some(attribute.namespace().to_owned()),
                    ));
                }
            }
            _ => {
                if let Some(permission) = operation.permission() {
                    // Ids name the namespace too: conditions compare names.
                    let namespace = operation.namespace().map(|namespace| {
                        store::get_namespace(connection, namespace)
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

    fn read(
        &self,
        connection: &rusqlite::Connection,
        principal: &Principal,
        operation: &Operation,
    ) -> Result<Value, Failure> {
        let items = |items: Vec<Value>| json!({ "items": items });
        Ok(match operation {
            Operation::ListZprPolicies => items(
                store::list_policies(connection)?
                    .iter()
                    .map(to_json)
                    .collect(),
            ),
            Operation::GetZprPolicy { id } => to_json(&store::get_policy(connection, id)?),
            Operation::GetConfiguration => to_json(&store::get_configuration(connection)?),
            Operation::ListSecurityAttributeNamespaces => {
                let all = store::list_namespaces(connection)?;
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
                to_json(&store::get_namespace(connection, namespace)?)
            }
            Operation::ListSecurityAttributes { namespace } => items(
                store::list_attributes(connection, namespace)?
                    .iter()
                    .map(to_json)
                    .collect(),
            ),
            Operation::GetSecurityAttribute { namespace, name } => {
                to_json(&store::get_attribute(connection, namespace, name)?)
            }
            Operation::ListWorkRequests => items(
                store::list_work_requests(connection)?
                    .iter()
                    .filter(|request| self.may_see(principal, request))
                    .map(to_json)
                    .collect(),
            ),
            Operation::GetWorkRequest { id } => {
                let request = store::get_work_request(connection, id)?;
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

    fn mutate(
        &self,
        agent: &mut Agent,
        principal: &Principal,
        operation: &Operation,
        request: &Request,
        since: Instant,
    ) -> Response {
        let accepted = unix_now();
        let outcome = self.change_and_check(agent, operation, request);
        let (resource, namespace) = match &outcome {
            Ok((value, namespace)) => (
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
            id: String::new(),
            operation_type: operation.name().to_owned(),
            status: String::new(),
            resource_type: operation.resource_type().name().to_owned(),
            namespace,
            resource,
            principal: principal.to_string(),
            generation: None,
            percent_complete: 100.0,
            errors: Vec::new(),
            logs: Vec::new(),
            time_accepted: accepted,
            time_finished: accepted,
        };
        // The store changed: apply it as the files would be.
        let outcome = outcome.and_then(|(value, _)| {
            agent.reload(operation.name(), since, Guard::Confirmed);
            let status = agent.status();
            match &status.last_error {
                Some(error) => Err(Failure::new(
                    500,
                    "InternalServerError",
                    format!(
                        "stored, but the reload failed (the previous policy stays in force): {}",
                        error.message
                    ),
                )),
                None => Ok((value, status.generation)),
            }
        });
        let now = unix_now();
        work_request.time_finished = now;
        let response = match &outcome {
            Ok((value, generation)) => {
                work_request.status = "SUCCEEDED".to_owned();
                work_request.generation = Some(*generation);
                work_request.logs.push(WorkRequestLog {
                    message: format!("applied as policy generation {generation}"),
                    timestamp: now,
                });
                tagged(200, value.clone(), operation.has_etag())
            }
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
        let mut response = response;
        if let Some(store) = agent.store() {
            match store::insert_work_request(store.connection(), &mut work_request) {
                Ok(()) => response
                    .headers
                    .push(("opc-work-request-id".to_owned(), work_request.id.clone())),
                Err(error) => tracing::warn!("cannot record the work request: {error:#}"),
            }
        }
        if let Some(generation) = work_request.generation {
            response
                .headers
                .push(("zpr-generation".to_owned(), generation.to_string()));
        }
        self.audit.record(&AuditRecord::carried_out(
            principal,
            operation,
            &work_request,
        ));
        response
    }

    /// Changes the store in a transaction and commits it only when the
    /// result checks; returns the resource and its namespace, if any.
    fn change_and_check(
        &self,
        agent: &mut Agent,
        operation: &Operation,
        request: &Request,
    ) -> Result<(Value, Option<String>), Failure> {
        let Some(store) = agent.store_mut() else {
            return Err(Failure::new(500, "InternalServerError", "no store"));
        };
        let transaction = store.transaction()?;
        let (value, namespace, _) = checked_change(&transaction, operation, request)?;
        transaction.commit().map_err(anyhow::Error::from)?;
        Ok((value, namespace))
    }
}

/// A dry run's answer: the resource as the change would leave it, and the
/// change's impact as `zpr diff` reports it. The transaction is dropped,
/// so the store is rolled back.
fn impact(agent: &mut Agent, operation: &Operation, request: &Request) -> Result<Value, Failure> {
    let Some(store) = agent.store_mut() else {
        return Err(Failure::new(500, "InternalServerError", "no store"));
    };
    let transaction = store.transaction()?;
    let Some(before) = store::load(&transaction)?.inputs else {
        return Err(Failure::new(
            500,
            "InternalServerError",
            "the store's current inputs do not check: no impact can be computed",
        ));
    };
    let (value, _, after) = checked_change(&transaction, operation, request)?;
    let report = Report::new(&diff(&before.plan, &after.plan));
    Ok(json!({
        "dryRun": true,
        "resource": value,
        "impact": to_json(&report),
        "impactText": report.to_string(),
    }))
}

/// The change, in `transaction`, when `if-match` holds and the result
/// checks: the resource, its namespace and the inputs it leaves.
fn checked_change(
    transaction: &rusqlite::Connection,
    operation: &Operation,
    request: &Request,
) -> Result<(Value, Option<String>, Inputs), Failure> {
    if let Some(expected) = &request.if_match {
        let current = current(transaction, operation)?;
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
    let (value, namespace) = change(transaction, operation, request)?;
    let loaded = store::load(transaction)?;
    let Some(inputs) = loaded.inputs else {
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
    };
    Ok((value, namespace, inputs))
}

/// The change itself, inside the transaction.
fn change(
    connection: &rusqlite::Connection,
    operation: &Operation,
    request: &Request,
) -> Result<(Value, Option<String>), Failure> {
    let namespace_of = |name: &str| -> Result<Option<String>, Failure> {
        Ok(Some(store::get_namespace(connection, name)?.name))
    };
    Ok(match operation {
        Operation::CreateZprPolicy => {
            let create: CreatePolicy = body(request)?;
            let policy = store::create_policy(
                connection,
                &create.name,
                &create.description,
                &create.statements,
            )?;
            (to_json(&policy), None)
        }
        Operation::UpdateZprPolicy { id } => {
            let update: UpdatePolicy = body(request)?;
            let policy = store::update_policy(
                connection,
                id,
                update.description.as_deref(),
                update.statements.as_deref(),
            )?;
            (to_json(&policy), None)
        }
        Operation::DeleteZprPolicy { id } => {
            (to_json(&store::delete_policy(connection, id)?), None)
        }
        Operation::UpdateConfiguration => {
            let update: UpdateConfiguration = body(request)?;
            (
                to_json(&store::set_zpr_status(connection, &update.zpr_status)?),
                None,
            )
        }
        Operation::CreateSecurityAttributeNamespace => {
            let create: CreateNamed = body(request)?;
            let namespace = store::create_namespace(connection, &create.name, &create.description)?;
            let name = Some(namespace.name.clone());
            (to_json(&namespace), name)
        }
        Operation::UpdateSecurityAttributeNamespace { namespace } => {
            let update: UpdateNamespace = body(request)?;
            let updated = store::update_namespace(
                connection,
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
            let deleted = store::delete_namespace(connection, namespace, cascade)?;
            let name = Some(deleted.name.clone());
            (to_json(&deleted), name)
        }
        Operation::CreateSecurityAttribute { namespace } => {
            let create: CreateNamed = body(request)?;
            let attribute = store::create_attribute(
                connection,
                namespace,
                &create.name,
                &create.description,
                create.validator.as_ref(),
            )?;
            (to_json(&attribute), namespace_of(namespace)?)
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
            let attribute = store::update_attribute(
                connection,
                namespace,
                name,
                description,
                validator.as_ref().map(Option::as_ref),
            )?;
            (to_json(&attribute), namespace_of(namespace)?)
        }
        Operation::DeleteSecurityAttribute { namespace, name } => {
            let attribute = store::delete_attribute(connection, namespace, name)?;
            (to_json(&attribute), namespace_of(namespace)?)
        }
        Operation::ApplySecurityAttributes { endpoint }
        | Operation::RemoveSecurityAttributes { endpoint } => {
            let attributes: SecurityAttributes = body(request)?;
            let mut namespaces = Vec::new();
            for text in &attributes.security_attributes {
                let namespace = store::parse_attribute_text(text)?.namespace().to_owned();
                if matches!(operation, Operation::ApplySecurityAttributes { .. }) {
                    store::apply_attribute(connection, endpoint, text, &namespace)?;
                } else {
                    store::remove_attribute(connection, endpoint, text)?;
                }
                namespaces.push(namespace);
            }
            namespaces.dedup();
            (
                to_json(&store::get_endpoint(connection, endpoint)?),
                Some(namespaces.join(",")),
            )
        }
        _ => unreachable!("{} changes nothing", operation.name()),
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
fn current(connection: &rusqlite::Connection, operation: &Operation) -> Result<Value, Failure> {
    use Operation::*;
    Ok(match operation {
        UpdateZprPolicy { id } | DeleteZprPolicy { id } => {
            to_json(&store::get_policy(connection, id)?)
        }
        UpdateConfiguration => to_json(&store::get_configuration(connection)?),
        UpdateSecurityAttributeNamespace { namespace }
        | DeleteSecurityAttributeNamespace { namespace }
        | CascadeDeleteSecurityAttributeNamespace { namespace } => {
            to_json(&store::get_namespace(connection, namespace)?)
        }
        UpdateSecurityAttribute { namespace, name }
        | DeleteSecurityAttribute { namespace, name } => {
            to_json(&store::get_attribute(connection, namespace, name)?)
        }
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
