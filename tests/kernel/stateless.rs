//! A stateless statement is checked per packet: the reply direction needs
//! a statement of its own, and no flow is tracked.

use zpr_agent::{
    compile,
    datapath::{
        Datapath, FromWorkloadHook, InterfaceIndexes, drain_events, flush_flows, read_counters,
        write_plan,
    },
    inventory::Inventory,
    lang,
};
use zpr_common::{Direction, counters::Reason};
use zpr_tests::{
    topology::Topology,
    traffic::{EchoServer, udp_exchange},
};

const INVENTORY: &str = r#"
namespaces:
  - name: t
    attributes:
      - { key: net, type: list, values: [a] }
      - { key: app, type: list, values: [client, server] }
vcns:
  - { name: vcn-a, cidrs: [10.0.0.0/16], security-attribute: "t.net:a" }
endpoints:
  - { name: client, vcn: vcn-a, addresses: [10.0.1.1], interface: zs-client, security-attributes: ["t.app:client"] }
  - { name: server, vcn: vcn-a, addresses: [10.0.2.2], interface: zs-server, security-attributes: ["t.app:server"] }
"#;

const REQUESTS: &str = "in t.net:a VCN allow t.app:client endpoints to connect to t.app:server endpoints with protocol='udp/5000', connection-state='stateless'";
const REPLIES: &str = "in t.net:a VCN allow t.app:server endpoints to connect to t.app:client endpoints with protocol='udp', connection-state='stateless'";

#[test]
fn stateless_statements_need_both_directions() -> anyhow::Result<()> {
    let topology = Topology::new(&[
        ("client", "zs-client", "10.0.1.1"),
        ("server", "zs-server", "10.0.2.2"),
    ])?;
    let inventory = Inventory::from_yaml_str(INVENTORY).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut interfaces = InterfaceIndexes::new();
    for vnic in ["zs-client", "zs-server"] {
        interfaces.insert(vnic.to_owned(), topology.router.ifindex(vnic)?);
    }
    let plan_of = |text: &str| -> anyhow::Result<compile::Plan> {
        let policy = lang::parse("stateless", text)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .policy;
        Ok(compile::compile(&[policy], &inventory))
    };
    let mut datapath = Datapath::load()?;
    write_plan(&mut datapath, &plan_of(REQUESTS)?, &interfaces)?;
    topology.router.enter(|| -> anyhow::Result<()> {
        for vnic in interfaces.keys() {
            datapath.attach(vnic, FromWorkloadHook::Tcx)?;
        }
        Ok(())
    })??;
    let _server = EchoServer::start(&topology.host("server").netns, 5000)?;
    let server = topology.host("server").address;

    // Requests pass; the echo back has no statement of its own.
    assert!(udp_exchange(&topology.host("client").netns, server, 5000).is_err());
    let counters = read_counters(&datapath)?;
    assert!(
        counters
            .get(Direction::FromWorkload, Reason::Stateless)
            .packets
            >= 1
    );
    assert!(
        counters
            .get(Direction::ToWorkload, Reason::Stateless)
            .packets
            >= 1
    );
    let events = drain_events(&mut datapath)?;
    assert!(
        events.iter().any(|e| e.reason == Reason::NoPolicy as u8
            && e.src_port == 5000
            && e.ifindex == interfaces["zs-server"]
            && e.direction == Direction::FromWorkload as u8),
        "the reply is dropped leaving the server: {events:#?}"
    );
    assert_eq!(
        flush_flows(&mut datapath)?,
        0,
        "stateless traffic is not tracked"
    );

    // With a statement for the replies, the exchange works, still untracked.
    write_plan(
        &mut datapath,
        &plan_of(&format!("{REQUESTS}\n{REPLIES}"))?,
        &interfaces,
    )?;
    udp_exchange(&topology.host("client").netns, server, 5000)?;
    assert_eq!(
        flush_flows(&mut datapath)?,
        0,
        "stateless traffic is not tracked"
    );
    Ok(())
}
