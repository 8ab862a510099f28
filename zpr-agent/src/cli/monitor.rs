//! `zpr monitor`: drop events (and new-flow allows) as they happen, with
//! endpoint names, statement ids and reasons. Reads the pinned ring
//! buffer, so it works beside a running agent (one monitor at a time).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::ExitCode,
    time::Duration,
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
    datapath::{decode_event, pinned_events},
};

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
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerdictFilter {
    Drop,
    All,
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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let view = AgentView::of(&args.paths);
    if !view.pins_visible() {
        eprintln!("zpr monitor: {}", view.why_no_pins());
        return Ok(ExitCode::from(1));
    }
    let ring = pinned_events(&view.pins)?;
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
        .block_on(stream(args, ring))?;
    Ok(ExitCode::SUCCESS)
}

async fn stream(args: Args, ring: aya::maps::RingBuf<aya::maps::MapData>) -> anyhow::Result<()> {
    // SAFETY: the ring buffer owns its fd and lives inside the AsyncFd,
    // which deregisters before dropping it.
    let mut ring = unsafe { AsyncFd::register(ring) }.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut status = Status::read(&args.paths.run_dir).ok();
    let deadline = args
        .duration
        .map(|seconds| tokio::time::Instant::now() + Duration::from_secs_f64(seconds));
    let mut shown = 0;
    loop {
        let mut guard = tokio::select! {
            guard = ring.readable_mut() => guard?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = sleep_until(deadline) => return Ok(()),
        };
        while let Some(item) = guard.get_inner_mut().next() {
            let Some(event) = decode_event(&item) else {
                continue;
            };
            if args.verdict == VerdictFilter::Drop && event.verdict == VERDICT_ALLOWED {
                continue;
            }
            if status
                .as_ref()
                .is_none_or(|s| s.generation != event.generation)
            {
                status = Status::read(&args.paths.run_dir).ok();
            }
            let line = describe(&event, status.as_ref());
            match args.output {
                Output::Json => println!("{}", serde_json::to_string(&line)?),
                Output::Text => println!("{}", text(&line)),
            }
            shown += 1;
            if args.count.is_some_and(|count| shown >= count) {
                return Ok(());
            }
        }
        guard.clear_ready();
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn describe(event: &Event, status: Option<&Status>) -> Shown {
    let endpoint = status.and_then(|s| s.endpoint_by_ifindex(event.ifindex));
    let identity = |uid: u32| {
        status
            .and_then(|s| s.identities.get(&uid).cloned())
            .unwrap_or_else(|| format!("uid {uid}"))
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
        direction: Direction::from_u8(event.direction).map_or("?", Direction::name),
        protocol: match event.protocol {
            1 => "icmp".to_owned(),
            6 => "tcp".to_owned(),
            17 => "udp".to_owned(),
            58 => "icmpv6".to_owned(),
            other => format!("proto-{other}"),
        },
        src: address(event.family, &event.src),
        src_port: event.src_port,
        dst: address(event.family, &event.dst),
        dst_port: event.dst_port,
        local: identity(event.local_uid),
        remote: identity(event.remote_uid),
        statements,
        generation: event.generation,
    }
}

fn address(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == FAMILY_IPV4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

fn text(shown: &Shown) -> String {
    let endpoint = |address: IpAddr, port: u16| match address {
        IpAddr::V4(_) => format!("{address}:{port}"),
        IpAddr::V6(_) => format!("[{address}]:{port}"),
    };
    let by = if shown.statements.is_empty() {
        String::new()
    } else {
        format!(" by {}", shown.statements.join(", "))
    };
    format!(
        "{:<5} {:<16} {} ({}) {:<13} {:<6} {} -> {}  local={} remote={} gen={}{by}",
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
