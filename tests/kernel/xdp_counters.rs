//! First light: zpr's XDP program loaded and attached to a real veth, real
//! ICMP traffic across it, and its per-CPU counters read back.

use zpr_agent::datapath::{Datapath, XdpMode, read_counters};
use zpr_common::{Direction, counters::Reason};
use zpr_tests::{Netns, veth_pair};

/// Ethernet 14 + IPv4 20 + ICMP 8 + ping's default 56 bytes of payload.
const ECHO_REQUEST_FRAME: u64 = 98;
const PINGS: u64 = 5;

fn counts_pings_from_workload(mode: XdpMode) -> anyhow::Result<()> {
    let workload = Netns::new()?;
    let host = Netns::new()?;
    let (_, host_side) = veth_pair(&workload, "10.99.0.2/30", &host, "10.99.0.1/30")?;

    let datapath = host.enter(|| -> anyhow::Result<Datapath> {
        let mut datapath = Datapath::load()?;
        datapath.attach_from_workload(&host_side, mode)?;
        Ok(datapath)
    })??;

    let count = PINGS.to_string();
    workload.exec(&["ping", "-c", &count, "-i", "0.2", "-W", "2", "10.99.0.1"])?;

    let counters = read_counters(&datapath)?;
    let ip = counters.get(Direction::FromWorkload, Reason::NotProtected);
    assert_eq!(ip.packets, PINGS, "one IPv4 packet per echo request ({mode:?})");
    assert_eq!(ip.bytes, PINGS * ECHO_REQUEST_FRAME, "frame bytes ({mode:?})");
    let arp = counters.get(Direction::FromWorkload, Reason::NonIp);
    assert!(arp.packets >= 1, "the workload's ARP request is seen ({mode:?})");
    let to_workload = counters.get(Direction::ToWorkload, Reason::NotProtected);
    assert_eq!(to_workload.packets, 0, "no program sees the to-workload side yet");
    Ok(())
}

#[test]
fn generic_xdp_counts_real_pings() -> anyhow::Result<()> {
    counts_pings_from_workload(XdpMode::Skb)
}

#[test]
fn native_xdp_counts_real_pings() -> anyhow::Result<()> {
    counts_pings_from_workload(XdpMode::Driver)
}
