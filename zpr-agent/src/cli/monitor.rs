//! `zpr monitor`: drop events (and new-flow allows) as they happen, with
//! endpoint names, statement ids and reasons, from the running agent or
//! the pinned ring buffer (see [`super::event_source`]).
//!
//! It tells what it does not show: events the kernel lost (ring buffer
//! full) or rate-limited, read from its counters about once a second;
//! events the agent dropped because this monitor read too slowly; and
//! events from before it started (the agent's backlog of recent events, or
//! what waited in the ring buffer): skipped unless `--include-buffered`.

use std::{
    net::IpAddr,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::ValueEnum;
use serde::Serialize;
use zpr_common::event::{Event, VERDICT_ALLOWED};

use super::{Output, agent_paths::AgentPaths, agent_view::AgentView, event_source::Source};
use crate::{
    daemon::{
        event_hub::Frame,
        event_names::{GenerationNames, Verdict, describe, protocol_name},
    },
    datapath::{EventStats, PinLayout, monotonic_now_ns, pinned_event_stats},
};

/// How often the kernel's lost and rate-limited counters are read (and
/// reported when they grew).
const SUPPRESSION_REPORT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub paths: AgentPaths,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
    /// Which verdicts to show: drops (and audited would-be drops), or
    /// also the first packet of every allowed flow.
    #[arg(long, value_enum, default_value_t = VerdictFilter::Drop)]
    pub verdict: VerdictFilter,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<usize>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Also show events from before the monitor started, marked stale:
    /// the agent's backlog of its last 256 events (when an agent runs; it
    /// drains the kernel's ring buffer as events come), else what waited
    /// in the ring buffer. Without it they are skipped and counted.
    #[arg(long)]
    pub include_buffered: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerdictFilter {
    Drop,
    All,
}

/// One line of the stream; in JSON, an object whose `type` says which.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Record {
    Event(Box<Shown>),
    /// Events not shown since the previous such record.
    Suppressed {
        /// The kernel's ring buffer was full.
        lost: u64,
        /// Over the agent's events-per-second budget.
        rate_limited: u64,
        /// Dropped by the agent because this monitor read too slowly.
        read_too_slowly: u64,
        /// Since the previous suppressed record (or the monitor's start).
        seconds: f64,
    },
    /// Events buffered before the monitor started, not shown.
    Skipped {
        buffered: u64,
    },
    /// At exit: the totals since the monitor started.
    Summary {
        shown: usize,
        skipped_buffered: u64,
        lost: u64,
        rate_limited: u64,
        read_too_slowly: u64,
    },
}

/// One event as printed.
#[derive(Serialize)]
struct Shown {
    verdict: &'static str,
    reason: &'static str,
    endpoint: String,
    interface: String,
    direction: &'static str,
    protocol: String,
    src: IpAddr,
    src_port: u16,
    dst: IpAddr,
    dst_port: u16,
    local: String,
    remote: String,
    statements: Vec<String>,
    generation: u32,
    /// It happened before the monitor started (`--include-buffered`).
    stale: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Anything the kernel stamped before this instant happened before the
    // monitor started.
    let started_ns = monotonic_now_ns();
    let view = AgentView::of(&args.paths);
    if !view.pins_visible() {
        eprintln!("zpr monitor: {}", view.why_no_pins());
        return Ok(ExitCode::from(1));
    }
    let suppression = Suppression::start(view.pins.clone())?;
    let args = Args {
        paths: AgentPaths {
            run_dir: view.run_dir,
            ..args.paths
        },
        ..args
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let source = Source::open(&args.paths.run_dir, &view.pins).await?;
            stream(args, source, suppression, started_ns).await
        })?;
    Ok(ExitCode::SUCCESS)
}

/// The kernel's lost and rate-limited counters, against what was last
/// reported, and what the agent did not send this monitor.
struct Suppression {
    pins: PinLayout,
    at_start: EventStats,
    reported: EventStats,
    reported_at: Instant,
    /// Events the agent dropped for this monitor, not reported yet.
    read_too_slowly: u64,
    read_too_slowly_total: u64,
}

impl Suppression {
    fn start(pins: PinLayout) -> anyhow::Result<Suppression> {
        let now = pinned_event_stats(&pins)?;
        Ok(Suppression {
            pins,
            at_start: now.clone(),
            reported: now,
            reported_at: Instant::now(),
            read_too_slowly: 0,
            read_too_slowly_total: 0,
        })
    }

    fn dropped_by_agent(&mut self, count: u64) {
        self.read_too_slowly += count;
        self.read_too_slowly_total += count;
    }

    /// What grew since the last report, if anything did.
    fn report(&mut self) -> anyhow::Result<Option<Record>> {
        let now = pinned_event_stats(&self.pins)?;
        let lost = now.lost.saturating_sub(self.reported.lost);
        let rate_limited = now.rate_limited.saturating_sub(self.reported.rate_limited);
        let read_too_slowly = std::mem::take(&mut self.read_too_slowly);
        if lost == 0 && rate_limited == 0 && read_too_slowly == 0 {
            return Ok(None);
        }
        let seconds = self.reported_at.elapsed().as_secs_f64();
        self.reported = now;
        self.reported_at = Instant::now();
        Ok(Some(Record::Suppressed {
            lost,
            rate_limited,
            read_too_slowly,
            seconds,
        }))
    }

    /// Reported since the monitor started.
    fn summary(&self, shown: usize, skipped_buffered: u64) -> Record {
        Record::Summary {
            shown,
            skipped_buffered,
            lost: self.reported.lost.saturating_sub(self.at_start.lost),
            rate_limited: self
                .reported
                .rate_limited
                .saturating_sub(self.at_start.rate_limited),
            read_too_slowly: self.read_too_slowly_total,
        }
    }
}

