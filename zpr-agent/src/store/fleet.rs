//! Where a change is in force: each agent of a fleet keeps a record of
//! itself under `nodes/<node>`, attached to a lease it keeps alive (so the
//! record goes one TTL after its host dies), saying which revision of the
//! tenancy it enforces and since when.

use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use serde::{Deserialize, Serialize};

use super::{
    EtcdLocation,
    etcd::{connect, list, request, unavailable},
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
    /// The revision of the tenancy the node enforces (`None` before its
    /// first apply).
    pub revision: Option<u64>,
    /// Unix seconds of that apply.
    pub applied_at: Option<u64>,
    pub generation: u32,
    /// Its last reload's failure (the policy it enforces stayed).
    pub last_error: Option<String>,
    /// Unix seconds of this record.
    pub reported_at: u64,
    pub version: String,
}

/// A node's record in the store, kept alive with its lease.
pub struct NodeRegistration {
    location: EtcdLocation,
    node: String,
    lease: Option<Lease>,
}

struct Lease {
    client: Client,
    id: i64,
    keeper: LeaseKeeper,
    answers: LeaseKeepAliveStream,
}

impl NodeRegistration {
    pub fn new(location: EtcdLocation, node: String) -> NodeRegistration {
        NodeRegistration {
            location,
            node,
            lease: None,
        }
    }

    fn key(&self) -> String {
        format!("{}{}", self.location.nodes_prefix(), self.node)
    }

    /// Writes the record (taking a new lease first when there is none).
    pub async fn report(&mut self, record: &NodeRecord) -> anyhow::Result<()> {
        let outcome = self.put(record).await;
        if outcome.is_err() {
            self.lease = None;
        }
        outcome
    }

    async fn put(&mut self, record: &NodeRecord) -> anyhow::Result<()> {
        if self.lease.is_none() {
            self.lease = Some(self.grant().await?);
        }
        let key = self.key();
        let lease = self.lease.as_mut().expect("granted above");
        let value = serde_json::to_string(record)?;
        let options = PutOptions::new().with_lease(lease.id);
        request(&self.location, lease.client.put(key, value, Some(options))).await?;
        Ok(())
    }

    async fn grant(&self) -> anyhow::Result<Lease> {
        let mut client = connect(&self.location).await?;
        let ttl = NODE_TTL.as_secs() as i64;
        let granted = request(&self.location, client.lease_grant(ttl, None)).await?;
        let (keeper, answers) =
            request(&self.location, client.lease_keep_alive(granted.id())).await?;
        Ok(Lease {
            client,
            id: granted.id(),
            keeper,
            answers,
        })
    }

    /// Keeps the lease alive; an error means the store did not answer (or
    /// the lease expired meanwhile): the next report takes a new one.
    pub async fn keep_alive(&mut self) -> anyhow::Result<()> {
        let Some(lease) = self.lease.as_mut() else {
            anyhow::bail!(unavailable(&self.location, "no lease yet"));
        };
        let outcome = async {
            request(&self.location, lease.keeper.keep_alive()).await?;
            let answer = request(&self.location, lease.answers.message()).await?;
            match answer {
                Some(answer) if answer.ttl() > 0 => Ok(()),
                _ => Err(unavailable(&self.location, "the node's lease expired")),
            }
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
}

impl FleetView {
    pub async fn read(location: &EtcdLocation) -> anyhow::Result<FleetView> {
        let mut client = connect(location).await?;
        let (records, _) = list(&mut client, location, &location.nodes_prefix()).await?;
        let mut nodes = Vec::new();
        for (name, value) in records {
            let mut record: NodeRecord = serde_json::from_str(&value).unwrap_or_default();
            record.node = name;
            nodes.push(record);
        }
        let commit = request(location, client.get(location.commit_key(), None)).await?;
        let state_revision = commit
            .kvs()
            .first()
            .map_or(0, |kv| kv.mod_revision() as u64);
        Ok(FleetView {
            state_revision,
            nodes,
        })
    }

    /// The nodes that do not enforce `revision` (or a later one) yet.
    pub fn behind(&self, revision: u64) -> Vec<&NodeRecord> {
        self.nodes
            .iter()
            .filter(|node| node.revision.is_none_or(|enforced| enforced < revision))
            .collect()
    }
}
