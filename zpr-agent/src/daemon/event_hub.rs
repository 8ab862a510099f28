//! The agent as the event ring buffer's one reader: it drains the
//! kernel's drop and new-flow events as they come and hands each to the
//! flow log and to every `zpr monitor` connected to its socket.
//!
//! Every consumer has a bounded queue. A consumer that falls behind loses
//! events, counted (`zpr_events_dropped_total{consumer}`) and told to it in
//! its stream; it never holds up the agent or the other consumers, and
//! nothing here touches enforcement, which is the kernel's alone.

use std::{
    collections::VecDeque,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _, unix::AsyncFd},
    net::{UnixListener, UnixStream},
    sync::mpsc,
};
use tracing::{info, warn};
use zpr_common::event::Event;

use super::{
    Agent,
    flow_log::{FlowLog, FlowLogOptions},
    metrics::EventConsumer,
};
use crate::datapath::{EventStats, PinLayout, decode_event, pinned_event_stats, pinned_events};

/// Events the agent keeps for a monitor that connects: the most recent
/// ones, which it shows with `--include-buffered` (marked stale).
pub const BACKLOG: usize = 256;
/// Events read from the ring buffer before the agent's other work gets a
/// turn (the agent runs on one thread).
const DRAIN_BATCH: usize = 1024;
/// Events queued for one monitor before it counts as too slow.
const MONITOR_QUEUE: usize = 1024;
/// How long the hub waits after failing to accept a monitor (events wait
/// in the ring buffer meanwhile).
const ACCEPT_RETRY: Duration = Duration::from_millis(500);
/// How often the kernel's lost and rate-limited counters are read for the
/// flow log.
const SUPPRESSION_INTERVAL: Duration = Duration::from_secs(1);

/// The agent's socket for monitors, in its run directory.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join("events.sock")
}

/// What the agent sends a monitor: events, and how many it could not send
/// because the monitor read too slowly. A one-byte kind, then the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    Event(Event),
    ReadTooSlowly(u64),
}

const EVENT_FRAME: u8 = 0;
const READ_TOO_SLOWLY_FRAME: u8 = 1;

impl Frame {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Event(event) => {
                out.push(EVENT_FRAME);
                // SAFETY: Event is repr(C) plain data with explicit padding.
                out.extend_from_slice(unsafe {
                    std::slice::from_raw_parts(
                        (event as *const Event).cast::<u8>(),
                        size_of::<Event>(),
                    )
                });
            }
            Frame::ReadTooSlowly(count) => {
                out.push(READ_TOO_SLOWLY_FRAME);
                out.extend_from_slice(&count.to_le_bytes());
            }
        }
    }

    /// The next frame from the agent; `None` when it closed the stream.
    pub async fn read(
        stream: &mut (impl tokio::io::AsyncRead + Unpin),
    ) -> anyhow::Result<Option<Frame>> {
        let kind = match stream.read_u8().await {
            Ok(kind) => kind,
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        match kind {
            EVENT_FRAME => {
                let mut bytes = [0u8; size_of::<Event>()];
                stream.read_exact(&mut bytes).await?;
                let event = decode_event(&bytes).context("an event frame of the wrong size")?;
                Ok(Some(Frame::Event(event)))
            }
            READ_TOO_SLOWLY_FRAME => Ok(Some(Frame::ReadTooSlowly(stream.read_u64_le().await?))),
            other => anyhow::bail!("unknown frame kind {other} from the agent"),
        }
    }
}

/// Conditions the event hub ran into that `zpr status` must show (the
/// flow log cannot be written, say), for the agent to pick up.
#[derive(Clone, Default)]
pub struct HubWarnings(Arc<Mutex<Vec<String>>>);

impl HubWarnings {
    pub fn push(&self, warning: String) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(warning);
    }

    /// What was found since the last call.
    pub(super) fn take(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Hands what was found since the last call to the agent's status.
    pub fn report_to(&self, agent: &mut Agent) {
        for warning in self.take() {
            agent.add_warning(warning);
        }
    }
}

