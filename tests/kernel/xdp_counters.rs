//! First light: zpr's programs loaded and attached to a real veth, real
//! ICMP traffic across it, and the per-CPU counters read back.

use zpr_agent::{
    compile::compile,
    datapath::{Datapath, FromWorkloadHook, InterfaceIndexes, read_counters, write_plan},
    inventory::Inventory,
};
use zpr_common::{Direction, counters::Reason};
use zpr_tests::{Netns, veth_pair};

/// Ethernet 14 + IPv4 20 + ICMP 8 + ping's default 56 bytes of payload.
const ECHO_FRAME: u64 = 98;
const PINGS: u64 = 5;

const WORKLOAD_MAC: &str = "02:7a:00:00:00:02";
const HOST_MAC: &str = "02:7a:00:00:00:01";

/// With a Plan that protects nothing, every frame passes and is counted as
/// not protected, in the direction it crossed the vNIC. Neighbours are
/// static, so the only frames are the pings.
fn counts_pings(hook: FromWorkloadHook) -> anyhow::Result<()> {
    let workload = Netns::new()?;
    let host = Netns::new()?;
    let (workload_side, host_side) = veth_pair(&workload, "10.99.0.2/30", &host, "10.99.0.1/30")?;
    for (netns, interface, own_mac, peer, peer_mac) in [
        (
            &workload,
            &workload_side,
            WORKLOAD_MAC,
            "10.99.0.1",
            HOST_MAC,
        ),
        (&host, &host_side, HOST_MAC, "10.99.0.2", WORKLOAD_MAC),
    ] {
        netns.exec(&["ip", "link", "set", "dev", interface, "address", own_mac])?;
        netns.exec(&[
            "ip",
            "neigh",
            "replace",
            peer,
            "lladdr",
            peer_mac,
            "dev",
            interface,
            "nud",
            "permanent",
        ])?;
    }

    let datapath = host.enter(|| -> anyhow::Result<Datapath> {
        let mut datapath = Datapath::load()?;
        let empty = compile(&[], &Inventory::from_yaml_str("{}")?);
        write_plan(&mut datapath, &empty, &InterfaceIndexes::new())?;
        datapath.attach(&host_side, hook)?;
        Ok(datapath)
    })??;

    let count = PINGS.to_string();
    workload.exec(&["ping", "-c", &count, "-i", "0.2", "-W", "2", "10.99.0.1"])?;

    let counters = read_counters(&datapath)?;
    let requests = counters.get(Direction::FromWorkload, Reason::NotProtected);
    assert_eq!(
        requests.packets, PINGS,
        "one IPv4 packet per echo request ({hook:?})"
    );
    assert_eq!(requests.bytes, PINGS * ECHO_FRAME, "frame bytes ({hook:?})");
    let replies = counters.get(Direction::ToWorkload, Reason::NotProtected);
    assert_eq!(
        replies.packets, PINGS,
        "one IPv4 packet per echo reply ({hook:?})"
    );
    let drops: u64 = Reason::ALL
        .iter()
        .filter(|reason| reason.is_drop())
        .flat_map(|&reason| Direction::ALL.map(|direction| counters.get(direction, reason).packets))
        .sum();
    assert_eq!(
        drops, 0,
        "nothing is protected, nothing is dropped ({hook:?})"
    );
    Ok(())
}

#[test]
fn tcx_counts_real_pings() -> anyhow::Result<()> {
    counts_pings(FromWorkloadHook::Tcx)
}

#[test]
fn generic_xdp_counts_real_pings() -> anyhow::Result<()> {
    counts_pings(FromWorkloadHook::XdpGeneric)
}

#[test]
fn native_xdp_counts_real_pings() -> anyhow::Result<()> {
    counts_pings(FromWorkloadHook::XdpNative)
}
