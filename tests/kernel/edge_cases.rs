//! Defined behaviour for the frames policy does not speak of: ARP, other
//! EtherTypes, VLAN tags, truncated headers, IPv4 options, IPv6 extension
//! headers, fragments and ICMP errors; each run through the real programs
//! (BPF_PROG_TEST_RUN) and counted under its reason.

use std::net::IpAddr;

use zpr_agent::datapath::Hook;
use zpr_common::counters::Reason;
use zpr_tests::frames::{L4, TCP_SYN, frame};

#[path = "support/test_run_site.rs"]
mod test_run_site;
use test_run_site::TestRunSite;

const INVENTORY: &str = r#"
namespaces:
  - name: t
    attributes:
      - { key: net, type: list, values: [a] }
      - { key: app, type: list, values: [web] }
vcns:
  - { name: a, cidrs: [10.0.0.0/16, "fd00::/48"], security-attribute: "t.net:a" }
endpoints:
  - { name: web, vcn: a, addresses: [10.0.0.5, "fd00::5"], interface: test-lo, security-attributes: ["t.app:web"] }
"#;
const POLICY: &str =
    "in t.net:a VCN allow all-endpoints to connect to t.app:web endpoints with protocol='tcp/443'";

const WEB: &str = "10.0.0.5";
const CLIENT: &str = "198.51.100.7";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn syn_to_web(src_port: u16) -> Vec<u8> {
    frame(
        ip(CLIENT),
        ip(WEB),
        L4::Tcp {
            src_port,
            dst_port: 443,
            flags: TCP_SYN,
        },
    )
}

/// Sets the IPv4 header's fragment fields (flags|offset, id) in place.
fn fragment(mut frame: Vec<u8>, id: u16, more: bool, offset_units: u16) -> Vec<u8> {
    frame[18..20].copy_from_slice(&id.to_be_bytes());
    let flags = if more { 0x2000 } else { 0 } | offset_units;
    frame[20..22].copy_from_slice(&flags.to_be_bytes());
    frame
}

#[test]
fn frames_without_policy_meaning_have_defined_verdicts() -> anyhow::Result<()> {
    let mut bench = TestRunSite::new(INVENTORY, POLICY)?;
    let from = Hook::FromWorkloadXdp;
    let to = Hook::ToWorkloadTc;

    let mut arp = syn_to_web(1);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    bench.expect("ARP", from, &arp, Reason::Arp, true);

    let mut lldp = syn_to_web(1);
    lldp[12..14].copy_from_slice(&0x88CCu16.to_be_bytes());
    bench.expect(
        "LLDP at a protected endpoint",
        from,
        &lldp,
        Reason::UnsupportedEthertype,
        false,
    );

    let mut vlan = syn_to_web(1);
    vlan[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
    bench.expect("802.1Q tagged", to, &vlan, Reason::VlanTagged, false);

    // The kernel refuses test skbs this short, so these go through XDP.
    let truncated = syn_to_web(1)[..14 + 12].to_vec();
    bench.expect(
        "truncated IPv4 header",
        from,
        &truncated,
        Reason::Malformed,
        false,
    );
    let short_tcp = syn_to_web(1)[..14 + 20 + 10].to_vec();
    bench.expect(
        "truncated TCP header",
        from,
        &short_tcp,
        Reason::Malformed,
        false,
    );

    // IPv4 options: IHL 6, four option bytes before TCP.
    let plain = syn_to_web(2000);
    let mut options = plain[..34].to_vec();
    options[14] = 0x46;
    options.extend_from_slice(&[1, 1, 1, 0]);
    options.extend_from_slice(&plain[34..]);
    bench.expect("IPv4 with options", to, &options, Reason::NewFlow, true);
    bench.expect(
        "the same flow again",
        to,
        &options,
        Reason::Established,
        true,
    );

    // IPv6 with a hop-by-hop extension header before TCP.
    let v6 = frame(
        ip("2001:db8::7"),
        ip("fd00::5"),
        L4::Tcp {
            src_port: 3000,
            dst_port: 443,
            flags: TCP_SYN,
        },
    );
    let mut extended = v6[..54].to_vec();
    extended[20] = 0; // next header: hop-by-hop
    extended.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // -> TCP, PadN
    extended.extend_from_slice(&v6[54..]);
    bench.expect(
        "IPv6 hop-by-hop then TCP",
        to,
        &extended,
        Reason::NewFlow,
        true,
    );
    let mut denied = extended.clone();
    denied[14 + 40 + 8 + 2..14 + 40 + 8 + 4].copy_from_slice(&22u16.to_be_bytes());
    bench.expect(
        "IPv6 extension, port 22",
        to,
        &denied,
        Reason::NoPolicy,
        false,
    );

    // Fragments: a later fragment is judged by its first.
    let orphan = fragment(syn_to_web(4000), 77, false, 10);
    bench.expect(
        "a later fragment with no first",
        to,
        &orphan,
        Reason::Fragment,
        false,
    );
    let first = fragment(syn_to_web(4001), 78, true, 0);
    bench.expect("a first fragment", to, &first, Reason::NewFlow, true);
    let later = fragment(syn_to_web(4001), 78, false, 10);
    bench.expect(
        "its later fragment",
        to,
        &later,
        Reason::FragmentOfAllowed,
        true,
    );

    // An ICMP error about a tracked flow passes; about anything else it is policed.
    let mut unreachable = frame(
        ip(WEB),
        ip(CLIENT),
        L4::Icmp {
            icmp_type: 3,
            code: 3,
            id: 0,
        },
    );
    let quoted = &syn_to_web(2000)[14..14 + 28];
    unreachable.extend_from_slice(quoted);
    bench.expect(
        "ICMP error about a tracked flow",
        from,
        &unreachable,
        Reason::RelatedIcmp,
        true,
    );
    let mut stray = frame(
        ip(WEB),
        ip(CLIENT),
        L4::Icmp {
            icmp_type: 3,
            code: 3,
            id: 0,
        },
    );
    stray.extend_from_slice(&syn_to_web(9999)[14..14 + 28]);
    bench.expect(
        "ICMP error about no flow",
        from,
        &stray,
        Reason::NoPolicy,
        false,
    );

    let spoofed = frame(
        ip("10.0.0.6"),
        ip(CLIENT),
        L4::Udp {
            src_port: 1,
            dst_port: 2,
        },
    );
    bench.expect(
        "a source the endpoint does not own",
        from,
        &spoofed,
        Reason::SpoofedSource,
        false,
    );
    let foreign = frame(
        ip(CLIENT),
        ip("10.0.0.6"),
        L4::Tcp {
            src_port: 1,
            dst_port: 443,
            flags: TCP_SYN,
        },
    );
    bench.expect(
        "toward an address it does not own",
        to,
        &foreign,
        Reason::ForeignDestination,
        false,
    );
    Ok(())
}
