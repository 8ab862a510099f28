//! Deny floods: minimum-size UDP datagrams the policy denies, sent as fast
//! as one CPU can from the workload, and how many per second each filter
//! disposes of, over the kernel stack dropping them itself (a closed
//! port) in the same round.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};

use crate::{
    bracket::bracketed,
    cpu::Pinned,
    firewall::{self, Filter, Installed},
    interrupt,
    report::{Bound, Figure, Section, Target, Unit},
    scratch::Scratch,
    sender::{Source, udp_frame},
    stats::{Summary, paired_ratios},
    veth_site::{HOST, VethSite, WORKLOAD},
};

/// A port nothing listens on and no policy allows.
const FLOOD_PORT: u16 = 7777;
const STACK_LIMIT: f64 = 2.5;
/// Sending before the counting starts (queues and caches settle).
const WARM_UP: Duration = Duration::from_millis(500);

pub struct Settings {
    /// Compared with the kernel stack alone (no filter, not listed).
    pub filters: Vec<Filter>,
    /// The first is the one the targets are checked on.
    pub sources: Vec<Source>,
    pub rounds: usize,
    pub seconds: f64,
}

pub fn measure(settings: &Settings) -> anyhow::Result<(Section, Vec<Target>)> {
    let raw = settings
        .filters
        .iter()
        .position(|f| *f == Filter::IptablesRaw);
    let mut figures = Vec::new();
    let mut targets = Vec::new();
    let mut refused = Vec::new();
    for (source_index, &source) in settings.sources.iter().enumerate() {
        let runs = bracketed(&settings.filters, settings.rounds, 1, |filter, round| {
            eprintln!(
                "flood: round {round}/{}, {}, {}",
                settings.rounds,
                source.name(),
                filter.name()
            );
            let rate = disposal_rate(filter, source, settings.seconds)
                .with_context(|| format!("flooding {} from {}", filter.name(), source.name()))?;
            Ok(vec![rate])
        });
        let runs = match runs {
            Ok(runs) => runs,
            // A kernel may refuse a source to root (live frames, on some
            // builds): said, its targets not measured, and the run goes on.
            Err(error) if permission_denied(&error) => {
                eprintln!("flood: {} refused by this kernel: {error:#}", source.name());
                let why = format!("{} are refused by this kernel ({error:#})", source.name());
                if source_index == 0 {
                    for filter in &settings.filters {
                        if matches!(filter, Filter::Zpr { .. }) {
                            targets.push(Target::not_measured(
                                over_stack_goal(filter),
                                Bound::AtLeast(STACK_LIMIT),
                                why.clone(),
                            ));
                            if raw.is_some() {
                                targets.push(Target::not_measured(
                                    over_raw_goal(filter),
                                    Bound::AtLeast(1.0),
                                    why.clone(),
                                ));
                            }
                        }
                    }
                }
                refused.push(format!("Not measured: {why}."));
                continue;
            }
            Err(error) => return Err(error),
        };
        figures.push(Figure::new(
            format!(
                "{}: disposed by the kernel stack (no filter, closed port; every run)",
                source.name()
            ),
            Unit::PacketsPerSecond,
            runs.baseline[0].clone(),
        ));
        for (filter, series) in settings.filters.iter().zip(&runs.filters) {
            let figure = Figure::new(
                format!("{}: disposed by {}", source.name(), filter.name()),
                Unit::PacketsPerSecond,
                series.values[0].clone(),
            )
            .with_ratio("kernel stack next to it", series.ratios[0].clone());
            if source_index == 0 && matches!(filter, Filter::Zpr { .. }) {
                targets.push(Target::check(
                    over_stack_goal(filter),
                    Bound::AtLeast(STACK_LIMIT),
                    figure.ratio_median(),
                ));
                if let Some(raw) = raw {
                    let over_raw = paired_ratios(&series.ratios[0], &runs.filters[raw].ratios[0]);
                    targets.push(Target::check(
                        over_raw_goal(filter),
                        Bound::AtLeast(1.0),
                        Summary::of(&over_raw).median,
                    ));
                }
            }
            figures.push(figure);
        }
    }
    let method = vec![
        format!(
            "The veth site of the throughput measurement, fresh per measurement. 60-byte IPv4 \
             UDP frames to the host's port {FLOOD_PORT}, which nothing listens on and no \
             policy allows, sent from one thread on CPU 0; the veth hands each frame to the \
             receiving side on the same CPU, so the cheaper the disposal, the more frames \
             are sent and disposed of. After {} ms of warm-up, what the filter counts as \
             dropped over {} s: zpr's no-policy counter, the iptables raw DROP rule's, the \
             nftables rule's counter, and for the kernel stack alone the namespace's UDP \
             NoPorts. {} rounds; in each, the kernel stack alone before, between and after the \
             filters, and each filter's ratio is to the mean of the two stack runs next to it.",
            WARM_UP.as_millis(),
            settings.seconds,
            settings.rounds
        ),
        "Two sources. Live frames (the calibration's generator, and the one the targets are \
         checked on): BPF_PROG_TEST_RUN with live frames runs an XDP_TX program on the \
         workload's veth, so frames reach the vNIC as xdp_frames, as from a NIC driver, and \
         sending costs little (the vNIC has GRO on, so it runs the NAPI that takes them). \
         AF_PACKET: a packet socket (qdisc bypassed, sendmmsg of 64) sends socket buffers, as \
         a workload's own stack would; sending costs more, and native XDP pays a copy of \
         every buffer into an XDP frame."
            .to_owned(),
    ]
    .into_iter()
    .chain(refused)
    .collect();
    let section = Section {
        title: "Deny flood".to_owned(),
        method,
        figures,
    };
    Ok((section, targets))
}

