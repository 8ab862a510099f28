//! Where a change is in force: each agent of a fleet keeps a record of
//! itself under `nodes/<node>`, attached to a lease it keeps alive (so the
//! record goes one TTL after its host dies), saying which revision of the
//! tenancy it enforces and since when.
//!
//! A node name is held by one agent: the record is written only when it
//! is absent or already under the writer's lease (one transaction). A
//! second agent claiming a held name is refused, and leaves a record
//! under `contenders/<node>/<lease>` that the holder watches and reports,
//! so both sides say so. An idle agent costs etcd one keepalive per
//! interval and nothing else: contenders arrive on a watch, not a poll.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};
use futures_util::FutureExt as _;
use serde::{Deserialize, Serialize};

use super::{
    EtcdLocation,
    etcd::{CredentialStamp, cause, connect, list, request, unavailable},
    records::{self, BadRecord},
};

/// How long a node's record outlives its last keepalive.
pub const NODE_TTL: Duration = Duration::from_secs(10);
/// Keepalives are sent this often: a third of the TTL, so two can be lost.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(3);

/// What a node says of itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    pub node: String,
    /// The revision of the tenancy whose Plan is live in the node's kernel
    /// (`None` before its first apply, or when it does not know).
    pub revision: Option<u64>,
    /// Unix seconds of that apply.
    pub applied_at: Option<u64>,
    pub generation: u32,
    /// Its last reload's failure (the policy it enforces stayed).
    pub last_error: Option<String>,
    /// Unix seconds of this record.
    pub reported_at: u64,
    pub version: String,
    /// A later revision it has read but does not enforce (held back,
    /// failed or unreadable: `problems` says why).
    #[serde(default)]
    pub pending_revision: Option<u64>,
    /// The endpoints placed on this node that the live Plan holds.
    #[serde(default)]
    pub endpoints: usize,
    /// `protected`, `degraded` or `not-enforcing`, as its `zpr status`
    /// judges the agent's own state.
    #[serde(default)]
    pub health: String,
    /// What makes it less than protected, one line each.
    #[serde(default)]
    pub problems: Vec<String>,
    /// Which host and process wrote it.
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub pid: u32,
    /// The statements its agent counted allowing flows (the most used
    /// [`USED_STATEMENTS_MAX`]), as `zpr usage` shows them on the node.
    #[serde(default)]
    pub usage: Vec<UsedStatement>,
    /// Used statements left out of `usage` past that bound.
    #[serde(default)]
    pub usage_omitted: usize,
}

/// A statement's use on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsedStatement {
    /// `policy:line`.
    pub statement: String,
    pub flows: u64,
    /// Unix seconds.
    pub last_allowed_at: Option<u64>,
}

/// The used statements a node record carries at most: etcd refuses a
/// value past 1.5 MiB by default, and a refused record would make the
/// node look gone.
pub const USED_STATEMENTS_MAX: usize = 5_000;

/// A contender's record as it wrote it (an unreadable one still counts:
/// someone claims the name).
fn parse_record(value: &[u8]) -> NodeRecord {
    serde_json::from_slice(value).unwrap_or_default()
}

impl NodeRecord {
    /// `pid P on HOST`, for messages about who holds a node name.
    pub fn writer(&self) -> String {
        format!("pid {} on {}", self.pid, self.host)
    }
}

/// Why a report did not reach the store as this node's record.
#[derive(Debug)]
pub enum NotRegistered {
    /// The store did not answer.
    Unreachable(anyhow::Error),
    /// Another live agent holds the node name.
    NameTaken(String),
}

impl std::fmt::Display for NotRegistered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotRegistered::Unreachable(error) => write!(f, "{error:#}"),
            NotRegistered::NameTaken(why) => f.write_str(why),
        }
    }
}

impl From<anyhow::Error> for NotRegistered {
    fn from(error: anyhow::Error) -> NotRegistered {
        NotRegistered::Unreachable(error)
    }
}

/// A node's record in the store, kept alive with its lease.
pub struct NodeRegistration {
    location: EtcdLocation,
    node: String,
    lease: Option<Lease>,
    /// Where the lease's id is kept: an agent restarted on the same host
    /// takes its lease back instead of being refused its own name until
    /// the old lease lapses.
    lease_file: PathBuf,
}

struct Lease {
    client: Client,
    /// The credential files the client was made with.
    stamp: CredentialStamp,
    id: i64,
    keeper: LeaseKeeper,
    answers: LeaseKeepAliveStream,
    /// Listed once, then followed on a watch.
    contenders: Option<Contenders>,
}