/// Starts reading the ring buffer and serving monitors (and the flow log,
/// when asked for). Whatever fails here is a warning: the agent enforces
/// without events.
pub fn start(flow_log: Option<&FlowLogOptions>, agent: &Agent) -> HubWarnings {
    let warnings = HubWarnings::default();
    let warn_now = |warning: String| {
        warn!("{warning}");
        warnings.push(warning);
    };
    let ring = match pinned_events(agent.pins()).and_then(|ring| {
        // SAFETY: the ring buffer owns its fd and lives inside the
        // AsyncFd, which deregisters before dropping it.
        unsafe { AsyncFd::register(ring) }.map_err(anyhow::Error::from)
    }) {
        Ok(ring) => ring,
        Err(err) => {
            warn_now(format!(
                "events are not read (no flow log, no zpr monitor through the agent): {err:#}"
            ));
            return warnings;
        }
    };
    let consumers = agent.metrics().event_consumers();
    let flow_log = flow_log.map(|options| {
        FlowLog::start(
            options,
            agent.run_dir().to_owned(),
            consumers.clone(),
            warnings.clone(),
        )
    });
    let socket = socket_path(agent.run_dir());
    let listener = match listen(&socket) {
        Ok(listener) => Some(listener),
        Err(err) => {
            warn_now(format!("zpr monitor cannot connect to the agent: {err:#}"));
            None
        }
    };
    let hub = Hub {
        backlog: VecDeque::with_capacity(BACKLOG),
        monitors: Vec::new(),
        flow_log,
        consumers,
        pins: agent.pins().clone(),
        reported: None,
    };
    tokio::spawn(hub.run(ring, listener, warnings.clone()));
    warnings
}

/// Only root (the agent's user) may read the events: they name addresses.
fn listen(path: &Path) -> anyhow::Result<UnixListener> {
    // The agent lock is held, so a socket left here is a dead agent's.
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    info!(socket = %path.display(), "zpr monitor connects here");
    Ok(listener)
}

struct Hub {
    backlog: VecDeque<Event>,
    monitors: Vec<Monitor>,
    flow_log: Option<FlowLog>,
    consumers: EventConsumer,
    pins: PinLayout,
    /// The kernel's counters when last handed to the flow log.
    reported: Option<EventStats>,
}

/// One connected `zpr monitor`: its queue, and what it missed since it
/// was last told.
struct Monitor {
    queue: mpsc::Sender<Frame>,
    missed: u64,
}

