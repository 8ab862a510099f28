//! The Plan: everything the kernel needs, as plain sorted data. The same
//! inputs give a byte-identical Plan.
//!
//! How the kernel uses it, per new flow at a protected local endpoint:
//! 1. The local address (source on egress, destination on ingress) must be
//!    one of the endpoint's [`EndpointConfig::addresses`]; its UID is the
//!    local UID. (Egress otherwise: spoofed source, except neighbour
//!    discovery from link-local or `::`; ingress: foreign destination.)
//! 2. The remote address resolves through [`Plan::hosts`] (exact), else
//!    [`Plan::prefixes`] (longest prefix; `0.0.0.0/0` and `::/0` are there).
//! 3. Policy: longest L4 prefix in the table (local, remote, direction);
//!    on a miss, in the table (local, [`ANY_REMOTE`], direction). The entry
//!    found is complete on its own; no other lookup is needed.

use foldhash::HashSet;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::decision::Direction;
use super::l4::L4Prefix;
use crate::inventory::Mode;
use crate::lang::address::{format_prefix, parse_prefix};
use crate::lang::{IpPrefix, Span, StatementId};

/// An identity. UIDs are numbered from 1.
pub type Uid = u32;
/// In a policy key's remote half: any remote identity.
pub const ANY_REMOTE: Uid = 0;
/// Index into [`Plan::statements`].
pub type StatementIndex = u32;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Plan {
    /// Every statement of the policy set, sorted by id.
    pub statements: Vec<PlanStatement>,
    /// `identities[i].uid == i + 1`.
    pub identities: Vec<Identity>,
    /// Exact address -> UID, for every endpoint address; sorted by address.
    pub hosts: Vec<HostEntry>,
    /// Longest-prefix address -> UID; sorted (IPv4 first).
    pub prefixes: Vec<PrefixEntry>,
    /// Every endpoint of the inventory, sorted by name; the datapath
    /// attaches to those with an interface.
    pub endpoints: Vec<EndpointConfig>,
    /// Sorted by key; keys are unique.
    pub policy: Vec<PolicyEntry>,
    /// FNV-1a 64 over all of the above: equal for equal Plans, whatever
    /// the generation they are loaded as.
    #[serde(serialize_with = "hex")]
    pub content_hash: u64,
    pub sizes: Sizes,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PlanStatement {
    #[serde(serialize_with = "display")]
    pub id: StatementId,
    pub stateless: bool,
}

/// Deserialisable for the agent's status file, where `zpr monitor` finds
/// it to name the addresses of events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub uid: Uid,
    /// Endpoint addresses with this UID.
    pub members: Vec<IdentityMember>,
    /// LPM entries resolving to this UID.
    #[serde(
        serialize_with = "prefix_list",
        deserialize_with = "prefix_list_from_text"
    )]
    pub prefixes: Vec<IpPrefix>,
    /// The selectors matching it, as `zpr compile` prints them.
    pub selectors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdentityMember {
    pub endpoint: String,
    pub address: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct HostEntry {
    pub address: IpAddr,
    pub uid: Uid,
    /// The endpoint that declares the address.
    pub endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PrefixEntry {
    #[serde(serialize_with = "prefix_text")]
    pub prefix: IpPrefix,
    pub uid: Uid,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct EndpointConfig {
    pub name: String,
    /// Host-side interface; present for endpoints on this host.
    pub interface: Option<String>,
    pub mode: Mode,
    /// Carries an attribute: default deny applies. Unprotected endpoints
    /// are not enforced.
    pub protected: bool,
    /// Its own addresses (anti-spoofing) and the UID of each: the families
    /// (and prefix selectors) can tell an endpoint's addresses apart.
    pub addresses: Vec<EndpointAddress>,
    /// Its security attributes as `namespace.key:value`, for flow logs.
    pub attributes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct EndpointAddress {
    pub address: IpAddr,
    pub uid: Uid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PolicyKey {
    pub local: Uid,
    pub direction: Direction,
    /// [`ANY_REMOTE`] for the wildcard table.
    pub remote: Uid,
    pub l4: L4Prefix,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PolicyValue {
    /// Every statement allowing the packets this entry is found for,
    /// ascending; the first is the entry's cookie for events.
    pub statements: Vec<StatementIndex>,
    /// True only when every one of those statements is stateless.
    pub stateless: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PolicyEntry {
    pub key: PolicyKey,
    pub value: PolicyValue,
}

/// Entry counts by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Sizes {
    pub statements: usize,
    pub identities: usize,
    pub hosts_v4: usize,
    pub hosts_v6: usize,
    pub prefixes_v4: usize,
    pub prefixes_v6: usize,
    pub endpoints: usize,
    pub local_endpoints: usize,
    pub policy_entries: usize,
    /// Entries whose local UID is that of an address of an endpoint with an
    /// interface: what a host needs if it writes only its own.
    pub local_policy_entries: usize,
    /// Distinct (local, direction, remote) tables.
    pub policy_tables: usize,
    /// Sum of the statement lists' lengths over all policy entries.
    pub statement_references: usize,
}

impl Plan {
    pub(crate) fn assemble(
        statements: Vec<PlanStatement>,
        identities: Vec<Identity>,
        mut hosts: Vec<HostEntry>,
        prefixes: Vec<PrefixEntry>,
        mut endpoints: Vec<EndpointConfig>,
        policy: Vec<PolicyEntry>,
    ) -> Plan {
        hosts.sort_by_key(|host| host.address);
        endpoints.sort_by(|a, b| a.name.cmp(&b.name));
        let mut hasher = Fnv1a64::default();
        (
            &statements,
            &identities,
            &hosts,
            &prefixes,
            &endpoints,
            &policy,
        )
            .hash(&mut hasher);
        let mut tables: Vec<(Uid, Direction, Uid)> = policy
            .iter()
            .map(|e| (e.key.local, e.key.direction, e.key.remote))
            .collect();
        tables.dedup();
        let local_uids: HashSet<Uid> = endpoints
            .iter()
            .filter(|e| e.interface.is_some())
            .flat_map(|e| e.addresses.iter().map(|a| a.uid))
            .collect();
        let sizes = Sizes {
            statements: statements.len(),
            identities: identities.len(),
            hosts_v4: hosts.iter().filter(|h| h.address.is_ipv4()).count(),
            hosts_v6: hosts.iter().filter(|h| h.address.is_ipv6()).count(),
            prefixes_v4: prefixes.iter().filter(|p| p.prefix.addr.is_ipv4()).count(),
            prefixes_v6: prefixes.iter().filter(|p| p.prefix.addr.is_ipv6()).count(),
            endpoints: endpoints.len(),
            local_endpoints: endpoints.iter().filter(|e| e.interface.is_some()).count(),
            policy_entries: policy.len(),
            local_policy_entries: policy
                .iter()
                .filter(|e| local_uids.contains(&e.key.local))
                .count(),
            policy_tables: tables.len(),
            statement_references: policy.iter().map(|e| e.value.statements.len()).sum(),
        };
        Plan {
            statements,
            identities,
            hosts,
            prefixes,
            endpoints,
            policy,
            content_hash: hasher.finish(),
            sizes,
        }
    }

    pub fn endpoint(&self, name: &str) -> Option<&EndpointConfig> {
        self.endpoints
            .binary_search_by(|e| e.name.as_str().cmp(name))
            .ok()
            .map(|index| &self.endpoints[index])
    }

    pub fn statement_ids(&self, value: &PolicyValue) -> Vec<StatementId> {
        value
            .statements
            .iter()
            .map(|&index| self.statements[index as usize].id.clone())
            .collect()
    }
}

/// A hash with a fixed definition, so the same Plan (or API resource)
/// hashes the same in every process: FNV-1a's step taken over whole
/// integers and 8-byte words, not bytes (a Plan at size hashes tens of
/// megabytes).
pub struct Fnv1a64(u64);

impl Fnv1a64 {
    fn step(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(0x0100_0000_01b3);
    }
}

impl Default for Fnv1a64 {
    fn default() -> Fnv1a64 {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let (words, rest) = bytes.as_chunks::<8>();
        for &word in words {
            self.step(u64::from_le_bytes(word));
        }
        for &byte in rest {
            self.step(u64::from(byte));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.step(u64::from(value));
    }

    fn write_u16(&mut self, value: u16) {
        self.step(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.step(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.step(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.step(value as u64);
    }
}

fn display<S: Serializer, T: std::fmt::Display>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn hex<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{value:016x}"))
}

fn prefix_text<S: Serializer>(prefix: &IpPrefix, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_prefix(prefix))
}

fn prefix_list<S: Serializer>(prefixes: &[IpPrefix], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(prefixes.iter().map(format_prefix))
}

fn prefix_list_from_text<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpPrefix>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| {
            parse_prefix(text, Span::new(0, 0))
                .map(|parsed| parsed.prefix)
                .map_err(|diagnostic| serde::de::Error::custom(diagnostic.message))
        })
        .collect()
}
