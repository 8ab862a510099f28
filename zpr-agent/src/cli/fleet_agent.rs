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
use tracing::warn;

use crate::{
    clock::unix_now,
    daemon::{Agent, Companion, Guard},
    store::{
        EtcdFollower, EtcdLocation, Followed, Snapshot, SnapshotCache,
        etcd::REQUEST_TIMEOUT,
        fleet::{KEEPALIVE_INTERVAL, NodeRecord, NodeRegistration},
    },
};

/// Waits between attempts to follow the store again after a failure.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(4);

pub struct FleetAgent {
    location: EtcdLocation,
    node: String,
    cache: SnapshotCache,
    follower: Option<EtcdFollower>,
    /// Snapshots (or why the store could not be followed) from the task
    /// that follows it.
    followed: Option<mpsc::Receiver<Result<Followed, String>>>,
    /// What this node reports, and whether its reports reach the store.
    report: Option<watch::Sender<NodeRecord>>,
    contact: Option<mpsc::Receiver<Result<(), String>>>,
    /// Why the store could not be read at the start, if it could not.
    outage_at_start: Option<String>,
}

impl FleetAgent {
    pub fn new(location: EtcdLocation, node: String, run_dir: &std::path::Path) -> FleetAgent {
        FleetAgent {
            cache: SnapshotCache::new(run_dir, location.to_string()),
            follower: Some(EtcdFollower::new(location.clone())),
            location,
            node,
            followed: None,
            report: None,
            contact: None,
            outage_at_start: None,
        }
    }

    fn record(&self, agent: &Agent) -> NodeRecord {
        let status = agent.status();
        NodeRecord {
            node: self.node.clone(),
            revision: status.revision,
            applied_at: status.applied_at,
            generation: status.generation,
            last_error: status.last_error.as_ref().map(|e| e.message.clone()),
            reported_at: unix_now(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    fn applied(&self, agent: &Agent, snapshot: &Snapshot) {
        if agent.status().revision == Some(snapshot.revision)
            && let Err(error) = self.cache.write(snapshot)
        {
            warn!("cannot keep the applied snapshot on this host: {error:#}");
        }
        if let Some(report) = &self.report {
            report.send_replace(self.record(agent));
        }
    }
}

impl Companion for FleetAgent {
    async fn prepare(&mut self) -> anyhow::Result<Option<Snapshot>> {
        let follower = self.follower.as_mut().expect("prepared once");
        // Twice the request deadline: a connect, then a list.
        match tokio::time::timeout(2 * REQUEST_TIMEOUT, follower.next()).await {
            Ok(Ok(followed)) => {
                if let Err(error) = self.cache.write(&followed.snapshot) {
                    warn!("cannot keep the snapshot on this host: {error:#}");
                }
                return Ok(Some(followed.snapshot));
            }
            Ok(Err(error)) => self.outage_at_start = Some(format!("{error:#}")),
            Err(_) => {
                self.outage_at_start = Some(format!(
                    "{}: no answer within {}s",
                    self.location,
                    (2 * REQUEST_TIMEOUT).as_secs()
                ))
            }
        }
        let why = self.outage_at_start.clone().unwrap_or_default();
        match self.cache.read()? {
            Some(snapshot) => {
                warn!(
                    revision = snapshot.revision,
                    "the store is unreachable ({why}); enforcing the snapshot this host \
                     applied last ({})",
                    self.cache.path().display()
                );
                Ok(Some(snapshot))
            }
            None => {
                warn!(
                    "the store is unreachable ({why}) and this host has no snapshot of it \
                     ({}): only a policy already pinned here can be kept",
                    self.cache.path().display()
                );
                Ok(None)
            }
        }
    }

    fn started(&mut self, agent: &mut Agent) -> anyhow::Result<()> {
        agent.store_contact(match self.outage_at_start.take() {
            Some(why) => Err(why),
            None => Ok(()),
        });
        let (followed_sender, followed) = mpsc::channel(4);
        tokio::spawn(follow(
            self.follower.take().expect("started once"),
            followed_sender,
        ));
        self.followed = Some(followed);
        let (report, reports) = watch::channel(self.record(agent));
        let (contact_sender, contact) = mpsc::channel(4);
        tokio::spawn(keep_registered(
            NodeRegistration::new(self.location.clone(), self.node.clone()),
            reports,
            contact_sender,
        ));
        self.report = Some(report);
        self.contact = Some(contact);
        Ok(())
    }

    async fn next(&mut self, agent: &mut Agent) -> anyhow::Result<()> {
        let (Some(followed), Some(contact)) = (self.followed.as_mut(), self.contact.as_mut())
        else {
            return std::future::pending().await;
        };
        tokio::select! {
            Some(followed) = followed.recv() => match followed {
                Ok(Followed { snapshot, listed }) => {
                    agent.store_contact(Ok(()));
                    let revision = snapshot.revision;
                    // A full list may be a wiped or mistyped tenancy: it is
                    // held back if it would unprotect most of this host.
                    let (cause, guard) = if listed {
                        (format!("store listed (revision {revision})"), Guard::Unprotect)
                    } else {
                        (format!("store changed (revision {revision})"), Guard::Confirmed)
                    };
                    agent.offer(snapshot.clone(), &cause, Instant::now(), guard);
                    self.applied(agent, &snapshot);
                }
                Err(why) => agent.store_contact(Err(why)),
            },
            Some(reached) = contact.recv() => agent.store_contact(reached),
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
/// it changes; says whether the store answered.
async fn keep_registered(
    mut registration: NodeRegistration,
    mut reports: watch::Receiver<NodeRecord>,
    contact: mpsc::Sender<Result<(), String>>,
) {
    let mut ticks = tokio::time::interval(KEEPALIVE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut registered = false;
    loop {
        let reached = tokio::select! {
            changed = reports.changed() => {
                if changed.is_err() {
                    return;
                }
                let record = reports.borrow_and_update().clone();
                registration.report(&record).await
            }
            _ = ticks.tick() => {
                if registered {
                    registration.keep_alive().await
                } else {
                    let mut record = reports.borrow().clone();
                    record.reported_at = unix_now();
                    registration.report(&record).await
                }
            }
        };
        registered = reached.is_ok();
        if contact
            .send(reached.map_err(|error| format!("{error:#}")))
            .await
            .is_err()
        {
            return;
        }
    }
}
