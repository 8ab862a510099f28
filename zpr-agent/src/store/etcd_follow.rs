//! Following a fleet tenancy in etcd as Cilium's and Calico's agents do:
//! list the state at one revision, then watch from the next; apply each
//! burst of events as one snapshot; on a compacted revision, a cancelled
//! watch or any error, list again (a deletion missed while away is then
//! simply absent from the list). Both read each record with one function
//! ([`records::TenancyRecords`], the reader of a whole list too): a record
//! that does not read makes the state unreadable, however it arrived. An
//! event reads only the records it changed.

use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions, WatchStream};

use super::{
    EtcdLocation, Snapshot,
    etcd::{
        ANSWER_BYTES_MAX, CredentialStamp, cause, connect, credentials_rotated, list, request,
        unavailable,
    },
    records::{BadRecord, TenancyRecords},
};

/// Events arriving this close together are one snapshot.
const BURST: Duration = Duration::from_millis(5);

pub struct EtcdFollower {
    location: EtcdLocation,
    client: Option<Client>,
    /// The credential files the client was made with.
    stamp: CredentialStamp,
    records: TenancyRecords,
    revision: u64,
    cluster: u64,
    watch: Option<WatchStream>,
}

/// The tenancy as of one revision (or the record that keeps it from being
/// read), and whether it came from a full list (a start or a resync)
/// rather than from watched events.
pub struct Followed {
    pub revision: u64,
    pub snapshot: Result<Snapshot, BadRecord>,
    pub listed: bool,
}

impl EtcdFollower {
    pub fn new(location: EtcdLocation) -> EtcdFollower {
        EtcdFollower {
            location,
            client: None,
            stamp: CredentialStamp::default(),
            records: TenancyRecords::default(),
            revision: 0,
            cluster: 0,
            watch: None,
        }
    }

    /// Waits for the next change of the tenancy. An error means the store
    /// cannot be followed now (unreachable, frozen, or the watch broke);
    /// the next call lists again.
    pub async fn next(&mut self) -> anyhow::Result<Followed> {
        let outcome = self.next_or_relist().await;
        if outcome.is_err() {
            self.watch = None;
            self.client = None;
        }
        outcome
    }

    async fn next_or_relist(&mut self) -> anyhow::Result<Followed> {
        loop {
            let Some(mut watch) = self.watch.take() else {
                return self.list_and_watch().await;
            };
            let mut changed = false;
            // The first message waits; the rest of a burst (one
            // transaction's events arrive together, a script's writes as
            // many messages) is taken as it comes.
            let mut waited = false;
            let broken = loop {
                let message = if waited {
                    match tokio::time::timeout(BURST, watch.message()).await {
                        Ok(message) => message,
                        Err(_) => break false,
                    }
                } else {
                    let rotated =
                        credentials_rotated(self.location.access.clone(), self.stamp.clone());
                    tokio::select! {
                        message = watch.message() => message,
                        () = rotated => {
                            self.client = None;
                            break true;
                        }
                    }
                };
                waited = true;
                let Some(message) =
                    message.map_err(|error| unavailable(&self.location, cause(&error)))?
                else {
                    anyhow::bail!(unavailable(&self.location, "the watch ended"));
                };
                if message.canceled() || message.compact_revision() > 0 {
                    // Compacted past what was seen, or cancelled: list again.
                    break true;
                }
                changed |= self.apply(&message);
            };
            if broken {
                continue;
            }
            self.watch = Some(watch);
            if changed {
                return Ok(self.followed(false));
            }
        }
    }

    async fn list_and_watch(&mut self) -> anyhow::Result<Followed> {
        let client = match &mut self.client {
            Some(client) => client,
            None => {
                self.stamp = self.location.access.stamp();
                self.client.insert(connect(&self.location).await?)
            }
        };
        let prefix = self.location.state_prefix();
        let listed = list(client, &self.location, &prefix).await?;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(listed.revision as i64 + 1)
            .with_progress_notify();
        // A burst of large changes caught up at once may exceed even this:
        // the watch then fails and the next call lists again.
        let mut watcher = client
            .watch_client()
            .max_decoding_message_size(ANSWER_BYTES_MAX);
        let watch = request(&self.location, watcher.watch(prefix, Some(options))).await?;
        // A resync reads only the records that changed while away.
        self.records.relist(&listed.records);
        self.revision = listed.revision;
        self.cluster = listed.cluster;
        self.watch = Some(watch);
        Ok(self.followed(true))
    }

    /// Applies a watch message's events; whether the state changed.
    fn apply(&mut self, message: &etcd_client::WatchResponse) -> bool {
        if let Some(header) = message.header() {
            self.revision = self.revision.max(header.revision() as u64);
        }
        let prefix = self.location.state_prefix();
        let mut changed = false;
        for event in message.events() {
            let Some(kv) = event.kv() else {
                continue;
            };
            let Some(key) = kv.key().strip_prefix(prefix.as_bytes()) else {
                continue;
            };
            self.revision = self.revision.max(kv.mod_revision() as u64);
            match event.event_type() {
                EventType::Put => self.records.put(key, kv.value()),
                EventType::Delete => self.records.delete(key),
            }
            changed = true;
        }
        changed
    }

    fn followed(&self, listed: bool) -> Followed {
        Followed {
            revision: self.revision,
            snapshot: self.records.tenancy().map(|tenancy| Snapshot {
                tenancy,
                revision: self.revision,
                cluster: Some(self.cluster),
            }),
            listed,
        }
    }
}
