//! The flow log (`--flow-log FILE|-`): a JSON line for every new flow
//! decided (allowed, audited) and every drop, named by the statements
//! that allowed it. Field names follow OCI's VCN flow logs where one fits
//! (`action`, `sourceAddress`, ..., `startTime`); zpr adds the verdict,
//! the reason, the statements, the generation, both endpoints' names and
//! security attributes, the vNIC and the direction.
//!
//! What is missing from the log is counted in it: a `suppressed` record
//! says how many events the kernel did not send (ring buffer full,
//! rate-limited), how many the writer fell too far behind to take, and
//! how many it could not write (a full disk). The writer runs on a thread
//! of its own: a slow or failing disk costs log records, never the agent's
//! time.
//!
//! A file is rotated by size: FILE becomes FILE.1, FILE.1 FILE.2 and so on,
//! [`ROTATED_FILES`] of them kept.

use std::{
    fmt,
    fs::File,
    io::{self, Write as _},
    net::IpAddr,
    path::PathBuf,
    str::FromStr,
    sync::mpsc::{Receiver, SyncSender, TrySendError, channel, sync_channel},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use tracing::{info, warn};
use zpr_common::event::Event;

use super::{
    event_hub::HubWarnings,
    event_names::{DescribedEvent, GenerationNames, Statements, Verdict, describe, protocol_name},
    metrics::EventConsumer,
};
use crate::datapath::monotonic_now_ns;

/// `version` of every record: this format's.
pub const FORMAT_VERSION: &str = "zpr-1";
/// `--flow-log-max-bytes` by default.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated files kept beside the one being written (FILE.1 to FILE.5).
pub const ROTATED_FILES: u32 = 5;
/// Events waiting for the writer before it counts as behind.
const QUEUE: usize = 8192;
/// How long a stopping agent waits for the writer to write what is queued.
const DRAIN_AT_STOP: Duration = Duration::from_secs(2);

/// `--flow-log`: a file, or `-` for standard output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowLogTarget {
    Stdout,
    File(PathBuf),
}

impl FromStr for FlowLogTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<FlowLogTarget, String> {
        match text {
            "" => Err("an empty path".to_owned()),
            "-" => Ok(FlowLogTarget::Stdout),
            path => Ok(FlowLogTarget::File(PathBuf::from(path))),
        }
    }
}

