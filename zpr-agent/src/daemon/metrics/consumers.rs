//! What the event consumers (the flow log, `zpr monitor` clients) did
//! with the events the agent read: recorded as they go.

use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

type ConsumerLabel = [(&'static str, &'static str); 1];

const FLOW_LOG: ConsumerLabel = [("consumer", "flow-log")];
const MONITOR: ConsumerLabel = [("consumer", "monitor")];

/// Cheap to clone: the clones share their values.
#[derive(Clone, Debug)]
pub struct EventConsumer {
    /// Events a consumer's queue had no room for (it read too slowly).
    dropped: Family<ConsumerLabel, Counter>,
    flow_log_records: Counter,
    flow_log_write_failures: Counter,
}

impl Default for EventConsumer {
    fn default() -> EventConsumer {
        let dropped = Family::<ConsumerLabel, Counter>::default();
        for consumer in [FLOW_LOG, MONITOR] {
            // Every consumer is a series from the start, at 0.
            drop(dropped.get_or_create(&consumer));
        }
        EventConsumer {
            dropped,
            flow_log_records: Counter::default(),
            flow_log_write_failures: Counter::default(),
        }
    }
}

impl EventConsumer {
    pub fn dropped_for_flow_log(&self) {
        self.dropped.get_or_create(&FLOW_LOG).inc();
    }

    pub fn dropped_for_monitor(&self) {
        self.dropped.get_or_create(&MONITOR).inc();
    }

    pub fn flow_log_written(&self) {
        self.flow_log_records.inc();
    }

    pub fn flow_log_write_failed(&self) {
        self.flow_log_write_failures.inc();
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "zpr_events_dropped",
            "Events the agent read that a consumer missed: its queue was full because it \
             read too slowly (flow-log: the writer; monitor: any zpr monitor)",
            self.dropped.clone(),
        );
        registry.register(
            "zpr_flow_log_records",
            "Flow records written to the flow log",
            self.flow_log_records.clone(),
        );
        registry.register(
            "zpr_flow_log_write_failures",
            "Flow log records that could not be written (a full disk, say)",
            self.flow_log_write_failures.clone(),
        );
    }
}

#[cfg(test)]
impl EventConsumer {
    pub fn dropped_for_monitor_count(&self) -> u64 {
        self.dropped.get_or_create(&MONITOR).get()
    }

    pub fn flow_log_write_failed_count(&self) -> u64 {
        self.flow_log_write_failures.get()
    }

    pub fn flow_log_written_count(&self) -> u64 {
        self.flow_log_records.get()
    }
}
