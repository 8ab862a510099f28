//! Oracle's three-tier walkthrough as a real topology: every endpoint a
//! network namespace behind a host-side veth in a router namespace, zpr
//! attached to those vNICs, real TCP and ICMP across them.

use std::{fs, net::Ipv4Addr, time::Duration};

use zpr_agent::{
    compile::{self, Plan, PlanLookup},
    datapath::{
        Datapath, FromWorkloadHook, InterfaceIndexes, drain_events, read_counters, write_plan,
    },
    inventory::Inventory,
    lang::{self, Policy},
};
use zpr_common::{
    Direction,
    counters::Reason,
    event::{Event, IPPROTO_ICMP, IPPROTO_TCP, VERDICT_DROPPED},
};
use zpr_tests::{
    Netns,
    three_tier::{HOSTS, Network, PATHS, example},
    traffic::{connect, echo, tcp_exchange},
};

fn load_example() -> anyhow::Result<(Inventory, Policy)> {
    let inventory = Inventory::from_yaml_str(&fs::read_to_string(example("inventory.yaml"))?)
        .map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let parsed = lang::parse(
        "three-tier",
        &fs::read_to_string(example("three-tier.zpr"))?,
    )
    .map_err(|errors| anyhow::anyhow!("{errors:?}"))?;
    Ok((inventory, parsed.policy))
}

/// The example, enforced on its topology by the datapath alone (no agent).
struct Site {
    network: Network,
    datapath: Datapath,
    interfaces: InterfaceIndexes,
    inventory: Inventory,
    plan: Plan,
}

impl Site {
    fn start() -> anyhow::Result<Site> {
        let network = Network::start()?;
        let (inventory, policy) = load_example()?;
        let plan = compile::compile(&[policy], &inventory);
        let mut interfaces = InterfaceIndexes::new();
        for (name, vnic, _) in HOSTS.iter().filter(|(name, ..)| *name != "internet") {
            interfaces.insert(vnic.to_string(), network.router().ifindex(vnic)?);
            assert!(
                plan.endpoint(name).is_some(),
                "{name} is an endpoint of the example"
            );
        }
        let mut datapath = Datapath::load()?;
        write_plan(&mut datapath, &plan, &interfaces)?;
        network.router().enter(|| -> anyhow::Result<()> {
            for vnic in interfaces.keys() {
                datapath.attach(vnic, FromWorkloadHook::Tcx)?;
            }
            Ok(())
        })??;
        Ok(Site {
            network,
            datapath,
            interfaces,
            inventory,
            plan,
        })
    }

    fn netns(&self, host: &str) -> &Netns {
        self.network.netns(host)
    }

    fn address(&self, host: &str) -> Ipv4Addr {
        self.network.address(host)
    }

    fn ifindex(&self, host: &str) -> u32 {
        self.interfaces[&self.network.topology.host(host).vnic]
    }

    /// The UID the Plan gives `address`, seen from anywhere.
    fn uid(&self, address: Ipv4Addr) -> u32 {
        PlanLookup::new(&self.plan).resolve(address.into())
    }
}

fn address_of(bytes: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
}

/// Asserts a drop event for `from -> to:port` at `at`'s vNIC, with the
/// reason and both UIDs the Plan gives.
fn assert_dropped(
    site: &Site,
    events: &[Event],
    (from, to, port): (&str, &str, u16),
    at: &str,
    reason: Reason,
) {
    let (src, dst) = (site.address(from), site.address(to));
    let direction = if at == from {
        Direction::FromWorkload
    } else {
        Direction::ToWorkload
    };
    let (local, remote) = if at == from { (src, dst) } else { (dst, src) };
    let found = events.iter().find(|event| {
        address_of(&event.src) == src
            && address_of(&event.dst) == dst
            && (port == 0 || event.dst_port == port)
            && event.reason == reason as u8
    });
    let Some(event) = found else {
        panic!(
            "no {} event for {from} -> {to}:{port}; events: {events:#?}",
            reason.name()
        );
    };
    assert_eq!(event.verdict, VERDICT_DROPPED, "{from} -> {to}:{port}");
    assert_eq!(
        event.ifindex,
        site.ifindex(at),
        "{from} -> {to}:{port} is dropped at {at}"
    );
    assert_eq!(event.direction, direction as u8, "{from} -> {to}:{port}");
    assert_eq!(
        event.local_uid,
        site.uid(local),
        "local UID of {from} -> {to}:{port}"
    );
    if reason == Reason::NoPolicy {
        assert_eq!(
            event.remote_uid,
            site.uid(remote),
            "remote UID of {from} -> {to}:{port}"
        );
    }
}

