//! Every semantic rule on small inventories, each checked with the
//! reference evaluator and the Plan lookup, which must agree.

use std::net::IpAddr;

use super::*;
use crate::inventory::{Inventory, Mode};
use crate::lang::{Policy, StatementId};

const INVENTORY: &str = "
namespaces:
  - name: ns
    attributes:
      - { key: net, type: list, values: [a, b] }
      - { key: app, type: freeform }
vcns:
  - { name: va, cidrs: [10.0.0.0/16, 'fd00:a::/48'], security-attribute: ns.net:a }
  - { name: vb, cidrs: [10.1.0.0/16, 'fd00:b::/48'], security-attribute: ns.net:b }
  - { name: vu, cidrs: [10.2.0.0/16] }
endpoints:
  - { name: web, vcn: va, addresses: [10.0.0.1, 'fd00:a::1'], interface: zpr-web, security-attributes: [ns.app:web] }
  - { name: web2, vcn: va, addresses: [10.0.0.2], security-attributes: [ns.app:web], mode: audit }
  - { name: db, vcn: va, addresses: [10.0.0.3, 'fd00:a::3'], interface: zpr-db, security-attributes: [ns.app:db] }
  - { name: dbb, vcn: vb, addresses: [10.1.0.3, 'fd00:b::3'], security-attributes: [ns.app:db] }
  - { name: plain, vcn: va, addresses: [10.0.0.9], interface: zpr-plain }
  - { name: stray, vcn: vu, addresses: [10.2.0.1], security-attributes: [ns.app:web] }
osn-services: [192.0.2.0/24]
";

struct Case {
    inventory: Inventory,
    policies: Vec<Policy>,
    plan: Plan,
}

impl Case {
    /// Statements one per line, policy `p`, so ids are `p:1`, `p:2`, ...
    fn new(statements: &str) -> Case {
        let inventory = Inventory::from_yaml_str(INVENTORY).unwrap();
        let parsed = crate::lang::parse("p", statements)
            .unwrap_or_else(|errors| panic!("{statements}\n{errors:#?}"));
        let policies = vec![parsed.policy];
        let plan = compile(&policies, &inventory);
        Case {
            inventory,
            policies,
            plan,
        }
    }

    /// The decision at `endpoint`, after checking both evaluators agree.
    fn at(&self, endpoint: &str, direction: Direction, facts: PacketFacts) -> Verdict {
        let reference =
            decide(&self.inventory, &self.policies, &facts, direction, endpoint).unwrap();
        let planned = plan_decide(&self.plan, &facts, direction, endpoint).unwrap();
        assert_eq!(reference, planned, "{facts:?} {direction} at {endpoint}");
        reference
    }

    fn egress(&self, endpoint: &str, facts: PacketFacts) -> Decision {
        self.at(endpoint, Direction::Egress, facts).decision
    }

    fn ingress(&self, endpoint: &str, facts: PacketFacts) -> Decision {
        self.at(endpoint, Direction::Ingress, facts).decision
    }

