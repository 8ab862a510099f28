//! A [`Tenancy`] as keyed records, one per resource (`policies/<id>`,
//! `endpoints/<name>`, ...), each a JSON value: what every store keeps.
//! One record per resource lets a change write only what it changed, and
//! lets a fleet's agents watch resources one by one.

use std::{collections::BTreeMap, sync::Arc};

use anyhow::Context as _;
use serde::{Serialize, de::DeserializeOwned};

use super::{
    SecurityAttributeNamespace, StoredAttribute, StoredEndpoint, Tenancy, Vcn, WorkRequest,
    ZprPolicy,
};

pub const POLICIES: &str = "policies/";
pub const NAMESPACES: &str = "namespaces/";
pub const ATTRIBUTES: &str = "attributes/";
pub const VCNS: &str = "vcns/";
pub const ENDPOINTS: &str = "endpoints/";
pub const CONFIGURATION: &str = "configuration";
pub const OSN_SERVICES: &str = "osn-services";
pub const NEXT_ID: &str = "next-id";
/// Drawn at random when a tenancy is first seeded: a store that was reset
/// or restored from elsewhere holds another one (or none).
pub const TENANCY_ID: &str = "tenancy-id";
/// The operator's confirmation of a change that stops protecting most of
/// some host's endpoints, written with that change (see [`super::Confirmation`]).
pub const CONFIRMATION: &str = "confirmation";
/// The API server's signature of the state (see [`super::signing`]).
pub const SIGNATURE: &str = "signature";
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

/// Records as a store returned them: key -> value, both as bytes.
pub type RawRecords = BTreeMap<Vec<u8>, Vec<u8>>;

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
        // The tenancy id first, `next-id` last: present, it says the
        // tenancy is whole (see `Store::seed`).
        let rank = |key: &str| {
            if key == NEXT_ID {
                return usize::MAX;
            }
            [
                TENANCY_ID,
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
            .unwrap_or(usize::MAX - 1)
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
    write_records(tenancy, &mut records)?;
    Ok(records)
}

/// Where [`write_records`] puts each record.
pub trait RecordSink {
    fn put<T: Serialize>(&mut self, key: &str, value: &T) -> anyhow::Result<()>;

    /// A resource shared between copies of a tenancy (its policies and
    /// endpoints): a sink given copy after copy may keep what it made of
    /// each one it met, and use that again while it is the same.
    fn put_shared<T: Serialize + Send + Sync + 'static>(
        &mut self,
        key: &str,
        value: &Arc<T>,
    ) -> anyhow::Result<()> {
        self.put(key, value)
    }
}

impl RecordSink for Records {
    fn put<T: Serialize>(&mut self, key: &str, value: &T) -> anyhow::Result<()> {
        self.insert(key.to_owned(), serde_json::to_string(value)?);
        Ok(())
    }
}

/// Every record of `tenancy`, in key order: a digest hashes them as they
/// come, without a map of every record's text first (at 100,000
/// statements that map is most of what signing costs).
pub fn write_records(tenancy: &Tenancy, sink: &mut impl RecordSink) -> anyhow::Result<()> {
    fn group<S: RecordSink, V>(
        sink: &mut S,
        prefix: &str,
        resources: &BTreeMap<String, V>,
        put: impl Fn(&mut S, &str, &V) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut key = prefix.to_owned();
        for (id, resource) in resources {
            key.truncate(prefix.len());
            key.push_str(id);
            put(sink, &key, resource)?;
        }
        Ok(())
    }
    fn put<S: RecordSink, V: Serialize>(sink: &mut S, key: &str, value: &V) -> anyhow::Result<()> {
        sink.put(key, value)
    }
    fn put_shared<S: RecordSink, V: Serialize + Send + Sync + 'static>(
        sink: &mut S,
        key: &str,
        value: &Arc<V>,
    ) -> anyhow::Result<()> {
        sink.put_shared(key, value)
    }
    // Sorted by key: attributes/ < configuration < confirmation <
    // endpoints/ < namespaces/ < next-id < osn-services < policies/ <
    // signature < tenancy-id < vcns/ (a test holds it so).
    group(sink, ATTRIBUTES, &tenancy.attributes, put)?;
    sink.put(CONFIGURATION, &tenancy.configuration)?;
    if let Some(confirmation) = &tenancy.confirmation {
        sink.put(CONFIRMATION, confirmation)?;
    }
    group(sink, ENDPOINTS, &tenancy.endpoints, put_shared)?;
    group(sink, NAMESPACES, &tenancy.namespaces, put)?;
    sink.put(NEXT_ID, &tenancy.next_id)?;
    sink.put(OSN_SERVICES, &tenancy.osn_services)?;
    group(sink, POLICIES, &tenancy.policies, put_shared)?;
    if let Some(signature) = &tenancy.signature {
        sink.put(SIGNATURE, signature)?;
    }
    if let Some(id) = &tenancy.tenancy_id {
        sink.put(TENANCY_ID, id)?;
    }
    group(sink, VCNS, &tenancy.vcns, put)
}