/// The agents that claim this node's name too, by key.
struct Contenders {
    watch: WatchStream,
    known: BTreeMap<Vec<u8>, NodeRecord>,
}

impl NodeRegistration {
    pub fn new(location: EtcdLocation, node: String, run_dir: &Path) -> NodeRegistration {
        NodeRegistration {
            location,
            node,
            lease: None,
            lease_file: run_dir.join("node-lease"),
        }
    }

    /// The lease this host's agent held last under this node name.
    fn previous_lease(&self) -> Option<i64> {
        let text = std::fs::read_to_string(&self.lease_file).ok()?;
        let (node, id) = text.trim().split_once(' ')?;
        (node == self.node).then(|| id.parse().ok()).flatten()
    }

    fn keep_lease(&self, id: i64) {
        let written = crate::private_file::replace(
            &self.lease_file,
            format!("{} {id}\n", self.node).as_bytes(),
        );
        if let Err(error) = written {
            tracing::warn!(
                "cannot keep the node's lease id in {}: {error}",
                self.lease_file.display()
            );
        }
    }

    fn key(&self) -> String {
        format!("{}{}", self.location.nodes_prefix(), self.node)
    }

    /// Writes the record (taking a new lease first when there is none),
    /// unless another agent holds the node name.
    pub async fn report(&mut self, record: &NodeRecord) -> Result<(), NotRegistered> {
        let outcome = self.put(record).await;
        if matches!(outcome, Err(NotRegistered::Unreachable(_))) {
            self.lease = None;
        }
        outcome
    }

    async fn put(&mut self, record: &NodeRecord) -> Result<(), NotRegistered> {
        if self.lease.is_none() {
            self.lease = Some(self.grant().await?);
        }
        let key = self.key();
        let location = self.location.clone();
        let contender_key = format!(
            "{}{}/{:x}",
            location.contenders_prefix(),
            self.node,
            self.lease.as_ref().expect("granted above").id
        );
        let lease = self.lease.as_mut().expect("granted above");
        let value = serde_json::to_string(record).map_err(anyhow::Error::from)?;
        let options = || Some(PutOptions::new().with_lease(lease.id));
        // Held under this lease already, or free: written; held under an
        // older lease of this very agent (one it lost track of while the
        // store was away): taken over; else the holder is named.
        let mut attempts = vec![
            Compare::lease(key.clone(), CompareOp::Equal, lease.id),
            Compare::create_revision(key.clone(), CompareOp::Equal, 0),
        ]
        .into_iter()
        .collect::<std::collections::VecDeque<_>>();
        let mut took_over = false;
        while let Some(free_or_ours) = attempts.pop_front() {
            let transaction = Txn::new()
                .when([free_or_ours])
                .and_then([
                    TxnOp::put(key.clone(), value.clone(), options()),
                    TxnOp::delete(contender_key.clone(), None),
                ])
                .or_else([TxnOp::get(key.clone(), None)]);
            let answer = request(&location, lease.client.txn(transaction)).await?;
            if answer.succeeded() {
                return Ok(());
            }
            let holder = answer
                .op_responses()
                .into_iter()
                .find_map(|response| match response {
                    TxnOpResponse::Get(got) => got
                        .kvs()
                        .first()
                        .map(|kv| (kv.lease(), kv.value().to_vec())),
                    _ => None,
                });
            let Some((holder_lease, holder)) = holder else {
                continue;
            };
            let holder: NodeRecord = serde_json::from_slice(&holder).unwrap_or_default();
            if holder.pid == record.pid && holder.host == record.host && !took_over {
                took_over = true;
                attempts.push_back(Compare::lease(key.clone(), CompareOp::Equal, holder_lease));
                continue;
            }
            request(&location, lease.client.put(contender_key, value, options())).await?;
            return Err(NotRegistered::NameTaken(format!(
                "the node name '{}' is held by another live agent ({}): this agent is \
                 refused it and reports nothing; the endpoints placed on this host may \
                 be unprotected. Give each host its own --node-name",
                self.node,
                holder.writer()
            )));
        }
        Err(NotRegistered::Unreachable(unavailable(
            &location,
            "the node's record changed while it was written",
        )))
    }

