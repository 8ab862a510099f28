//! `zpr run --store etcd://...`: the agent of one host of a fleet. It
//! follows the tenancy in etcd, applies each snapshot through the agent's
//! one reload path, keeps the last applied snapshot on the host, and
//! reports which revision it enforces under its node's lease.
//!
//! While etcd is unreachable, the live policy stays in force, with no time
//! limit; `zpr status` says since when the store is unreachable, and the
//! agent resyncs by itself when it returns.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::{
    clock::unix_now,
    daemon::{Agent, Companion, Guard, Observed, assess, statement_usage::UsageReport},
    datapath::pinned_config,
    store::{
        EtcdFollower, EtcdLocation, Followed, Snapshot, SnapshotCache,
        etcd::REQUEST_TIMEOUT,
        fleet::{
            KEEPALIVE_INTERVAL, NodeRecord, NodeRegistration, NotRegistered, USED_STATEMENTS_MAX,
            UsedStatement,
        },
        signing::TrustedKeys,
    },
};

/// Waits between attempts to follow the store again after a failure.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(4);

pub struct FleetAgent {
    location: EtcdLocation,
    node: String,
    /// Refuse to start when no endpoint is placed on this node.
    require_endpoints: bool,
    /// With these, only states signed by one of them are applied.
    trusted: Option<TrustedKeys>,
    cache: SnapshotCache,
    follower: Option<EtcdFollower>,
    /// Snapshots (or why the store could not be followed) from the task
    /// that follows it.
    followed: Option<mpsc::Receiver<Result<Followed, String>>>,
    /// What this node reports, and whether its reports reach the store.
    report: Option<watch::Sender<NodeRecord>>,
    contact: Option<mpsc::Receiver<Registered>>,
    /// Why the store could not be read at the start, if it could not.
    outage_at_start: Option<String>,
    /// The store's state at the start held a record that does not read.
    invalid_at_start: Option<(u64, String)>,
    /// The store's state at the start, when it was reset or restored
    /// since this host last applied it: offered held back, with why.
    reset_at_start: Option<(Snapshot, String)>,
    /// Another live agent holds the node name: this one was refused it.
    refused: bool,
}

/// How a registration attempt went.
enum Registered {
    /// The record is the store's, with the agents that claim the name too
    /// (`None`: not asked; only a keepalive reads them).
    Reached(Option<Vec<NodeRecord>>),
    Unreachable(String),
    /// Another live agent holds the node name.
    NameTaken(String),
}

impl FleetAgent {
    pub fn new(
        location: EtcdLocation,
        node: String,
        require_endpoints: bool,
        trusted: Option<TrustedKeys>,
        run_dir: &std::path::Path,
    ) -> FleetAgent {
        FleetAgent {
            trusted,
            cache: SnapshotCache::new(run_dir, location.to_string()),
            follower: Some(EtcdFollower::new(location.clone())),
            location,
            node,
            require_endpoints,
            followed: None,
            report: None,
            contact: None,
            outage_at_start: None,
            invalid_at_start: None,
            reset_at_start: None,
            refused: false,
        }
    }

