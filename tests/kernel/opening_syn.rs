//! A bare SYN opens a flow and answers none, so the datapath looks for it
//! among the opening flows only once a statement allowed it (a denied SYN
//! costs one conntrack lookup). What that must keep, and the one thing it
//! changes, run through the real programs (BPF_PROG_TEST_RUN):
//! - a SYN sent again is the same flow: established, not a second new one
//!   (nor a second use of its statement);
//! - a SYN on a flow that closed opens it again;
//! - in a simultaneous open, a SYN is decided by its own side's statement;
//!   the answering SYN-ACK completes the flow the other side opened;
//! - an audited endpoint's denied SYN is reported once, not per copy.

use std::net::IpAddr;

use zpr_agent::datapath::{Hook, read_rule_usage};
use zpr_common::counters::Reason;
use zpr_tests::frames::{L4, TCP_ACK, TCP_SYN, frame};

#[path = "support/test_run_site.rs"]
mod test_run_site;
use test_run_site::TestRunSite;

const POLICY: &str =
    "in t.net:a VCN allow all-endpoints to connect to t.app:web endpoints with protocol='tcp/443'";
const WEB: &str = "10.0.0.5";
const CLIENT: &str = "10.0.0.9";
const TCP_FIN: u8 = 0x01;

fn inventory(mode: &str) -> String {
    format!(
        r#"
namespaces:
  - name: t
    attributes:
      - {{ key: net, type: list, values: [a] }}
      - {{ key: app, type: list, values: [web] }}
vcns:
  - {{ name: a, cidrs: [10.0.0.0/16], security-attribute: "t.net:a" }}
endpoints:
  - {{ name: web, vcn: a, addresses: [{WEB}], interface: test-lo, mode: {mode}, security-attributes: ["t.app:web"] }}
"#
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A TCP frame between the client's port 40000 and web's port 443.
fn to_web(flags: u8) -> Vec<u8> {
    frame(
        ip(CLIENT),
        ip(WEB),
        L4::Tcp {
            src_port: 40_000,
            dst_port: 443,
            flags,
        },
    )
}

fn from_web(flags: u8) -> Vec<u8> {
    frame(
        ip(WEB),
        ip(CLIENT),
        L4::Tcp {
            src_port: 443,
            dst_port: 40_000,
            flags,
        },
    )
}

/// Flows the Plan's entries allowed, over both slots.
fn flows_allowed(site: &TestRunSite) -> u64 {
    [0, 1]
        .into_iter()
        .flat_map(|slot| read_rule_usage(&site.datapath, slot, 16).unwrap())
        .map(|usage| usage.flows)
        .sum()
}

#[test]
fn a_syn_sent_again_is_the_flow_it_opened() -> anyhow::Result<()> {
    let mut site = TestRunSite::new(&inventory("enforce"), POLICY)?;
    let to = Hook::ToWorkloadTc;
    site.expect("first SYN", to, &to_web(TCP_SYN), Reason::NewFlow, true);
    assert_eq!(flows_allowed(&site), 1);
    site.expect(
        "the SYN again",
        to,
        &to_web(TCP_SYN),
        Reason::Established,
        true,
    );
    site.expect("and again", to, &to_web(TCP_SYN), Reason::Established, true);
    assert_eq!(flows_allowed(&site), 1, "one flow, used once");
    // Its answer still finds it opening, and the handshake completes.
    let from = Hook::FromWorkloadTc;
    let answer = from_web(TCP_SYN | TCP_ACK);
    site.expect("SYN-ACK", from, &answer, Reason::Established, true);
    site.expect("ACK", to, &to_web(TCP_ACK), Reason::Established, true);
    Ok(())
}

#[test]
fn a_syn_on_a_closed_flow_opens_it_again() -> anyhow::Result<()> {
    let mut site = TestRunSite::new(&inventory("enforce"), POLICY)?;
    let to = Hook::ToWorkloadTc;
    site.expect("SYN", to, &to_web(TCP_SYN), Reason::NewFlow, true);
    site.expect(
        "FIN",
        to,
        &to_web(TCP_FIN | TCP_ACK),
        Reason::Established,
        true,
    );
    site.expect("SYN after FIN", to, &to_web(TCP_SYN), Reason::NewFlow, true);
    assert_eq!(flows_allowed(&site), 2);
    Ok(())
}

#[test]
fn in_a_simultaneous_open_each_syn_is_decided_by_its_own_side() -> anyhow::Result<()> {
    let mut site = TestRunSite::new(&inventory("enforce"), POLICY)?;
    let (to, from) = (Hook::ToWorkloadTc, Hook::FromWorkloadXdp);
    site.expect("client's SYN", to, &to_web(TCP_SYN), Reason::NewFlow, true);
    // No statement lets web open a flow to the client: its own SYN on the
    // same four-tuple is denied, though the client's SYN is opening.
    site.expect(
        "web's SYN",
        from,
        &from_web(TCP_SYN),
        Reason::NoPolicy,
        false,
    );
    site.expect(
        "web's SYN-ACK",
        from,
        &from_web(TCP_SYN | TCP_ACK),
        Reason::Established,
        true,
    );
    Ok(())
}

#[test]
fn an_audited_denied_syn_is_reported_once() -> anyhow::Result<()> {
    let mut site = TestRunSite::new(&inventory("audit"), POLICY)?;
    let from = Hook::FromWorkloadXdp;
    site.expect(
        "denied SYN",
        from,
        &from_web(TCP_SYN),
        Reason::Audited,
        true,
    );
    site.expect(
        "the SYN again",
        from,
        &from_web(TCP_SYN),
        Reason::Established,
        true,
    );
    Ok(())
}
