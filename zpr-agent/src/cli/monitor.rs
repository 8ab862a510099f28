//! `zpr monitor`: drop events (and new-flow allows) as they happen, with
//! endpoint names, statement ids and reasons. Reads the pinned ring
//! buffer, so it works beside a running agent (one monitor at a time).
//!
//! It tells what it does not show: events the kernel lost (ring buffer
//! full) or rate-limited, read from its counters about once a second, and
//! events that were waiting in the ring buffer before it started (older
//! than the monitor: skipped unless `--include-buffered`).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::ValueEnum;
use serde::Serialize;
use tokio::io::unix::AsyncFd;
use zpr_common::{
    Direction, FAMILY_IPV4,
    counters::Reason,
    event::{Event, NO_RULE, VERDICT_ALLOWED, VERDICT_AUDITED, VERDICT_DROPPED},
};

use super::{Output, agent_paths::AgentPaths, agent_view::AgentView};
use crate::{
    daemon::Status,
    datapath::{
        EventStats, PinLayout, decode_event, monotonic_now_ns, pinned_event_stats, pinned_events,
    },
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
    /// Also show the events already waiting in the ring buffer when the
    /// monitor starts (they happened before it), marked stale. Without
    /// it they are skipped and counted.
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
    /// Events the kernel did not send since the previous such record.
    Suppressed {
        /// The ring buffer was full.
        lost: u64,
        /// Over the agent's events-per-second budget.
        rate_limited: u64,
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
    // Anything the kernel stamped before this instant was buffered before
    // the monitor started.
    let started_ns = monotonic_now_ns();
    let view = AgentView::of(&args.paths);
    if !view.pins_visible() {
        eprintln!("zpr monitor: {}", view.why_no_pins());
        return Ok(ExitCode::from(1));
    }
    let ring = pinned_events(&view.pins)?;
    let suppression = Suppression::start(view.pins)?;
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
        .block_on(stream(args, ring, suppression, started_ns))?;
    Ok(ExitCode::SUCCESS)
}

/// The kernel's lost and rate-limited counters, against what was last
/// reported.
struct Suppression {
    pins: PinLayout,
    at_start: EventStats,
    reported: EventStats,
    reported_at: Instant,
}

impl Suppression {
    fn start(pins: PinLayout) -> anyhow::Result<Suppression> {
        let now = pinned_event_stats(&pins)?;
        Ok(Suppression {
            pins,
            at_start: now.clone(),
            reported: now,
            reported_at: Instant::now(),
        })
    }

    /// What grew since the last report, if anything did.
    fn report(&mut self) -> anyhow::Result<Option<Record>> {
        let now = pinned_event_stats(&self.pins)?;
        let lost = now.lost.saturating_sub(self.reported.lost);
        let rate_limited = now.rate_limited.saturating_sub(self.reported.rate_limited);
        if lost == 0 && rate_limited == 0 {
            return Ok(None);
        }
        let seconds = self.reported_at.elapsed().as_secs_f64();
        self.reported = now;
        self.reported_at = Instant::now();
        Ok(Some(Record::Suppressed {
            lost,
            rate_limited,
            seconds,
        }))
    }

    /// Reported since the monitor started.
    fn totals(&self) -> EventStats {
        EventStats {
            lost: self.reported.lost.saturating_sub(self.at_start.lost),
            rate_limited: self
                .reported
                .rate_limited
                .saturating_sub(self.at_start.rate_limited),
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
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    mut suppression: Suppression,
    started_ns: u64,
) -> anyhow::Result<()> {
    // SAFETY: the ring buffer owns its fd and lives inside the AsyncFd,
    // which deregisters before dropping it.
    let mut ring = unsafe { AsyncFd::register(ring) }.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut status = Status::read(&args.paths.run_dir).ok();
    let deadline = args
        .duration
        .map(|seconds| tokio::time::Instant::now() + Duration::from_secs_f64(seconds));
    let mut reports = tokio::time::interval(SUPPRESSION_REPORT_INTERVAL);
    reports.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut skipped = Skipped::default();
    let mut shown = 0;
    'stream: loop {
        let mut guard = tokio::select! {
            guard = ring.readable_mut() => guard?,
            _ = reports.tick() => {
                print(args.output, skipped.report())?;
                print(args.output, suppression.report()?)?;
                continue;
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sleep_until(deadline) => break,
        };
        while let Some(item) = guard.get_inner_mut().next() {
            let Some(event) = decode_event(&item) else {
                continue;
            };
            let stale = event.timestamp_ns < started_ns;
            if stale && !args.include_buffered {
                skipped.total += 1;
                continue;
            }
            if args.verdict == VerdictFilter::Drop && event.verdict == VERDICT_ALLOWED {
                continue;
            }
            if status
                .as_ref()
                .is_none_or(|s| s.generation != event.generation)
            {
                status = Status::read(&args.paths.run_dir).ok();
            }
            // The skipped ones came first: say so before what follows them.
            print(args.output, skipped.report())?;
            print(
                args.output,
                Some(Record::Event(Box::new(describe(
                    &event,
                    status.as_ref(),
                    stale,
                )))),
            )?;
            shown += 1;
            if args.count.is_some_and(|count| shown >= count) {
                break 'stream;
            }
        }
        guard.clear_ready();
    }
    print(args.output, skipped.report())?;
    print(args.output, suppression.report()?)?;
    let totals = suppression.totals();
    print(
        args.output,
        Some(Record::Summary {
            shown,
            skipped_buffered: skipped.total,
            lost: totals.lost,
            rate_limited: totals.rate_limited,
        }),
    )
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

fn describe(event: &Event, status: Option<&Status>, stale: bool) -> Shown {
    let endpoint = status.and_then(|s| s.endpoint_by_ifindex(event.ifindex));
    let (src, dst) = (
        address(event.family, &event.src),
        address(event.family, &event.dst),
    );
    let direction = Direction::from_u8(event.direction);
    let (local, remote) = match direction {
        Some(Direction::ToWorkload) => (dst, src),
        _ => (src, dst),
    };
    // Named by what each address is, not by the first endpoint of the
    // identity it shares with others.
    let name = |uid: u32, address: IpAddr| {
        status
            .and_then(|s| s.identity(uid))
            .map_or_else(|| format!("uid {uid}"), |i| i.name_of(address))
    };
    let statements = match (status, event.rule) {
        (_, NO_RULE) | (None, _) => Vec::new(),
        (Some(s), rule) if s.generation == event.generation => {
            s.rules.get(rule as usize).cloned().unwrap_or_default()
        }
        (Some(_), rule) => vec![format!("rule {rule} of generation {}", event.generation)],
    };
    Shown {
        verdict: match event.verdict {
            VERDICT_DROPPED => "drop",
            VERDICT_AUDITED => "audit",
            _ => "allow",
        },
        reason: Reason::from_u8(event.reason).map_or("unknown", Reason::name),
        endpoint: endpoint.map_or("?".to_owned(), |e| e.name.clone()),
        interface: endpoint.map_or(format!("ifindex {}", event.ifindex), |e| {
            e.interface.clone()
        }),
        direction: direction.map_or("?", Direction::name),
        protocol: match event.protocol {
            1 => "icmp".to_owned(),
            6 => "tcp".to_owned(),
            17 => "udp".to_owned(),
            58 => "icmpv6".to_owned(),
            other => format!("proto-{other}"),
        },
        src,
        src_port: event.src_port,
        dst,
        dst_port: event.dst_port,
        local: name(event.local_uid, local),
        remote: name(event.remote_uid, remote),
        statements,
        generation: event.generation,
        stale,
    }
}

pub(super) fn address(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == FAMILY_IPV4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

fn text(record: &Record) -> String {
    match record {
        Record::Event(shown) => event_text(shown),
        Record::Suppressed {
            lost,
            rate_limited,
            seconds,
        } => format!(
            "-- not shown: {lost} events lost (ring buffer full), {rate_limited} rate-limited \
             (over the agent's --events-per-second) in the last {seconds:.1}s"
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
        } => format!(
            "-- {shown} events shown; {skipped_buffered} buffered before the monitor started \
             skipped; {lost} lost and {rate_limited} rate-limited while monitoring"
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