    fn record(&self, agent: &Agent) -> NodeRecord {
        let status = agent.status();
        let (usage, usage_omitted) = used_statements(agent.usage());
        // The kernel's: an agent that adopted pins and held its inputs
        // back has applied nothing itself, yet enforces what it adopted.
        let live_generation =
            pinned_config(agent.pins()).map_or(status.generation, |live| live.generation);
        let (health, problems) = assess(&Observed {
            agent_pid: Some(status.pid),
            agent: Some(status),
            run_dir: agent.run_dir(),
            live_generation,
            endpoints: &[],
            quarantined: &[],
            conntrack: None,
            unreadable: &[],
        });
        NodeRecord {
            node: self.node.clone(),
            revision: status.revision,
            applied_at: status.applied_at,
            generation: live_generation,
            last_error: status.last_error.as_ref().map(|e| e.message.clone()),
            reported_at: unix_now(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pending_revision: status.pending_revision,
            endpoints: status.endpoints.len(),
            health: health.name().to_owned(),
            problems,
            host: super::run::hostname().unwrap_or_default(),
            pid: status.pid,
            usage,
            usage_omitted,
        }
    }

    /// Keeps what the agent enforces on the host (only what it enforces:
    /// a restart compares the store with it), and reports.
    fn applied(&mut self, agent: &Agent) {
        if let Some(snapshot) = agent.store_snapshot()
            && agent.status().revision == Some(snapshot.revision)
            && let Err(error) = self.cache.write(snapshot)
        {
            warn!("cannot keep the applied snapshot on this host: {error:#}");
        }
        self.send_report(agent);
    }

    /// Hands the node's record to its writer when it says something new.
    /// Writing it answers with a contact report, which comes back here: a
    /// record sent unchanged would be written again at once, for ever.
    fn send_report(&self, agent: &Agent) {
        if let Some(report) = &self.report {
            let fresh = self.record(agent);
            report.send_if_modified(|current| {
                let changed = NodeRecord {
                    reported_at: current.reported_at,
                    ..fresh.clone()
                } != *current;
                if changed {
                    *current = fresh;
                }
                changed
            });
        }
    }

    /// The snapshot to start from: the store's, or when it cannot be
    /// read (or was reset since), what this host applied last.
    async fn first_snapshot(&mut self) -> anyhow::Result<Option<Snapshot>> {
        let mut cached = self.cache.read()?;
        if let Some(why) = cached.as_ref().and_then(|c| self.unverified(c, None)) {
            // Changed on disk (or written before keys were trusted): the
            // pins stay, the cache is not applied.
            warn!(
                "the snapshot kept on this host ({}) is refused: {why}",
                self.cache.path().display()
            );
            cached = None;
        }
        let follower = self.follower.as_mut().expect("prepared once");
        // Twice the request deadline: a connect, then a list.
        match tokio::time::timeout(2 * REQUEST_TIMEOUT, follower.next()).await {
            Ok(Ok(Followed {
                snapshot: Ok(fresh),
                ..
            })) if let Some(why) = self.unverified(&fresh, cached.as_ref()) => {
                self.invalid_at_start = Some((fresh.revision, why));
            }
            Ok(Ok(Followed {
                snapshot: Ok(fresh),
                ..
            })) => {
                let reset = cached
                    .as_ref()
                    .and_then(|applied| store_reset(&StoreIdentity::of(applied), &fresh));
                match reset {
                    Some(why) => {
                        warn!("{why}");
                        self.reset_at_start = Some((fresh, why));
                    }
                    None => return Ok(Some(fresh)),
                }
            }
            Ok(Ok(Followed {
                snapshot: Err(bad),
                revision,
                ..
            })) => self.invalid_at_start = Some((revision, bad.to_string())),
            Ok(Err(error)) => self.outage_at_start = Some(format!("{error:#}")),
            Err(_) => {
                self.outage_at_start = Some(format!(
                    "{}: no answer within {}s",
                    self.location,
                    (2 * REQUEST_TIMEOUT).as_secs()
                ))
            }
        }
        let why = match (&self.outage_at_start, &self.invalid_at_start) {
            (Some(outage), _) => format!("the store is unreachable ({outage})"),
            (None, Some((_, invalid))) => invalid.clone(),
            (None, None) => "the store was reset or restored".to_owned(),
        };
        match cached {
            Some(snapshot) => {
                warn!(
                    revision = snapshot.revision,
                    "{why}; enforcing the snapshot this host applied last ({})",
                    self.cache.path().display()
                );
                Ok(Some(snapshot))
            }
            None => {
                warn!(
                    "{why}, and this host has no snapshot of it ({}): only a policy already \
                     pinned here can be kept",
                    self.cache.path().display()
                );
                Ok(None)
            }
        }
    }

    /// Why `snapshot` may not be applied, with trusted keys: it is not
    /// signed by one of them, or is behind the signed state `live`.
    fn unverified(&self, snapshot: &Snapshot, live: Option<&Snapshot>) -> Option<String> {
        let trusted = self.trusted.as_ref()?;
        let live = live.and_then(|live| live.tenancy.signature.as_ref());
        let why = trusted.refuse(&snapshot.tenancy, live)?;
        Some(format!(
            "the store's state at revision {} is not signed by a trusted key: {why}",
            snapshot.revision
        ))
    }

    /// What the holder of the node name says of agents refused it.
    fn contended(&self, contenders: &[NodeRecord]) -> Option<String> {
        if contenders.is_empty() {
            return None;
        }
        let who: Vec<String> = contenders.iter().map(NodeRecord::writer).collect();
        Some(format!(
            "the node name '{}' is also claimed by {} (refused: this agent holds it); that \
             host's endpoints may be unprotected. Give each host its own --node-name",
            self.node,
            who.join(", ")
        ))
    }

    /// The guard a store state goes through: held when the store was reset
    /// or restored since what is live; confirmed when the API confirmed
    /// exactly this state; else the unprotect guard.
    fn guard(&self, agent: &Agent, snapshot: &Snapshot) -> Guard {
        if let Some(why) = store_reset(&StoreIdentity::live(agent), snapshot) {
            // Restored to exactly what is enforced here: nothing opens or
            // closes, and the store's new identity is taken on.
            if agent
                .live_store_snapshot()
                .is_some_and(|live| live.tenancy == snapshot.tenancy)
            {
                info!("{why}; it holds exactly the state enforced here, which is kept");
                return Guard::Confirmed;
            }
            return Guard::Held(why);
        }
        let Some(confirmation) = &snapshot.tenancy.confirmation else {
            return Guard::Unprotect;
        };
        match snapshot.tenancy.digest() {
            Ok(digest) if digest == confirmation.digest => {
                info!(
                    revision = snapshot.revision,
                    principal = confirmation.principal,
                    operation = confirmation.operation,
                    "the change was confirmed through the API: applied even where it stops \
                     protecting most endpoints"
                );
                Guard::Confirmed
            }
            _ => Guard::Unprotect,
        }
    }
}

/// What a store state is: its tenancy's id, its etcd cluster and revision.
struct StoreIdentity<'a> {
    tenancy_id: Option<&'a str>,
    cluster: Option<u64>,
    revision: Option<u64>,
}