    /// This host's previous lease while it lives, else a new one.
    async fn grant(&self) -> anyhow::Result<Lease> {
        let location = &self.location;
        let stamp = location.access.stamp();
        let mut client = connect(location).await?;
        if let Some(id) = self.previous_lease() {
            // A lease the store no longer knows (it expired, or the store
            // was reset: "lease not found") is no outage: a new one is taken.
            let previous = async {
                let (mut keeper, mut answers) =
                    request(location, client.lease_keep_alive(id)).await?;
                request(location, keeper.keep_alive()).await?;
                let alive = request(location, answers.message())
                    .await?
                    .is_some_and(|answer| answer.ttl() > 0);
                anyhow::Ok(alive.then_some((keeper, answers)))
            }
            .await;
            match previous {
                Ok(Some((keeper, answers))) => {
                    return Ok(Lease {
                        client,
                        stamp,
                        id,
                        keeper,
                        answers,
                        contenders: None,
                    });
                }
                Ok(None) => {}
                Err(error) if format!("{error:#}").contains("lease not found") => {}
                // The store did not answer: try the same lease again later
                // (a new one would find the record held by the old one).
                Err(error) => return Err(error),
            }
        }
        let ttl = NODE_TTL.as_secs() as i64;
        let granted = request(location, client.lease_grant(ttl, None)).await?;
        let (keeper, answers) = request(location, client.lease_keep_alive(granted.id())).await?;
        self.keep_lease(granted.id());
        Ok(Lease {
            client,
            stamp,
            id: granted.id(),
            keeper,
            answers,
            contenders: None,
        })
    }

    /// Keeps the lease alive; an error means the store did not answer (or
    /// the lease expired meanwhile): the next report takes a new one.
    /// Returns the agents that claim this node's name too.
    pub async fn keep_alive(&mut self) -> anyhow::Result<Vec<NodeRecord>> {
        // Renewed credentials: a new connection, the same lease.
        if self
            .lease
            .as_ref()
            .is_some_and(|lease| lease.stamp != self.location.access.stamp())
        {
            let renewed = self.grant().await;
            self.lease = Some(renewed.inspect_err(|_| self.lease = None)?);
        }
        let Some(lease) = self.lease.as_mut() else {
            anyhow::bail!(unavailable(&self.location, "no lease yet"));
        };
        let location = &self.location;
        let prefix = format!("{}{}/", location.contenders_prefix(), self.node);
        let outcome = async {
            request(location, lease.keeper.keep_alive()).await?;
            let answer = request(location, lease.answers.message()).await?;
            match answer {
                Some(answer) if answer.ttl() > 0 => {}
                _ => return Err(unavailable(location, "the node's lease expired")),
            }
            if lease.contenders.is_none() {
                let listed = request(
                    location,
                    lease
                        .client
                        .get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
                )
                .await?;
                let revision = listed.header().map_or(0, |header| header.revision());
                let options = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1);
                let watch =
                    request(location, lease.client.watch(prefix.as_str(), Some(options))).await?;
                let known = listed
                    .kvs()
                    .iter()
                    .map(|kv| (kv.key().to_vec(), parse_record(kv.value())))
                    .collect();
                lease.contenders = Some(Contenders { watch, known });
            }
            let contenders = lease.contenders.as_mut().expect("listed above");
            // What arrived since the last keepalive; nothing waits here.
            while let Some(message) = contenders.watch.message().now_or_never() {
                let Some(message) =
                    message.map_err(|error| unavailable(location, cause(&error)))?
                else {
                    anyhow::bail!(unavailable(location, "the contenders' watch ended"));
                };
                if message.canceled() {
                    anyhow::bail!(unavailable(location, "the contenders' watch was cancelled"));
                }
                for event in message.events() {
                    let Some(kv) = event.kv() else {
                        continue;
                    };
                    match event.event_type() {
                        EventType::Put => {
                            contenders
                                .known
                                .insert(kv.key().to_vec(), parse_record(kv.value()));
                        }
                        EventType::Delete => {
                            contenders.known.remove(kv.key());
                        }
                    }
                }
            }
            Ok(contenders.known.values().cloned().collect())
        }
        .await;
        if outcome.is_err() {
            self.lease = None;
        }
        outcome
    }
}

/// The fleet as the store sees it now.
pub struct FleetView {
    /// The revision of the tenancy's latest change (its last commit).
    pub state_revision: u64,
    /// Every live node's record, by node name.
    pub nodes: Vec<NodeRecord>,
    /// Agents refused a node name another agent holds.
    pub contenders: Vec<NodeRecord>,
    /// The nodes that endpoints with a vNIC are placed on: each must run
    /// an agent for them to be protected.
    pub placed: BTreeSet<String>,
    /// The tenancy's id; `None`: it was never seeded (or was wiped).
    pub tenancy_id: Option<String>,
}

