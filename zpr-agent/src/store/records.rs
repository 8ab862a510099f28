//! A [`Tenancy`] as keyed records, one per resource (`policies/<id>`,
//! `endpoints/<name>`, ...), each a JSON value: what every store keeps.
//! One record per resource lets a change write only what it changed, and
//! lets a fleet's agents watch resources one by one.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::{Serialize, de::DeserializeOwned};

use super::{Tenancy, WorkRequest};

pub const POLICIES: &str = "policies/";
pub const NAMESPACES: &str = "namespaces/";
pub const ATTRIBUTES: &str = "attributes/";
pub const VCNS: &str = "vcns/";
pub const ENDPOINTS: &str = "endpoints/";
pub const CONFIGURATION: &str = "configuration";
pub const OSN_SERVICES: &str = "osn-services";
pub const NEXT_ID: &str = "next-id";
/// Work requests are kept beside the tenancy, not in it: agents never read them.
pub const WORK_REQUESTS: &str = "work-requests/";
/// A fleet's audit records, beside the tenancy too.
pub const AUDIT: &str = "audit/";

/// Records kept beside the tenancy (agents neither watch nor read them).
pub fn beside_tenancy(key: &str) -> bool {
    key.starts_with(WORK_REQUESTS) || key.starts_with(AUDIT)
}

/// Key -> JSON text.
pub type Records = BTreeMap<String, String>;

/// What turns one set of records into another.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Writes {
    pub puts: Vec<(String, String)>,
    pub deletes: Vec<String>,
}

impl Writes {
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.puts.len() + self.deletes.len()
    }

    /// The same writes in steps of at most `size`, what others refer to
    /// first: namespaces, attributes and VCNs before the endpoints that
    /// carry them, policies last. (Deletes, of which a seed has none, come
    /// after the puts.)
    pub fn in_steps(self, size: usize) -> Vec<Writes> {
        let rank = |key: &str| {
            [
                NAMESPACES,
                ATTRIBUTES,
                VCNS,
                CONFIGURATION,
                OSN_SERVICES,
                ENDPOINTS,
                POLICIES,
            ]
            .iter()
            .position(|prefix| key.starts_with(prefix))
            .unwrap_or(usize::MAX)
        };
        let mut puts = self.puts;
        puts.sort_by_key(|(key, _)| rank(key));
        let mut steps: Vec<Writes> = puts
            .chunks(size.max(1))
            .map(|chunk| Writes {
                puts: chunk.to_vec(),
                deletes: Vec::new(),
            })
            .collect();
        steps.extend(self.deletes.chunks(size.max(1)).map(|chunk| Writes {
            puts: Vec::new(),
            deletes: chunk.to_vec(),
        }));
        steps
    }

    /// Also records a work request.
    pub fn with_work_request(mut self, request: &WorkRequest) -> anyhow::Result<Writes> {
        self.puts.push((
            format!("{WORK_REQUESTS}{}", request.id),
            serde_json::to_string(request)?,
        ));
        Ok(self)
    }
}

pub fn to_records(tenancy: &Tenancy) -> anyhow::Result<Records> {
    let mut records = Records::new();
    fn put(records: &mut Records, key: String, value: &impl Serialize) -> anyhow::Result<()> {
        records.insert(key, serde_json::to_string(value)?);
        Ok(())
    }
    for (id, policy) in &tenancy.policies {
        put(&mut records, format!("{POLICIES}{id}"), policy)?;
    }
    for (id, namespace) in &tenancy.namespaces {
        put(&mut records, format!("{NAMESPACES}{id}"), namespace)?;
    }
    for (id, attribute) in &tenancy.attributes {
        put(&mut records, format!("{ATTRIBUTES}{id}"), attribute)?;
    }
    for (name, vcn) in &tenancy.vcns {
        put(&mut records, format!("{VCNS}{name}"), vcn)?;
    }
    for (name, endpoint) in &tenancy.endpoints {
        put(&mut records, format!("{ENDPOINTS}{name}"), endpoint)?;
    }
    put(
        &mut records,
        CONFIGURATION.to_owned(),
        &tenancy.configuration,
    )?;
    put(&mut records, OSN_SERVICES.to_owned(), &tenancy.osn_services)?;
    put(&mut records, NEXT_ID.to_owned(), &tenancy.next_id)?;
    Ok(records)
}

/// The tenancy that `records` hold (work requests and unknown keys are
/// not part of it).
pub fn from_records<'a>(
    records: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> anyhow::Result<Tenancy> {
    fn parse<T: DeserializeOwned>(key: &str, value: &str) -> anyhow::Result<T> {
        serde_json::from_str(value).with_context(|| format!("the store's record '{key}'"))
    }
    let mut tenancy = Tenancy::default();
    for (key, value) in records {
        if let Some(id) = key.strip_prefix(POLICIES) {
            tenancy.policies.insert(id.to_owned(), parse(key, value)?);
        } else if let Some(id) = key.strip_prefix(NAMESPACES) {
            tenancy.namespaces.insert(id.to_owned(), parse(key, value)?);
        } else if let Some(id) = key.strip_prefix(ATTRIBUTES) {
            tenancy.attributes.insert(id.to_owned(), parse(key, value)?);
        } else if let Some(name) = key.strip_prefix(VCNS) {
            tenancy.vcns.insert(name.to_owned(), parse(key, value)?);
        } else if let Some(name) = key.strip_prefix(ENDPOINTS) {
            tenancy
                .endpoints
                .insert(name.to_owned(), parse(key, value)?);
        } else if key == CONFIGURATION {
            tenancy.configuration = parse(key, value)?;
        } else if key == OSN_SERVICES {
            tenancy.osn_services = parse(key, value)?;
        } else if key == NEXT_ID {
            tenancy.next_id = parse(key, value)?;
        }
    }
    Ok(tenancy)
}

/// The puts and deletes that turn `before` into `after`.
pub fn writes(before: &Tenancy, after: &Tenancy) -> anyhow::Result<Writes> {
    let (before, after) = (to_records(before)?, to_records(after)?);
    let mut writes = Writes::default();
    for (key, value) in &after {
        if before.get(key) != Some(value) {
            writes.puts.push((key.clone(), value.clone()));
        }
    }
    for key in before.keys() {
        if !after.contains_key(key) {
            writes.deletes.push(key.clone());
        }
    }
    Ok(writes)
}

/// Work requests from their records, oldest first.
pub fn work_requests<'a>(
    records: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> anyhow::Result<Vec<WorkRequest>> {
    let mut requests: Vec<WorkRequest> = records
        .into_iter()
        .filter(|(key, _)| key.starts_with(WORK_REQUESTS))
        .map(|(key, value)| {
            serde_json::from_str(value).with_context(|| format!("the store's record '{key}'"))
        })
        .collect::<anyhow::Result<_>>()?;
    requests.sort_by_key(|request| id_number(&request.id));
    Ok(requests)
}

/// The number at the end of an id (`ocid1.<kind>.zpr.<n>`), which orders
/// ids by creation where their text would put 10 before 9.
fn id_number(id: &str) -> u64 {
    id.rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