impl fmt::Display for FlowLogTarget {
    fn fmt(&self, out: &mut fmt::Formatter) -> fmt::Result {
        match self {
            FlowLogTarget::Stdout => write!(out, "standard output"),
            FlowLogTarget::File(path) => write!(out, "{}", path.display()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct FlowLogOptions {
    pub target: FlowLogTarget,
    /// A file reaching this size is rotated.
    pub max_bytes: u64,
}

/// What the writer is handed.
enum Item {
    Event(Event),
    Missing(Missing),
}

/// Records missing from the log, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Missing {
    /// The kernel's ring buffer was full.
    lost: u64,
    /// Over the kernel's `--events-per-second`.
    rate_limited: u64,
    /// The writer was too far behind to take them.
    queue_full: u64,
    /// Writing them failed (a full disk, say).
    write_failed: u64,
}

/// The hub's end: hands events to the writer without ever waiting.
pub struct FlowLog {
    items: SyncSender<Item>,
    /// Events the writer's queue had no room for, not told to it yet.
    queue_full: u64,
    consumers: EventConsumer,
    /// Disconnected when the writer has ended.
    writer_ended: Receiver<()>,
}

impl FlowLog {
    /// Starts the writer. A file that cannot be opened now is tried again
    /// at each record (what it misses meanwhile is counted).
    pub fn start(
        options: &FlowLogOptions,
        run_dir: PathBuf,
        consumers: EventConsumer,
        warnings: HubWarnings,
    ) -> FlowLog {
        let (items, received) = sync_channel(QUEUE);
        let writer = Writer {
            sink: match &options.target {
                FlowLogTarget::Stdout => Sink::Stdout,
                FlowLogTarget::File(path) => Sink::File(RotatingFile::new(path, options.max_bytes)),
            },
            target: options.target.clone(),
            run_dir,
            names: GenerationNames::default(),
            consumers: consumers.clone(),
            warnings,
            write_failed: 0,
            failing: false,
        };
        info!(to = %options.target, "writing the flow log");
        let (ended, writer_ended) = channel();
        std::thread::Builder::new()
            .name("zpr-flow-log".to_owned())
            .spawn(move || {
                writer.run(received);
                drop(ended);
            })
            .expect("starting the flow log's thread");
        FlowLog {
            items,
            queue_full: 0,
            consumers,
            writer_ended,
        }
    }

    pub fn offer(&mut self, event: Event) {
        if self.queue_full > 0 {
            let missing = Missing {
                queue_full: self.queue_full,
                ..Missing::default()
            };
            if !self.send(Item::Missing(missing)) {
                self.fell_behind();
                return;
            }
            self.queue_full = 0;
        }
        if !self.send(Item::Event(event)) {
            self.fell_behind();
        }
    }

    /// Tells the writer what the kernel did not send; false when it had
    /// no room (the caller tells it again later).
    pub fn not_sent_by_kernel(&mut self, lost: u64, rate_limited: u64) -> bool {
        self.send(Item::Missing(Missing {
            lost,
            rate_limited,
            ..Missing::default()
        }))
    }

    fn send(&self, item: Item) -> bool {
        match self.items.try_send(item) {
            Ok(()) => true,
            // A writer that is gone (it cannot be, short of a panic) is
            // one that takes nothing more.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    fn fell_behind(&mut self) {
        self.queue_full += 1;
        self.consumers.dropped_for_flow_log();
    }
}

impl Drop for FlowLog {
    /// The agent is stopping: the writer gets a moment to write what is
    /// queued (it ends once its queue is empty and closed), not longer.
    fn drop(&mut self) {
        let (closed, _) = sync_channel(0);
        drop(std::mem::replace(&mut self.items, closed));
        let _ = self.writer_ended.recv_timeout(DRAIN_AT_STOP);
    }
}

struct Writer {
    sink: Sink,
    target: FlowLogTarget,
    run_dir: PathBuf,
    names: GenerationNames,
    consumers: EventConsumer,
    warnings: HubWarnings,
    /// Records not written since the last successful write.
    write_failed: u64,
    /// Writes are failing (warned once, until they succeed again).
    failing: bool,
}

impl Writer {
    fn run(mut self, items: Receiver<Item>) {
        for item in items {
            let (record, is_flow) = match item {
                Item::Event(event) => {
                    self.names.refresh(&self.run_dir, event.generation);
                    (flow_record(&describe(&event, &self.names)), true)
                }
                Item::Missing(missing) => (suppressed_record(missing), false),
            };
            self.write(&record, is_flow);
        }
    }

    fn write(&mut self, record: &[u8], is_flow: bool) {
        if self.write_failed > 0 {
            let missing = Missing {
                write_failed: self.write_failed,
                ..Missing::default()
            };
            if self.sink.write(&suppressed_record(missing)).is_err() {
                self.failed();
                return;
            }
            self.write_failed = 0;
            self.failing = false;
            info!(to = %self.target, "the flow log is written again");
        }
        match self.sink.write(record) {
            Ok(()) if is_flow => self.consumers.flow_log_written(),
            Ok(()) => {}
            Err(err) => {
                if !self.failing {
                    let warning = format!(
                        "the flow log ({}) cannot be written: {err}; enforcement is \
                         unaffected, and the records not written are counted in the log \
                         once it can be written again",
                        self.target
                    );
                    warn!("{warning}");
                    self.warnings.push(warning);
                }
                self.failed();
            }
        }
    }

    fn failed(&mut self) {
        self.failing = true;
        self.write_failed += 1;
        self.consumers.flow_log_write_failed();
    }
}

enum Sink {
    Stdout,
    File(RotatingFile),
}

impl Sink {
    fn write(&mut self, record: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout => io::stdout().lock().write_all(record),
            Sink::File(file) => file.write(record),
        }
    }
}

/// A file rotated when it would grow past `max_bytes`.
struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    /// Open unless the last write failed (then opened again).
    file: Option<(File, u64)>,
}

impl RotatingFile {
    fn new(path: &std::path::Path, max_bytes: u64) -> RotatingFile {
        RotatingFile {
            path: path.to_owned(),
            max_bytes,
            file: None,
        }
    }

    fn write(&mut self, record: &[u8]) -> io::Result<()> {
        let result = self.write_once(record);
        if result.is_err() {
            self.file = None;
        }
        result
    }

    fn write_once(&mut self, record: &[u8]) -> io::Result<()> {
        if self
            .file
            .as_ref()
            .is_some_and(|(_, size)| *size > 0 && size + record.len() as u64 > self.max_bytes)
        {
            self.file = None;
            self.rotate()?;
        }
        let (file, size) = match &mut self.file {
            Some(open) => open,
            None => self.file.insert(self.open()?),
        };
        file.write_all(record)?;
        *size += record.len() as u64;
        Ok(())
    }

    /// Appends to what is there (a restarted agent goes on with its file).
    fn open(&self) -> io::Result<(File, u64)> {
        // The records name addresses and attributes: for root only.
        let file = crate::private_file::append(&self.path)?;
        let size = file.metadata()?.len();
        Ok((file, size))
    }

    /// FILE.4 -> FILE.5 (the oldest goes), ..., FILE -> FILE.1.
    fn rotate(&self) -> io::Result<()> {
        for index in (1..ROTATED_FILES).rev() {
            match std::fs::rename(self.rotated(index), self.rotated(index + 1)) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        std::fs::rename(&self.path, self.rotated(1))
    }

    fn rotated(&self, index: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{index}"));
        PathBuf::from(name)
    }
}

/// A statement as the flow log names it.
#[derive(Serialize, Debug, PartialEq, Eq)]
struct StatementName<'a> {
    policy: &'a str,
    line: Option<u32>,
}

impl<'a> StatementName<'a> {
    /// From an id, `policy:line`.
    fn of(id: &'a str) -> StatementName<'a> {
        match id.rsplit_once(':') {
            Some((policy, line)) if line.parse::<u32>().is_ok() => StatementName {
                policy,
                line: line.parse().ok(),
            },
            _ => StatementName {
                policy: id,
                line: None,
            },
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FlowRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    version: &'static str,
    /// Unix milliseconds of the packet (the kernel's timestamp).
    start_time: u64,
    /// OCI's: ACCEPT (allowed, audited) or REJECT (dropped).
    action: &'static str,
    verdict: &'static str,
    reason: &'static str,
    source_address: IpAddr,
    source_port: u16,
    destination_address: IpAddr,
    destination_port: u16,
    protocol: u8,
    protocol_name: String,
    source_name: &'a str,
    source_attributes: &'a [String],
    destination_name: &'a str,
    destination_attributes: &'a [String],
    /// The statements that allowed the flow (empty for drops).
    statements: Vec<StatementName<'a>>,
    /// Why the statements are not named: their Plan is no longer kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    statements_unknown: Option<String>,
    generation: u32,
    vnic: &'a str,
    endpoint: Option<&'a str>,
    direction: &'static str,
}

fn flow_record(described: &DescribedEvent) -> Vec<u8> {
    let statements_unknown = match described.statements {
        Statements::NotKept { rule } => Some(format!(
            "entry {rule} of generation {}, whose policy the agent no longer keeps",
            described.generation
        )),
        _ => None,
    };
    let statements = match &described.statements {
        Statements::Named(ids) => ids.iter().map(|id| StatementName::of(id)).collect(),
        _ => Vec::new(),
    };
    let record = FlowRecord {
        kind: "flow",
        version: FORMAT_VERSION,
        start_time: unix_ms_of_monotonic(described.timestamp_ns),
        action: match described.verdict {
            Verdict::Dropped => "REJECT",
            Verdict::Allowed | Verdict::Audited => "ACCEPT",
        },
        verdict: described.verdict.name(),
        reason: described.reason,
        source_address: described.source.address,
        source_port: described.source.port,
        destination_address: described.destination.address,
        destination_port: described.destination.port,
        protocol: described.protocol,
        protocol_name: protocol_name(described.protocol).to_uppercase(),
        source_name: &described.source.name,
        source_attributes: &described.source.attributes,
        destination_name: &described.destination.name,
        destination_attributes: &described.destination.attributes,
        statements,
        statements_unknown,
        generation: described.generation,
        vnic: &described.interface,
        endpoint: described.endpoint.as_deref(),
        direction: described.direction_name(),
    };
    json_line(&record)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SuppressedRecord {
    #[serde(rename = "type")]
    kind: &'static str,
    version: &'static str,
    /// Unix milliseconds when the writer learnt of them.
    time: u64,
    #[serde(flatten)]
    missing: Missing,
}

fn suppressed_record(missing: Missing) -> Vec<u8> {
    json_line(&SuppressedRecord {
        kind: "suppressed",
        version: FORMAT_VERSION,
        time: unix_ms(SystemTime::now()),
        missing,
    })
}

fn json_line(record: &impl Serialize) -> Vec<u8> {
    // Plain data with string keys: serialising it cannot fail.
    let mut line = serde_json::to_vec(record).unwrap_or_default();
    line.push(b'\n');
    line
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// A CLOCK_MONOTONIC instant as Unix milliseconds: shifted by how far
/// apart the two clocks are now.
fn unix_ms_of_monotonic(timestamp_ns: u64) -> u64 {
    let age_ns = monotonic_now_ns().saturating_sub(timestamp_ns);
    unix_ms(SystemTime::now() - std::time::Duration::from_nanos(age_ns))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::daemon::event_names::tests::{allowed_event, status};

    fn names_of(generation: u32) -> GenerationNames {
        // Tests run side by side: each call a directory of its own.
        static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "zpr-flow-log-names-{}-{generation}-{call}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        status(generation).write(&dir).unwrap();
        let mut names = GenerationNames::default();
        names.refresh(&dir, generation);
        std::fs::remove_dir_all(&dir).unwrap();
        names
    }

    fn parsed(line: &[u8]) -> Value {
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        serde_json::from_slice(line).unwrap()
    }

    #[test]
    fn an_allowed_flow_names_its_statement_endpoints_and_attributes() {
        let mut event = allowed_event(3);
        event.timestamp_ns = monotonic_now_ns() - 2_000_000_000;
        let record = parsed(&flow_record(&describe(&event, &names_of(3))));
        let expected_ms = unix_ms(SystemTime::now()) - 2000;
        let start = record["startTime"].as_u64().unwrap();
        assert!(start.abs_diff(expected_ms) < 1000, "{record}");
        let expected = serde_json::json!({
            "type": "flow",
            "version": FORMAT_VERSION,
            "startTime": start,
            "action": "ACCEPT",
            "verdict": "ALLOWED",
            "reason": "new-flow",
            "sourceAddress": "198.51.100.10",
            "sourcePort": 40000,
            "destinationAddress": "10.0.2.10",
            "destinationPort": 80,
            "protocol": 6,
            "protocolName": "TCP",
            "sourceName": "0.0.0.0/0",
            "sourceAttributes": [],
            "destinationName": "app-1",
            "destinationAttributes": ["ocvtc002.apps:server"],
            "statements": [{"policy": "three-tier", "line": 1}],
            "generation": 3,
            "vnic": "zpr-app1",
            "endpoint": "app-1",
            "direction": "to-workload",
        });
        assert_eq!(record, expected);
    }

    #[test]
    fn a_drop_is_a_reject_without_statements() {
        let mut event = allowed_event(3);
        event.verdict = zpr_common::event::VERDICT_DROPPED;
        event.reason = zpr_common::counters::Reason::NoPolicy as u8;
        event.rule = zpr_common::event::NO_RULE;
        let record = parsed(&flow_record(&describe(&event, &names_of(3))));
        assert_eq!(record["action"], "REJECT");
        assert_eq!(record["verdict"], "DROPPED");
        assert_eq!(record["reason"], "no-policy");
        assert_eq!(record["statements"], serde_json::json!([]));
        assert!(record.get("statementsUnknown").is_none());
    }

    #[test]
    fn statements_of_a_generation_no_longer_kept_are_said_unknown() {
        let record = parsed(&flow_record(&describe(&allowed_event(1), &names_of(3))));
        assert_eq!(record["statements"], serde_json::json!([]));
        assert_eq!(
            record["statementsUnknown"],
            "entry 0 of generation 1, whose policy the agent no longer keeps"
        );
    }

    #[test]
    fn missing_records_are_counted_by_cause() {
        let record = parsed(&suppressed_record(Missing {
            lost: 1,
            rate_limited: 2,
            queue_full: 3,
            write_failed: 4,
        }));
        assert_eq!(record["type"], "suppressed");
        assert_eq!(
            (
                &record["lost"],
                &record["rateLimited"],
                &record["queueFull"],
                &record["writeFailed"]
            ),
            (&1.into(), &2.into(), &3.into(), &4.into())
        );
    }

    #[test]
    fn statement_ids_split_into_policy_and_line() {
        assert_eq!(
            StatementName::of("web:tier:12"),
            StatementName {
                policy: "web:tier",
                line: Some(12)
            }
        );
        assert_eq!(
            StatementName::of("odd"),
            StatementName {
                policy: "odd",
                line: None
            }
        );
    }

    #[test]
    fn files_rotate_by_size_and_the_oldest_goes() {
        let dir =
            std::env::temp_dir().join(format!("zpr-flow-log-rotation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("flows.json");
        let mut file = RotatingFile::new(&path, 25);
        // Ten-byte records: two fit a file, the third rotates it.
        for index in 0..16u32 {
            file.write(format!("record {index:02}\n").as_bytes())
                .unwrap();
        }
        let read = |path: PathBuf| std::fs::read_to_string(path).unwrap();
        assert_eq!(read(path.clone()), "record 14\nrecord 15\n");
        assert_eq!(read(dir.join("flows.json.1")), "record 12\nrecord 13\n");
        assert_eq!(read(dir.join("flows.json.5")), "record 04\nrecord 05\n");
        assert!(!dir.join("flows.json.6").exists());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        // A record larger than the limit still goes in, alone.
        file.write(&[b'x'; 40]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 40);
        assert_eq!(read(dir.join("flows.json.1")), "record 14\nrecord 15\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failing_write_is_counted_and_told_once_it_works_again() {
        let dir = std::env::temp_dir().join(format!("zpr-flow-log-failing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("flows.json");
        let consumers = EventConsumer::default();
        let warnings = HubWarnings::default();
        let mut writer = Writer {
            sink: Sink::File(RotatingFile::new(&path, DEFAULT_MAX_BYTES)),
            target: FlowLogTarget::File(path.clone()),
            run_dir: dir.clone(),
            names: GenerationNames::default(),
            consumers: consumers.clone(),
            warnings: warnings.clone(),
            write_failed: 0,
            failing: false,
        };
        // Its directory does not exist: nothing can be written.
        writer.write(b"{\"first\":1}\n", true);
        writer.write(b"{\"second\":2}\n", true);
        assert_eq!(consumers.flow_log_write_failed_count(), 2);
        assert_eq!(warnings.take().len(), 1, "warned once");
        std::fs::create_dir_all(&dir).unwrap();
        writer.write(b"{\"third\":3}\n", true);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["type"], "suppressed");
        assert_eq!(lines[0]["writeFailed"], 2);
        assert_eq!(lines[1]["third"], 3);
        assert_eq!(consumers.flow_log_written_count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
