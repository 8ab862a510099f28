//! Throughput over veth: iperf3 from the workload to the host namespace
//! through each filter (TCP, and 64-byte UDP datagrams), each over the
//! runs without a filter next to it.

use zpr_agent::datapath::FromWorkloadHook;

use crate::{
    bracket::{Bracketed, bracketed},
    firewall::{self, Filter},
    iperf,
    report::{Bound, Figure, Section, Target, Unit},
    scratch::Scratch,
    stats::{Summary, paired_ratios},
    veth_site::{HOST, VethSite},
};

const TCP_LIMIT: f64 = 0.9;
/// Metric indexes of a run.
const TCP: usize = 0;
const UDP: usize = 1;

pub struct Settings {
    /// Compared with no filter (which is not listed).
    pub filters: Vec<Filter>,
    pub rounds: usize,
    pub tcp_seconds: u32,
    pub udp_seconds: u32,
}

pub fn measure(settings: &Settings) -> anyhow::Result<(Section, Vec<Target>)> {
    let runs = bracketed(&settings.filters, settings.rounds, 2, |filter, round| {
        eprintln!(
            "throughput: round {round}/{}, {}",
            settings.rounds,
            filter.name()
        );
        let scratch = Scratch::new("throughput")?;
        let site = VethSite::new()?;
        let _installed = firewall::install(filter, &site, &scratch)?;
        let _server = iperf::Server::start(&site.host)?;
        Ok(vec![
            iperf::tcp_mbits(&site.workload, HOST, settings.tcp_seconds)?,
            iperf::udp_pps(&site.workload, HOST, settings.udp_seconds)?,
        ])
    })?;

    let mut figures = figures_of(("TCP", Unit::MegabitsPerSecond), TCP, settings, &runs);
    figures.extend(figures_of(
        ("UDP 64 B, received", Unit::PacketsPerSecond),
        UDP,
        settings,
        &runs,
    ));

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
        let zpr = &runs.filters[tcx].ratios[TCP];
        targets.push(Target::check(
            format!("TCP over veth, zpr (tcx) / no filter ≥ {TCP_LIMIT}"),
            Bound::AtLeast(TCP_LIMIT),
            Summary::of(zpr).median,
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
                Summary::of(&paired_ratios(zpr, &runs.filters[rival].ratios[TCP])).median,
            ));
        }
    }

    let method = vec![format!(
        "A workload namespace and a host namespace joined by a veth pair, the filter on the \
         host side of it (zpr: the from-workload program in the named mode and the \
         to-workload program at tcx egress). Fresh namespaces for every run. iperf3 client in \
         the workload (CPU 0), server in the host namespace (last CPU): TCP for {} s, then \
         UDP with 64-byte payloads at full speed for {} s (datagrams received per second). \
         {} rounds; in each, a run without a filter before, between and after the filters, \
         and each filter's ratio is to the mean of the two runs next to it (the machine's \
         load drifts over minutes). The rules: the workload may reach the host's port {} \
         over TCP and UDP; iptables holds N ACCEPT rules (the workload's last, so a \
         first-match walk passes every other) with policy DROP; nftables one set of N \
         sources at the input hook; zpr a policy of N statements (the workload's two, the \
         rest allow other sources).",
        settings.tcp_seconds,
        settings.udp_seconds,
        settings.rounds,
        firewall::SERVICE_PORT
    )];
    let section = Section {
        title: "Throughput over veth".to_owned(),
        method,
        figures,
    };
    Ok((section, targets))
}

/// One metric's figures: every run without a filter, then each filter
/// with its ratios.
fn figures_of(
    (kind, unit): (&str, Unit),
    metric: usize,
    settings: &Settings,
    runs: &Bracketed,
) -> Vec<Figure> {
    let mut figures = vec![Figure::new(
        format!("{kind}, no filter (every run)"),
        unit,
        runs.baseline[metric].clone(),
    )];
    for (filter, series) in settings.filters.iter().zip(&runs.filters) {
        figures.push(
            Figure::new(
                format!("{kind}, {}", filter.name()),
                unit,
                series.values[metric].clone(),
            )
            .with_ratio("no filter next to it", series.ratios[metric].clone()),
        );
    }
    figures
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