impl StoreIdentity<'_> {
    fn of(snapshot: &Snapshot) -> StoreIdentity<'_> {
        StoreIdentity {
            tenancy_id: snapshot.tenancy.tenancy_id.as_deref(),
            cluster: snapshot.cluster,
            revision: Some(snapshot.revision),
        }
    }

    /// The state whose Plan is live.
    fn live(agent: &Agent) -> StoreIdentity<'_> {
        let status = agent.status();
        StoreIdentity {
            tenancy_id: status.tenancy_id.as_deref(),
            cluster: status.store_cluster,
            revision: status.revision,
        }
    }
}

/// Why `now` is not a later state of the store `live` came from: its
/// tenancy id or etcd cluster changed, or its revision went backwards.
fn store_reset(live: &StoreIdentity, now: &Snapshot) -> Option<String> {
    let id_changed = live
        .tenancy_id
        .is_some_and(|id| now.tenancy.tenancy_id.as_deref() != Some(id));
    let cluster_changed = matches!((live.cluster, now.cluster), (Some(a), Some(b)) if a != b);
    let backwards = live
        .revision
        .is_some_and(|revision| now.revision < revision);
    if !(id_changed || cluster_changed || backwards) {
        return None;
    }
    let show = |id: Option<&str>| id.unwrap_or("none").to_owned();
    Some(format!(
        "the store was reset or restored (tenancy id {} -> {}, etcd cluster {} -> {}, \
         revision {} -> {}): the live policy stays. Check the store; then apply its state \
         with `zpr fleet confirm {}`, or restore it from this host's \
         `zpr fleet restore --from store-snapshot.json`",
        show(live.tenancy_id),
        show(now.tenancy.tenancy_id.as_deref()),
        live.cluster
            .map_or_else(|| "none".to_owned(), |c| format!("{c:x}")),
        now.cluster
            .map_or_else(|| "none".to_owned(), |c| format!("{c:x}")),
        live.revision
            .map_or_else(|| "none".to_owned(), |r| r.to_string()),
        now.revision,
        now.revision,
    ))
}