/// The target on `filter`'s disposal rate against the kernel stack's.
fn over_stack_goal(filter: &Filter) -> String {
    format!(
        "deny flood, {} / kernel stack ≥ {STACK_LIMIT}",
        filter.name()
    )
}

/// The target on `filter`'s disposal rate against iptables raw's.
fn over_raw_goal(filter: &Filter) -> String {
    format!("deny flood, {} ahead of iptables raw", filter.name())
}

/// Whether `error` is the kernel refusing the operation (EPERM).
fn permission_denied(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    })
}

/// Packets per second `filter` disposes of under a flood from `source`.
fn disposal_rate(filter: Filter, source: Source, seconds: f64) -> anyhow::Result<f64> {
    let scratch = Scratch::new("flood")?;
    let site = VethSite::new()?;
    if source == Source::LiveFrames {
        site.enable_gro()?;
    }
    let installed = firewall::install(filter, &site, &scratch)?;
    let macs = (
        VethSite::mac(&site.workload, &site.workload_interface)?,
        VethSite::mac(&site.host, &site.vnic)?,
    );
    let frame = udp_frame(macs, (WORKLOAD, HOST), (40_000, FLOOD_PORT));
    let ifindex = site.workload.ifindex(&site.workload_interface)?;
    let (stop, sent) = (AtomicBool::new(false), AtomicU64::new(0));
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            site.workload.enter(|| -> anyhow::Result<()> {
                let _pinned = Pinned::to(0)?;
                source.send(ifindex, &frame, &stop, &sent)
            })?
        });
        let counted = count_over(&installed, &site, seconds);
        stop.store(true, Ordering::Relaxed);
        let sent_in_total = sent.load(Ordering::Relaxed);
        sender
            .join()
            .map_err(|panic| anyhow::anyhow!("the sender panicked: {panic:?}"))??;
        let (count, elapsed) = counted?;
        ensure!(
            count <= sent_in_total,
            "{count} disposed, {sent_in_total} sent"
        );
        Ok(count as f64 / elapsed.as_secs_f64())
    })
}

/// Packets disposed of over `seconds` after the warm-up, and the exact time
/// between the two counts.
fn count_over(
    installed: &Installed,
    site: &VethSite,
    seconds: f64,
) -> anyhow::Result<(u64, Duration)> {
    std::thread::sleep(WARM_UP);
    let (before, started) = (disposed(installed, site)?, Instant::now());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    interrupt::checkpoint()?;
    let after = disposed(installed, site)?;
    Ok((after - before, started.elapsed()))
}

/// Flood packets disposed of so far: the filter's drop counter, or for no
/// filter the stack's count of datagrams to closed ports.
fn disposed(installed: &Installed, site: &VethSite) -> anyhow::Result<u64> {
    if let Some(dropped) = installed.dropped(site)? {
        return Ok(dropped);
    }
    let output = site.host.exec(&["cat", "/proc/net/snmp"])?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut udp = text.lines().filter(|line| line.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        anyhow::bail!("no Udp lines in /proc/net/snmp");
    };
    let column = names
        .split_whitespace()
        .position(|name| name == "NoPorts")
        .context("no NoPorts column")?;
    values
        .split_whitespace()
        .nth(column)
        .context("short Udp line")?
        .parse()
        .context("NoPorts is not a number")
}