impl FleetView {
    pub async fn read(location: &EtcdLocation) -> anyhow::Result<FleetView> {
        let mut client = connect(location).await?;
        let nodes = list(&mut client, location, &location.nodes_prefix()).await?;
        let nodes = nodes
            .records
            .into_iter()
            .map(|(name, value)| NodeRecord {
                node: String::from_utf8_lossy(&name).into_owned(),
                ..serde_json::from_slice(&value).unwrap_or_default()
            })
            .collect();
        let contenders = list(&mut client, location, &location.contenders_prefix())
            .await?
            .records
            .into_values()
            .map(|value| serde_json::from_slice(&value).unwrap_or_default())
            .collect();
        // Only the endpoints and the tenancy id: a large tenancy's
        // policies are not needed to know where its endpoints are.
        let state = location.state_prefix();
        let mut records = list(
            &mut client,
            location,
            &format!("{state}{}", records::ENDPOINTS),
        )
        .await?
        .records
        .into_iter()
        .map(|(key, value)| ([records::ENDPOINTS.as_bytes(), &key].concat(), value))
        .collect::<records::RawRecords>();
        let id = request(
            location,
            client.get(format!("{state}{}", records::TENANCY_ID), None),
        )
        .await?;
        if let Some(kv) = id.kvs().first() {
            records.insert(records::TENANCY_ID.as_bytes().to_vec(), kv.value().to_vec());
        }
        let tenancy = records::from_raw(&records)
            .map_err(|bad: BadRecord| anyhow::anyhow!("{location}: {bad}"))?;
        let placed = tenancy
            .endpoints
            .values()
            .filter(|endpoint| endpoint.interface.is_some())
            .filter_map(|endpoint| endpoint.node.clone())
            .collect();
        // The latest change: the API's last commit, or a record written
        // behind its back since (a deletion leaves no trace to read).
        let commit = request(location, client.get(location.commit_key(), None)).await?;
        let latest = request(
            location,
            client.get(
                state.as_str(),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_keys_only()
                        .with_sort(SortTarget::Mod, SortOrder::Descend)
                        .with_limit(1),
                ),
            ),
        )
        .await?;
        let state_revision = commit
            .kvs()
            .iter()
            .chain(latest.kvs())
            .map(|kv| kv.mod_revision() as u64)
            .max()
            .unwrap_or(0);
        Ok(FleetView {
            state_revision,
            nodes,
            contenders,
            placed,
            tenancy_id: tenancy.tenancy_id,
        })
    }

    /// Why the nodes that must enforce `revision` do not (yet), one line
    /// each: every live node and every node endpoints are placed on must
    /// enforce it (or a later one), and at least one node must exist.
    pub fn not_enforcing(&self, revision: u64) -> Vec<String> {
        let mut why = Vec::new();
        if self.tenancy_id.is_none() {
            why.push(
                "the tenancy does not exist in the store (it has no tenancy id: never \
                 seeded, wiped, or the name is mistyped)"
                    .to_owned(),
            );
        }
        if self.nodes.is_empty() && self.placed.is_empty() {
            why.push(
                "the tenancy has no nodes: no agent reports, and no endpoint is placed on a \
                 node"
                    .to_owned(),
            );
        }
        for node in &self.nodes {
            match node.revision {
                Some(enforced) if enforced >= revision => {}
                Some(enforced) => why.push(format!(
                    "{} (enforces {enforced}{})",
                    node.node,
                    pending(node)
                )),
                None => why.push(format!(
                    "{} (enforces nothing known{})",
                    node.node,
                    pending(node)
                )),
            }
        }
        for placed in &self.placed {
            if !self.nodes.iter().any(|node| &node.node == placed) {
                why.push(format!(
                    "{placed} (no live agent: endpoints are placed on it, and its lease \
                     lapsed or it never reported)"
                ));
            }
        }
        why
    }
}

/// `; pending R: why`, for a node that holds a later revision back.
fn pending(node: &NodeRecord) -> String {
    match (node.pending_revision, node.problems.first()) {
        (Some(revision), Some(problem)) => format!("; revision {revision} not applied: {problem}"),
        (Some(revision), None) => format!("; revision {revision} not applied"),
        (None, _) => String::new(),
    }
}
