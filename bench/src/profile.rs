//! How much a run measures: the full run BENCHMARKS.md records, and the
//! quick CI smoke run (under two minutes).

use zpr_agent::datapath::FromWorkloadHook;

use crate::{
    conntrack_scale, control_plane, diff, firewall::Filter, fleet, flood, micro, per_packet,
    scrape, sender::Source, signing, throughput,
};

/// How much of everything a run measures.
pub struct Profile {
    pub name: &'static str,
    pub micro: micro::Settings,
    pub throughput: throughput::Settings,
    pub flood: flood::Settings,
    pub control_plane: control_plane::Settings,
    pub diff: diff::Settings,
    pub conntrack: conntrack_scale::Settings,
    pub fleet: fleet::Settings,
    pub signing: signing::Settings,
    pub scrape: scrape::Settings,
}

impl Profile {
    pub fn full() -> Profile {
        Profile {
            name: "full",
            micro: micro::Settings {
                sizes: vec![10, per_packet::STATEMENTS, 10_000, 100_000],
                rounds: 3,
                repeat: 1_000_000,
                spread: 10_000,
            },
            throughput: throughput::Settings {
                filters: vec![
                    zpr(FromWorkloadHook::Tcx, 10_000),
                    zpr(FromWorkloadHook::XdpGeneric, 10_000),
                    zpr(FromWorkloadHook::XdpNative, 10_000),
                    Filter::Iptables { rules: 1 },
                    Filter::Iptables { rules: 1_000 },
                    Filter::Iptables { rules: 10_000 },
                    nft_input(1),
                    nft_input(1_000),
                    nft_input(10_000),
                ],
                rounds: 3,
                tcp_seconds: 10,
                udp_seconds: 5,
            },
            flood: flood::Settings {
                filters: vec![
                    zpr(FromWorkloadHook::Tcx, 10_000),
                    zpr(FromWorkloadHook::XdpGeneric, 10_000),
                    zpr(FromWorkloadHook::XdpNative, 10_000),
                    Filter::IptablesRaw,
                    nft_prerouting(10_000),
                ],
                sources: vec![Source::LiveFrames, Source::PacketSocket],
                rounds: 3,
                seconds: 3.0,
            },
            control_plane: control_plane::Settings {
                compile_sizes: vec![1_000, 10_000, 100_000],
                rounds: 3,
                reload_statements: vec![1_000, 10_000, 100_000],
                reloads: 10,
                memory_statements: 100_000,
            },
            diff: diff::Settings {
                statements: 100_000,
                rounds: 5,
            },
            conntrack: conntrack_scale::Settings {
                tracked: vec![10_000, 1_000_000],
                rounds: 3,
                probes: 10_000,
            },
            fleet: fleet::Settings {
                fleets: vec![
                    fleet::Size::new(10_000, 1_000, 3),
                    fleet::Size::new(10_000, 1_000, 10),
                    fleet::Size::new(100_000, 10_000, 10),
                ],
                changes: 20,
                idle_seconds: 10,
                registrations: 10,
            },
            signing: signing::Settings {
                sizes: vec![10_000, 100_000],
                rounds: 9,
            },
            scrape: scrape::Settings {
                endpoints: 1_000,
                rounds: 20,
            },
        }
    }

    pub fn quick() -> Profile {
        Profile {
            name: "quick",
            micro: micro::Settings {
                sizes: vec![10, per_packet::STATEMENTS],
                rounds: 1,
                repeat: 1_000_000,
                spread: 2_000,
            },
            throughput: throughput::Settings {
                filters: vec![
                    zpr(FromWorkloadHook::Tcx, 1_000),
                    Filter::Iptables { rules: 1_000 },
                    nft_input(1_000),
                ],
                rounds: 1,
                tcp_seconds: 2,
                udp_seconds: 2,
            },
            flood: flood::Settings {
                filters: vec![
                    zpr(FromWorkloadHook::Tcx, 1_000),
                    zpr(FromWorkloadHook::XdpNative, 1_000),
                    Filter::IptablesRaw,
                    nft_prerouting(1_000),
                ],
                sources: vec![Source::LiveFrames],
                rounds: 1,
                seconds: 2.0,
            },
            control_plane: control_plane::Settings {
                compile_sizes: vec![1_000, 10_000],
                rounds: 1,
                reload_statements: vec![10_000, 100_000],
                reloads: 4,
                memory_statements: 100_000,
            },
            diff: diff::Settings {
                statements: 100_000,
                rounds: 2,
            },
            conntrack: conntrack_scale::Settings {
                tracked: vec![10_000, 100_000],
                rounds: 1,
                probes: 2_000,
            },
            fleet: fleet::Settings {
                fleets: vec![fleet::Size::new(1_000, 100, 3)],
                changes: 4,
                idle_seconds: 3,
                registrations: 2,
            },
            signing: signing::Settings {
                sizes: vec![10_000],
                rounds: 3,
            },
            scrape: scrape::Settings {
                endpoints: 20,
                rounds: 3,
            },
        }
    }
}

fn zpr(hook: FromWorkloadHook, statements: usize) -> Filter {
    Filter::Zpr { hook, statements }
}

fn nft_input(elements: usize) -> Filter {
    Filter::NftSet {
        elements,
        prerouting: false,
    }
}

fn nft_prerouting(elements: usize) -> Filter {
    Filter::NftSet {
        elements,
        prerouting: true,
    }
}