impl Companion for FleetAgent {
    async fn prepare(&mut self) -> anyhow::Result<Option<Snapshot>> {
        let first = self.first_snapshot().await?;
        if self.require_endpoints {
            let placed = first.as_ref().map_or(0, |snapshot| {
                snapshot
                    .tenancy
                    .endpoints
                    .values()
                    .filter(|e| e.interface.is_some() && e.node.as_deref() == Some(&self.node))
                    .count()
            });
            anyhow::ensure!(
                placed > 0,
                "refusing to start (--require-endpoints): no endpoint of {} is placed on node \
                 '{}'{}; check --node-name (default: the hostname) and the tenancy",
                self.location,
                self.node,
                if first.is_none() {
                    " (the store could not be read, and this host has no snapshot of it)"
                } else {
                    ""
                }
            );
        }
        Ok(first)
    }

    fn started(&mut self, agent: &mut Agent) -> anyhow::Result<()> {
        if let Some(warning) = self.location.insecure_warning() {
            warn!("{warning}");
            agent.add_warning(warning);
        }
        match &self.trusted {
            Some(trusted) => info!(
                keys = ?trusted.ids(),
                "only store states signed by a trusted key are applied"
            ),
            None => agent.add_warning(
                "the store's content is not verified (no --trusted-keys): whoever can write \
                 the store can change what is enforced here"
                    .to_owned(),
            ),
        }
        agent.store_contact(match self.outage_at_start.take() {
            Some(why) => Err(why),
            None => Ok(()),
        });
        if let Some(invalid) = self.invalid_at_start.take() {
            agent.store_refused(Some(invalid));
        }
        if let Some((snapshot, why)) = self.reset_at_start.take() {
            let cause = format!("store listed (revision {})", snapshot.revision);
            agent.offer(snapshot, &cause, Instant::now(), Guard::Held(why));
        }
        let (followed_sender, followed) = mpsc::channel(4);
        tokio::spawn(follow(
            self.follower.take().expect("started once"),
            followed_sender,
        ));
        self.followed = Some(followed);
        let (report, reports) = watch::channel(self.record(agent));
        let (contact_sender, contact) = mpsc::channel(4);
        tokio::spawn(keep_registered(
            NodeRegistration::new(self.location.clone(), self.node.clone(), agent.run_dir()),
            reports,
            contact_sender,
        ));
        self.report = Some(report);
        self.contact = Some(contact);
        self.applied(agent);
        Ok(())
    }

    fn usage_written(&mut self, agent: &Agent) {
        self.send_report(agent);
    }

    async fn next(&mut self, agent: &mut Agent) -> anyhow::Result<()> {
        let (Some(followed), Some(contact)) = (self.followed.as_mut(), self.contact.as_mut())
        else {
            return std::future::pending().await;
        };
        tokio::select! {
            Some(followed) = followed.recv() => match followed {
                Ok(Followed { snapshot: Ok(snapshot), listed, .. }) => {
                    agent.store_contact(Ok(()));
                    if let Some(trusted) = self.trusted.as_mut()
                        && let Some(why) = trusted.refresh()
                    {
                        agent.add_warning(why);
                    }
                    if let Some(why) = self.unverified(&snapshot, agent.live_store_snapshot()) {
                        agent.store_refused(Some((snapshot.revision, why)));
                        self.send_report(agent);
                        return Ok(());
                    }
                    agent.store_refused(None);
                    let how = if listed { "listed" } else { "changed" };
                    let cause = format!("store {how} (revision {})", snapshot.revision);
                    let guard = self.guard(agent, &snapshot);
                    agent.offer(snapshot, &cause, Instant::now(), guard);
                    self.applied(agent);
                }
                Ok(Followed { snapshot: Err(bad), revision, .. }) => {
                    agent.store_contact(Ok(()));
                    agent.store_refused(Some((revision, bad.to_string())));
                    self.send_report(agent);
                }
                Err(why) => agent.store_contact(Err(why)),
            },
            Some(registered) = contact.recv() => {
                match registered {
                    Registered::Reached(contenders) => {
                        agent.store_contact(Ok(()));
                        match contenders {
                            Some(contenders) => {
                                agent.node_conflict(self.contended(&contenders));
                            }
                            // The name is this agent's now: a refusal is over.
                            None if self.refused => agent.node_conflict(None),
                            None => {}
                        }
                        self.refused = false;
                    }
                    Registered::Unreachable(why) => agent.store_contact(Err(why)),
                    Registered::NameTaken(why) => {
                        agent.store_contact(Ok(()));
                        agent.node_conflict(Some(why));
                        self.refused = true;
                    }
                }
                self.send_report(agent);
            }
        }
        Ok(())
    }
}
/// Follows the store for as long as the agent runs, retrying with a
/// growing pause while it cannot.
async fn follow(mut follower: EtcdFollower, sender: mpsc::Sender<Result<Followed, String>>) {
    let mut pause = RETRY_FIRST;
    loop {
        let outcome = follower.next().await;
        let failed = outcome.is_err();
        if sender
            .send(outcome.map_err(|error| format!("{error:#}")))
            .await
            .is_err()
        {
            return;
        }
        if failed {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        } else {
            pause = RETRY_FIRST;
        }
    }
}