impl Monitor {
    /// Queues `frame` unless the monitor is behind; false once it is gone.
    fn offer(&mut self, event: Event, consumers: &EventConsumer) -> bool {
        if self.missed > 0 {
            match self.queue.try_send(Frame::ReadTooSlowly(self.missed)) {
                Ok(()) => self.missed = 0,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.missed += 1;
                    consumers.dropped_for_monitor();
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        match self.queue.try_send(Frame::Event(event)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.missed += 1;
                consumers.dropped_for_monitor();
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl Hub {
    async fn run(
        mut self,
        mut ring: AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>,
        listener: Option<UnixListener>,
        warnings: HubWarnings,
    ) {
        let mut suppression = tokio::time::interval(SUPPRESSION_INTERVAL);
        suppression.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                readable = ring.readable_mut() => {
                    let mut guard = match readable {
                        Ok(guard) => guard,
                        Err(err) => {
                            let warning = format!(
                                "events are no longer read (the flow log and zpr monitor \
                                 stop): {err}"
                            );
                            warn!("{warning}");
                            warnings.push(warning);
                            return;
                        }
                    };
                    let mut drained = false;
                    for _ in 0..DRAIN_BATCH {
                        let Some(item) = guard.get_inner_mut().next() else {
                            drained = true;
                            break;
                        };
                        if let Some(event) = decode_event(&item) {
                            self.deliver(event);
                        }
                    }
                    if drained {
                        guard.clear_ready();
                    } else {
                        // Still readable: the agent's own loop (reloads,
                        // kernel checks) gets its turn before the next batch.
                        drop(guard);
                        tokio::task::yield_now().await;
                    }
                }
                Some(accepted) = maybe_accept(listener.as_ref()) => match accepted {
                    Ok(stream) => self.connect(stream),
                    Err(err) => {
                        warn!("accepting a monitor: {err}");
                        // Out of descriptors, say: not a log line per retry.
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                },
                _ = suppression.tick() => self.report_suppression(),
            }
        }
    }

    fn deliver(&mut self, event: Event) {
        if self.backlog.len() == BACKLOG {
            self.backlog.pop_front();
        }
        self.backlog.push_back(event);
        if let Some(flow_log) = &mut self.flow_log {
            flow_log.offer(event);
        }
        let consumers = &self.consumers;
        self.monitors
            .retain_mut(|monitor| monitor.offer(event, consumers));
    }

    /// A new monitor gets the backlog first (it tells the events older
    /// than itself by their timestamps), then every event as it comes.
    fn connect(&mut self, stream: UnixStream) {
        let (queue, frames) = mpsc::channel(MONITOR_QUEUE);
        let mut monitor = Monitor { queue, missed: 0 };
        for &event in &self.backlog {
            monitor.offer(event, &self.consumers);
        }
        self.monitors.push(monitor);
        tokio::spawn(send_frames(stream, frames));
    }

    /// Hands the flow log what the kernel did not send since the last
    /// time (ring buffer full, rate-limited).
    fn report_suppression(&mut self) {
        let Some(flow_log) = &mut self.flow_log else {
            return;
        };
        let Ok(now) = pinned_event_stats(&self.pins) else {
            return;
        };
        let reported = self.reported.get_or_insert_with(|| now.clone());
        let lost = now.lost.saturating_sub(reported.lost);
        let rate_limited = now.rate_limited.saturating_sub(reported.rate_limited);
        if (lost, rate_limited) != (0, 0) && flow_log.not_sent_by_kernel(lost, rate_limited) {
            self.reported = Some(now);
        }
    }
}

/// Writes a monitor's frames to its socket, as many at once as are queued.
async fn send_frames(mut stream: UnixStream, mut frames: mpsc::Receiver<Frame>) {
    let mut bytes = Vec::new();
    while let Some(frame) = frames.recv().await {
        bytes.clear();
        frame.encode(&mut bytes);
        while let Ok(frame) = frames.try_recv() {
            frame.encode(&mut bytes);
        }
        if stream.write_all(&bytes).await.is_err() {
            // The monitor went away; dropping the receiver tells the hub.
            return;
        }
    }
}

async fn maybe_accept(listener: Option<&UnixListener>) -> Option<std::io::Result<UnixStream>> {
    match listener {
        Some(listener) => Some(listener.accept().await.map(|(stream, _)| stream)),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_read_back_as_written() {
        let mut event = Event {
            timestamp_ns: 42,
            dst_port: 80,
            ..Event::default()
        };
        event.src[0] = 10;
        let mut bytes = Vec::new();
        Frame::Event(event).encode(&mut bytes);
        Frame::ReadTooSlowly(7).encode(&mut bytes);
        let mut reader = bytes.as_slice();
        assert_eq!(
            Frame::read(&mut reader).await.unwrap(),
            Some(Frame::Event(event))
        );
        assert_eq!(
            Frame::read(&mut reader).await.unwrap(),
            Some(Frame::ReadTooSlowly(7))
        );
        assert_eq!(Frame::read(&mut reader).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_slow_monitor_is_told_how_many_it_missed() {
        let consumers = EventConsumer::default();
        let (queue, mut frames) = mpsc::channel(2);
        let mut monitor = Monitor { queue, missed: 0 };
        for port in 1..=5 {
            let event = Event {
                dst_port: port,
                ..Event::default()
            };
            assert!(monitor.offer(event, &consumers));
        }
        assert_eq!(monitor.missed, 3);
        assert_eq!(consumers.dropped_for_monitor_count(), 3);
        frames.recv().await.unwrap();
        frames.recv().await.unwrap();
        // Room again: first how many were missed, then the event.
        assert!(monitor.offer(Event::default(), &consumers));
        assert_eq!(frames.recv().await, Some(Frame::ReadTooSlowly(3)));
        assert_eq!(frames.recv().await, Some(Frame::Event(Event::default())));
        drop(frames);
        assert!(!monitor.offer(Event::default(), &consumers));
    }
}