    /// The decision at both ends of a path between two endpoints.
    fn path(&self, from: &str, to: &str, facts: PacketFacts) -> (Decision, Decision) {
        (self.egress(from, facts), self.ingress(to, facts))
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn tcp(src: &str, dst: &str, port: u16) -> PacketFacts {
    PacketFacts::tcp(ip(src), ip(dst), port)
}

fn allow(ids: &[u32]) -> Decision {
    Decision::Allow {
        statements: ids
            .iter()
            .map(|&line| StatementId {
                policy: "p".into(),
                line,
            })
            .collect(),
        stateless: false,
    }
}

fn allow_stateless(ids: &[u32]) -> Decision {
    match allow(ids) {
        Decision::Allow { statements, .. } => Decision::Allow {
            statements,
            stateless: true,
        },
        other => other,
    }
}

const NO_POLICY: Decision = Decision::Deny {
    reason: DenyReason::NoPolicy,
};

#[test]
fn same_vcn_attribute_statement_allows_both_ends() {
    let case = Case::new(
        "in ns.net:a VCN allow ns.app:web to connect to ns.app:db with protocol='tcp/80'",
    );
    let http = tcp("10.0.0.1", "10.0.0.3", 80);
    assert_eq!(case.path("web", "db", http), (allow(&[1]), allow(&[1])));
    assert_eq!(
        case.path("web", "db", tcp("10.0.0.1", "10.0.0.3", 81)),
        (NO_POLICY, NO_POLICY)
    );
    let udp = PacketFacts::udp(ip("10.0.0.1"), ip("10.0.0.3"), 80);
    assert_eq!(case.path("web", "db", udp), (NO_POLICY, NO_POLICY));
    // The reverse direction is a different connection.
    assert_eq!(
        case.path("db", "web", tcp("10.0.0.3", "10.0.0.1", 80)),
        (NO_POLICY, NO_POLICY)
    );
    // db in VCN vb is not "in ns.net:a VCN"; neither is web in an untagged VCN.
    assert_eq!(
        case.path("web", "dbb", tcp("10.0.0.1", "10.1.0.3", 80)),
        (NO_POLICY, NO_POLICY)
    );
    assert_eq!(
        case.path("stray", "db", tcp("10.2.0.1", "10.0.0.3", 80)),
        (NO_POLICY, NO_POLICY)
    );
}

#[test]
fn cross_vcn_statement_uses_each_sides_location() {
    let case = Case::new(
        "allow ns.app:web endpoints in ns.net:a VCN to connect to ns.app:db endpoints with protocol='tcp/1521' in ns.net:b VCN",
    );
    assert_eq!(
        case.path("web", "dbb", tcp("10.0.0.1", "10.1.0.3", 1521)),
        (allow(&[1]), allow(&[1]))
    );
    assert_eq!(
        case.path("web", "db", tcp("10.0.0.1", "10.0.0.3", 1521)),
        (NO_POLICY, NO_POLICY)
    );
    assert_eq!(
        case.path("stray", "dbb", tcp("10.2.0.1", "10.1.0.3", 1521)),
        (NO_POLICY, NO_POLICY)
    );
    // IPv6 addresses of the same endpoints carry the same attributes.
    assert_eq!(
        case.path("web", "dbb", tcp("fd00:a::1", "fd00:b::3", 1521)),
        (allow(&[1]), allow(&[1]))
    );
}

#[test]
fn untagged_endpoints_are_not_enforced_but_tagged_ones_still_are() {
    let case = Case::new("in ns.net:a VCN allow ns.app:web to connect to ns.app:db");
    let from_plain = tcp("10.0.0.9", "10.0.0.3", 5432);
    assert_eq!(case.egress("plain", from_plain), Decision::NotEnforced);
    assert_eq!(case.ingress("db", from_plain), NO_POLICY);
    assert_eq!(
        case.ingress("plain", tcp("10.0.0.3", "10.0.0.9", 22)),
        Decision::NotEnforced
    );
    // Naming the untagged resource by address lets it in.
    let case = Case::new("in ns.net:a VCN allow '10.0.0.9' to connect to ns.app:db");
    assert_eq!(case.ingress("db", from_plain), allow(&[1]));
    assert_eq!(
        case.ingress("db", tcp("10.0.0.8", "10.0.0.3", 5432)),
        NO_POLICY
    );
}

#[test]
fn overlapping_cidr_selectors_each_count() {
    let case = Case::new(
        "in ns.net:a VCN allow '10.0.0.0/8' to connect to ns.app:db with protocol='tcp/80'
in ns.net:a VCN allow '10.9.0.0/16' to connect to ns.app:db with protocol='tcp/443'
in ns.net:a VCN allow '10.9.9.0/24' to connect to ns.app:db with protocol='tcp'
in ns.net:a VCN allow '10.9.9.128/25' to connect to ns.app:db with protocol='tcp/80'",
    );
    let to_db = |src: &str, port| case.ingress("db", tcp(src, "10.0.0.3", port));
    assert_eq!(to_db("10.200.0.1", 80), allow(&[1]));
    assert_eq!(to_db("10.200.0.1", 443), NO_POLICY);
    assert_eq!(to_db("10.9.1.1", 443), allow(&[2]));
    assert_eq!(to_db("10.9.9.1", 443), allow(&[2, 3]));
    assert_eq!(to_db("10.9.9.1", 80), allow(&[1, 3]));
    assert_eq!(to_db("10.9.9.200", 80), allow(&[1, 3, 4]));
    assert_eq!(to_db("10.9.9.200", 22), allow(&[3]));
    assert_eq!(to_db("11.0.0.1", 80), NO_POLICY);
    // Endpoints inside the prefixes are matched by them too, tagged or not.
    assert_eq!(
        case.path("web", "db", tcp("10.0.0.1", "10.0.0.3", 80)),
        (allow(&[1]), allow(&[1]))
    );
    // Redundant LPM entries are left out: nothing resolves differently.
    let lpm: Vec<String> = case
        .plan
        .prefixes
        .iter()
        .map(|p| crate::lang::address::format_prefix(&p.prefix))
        .collect();
    assert_eq!(
        lpm,
        [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "10.9.0.0/16",
            "10.9.9.0/24",
            "10.9.9.128/25",
            "::/0"
        ]
    );
}

#[test]
fn all_endpoints_matches_every_address() {
    let case = Case::new(
        "in ns.net:a VCN allow ns.app:web to connect to all-endpoints with protocol='tcp/443'",
    );
    assert_eq!(
        case.egress("web", tcp("10.0.0.1", "198.51.100.7", 443)),
        allow(&[1])
    );
    assert_eq!(
        case.egress("web", tcp("fd00:a::1", "2001:db8::7", 443)),
        allow(&[1])
    );
    assert_eq!(
        case.path("web", "dbb", tcp("10.0.0.1", "10.1.0.3", 443)),
        (allow(&[1]), allow(&[1]))
    );
    assert_eq!(
        case.egress("web", tcp("10.0.0.1", "198.51.100.7", 80)),
        NO_POLICY
    );
    // The wildcard goes in the "any remote" table only.
    assert!(
        case.plan
            .policy
            .iter()
            .all(|e| e.key.remote == ANY_REMOTE || e.key.direction == Direction::Ingress)
    );
}

#[test]
fn osn_services_are_the_inventorys_prefixes() {
    let case = Case::new(
        "in ns.net:a VCN allow ns.app:web to connect to osn-services-ip-addresses with protocol='tcp/443'",
    );
    assert_eq!(
        case.egress("web", tcp("10.0.0.1", "192.0.2.55", 443)),
        allow(&[1])
    );
    assert_eq!(
        case.egress("web", tcp("10.0.0.1", "192.0.3.55", 443)),
        NO_POLICY
    );
    assert_eq!(
        case.egress("web", tcp("fd00:a::1", "2001:db8::1", 443)),
        NO_POLICY
    );
}

#[test]
fn stateless_only_when_every_matching_statement_is() {
    let case = Case::new(
        "in ns.net:a VCN allow ns.app:web to connect to ns.app:db with protocol='udp/53', connection-state='stateless'
in ns.net:a VCN allow ns.app:web to connect to ns.app:db with protocol='udp'",
    );
    let dns = PacketFacts::udp(ip("10.0.0.1"), ip("10.0.0.3"), 53);
    assert_eq!(
        case.path("web", "db", dns),
        (allow(&[1, 2]), allow(&[1, 2]))
    );
    let case = Case::new(
        "in ns.net:a VCN allow ns.app:web to connect to ns.app:db with protocol='udp/53', connection-state='stateless'",
    );
    assert_eq!(
        case.path("web", "db", dns),
        (allow_stateless(&[1]), allow_stateless(&[1]))
    );
}

#[test]
fn audit_mode_is_reported_beside_the_decision() {
    let case = Case::new(
        "in ns.net:a VCN allow ns.app:web to connect to ns.app:db with protocol='tcp/80'",
    );
    let verdict = case.at("web2", Direction::Egress, tcp("10.0.0.2", "10.0.0.3", 22));
    assert_eq!(verdict.decision, NO_POLICY);
    assert_eq!(verdict.mode, Mode::Audit);
    assert!(verdict.passes());
    let verdict = case.at("web", Direction::Egress, tcp("10.0.0.1", "10.0.0.3", 22));
    assert_eq!((verdict.mode, verdict.passes()), (Mode::Enforce, false));
}

#[test]
fn ipv4_prefixes_do_not_match_ipv6() {
    let case = Case::new(
        "in ns.net:a VCN allow '0.0.0.0/0' to connect to ns.app:db with protocol='tcp/80'",
    );
    assert_eq!(
        case.ingress("db", tcp("198.51.100.1", "10.0.0.3", 80)),
        allow(&[1])
    );
    assert_eq!(
        case.ingress("db", tcp("2001:db8::1", "fd00:a::3", 80)),
        NO_POLICY
    );
    let case = Case::new(
        "in ns.net:a VCN allow '2001:db8::/32' to connect to ns.app:db with protocol='tcp/80'
in ns.net:a VCN allow 'fd00:a::3' to connect to ns.app:db with protocol='tcp/80'",
    );
    assert_eq!(
        case.ingress("db", tcp("2001:db8::1", "fd00:a::3", 80)),
        allow(&[1])
    );
    assert_eq!(
        case.ingress("db", tcp("2001:db9::1", "fd00:a::3", 80)),
        NO_POLICY
    );
    // A selector names only some of db's addresses, so they get
    // different identities.
    let db = case.plan.endpoint("db").unwrap();
    assert_ne!(db.addresses[0].uid, db.addresses[1].uid);
}

#[test]
fn neighbour_discovery_is_always_allowed() {
    let case = Case::new(
        "in ns.net:a VCN allow ns.app:web to connect to ns.app:db with protocol='tcp/80'",
    );
    let solicit = PacketFacts::icmp(ip("fe80::1"), ip("ff02::1:ff00:3"), 135, 0);
    assert_eq!(case.egress("web", solicit), Decision::NeighbourDiscovery);
    assert_eq!(case.ingress("db", solicit), Decision::NeighbourDiscovery);
    let dad = PacketFacts::icmp(ip("::"), ip("ff02::1:ff00:1"), 135, 0);
    assert_eq!(case.egress("web", dad), Decision::NeighbourDiscovery);
    let advert = PacketFacts::icmp(ip("fd00:a::1"), ip("fd00:a::3"), 136, 0);
    assert_eq!(
        case.path("web", "db", advert),
        (Decision::NeighbourDiscovery, Decision::NeighbourDiscovery)
    );
    // Only types 133-137, and a link-local source only for them.
    let echo = PacketFacts::icmp(ip("fe80::1"), ip("fd00:a::3"), 128, 0);
    assert_eq!(
        case.egress("web", echo),
        Decision::Deny {
            reason: DenyReason::SpoofedSource
        }
    );
    let redirect_from_elsewhere = PacketFacts::icmp(ip("fd00:9::1"), ip("fd00:a::3"), 137, 0);
    assert_eq!(
        case.egress("web", redirect_from_elsewhere),
        Decision::Deny {
            reason: DenyReason::SpoofedSource
        }
    );
    let router_advert_v4 = PacketFacts::icmp(ip("10.0.0.1"), ip("10.0.0.3"), 134, 0);
    assert_eq!(case.egress("web", router_advert_v4), NO_POLICY);
}

#[test]
fn protected_endpoints_only_send_from_and_receive_at_their_own_addresses() {
    let case = Case::new("in ns.net:a VCN allow all-endpoints to connect to ns.app:db");
    let spoofed = tcp("10.0.0.2", "10.0.0.3", 80);
    assert_eq!(
        case.egress("web", spoofed),
        Decision::Deny {
            reason: DenyReason::SpoofedSource
        }
    );
    assert_eq!(
        case.ingress("db", tcp("10.0.0.1", "10.0.0.99", 80)),
        Decision::Deny {
            reason: DenyReason::ForeignDestination
        }
    );
    assert_eq!(
        case.ingress("db", tcp("10.0.0.1", "10.0.0.3", 80)),
        allow(&[1])
    );
    // Untagged endpoints are not policed at all.
    assert_eq!(
        case.egress("plain", tcp("10.9.9.9", "10.0.0.3", 80)),
        Decision::NotEnforced
    );
}

#[test]
fn port_ranges_and_lists() {
    let case = Case::new(
        "in ns.net:a VCN allow ns.app:web to connect to ns.app:db with protocol='tcp/22,1000-2000,6200'",
    );
    for (port, allowed) in [
        (21, false),
        (22, true),
        (23, false),
        (999, false),
        (1000, true),
        (1500, true),
        (2000, true),
        (2001, false),
        (6200, true),
        (6201, false),
    ] {
        let expected = if allowed { allow(&[1]) } else { NO_POLICY };
        assert_eq!(
            case.path("web", "db", tcp("10.0.0.1", "10.0.0.3", port)),
            (expected.clone(), expected),
            "{port}"
        );
    }
}

#[test]
fn icmp_type_and_code() {
    let case = Case::new(
        "in ns.net:a VCN allow ns.app:web to connect to ns.app:db with protocol='icmp', protocol.icmp.type='8'
in ns.net:a VCN allow ns.app:web to connect to ns.app:db with protocol='icmp', protocol.icmp.type='3', protocol.icmp.code='4'
in ns.net:a VCN allow ns.app:db to connect to ns.app:web with protocol='icmpv6'",
    );
    let icmp = |t, c| {
        case.egress(
            "web",
            PacketFacts::icmp(ip("10.0.0.1"), ip("10.0.0.3"), t, c),
        )
    };
    assert_eq!(icmp(8, 0), allow(&[1]));
    assert_eq!(icmp(8, 1), allow(&[1]));
    assert_eq!(icmp(0, 0), NO_POLICY);
    assert_eq!(icmp(3, 4), allow(&[2]));
    assert_eq!(icmp(3, 3), NO_POLICY);
    let v6 = |t| {
        case.egress(
            "db",
            PacketFacts::icmp(ip("fd00:a::3"), ip("fd00:a::1"), t, 0),
        )
    };
    assert_eq!(v6(128), allow(&[3]));
    assert_eq!(v6(1), allow(&[3]));
    // ICMP filters say nothing about TCP.
    assert_eq!(
        case.egress("web", tcp("10.0.0.1", "10.0.0.3", 8 << 8)),
        NO_POLICY
    );
}

#[test]
fn any_remote_entries_reach_concrete_tables() {
    let case = Case::new(
        "in ns.net:a VCN allow ns.app:web to connect to all-endpoints with protocol='tcp'
in ns.net:a VCN allow ns.app:web to connect to ns.app:db with protocol='tcp/80', connection-state='stateless'
in ns.net:a VCN allow ns.app:web to connect to ns.app:db with protocol='udp/53'",
    );
    assert_eq!(
        case.egress("web", tcp("10.0.0.1", "10.0.0.3", 80)),
        allow(&[1, 2])
    );
    assert_eq!(
        case.egress("web", tcp("10.0.0.1", "10.0.0.3", 22)),
        allow(&[1])
    );
    assert_eq!(
        case.egress("web", tcp("10.0.0.1", "198.51.100.1", 80)),
        allow(&[1])
    );
    let dns = PacketFacts::udp(ip("10.0.0.1"), ip("10.0.0.3"), 53);
    assert_eq!(case.egress("web", dns), allow(&[3]));
    let other = PacketFacts::other(ip("10.0.0.1"), ip("10.0.0.3"), 47);
    assert_eq!(case.egress("web", other), NO_POLICY);
}

#[test]
fn any_protocol_statement_covers_other_protocols() {
    let case = Case::new("in ns.net:a VCN allow ns.app:web to connect to ns.app:db");
    let gre = PacketFacts::other(ip("10.0.0.1"), ip("10.0.0.3"), 47);
    assert_eq!(case.path("web", "db", gre), (allow(&[1]), allow(&[1])));
}

#[test]
fn unknown_endpoint_is_an_error() {
    let case = Case::new("in ns.net:a VCN allow ns.app:web to connect to ns.app:db");
    let facts = tcp("10.0.0.1", "10.0.0.3", 80);
    assert!(
        decide(
            &case.inventory,
            &case.policies,
            &facts,
            Direction::Egress,
            "nope"
        )
        .is_err()
    );
    assert!(plan_decide(&case.plan, &facts, Direction::Egress, "nope").is_err());
}

#[test]
fn plans_are_deterministic_and_order_free() {
    let statements =
        "in ns.net:a VCN allow ns.app:web to connect to ns.app:db with protocol='tcp/80'
in ns.net:a VCN allow '10.0.0.0/8' to connect to ns.app:db with protocol='tcp/1000-1999'";
    let case = Case::new(statements);
    let again = Case::new(statements);
    assert_eq!(case.plan, again.plan);
    assert_eq!(
        serde_json::to_string(&case.plan).unwrap(),
        serde_json::to_string(&again.plan).unwrap()
    );
    let mut reversed = case.policies.clone();
    reversed[0].statements.reverse();
    assert_eq!(compile(&reversed, &case.inventory), case.plan);
    let other = Case::new(
        "in ns.net:a VCN allow ns.app:web to connect to ns.app:db with protocol='tcp/81'",
    );
    assert_ne!(other.plan.content_hash, case.plan.content_hash);
}

#[test]
fn plan_shape() {
    let case = Case::new(
        "in ns.net:a VCN allow ns.app:web to connect to ns.app:db with protocol='tcp/80'",
    );
    let plan = &case.plan;
    // UIDs are 1..=n, in order.
    assert!(
        plan.identities
            .iter()
            .enumerate()
            .all(|(i, id)| id.uid == i as Uid + 1)
    );
    // Every endpoint address has an exact entry; both default routes exist.
    assert_eq!(plan.sizes.hosts_v4 + plan.sizes.hosts_v6, 9);
    assert_eq!((plan.sizes.prefixes_v4, plan.sizes.prefixes_v6), (1, 1));
    // No prefix selector tells the families apart, so web's addresses (and
    // web2's) share one UID, db's another: one egress entry, one ingress.
    assert_eq!(plan.sizes.policy_entries, 2);
    let web = plan.endpoint("web").unwrap();
    assert_eq!(web.interface.as_deref(), Some("zpr-web"));
    assert!(web.protected);
    assert!(!plan.endpoint("plain").unwrap().protected);
    assert_eq!(plan.sizes.local_endpoints, 3);
    let web_v4 = web.addresses[0].uid;
    let db_v4 = plan.endpoint("db").unwrap().addresses[0].uid;
    let entry = plan.policy.iter().find(|e| e.key.local == web_v4).unwrap();
    assert_eq!(entry.key.remote, db_v4);
    assert_eq!(entry.key.direction, Direction::Egress);
    assert_eq!(entry.key.l4.to_string(), "tcp/80");
    assert_eq!(plan.statement_ids(&entry.value)[0].to_string(), "p:1");
}