/// Buffered events skipped, and how many of them were reported.
#[derive(Default)]
struct Skipped {
    total: u64,
    reported: u64,
}

impl Skipped {
    fn report(&mut self) -> Option<Record> {
        let buffered = self.total - self.reported;
        self.reported = self.total;
        (buffered > 0).then_some(Record::Skipped { buffered })
    }
}

async fn stream(
    args: Args,
    mut source: Source,
    mut suppression: Suppression,
    started_ns: u64,
) -> anyhow::Result<()> {
    let mut names = GenerationNames::default();
    let deadline = args
        .duration
        .map(|seconds| tokio::time::Instant::now() + Duration::from_secs_f64(seconds));
    let mut reports = tokio::time::interval(SUPPRESSION_REPORT_INTERVAL);
    reports.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut skipped = Skipped::default();
    let mut shown = 0;
    'stream: loop {
        let frames = tokio::select! {
            frames = source.next() => frames?,
            _ = reports.tick() => {
                print(args.output, skipped.report())?;
                print(args.output, suppression.report()?)?;
                continue;
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sleep_until(deadline) => break,
        };
        let Some(frames) = frames else {
            eprintln!("zpr monitor: the agent stopped serving events");
            break;
        };
        for frame in frames {
            let event = match frame {
                Frame::Event(event) => event,
                Frame::ReadTooSlowly(count) => {
                    suppression.dropped_by_agent(count);
                    continue;
                }
            };
            let stale = event.timestamp_ns < started_ns;
            if stale && !args.include_buffered {
                skipped.total += 1;
                continue;
            }
            if args.verdict == VerdictFilter::Drop && event.verdict == VERDICT_ALLOWED {
                continue;
            }
            names.refresh(&args.paths.run_dir, event.generation);
            // The skipped ones came first: say so before what follows them.
            print(args.output, skipped.report())?;
            print(
                args.output,
                Some(Record::Event(Box::new(shown_event(&event, &names, stale)))),
            )?;
            shown += 1;
            if args.count.is_some_and(|count| shown >= count) {
                break 'stream;
            }
        }
    }
    print(args.output, skipped.report())?;
    print(args.output, suppression.report()?)?;
    print(args.output, Some(suppression.summary(shown, skipped.total)))
}

fn print(output: Output, record: Option<Record>) -> anyhow::Result<()> {
    let Some(record) = record else {
        return Ok(());
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string(&record)?),
        Output::Text => println!("{}", text(&record)),
    }
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn shown_event(event: &Event, names: &GenerationNames, stale: bool) -> Shown {
    let described = describe(event, names);
    let (local, remote) = described.local_and_remote();
    Shown {
        verdict: match described.verdict {
            Verdict::Dropped => "drop",
            Verdict::Audited => "audit",
            Verdict::Allowed => "allow",
        },
        reason: described.reason,
        // A quarantined vNIC has no endpoint: it is not registered.
        endpoint: described
            .endpoint
            .clone()
            .unwrap_or_else(|| "(unregistered)".to_owned()),
        interface: described.interface.clone(),
        direction: described.direction_name(),
        protocol: protocol_name(described.protocol),
        src: described.source.address,
        src_port: described.source.port,
        dst: described.destination.address,
        dst_port: described.destination.port,
        local: local.name.clone(),
        remote: remote.name.clone(),
        statements: described.statements.lines(described.generation),
        generation: described.generation,
        stale,
    }
}

fn text(record: &Record) -> String {
    match record {
        Record::Event(shown) => event_text(shown),
        Record::Suppressed {
            lost,
            rate_limited,
            read_too_slowly,
            seconds,
        } => format!(
            "-- not shown: {lost} events lost (ring buffer full), {rate_limited} rate-limited \
             (over the agent's --events-per-second), {read_too_slowly} dropped by the agent \
             (this monitor read too slowly) in the last {seconds:.1}s"
        ),
        Record::Skipped { buffered } => format!(
            "-- skipped {buffered} events buffered before the monitor started \
             (--include-buffered shows them)"
        ),
        Record::Summary {
            shown,
            skipped_buffered,
            lost,
            rate_limited,
            read_too_slowly,
        } => format!(
            "-- {shown} events shown; {skipped_buffered} buffered before the monitor started \
             skipped; {lost} lost, {rate_limited} rate-limited and {read_too_slowly} dropped \
             for reading too slowly while monitoring"
        ),
    }
}

fn event_text(shown: &Shown) -> String {
    let endpoint = |address: IpAddr, port: u16| match address {
        IpAddr::V4(_) => format!("{address}:{port}"),
        IpAddr::V6(_) => format!("[{address}]:{port}"),
    };
    let by = if shown.statements.is_empty() {
        String::new()
    } else {
        format!(" by {}", shown.statements.join(", "))
    };
    let stale = if shown.stale {
        " (stale: buffered before the monitor started)"
    } else {
        ""
    };
    format!(
        "{:<5} {:<16} {} ({}) {:<13} {:<6} {} -> {}  local={} remote={} gen={}{by}{stale}",
        shown.verdict.to_uppercase(),
        shown.reason,
        shown.endpoint,
        shown.interface,
        shown.direction,
        shown.protocol,
        endpoint(shown.src, shown.src_port),
        endpoint(shown.dst, shown.dst_port),
        shown.local,
        shown.remote,
        shown.generation,
    )
}