/// Keeps the node's record and lease alive, writing the record again when
/// it changes; says whether the store answered, and who else claims the
/// node's name.
async fn keep_registered(
    mut registration: NodeRegistration,
    mut reports: watch::Receiver<NodeRecord>,
    contact: mpsc::Sender<Registered>,
) {
    let mut ticks = tokio::time::interval(KEEPALIVE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut registered = false;
    loop {
        let reported = tokio::select! {
            changed = reports.changed() => {
                if changed.is_err() {
                    return;
                }
                let record = reports.borrow_and_update().clone();
                registration.report(&record).await.map(|()| None)
            }
            _ = ticks.tick() => {
                if registered {
                    registration.keep_alive().await.map(Some).map_err(NotRegistered::from)
                } else {
                    let mut record = reports.borrow().clone();
                    record.reported_at = unix_now();
                    registration.report(&record).await.map(|()| None)
                }
            }
        };
        registered = reported.is_ok();
        let outcome = match reported {
            Ok(contenders) => Registered::Reached(contenders),
            Err(NotRegistered::Unreachable(error)) => Registered::Unreachable(format!("{error:#}")),
            Err(NotRegistered::NameTaken(why)) => Registered::NameTaken(why),
        };
        if contact.send(outcome).await.is_err() {
            return;
        }
    }
}

/// The statements that allowed flows here, the most used first up to the
/// bound, in statement order; and how many more there are.
fn used_statements(usage: &UsageReport) -> (Vec<UsedStatement>, usize) {
    let mut used: Vec<UsedStatement> = usage
        .statements
        .iter()
        .filter(|statement| statement.flows > 0)
        .map(|statement| UsedStatement {
            statement: statement.statement.clone(),
            flows: statement.flows,
            last_allowed_at: statement.last_allowed_at,
        })
        .collect();
    let omitted = used.len().saturating_sub(USED_STATEMENTS_MAX);
    if omitted > 0 {
        used.sort_by_key(|statement| std::cmp::Reverse(statement.flows));
        used.truncate(USED_STATEMENTS_MAX);
        used.sort_by(|a, b| a.statement.cmp(&b.statement));
    }
    (used, omitted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Tenancy;

    fn snapshot(id: Option<&str>, cluster: u64, revision: u64) -> Snapshot {
        Snapshot {
            tenancy: Tenancy {
                tenancy_id: id.map(str::to_owned),
                ..Tenancy::default()
            },
            revision,
            cluster: Some(cluster),
        }
    }

    #[test]
    fn a_reset_or_restored_store_is_told_from_a_later_state() {
        let live = snapshot(Some("a1"), 7, 91);
        let live = StoreIdentity::of(&live);
        assert_eq!(store_reset(&live, &snapshot(Some("a1"), 7, 92)), None);
        assert_eq!(store_reset(&live, &snapshot(Some("a1"), 7, 91)), None);
        let restored = store_reset(&live, &snapshot(None, 7, 2)).unwrap();
        assert!(
            restored.contains("tenancy id a1 -> none") && restored.contains("revision 91 -> 2"),
            "{restored}"
        );
        assert!(store_reset(&live, &snapshot(Some("b2"), 7, 95)).is_some());
        assert!(store_reset(&live, &snapshot(Some("a1"), 8, 95)).is_some());
        // A tenancy that had no id yet (seeded before ids) takes one on.
        let unnamed = snapshot(None, 7, 91);
        let unnamed = StoreIdentity::of(&unnamed);
        assert_eq!(store_reset(&unnamed, &snapshot(Some("a1"), 7, 95)), None);
    }
}