/// A record a store holds that is not one zpr wrote: its key or value is
/// not UTF-8, its value does not parse as the record its key names, or
/// its key names no record. A state holding one is not applied (the live
/// policy stays) and is named, whichever way it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// The key as written, non-UTF-8 bytes escaped.
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the store's record '{}' is invalid ({}): the live policy stays until it is \
             fixed or removed",
            self.key, self.reason
        )
    }
}

impl std::error::Error for BadRecord {}

/// The tenancy that `records` hold, as raw bytes from a store. Records
/// kept beside the tenancy (work requests, audit) are not part of it;
/// every other record must be one of the tenancy's, valid UTF-8 and
/// valid JSON of its kind.
pub fn from_records<'a>(
    records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<Tenancy, BadRecord> {
    let mut tenancy = Tenancy::default();
    for (key, value) in records {
        read_record(&mut tenancy, key, value)?;
    }
    Ok(tenancy)
}

/// A tenancy read from a store's records one record at a time, as they
/// are put and deleted: a watcher reads only what each event changed
/// (at 100,000 statements, reading every record again was a fifth of
/// each fleet agent's work per change), and a list only the records that
/// differ from those held. Each record is read by the one reader
/// [`from_records`] uses, so the tenancy is always the one `from_records`
/// gives for the records put and not deleted since.
#[derive(Default)]
pub struct TenancyRecords {
    tenancy: Tenancy,
    /// The records held that do not read, by key.
    bad: BTreeMap<Vec<u8>, BadRecord>,
    /// The tenancy's records as they were put (not those beside it).
    held: RawRecords,
}

impl TenancyRecords {
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.delete(key);
        if let Err(bad) = read_record(&mut self.tenancy, key, value) {
            self.bad.insert(key.to_vec(), bad);
        }
        if !std::str::from_utf8(key).is_ok_and(beside_tenancy) {
            self.held.insert(key.to_vec(), value.to_vec());
        }
    }

    pub fn delete(&mut self, key: &[u8]) {
        self.held.remove(key);
        if self.bad.remove(key).is_none() {
            forget_record(&mut self.tenancy, key);
        }
    }

    /// Makes `listed` the records held, reading only those that differ
    /// from what is held (a store's whole list, each time it is read).
    pub fn relist(&mut self, listed: &RawRecords) {
        let gone: Vec<Vec<u8>> = self
            .held
            .keys()
            .filter(|key| !listed.contains_key(*key))
            .cloned()
            .collect();
        for key in gone {
            self.delete(&key);
        }
        for (key, value) in listed {
            if self.held.get(key) != Some(value) {
                self.put(key, value);
            }
        }
    }

    /// The tenancy, or the first record (by key) that does not read.
    pub fn tenancy(&self) -> Result<Tenancy, BadRecord> {
        match self.bad.values().next() {
            Some(bad) => Err(bad.clone()),
            None => Ok(self.tenancy.clone()),
        }
    }
}

/// Takes out of `tenancy` what the record `key` put there.
fn forget_record(tenancy: &mut Tenancy, key: &[u8]) {
    let Ok(key) = std::str::from_utf8(key) else {
        return;
    };
    if let Some(id) = key.strip_prefix(POLICIES) {
        tenancy.policies.remove(id);
    } else if let Some(id) = key.strip_prefix(NAMESPACES) {
        tenancy.namespaces.remove(id);
    } else if let Some(id) = key.strip_prefix(ATTRIBUTES) {
        tenancy.attributes.remove(id);
    } else if let Some(name) = key.strip_prefix(VCNS) {
        tenancy.vcns.remove(name);
    } else if let Some(name) = key.strip_prefix(ENDPOINTS) {
        tenancy.endpoints.remove(name);
    } else if key == CONFIGURATION {
        tenancy.configuration = Tenancy::default().configuration;
    } else if key == OSN_SERVICES {
        tenancy.osn_services = Vec::new();
    } else if key == NEXT_ID {
        tenancy.next_id = Tenancy::default().next_id;
    } else if key == TENANCY_ID {
        tenancy.tenancy_id = None;
    } else if key == CONFIRMATION {
        tenancy.confirmation = None;
    } else if key == SIGNATURE {
        tenancy.signature = None;
    }
}

pub fn from_raw(records: &RawRecords) -> Result<Tenancy, BadRecord> {
    from_records(
        records
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_slice())),
    )
}

/// Records as zpr keeps them in memory.
pub fn from_texts(records: &Records) -> Result<Tenancy, BadRecord> {
    from_records(
        records
            .iter()
            .map(|(key, value)| (key.as_bytes(), value.as_bytes())),
    )
}

