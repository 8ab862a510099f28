//! Throughput over veth: iperf3 from the workload to the host namespace
//! through each filter (TCP, and 64-byte UDP datagrams), over no filter
//! in the same round.

use std::collections::BTreeMap;

use zpr_agent::datapath::FromWorkloadHook;

use crate::{
    firewall::{self, Filter},
    interrupt, iperf,
    report::{Bound, Figure, Section, Target, Unit},
    scratch::Scratch,
    stats::{Summary, paired_ratios},
    veth_site::{HOST, VethSite},
};

const TCP_LIMIT: f64 = 0.9;

pub struct Settings {
    /// The first is the baseline (no filter).
    pub filters: Vec<Filter>,
    pub rounds: usize,
    pub seconds: u32,
}

pub fn measure(settings: &Settings) -> anyhow::Result<(Section, Vec<Target>)> {
    let baseline = settings.filters[0];
    assert_eq!(baseline, Filter::None, "the first filter is the baseline");
    let mut tcp: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut udp: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for round in 1..=settings.rounds {
        for (index, &filter) in settings.filters.iter().enumerate() {
            interrupt::checkpoint()?;
            eprintln!(
                "throughput: round {round}/{}, {}",
                settings.rounds,
                filter.name()
            );
            let scratch = Scratch::new("throughput")?;
            let site = VethSite::new()?;
            let _installed = firewall::install(filter, &site, &scratch)?;
            let _server = iperf::Server::start(&site.host)?;
            tcp.entry(index).or_default().push(iperf::tcp_mbits(
                &site.workload,
                HOST,
                settings.seconds,
            )?);
            udp.entry(index).or_default().push(iperf::udp_pps(
                &site.workload,
                HOST,
                settings.seconds,
            )?);
        }
    }

    let mut figures = Vec::new();
    for (samples, unit, kind) in [
        (&tcp, Unit::MegabitsPerSecond, "TCP"),
        (&udp, Unit::PacketsPerSecond, "UDP 64 B, received"),
    ] {
        for (index, filter) in settings.filters.iter().enumerate() {
            figures.push(
                Figure::new(
                    format!("{kind}, {}", filter.name()),
                    unit,
                    samples[&index].clone(),
                )
                .over("no filter", &samples[&0]),
            );
        }
    }

    let mut targets = Vec::new();
    let tcx = settings.filters.iter().position(|f| {
        matches!(
            f,
            Filter::Zpr {
                hook: FromWorkloadHook::Tcx,
                ..
            }
        )
    });
    if let Some(tcx) = tcx {
        let zpr_tcp = &tcp[&tcx];
        targets.push(Target::check(
            format!("TCP over veth, zpr (tcx) / no filter ≥ {TCP_LIMIT}"),
            Bound::AtLeast(TCP_LIMIT),
            Summary::of(&paired_ratios(zpr_tcp, &tcp[&0])).median,
        ));
        let largest_iptables = largest(settings, |f| matches!(f, Filter::Iptables { .. }));
        let largest_nft = largest(settings, |f| matches!(f, Filter::NftSet { .. }));
        for rival in [largest_iptables, largest_nft].into_iter().flatten() {
            targets.push(Target::check(
                format!(
                    "TCP over veth, zpr (tcx) ahead of {}",
                    settings.filters[rival].name()
                ),
                Bound::AtLeast(1.0),
                Summary::of(&paired_ratios(zpr_tcp, &tcp[&rival])).median,
            ));
        }
    }

    let method = vec![format!(
        "A workload namespace and a host namespace joined by a veth pair, the filter on the \
         host side of it (zpr: the from-workload program in the named mode and the \
         to-workload program at tcx egress). Fresh namespaces for every measurement; \
         {} rounds, every filter once per round in the same order; ratios are paired with no \
         filter in the same round. iperf3 client in the workload (CPU 0), server in the host \
         namespace (last CPU): TCP for {s} s, then UDP with 64-byte payloads at full speed \
         for {s} s (datagrams received per second). The rules: the workload may reach the \
         host's port {port} over TCP and UDP; iptables holds N ACCEPT rules (the workload's \
         last, so a first-match walk passes every other) with policy DROP; nftables one \
         set of N sources at the input hook; zpr a policy of N statements (the workload's \
         two, the rest allow other sources).",
        settings.rounds,
        s = settings.seconds,
        port = firewall::SERVICE_PORT
    )];
    let section = Section {
        title: "Throughput over veth".to_owned(),
        method,
        figures,
    };
    Ok((section, targets))
}

/// The index of the largest filter of a kind (by its rule count).
fn largest(settings: &Settings, kind: impl Fn(&Filter) -> bool) -> Option<usize> {
    settings
        .filters
        .iter()
        .enumerate()
        .filter(|(_, f)| kind(f))
        .max_by_key(|(_, f)| match f {
            Filter::Iptables { rules } => *rules,
            Filter::NftSet { elements, .. } => *elements,
            _ => 0,
        })
        .map(|(index, _)| index)
}