#[test]
fn three_tier_paths_and_drop_reasons() -> anyhow::Result<()> {
    let mut site = Site::start()?;
    for (from, to, port, allowed) in PATHS {
        let outcome = tcp_exchange(site.netns(from), site.address(to), port);
        assert_eq!(
            outcome.is_ok(),
            allowed,
            "{from} -> {to}:{port} should be {}: {outcome:?}",
            if allowed { "allowed" } else { "denied" }
        );
    }
    // ICMP is not in the policy: a ping to the load balancer is dropped there.
    let ping = site
        .netns("internet")
        .try_exec(&["ping", "-c", "1", "-W", "1", "10.0.1.10"])?;
    assert!(
        !ping.status.success(),
        "ping to the load balancer must fail"
    );

    let events = drain_events(&mut site.datapath)?;
    for (from, to, port, allowed) in PATHS {
        if !allowed {
            // A denial is enforced at the first protected end it meets.
            let at = if from == "internet" { to } else { from };
            assert_dropped(&site, &events, (from, to, port), at, Reason::NoPolicy);
        }
    }
    assert!(
        events.iter().any(|e| e.protocol == IPPROTO_ICMP
            && address_of(&e.dst) == site.address("lb")
            && e.reason == Reason::NoPolicy as u8
            && e.ifindex == site.ifindex("lb")),
        "the ping is dropped at the load balancer as no-policy"
    );
    assert!(
        events
            .iter()
            .all(|e| e.protocol != IPPROTO_TCP || e.dst_port != 0)
    );

    let counters = read_counters(&site.datapath)?;
    // 5 allowed connections: one new flow at the destination, plus one at
    // the source when the source is an endpoint too (all but the internet).
    assert_eq!(
        counters.get(Direction::ToWorkload, Reason::NewFlow).packets,
        5
    );
    assert_eq!(
        counters
            .get(Direction::FromWorkload, Reason::NewFlow)
            .packets,
        4
    );
    assert!(
        counters
            .get(Direction::FromWorkload, Reason::Established)
            .packets
            >= 10
    );
    assert!(
        counters
            .get(Direction::ToWorkload, Reason::Established)
            .packets
            >= 10
    );
    assert!(
        counters
            .get(Direction::FromWorkload, Reason::NoPolicy)
            .packets
            >= 4
    );
    assert!(
        counters
            .get(Direction::ToWorkload, Reason::NoPolicy)
            .packets
            >= 2
    );
    Ok(())
}

#[test]
fn spoofed_source_is_dropped_at_the_sender() -> anyhow::Result<()> {
    let mut site = Site::start()?;
    // The load balancer takes app-2's address and calls app-1 from it.
    site.netns("lb")
        .exec(&["ip", "addr", "add", "10.0.2.11/32", "dev", "e0"])?;
    let spoofed = connect(
        site.netns("lb"),
        Some(site.address("app-2")),
        site.address("app-1"),
        80,
    );
    assert!(
        spoofed.is_err(),
        "a connection from a stolen address must fail"
    );
    let events = drain_events(&mut site.datapath)?;
    let event = events
        .iter()
        .find(|e| e.reason == Reason::SpoofedSource as u8)
        .expect("a spoofed-source event");
    assert_eq!(event.ifindex, site.ifindex("lb"));
    assert_eq!(address_of(&event.src), site.address("app-2"));
    assert_eq!(event.direction, Direction::FromWorkload as u8);
    // The load balancer's own address still works.
    tcp_exchange(site.netns("lb"), site.address("app-1"), 80)?;
    Ok(())
}

#[test]
fn removing_a_statement_cuts_its_live_connections() -> anyhow::Result<()> {
    let mut site = Site::start()?;
    let mut stream = connect(site.netns("lb"), None, site.address("app-1"), 80)?;
    echo(&mut stream, b"before")?;

    // Reload without statement three-tier:2 (load balancer -> app servers).
    let (_, mut policy) = load_example()?;
    policy.statements.retain(|statement| statement.id.line != 2);
    let plan = compile::compile(&[policy], &site.inventory);
    write_plan(&mut site.datapath, &plan, &site.interfaces)?;
    site.plan = plan;

    assert!(
        echo(&mut stream, b"after").is_err(),
        "the open connection must be cut"
    );
    std::thread::sleep(Duration::from_millis(100));
    let events = drain_events(&mut site.datapath)?;
    assert!(
        events.iter().any(|e| e.reason == Reason::Revoked as u8
            && e.ifindex == site.ifindex("lb")
            && address_of(&e.dst) == site.address("app-1")),
        "the cut is reported as revoked at the load balancer: {events:#?}"
    );
    assert!(tcp_exchange(site.netns("lb"), site.address("app-1"), 80).is_err());
    // What the policy still allows keeps working.
    tcp_exchange(site.netns("internet"), site.address("lb"), 80)?;
    Ok(())
}