/// Adds one record to `tenancy`.
fn read_record(tenancy: &mut Tenancy, key: &[u8], value: &[u8]) -> Result<(), BadRecord> {
    let bad = |reason: String| BadRecord {
        key: key.escape_ascii().to_string(),
        reason,
    };
    let key = std::str::from_utf8(key).map_err(|_| bad("its key is not UTF-8".to_owned()))?;
    if beside_tenancy(key) {
        return Ok(());
    }
    let value = std::str::from_utf8(value).map_err(|error| {
        bad(format!(
            "byte {} of its value is not UTF-8",
            error.valid_up_to()
        ))
    })?;
    fn parse<T: DeserializeOwned>(value: &str) -> Result<T, String> {
        serde_json::from_str(value).map_err(|error| error.to_string())
    }
    // A record's key names what its value holds: a value naming another
    // resource would be two resources under one key.
    fn named<T: DeserializeOwned>(
        value: &str,
        key_name: &str,
        name_of: impl Fn(&T) -> &str,
    ) -> Result<T, String> {
        let parsed: T = parse(value)?;
        if name_of(&parsed) != key_name {
            return Err(format!(
                "its value names '{}', its key '{key_name}'",
                name_of(&parsed)
            ));
        }
        Ok(parsed)
    }
    // What the API checks of a change, checked of every record read.
    fn checked<T>(value: T, check: impl Fn(&T) -> anyhow::Result<()>) -> Result<T, String> {
        check(&value).map_err(|error| error.to_string())?;
        Ok(value)
    }
    let read = if let Some(id) = key.strip_prefix(POLICIES) {
        named(value, id, |p: &ZprPolicy| &p.id)
            .and_then(|policy| checked(policy, ZprPolicy::check))
            .map(|policy| drop(tenancy.policies.insert(id.to_owned(), Arc::new(policy))))
    } else if let Some(id) = key.strip_prefix(NAMESPACES) {
        named(value, id, |n: &SecurityAttributeNamespace| &n.id)
            .and_then(|namespace| checked(namespace, SecurityAttributeNamespace::check))
            .map(|namespace| drop(tenancy.namespaces.insert(id.to_owned(), namespace)))
    } else if let Some(id) = key.strip_prefix(ATTRIBUTES) {
        named(value, id, |a: &StoredAttribute| &a.id)
            .and_then(|attribute| checked(attribute, StoredAttribute::check))
            .map(|attribute| drop(tenancy.attributes.insert(id.to_owned(), attribute)))
    } else if let Some(name) = key.strip_prefix(VCNS) {
        named(value, name, |v: &Vcn| &v.name)
            .map(|vcn| drop(tenancy.vcns.insert(name.to_owned(), vcn)))
    } else if let Some(name) = key.strip_prefix(ENDPOINTS) {
        named(value, name, |e: &StoredEndpoint| &e.name).map(|endpoint| {
            drop(
                tenancy
                    .endpoints
                    .insert(name.to_owned(), Arc::new(endpoint)),
            )
        })
    } else if key == CONFIGURATION {
        parse(value).map(|configuration| tenancy.configuration = configuration)
    } else if key == OSN_SERVICES {
        parse(value).map(|services| tenancy.osn_services = services)
    } else if key == NEXT_ID {
        parse(value).map(|next| tenancy.next_id = next)
    } else if key == TENANCY_ID {
        parse(value).map(|id| tenancy.tenancy_id = Some(id))
    } else if key == CONFIRMATION {
        parse(value).map(|confirmed| tenancy.confirmation = Some(confirmed))
    } else if key == SIGNATURE {
        parse(value).map(|signed| tenancy.signature = Some(signed))
    } else {
        return Err(bad("zpr keeps no record of that name".to_owned()));
    };
    read.map_err(bad)
}

/// The puts and deletes that turn `before` into `after`.
pub fn writes(before: &Tenancy, after: &Tenancy) -> anyhow::Result<Writes> {
    // Equal resources make equal records: only those that differ are
    // written out to be compared (a change to a large tenancy touches few).
    let (before, after) = (
        to_records(&differing(before, after))?,
        to_records(&differing(after, before))?,
    );
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

/// `tenancy` with only the resources `other` does not hold as they are.
fn differing(tenancy: &Tenancy, other: &Tenancy) -> Tenancy {
    fn only<V: Clone + PartialEq>(
        these: &BTreeMap<String, V>,
        others: &BTreeMap<String, V>,
    ) -> BTreeMap<String, V> {
        these
            .iter()
            .filter(|(id, resource)| others.get(*id) != Some(resource))
            .map(|(id, resource)| (id.clone(), resource.clone()))
            .collect()
    }
    Tenancy {
        policies: only(&tenancy.policies, &other.policies),
        namespaces: only(&tenancy.namespaces, &other.namespaces),
        attributes: only(&tenancy.attributes, &other.attributes),
        vcns: only(&tenancy.vcns, &other.vcns),
        endpoints: only(&tenancy.endpoints, &other.endpoints),
        configuration: tenancy.configuration.clone(),
        osn_services: tenancy.osn_services.clone(),
        next_id: tenancy.next_id,
        tenancy_id: tenancy.tenancy_id.clone(),
        confirmation: tenancy.confirmation.clone(),
        signature: tenancy.signature.clone(),
    }
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
