//! `compile::diff` is exact: for random pairs of inventories and policy
//! sets, and packets at every endpoint from every identity pair, protocol
//! and port boundary, the reference evaluator's verdict changes (the
//! packet passes or not; or it passes by statements both times, tracked
//! once and untracked the other) exactly when the diff covers the packet,
//! with the right change and statements.

use std::net::IpAddr;

use proptest::prelude::*;
use zpr_agent::compile::{
    Change, Decision, Direction, PROTOCOL_ICMP, PROTOCOL_ICMPV6, PacketFacts, PlanDiff, compile,
    decide, diff, packet_key,
};
use zpr_agent::inventory::{Inventory, Mode};
use zpr_agent::lang::{Policy, StatementId, parse};

const SELECTORS: [&str; 7] = [
    "ns.app:web",
    "ns.app:db",
    "ns.app:jump",
    "'10.0.0.0/30'",
    "'0.0.0.0/0'",
    "'fd00:a::/64'",
    "all-endpoints",
];
const FILTERS: [&str; 7] = [
    " with protocol='tcp/80'",
    " with protocol='tcp/22,1000-2000'",
    " with protocol='udp'",
    " with protocol='icmp', protocol.icmp.type='8'",
    " with protocol='icmpv6'",
    "",
    " with protocol='tcp/79-81', connection-state='stateless'",
];
const APPS: [&str; 3] = ["web", "db", "jump"];

#[derive(Debug, Clone)]
struct EndpointSpec {
    vcn_b: bool,
    v6: bool,
    extra_address: bool,
    apps: Vec<bool>,
    audit: bool,
}

fn endpoint_spec() -> impl Strategy<Value = EndpointSpec> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(any::<bool>(), 3),
        proptest::bool::weighted(0.15),
    )
        .prop_map(|(vcn_b, v6, extra_address, apps, audit)| EndpointSpec {
            vcn_b,
            v6,
            extra_address,
            apps,
            audit,
        })
}

/// (source selector, destination selector, filter, cross-VCN)
type StatementSpec = (usize, usize, usize, bool);

fn statement_spec() -> impl Strategy<Value = StatementSpec> {
    (
        0..SELECTORS.len(),
        0..SELECTORS.len(),
        0..FILTERS.len(),
        any::<bool>(),
    )
}

fn inventory_yaml(endpoints: &[EndpointSpec]) -> String {
    let mut yaml = String::from(
        "namespaces:
  - name: ns
    attributes:
      - { key: net, type: list, values: [a, b] }
      - { key: app, type: list, values: [web, db, jump] }
vcns:
  - { name: va, cidrs: [10.0.0.0/16, 'fd00:a::/48'], security-attribute: ns.net:a }
  - { name: vb, cidrs: [10.1.0.0/16, 'fd00:b::/48'], security-attribute: ns.net:b }
endpoints:
",
    );
    for (index, endpoint) in endpoints.iter().enumerate() {
        let (vcn, v4_net, v6_net) = if endpoint.vcn_b {
            ("vb", "10.1.0", "fd00:b:")
        } else {
            ("va", "10.0.0", "fd00:a:")
        };
        let mut addresses = vec![format!("{v4_net}.{}", index + 1)];
        if endpoint.extra_address {
            addresses.push(format!("{v4_net}.{}", index + 11));
        }
        if endpoint.v6 {
            addresses.push(format!("'{v6_net}:{}'", index + 1));
        }
        let apps: Vec<String> = APPS
            .iter()
            .zip(&endpoint.apps)
            .filter(|(_, on)| **on)
            .map(|(app, _)| format!("ns.app:{app}"))
            .collect();
        let mode = if endpoint.audit { ", mode: audit" } else { "" };
        yaml.push_str(&format!(
            "  - {{ name: e{index}, vcn: {vcn}, addresses: [{}], security-attributes: [{}]{mode} }}\n",
            addresses.join(", "),
            apps.join(", ")
        ));
    }
    yaml
}

fn policy_text(statements: &[StatementSpec]) -> String {
    statements
        .iter()
        .map(|&(source, destination, filter, cross)| {
            // Addresses and all-endpoints stand on one side only.
            let is_attribute = |selector: usize| SELECTORS[selector].starts_with("ns.");
            let destination = if !is_attribute(source) && !is_attribute(destination) {
                destination % APPS.len()
            } else {
                destination
            };
            let (source, destination, filter) =
                (SELECTORS[source], SELECTORS[destination], FILTERS[filter]);
            if cross && source.starts_with("ns.") && destination.starts_with("ns.") {
                format!(
                    "allow {source} in ns.net:a VCN to connect to {destination}{filter} in ns.net:b VCN"
                )
            } else {
                format!("in ns.net:a VCN allow {source} to connect to {destination}{filter}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Side {
    inventory: Inventory,
    policies: Vec<Policy>,
}

fn side(endpoints: &[EndpointSpec], statements: &[StatementSpec]) -> Side {
    let inventory = Inventory::from_yaml_str(&inventory_yaml(endpoints)).unwrap();
    let text = policy_text(statements);
    let parsed = parse("p", &text).unwrap_or_else(|errors| panic!("{text}\n{errors:#?}"));
    Side {
        inventory,
        policies: vec![parsed.policy],
    }
}

/// What the reference says of a packet at one side.
struct Outcome {
    passes: bool,
    /// The statements allowing it.
    by: Vec<StatementId>,
    /// Whether an enforcing vNIC lets it pass untracked (stateless) or
    /// tracked; `None` where no statement decides.
    stateless: Option<bool>,
}

fn verdict(side: &Side, facts: &PacketFacts, direction: Direction, endpoint: &str) -> Outcome {
    match decide(&side.inventory, &side.policies, facts, direction, endpoint) {
        // No such endpoint: nothing of zpr's is at its vNIC.
        Err(_) => Outcome {
            passes: true,
            by: Vec::new(),
            stateless: None,
        },
        Ok(verdict) => {
            let (by, stateless) = match &verdict.decision {
                Decision::Allow {
                    statements,
                    stateless,
                } => (statements.clone(), Some(*stateless)),
                _ => (Vec::new(), None),
            };
            Outcome {
                passes: verdict.passes(),
                by,
                stateless: stateless.filter(|_| verdict.mode == Mode::Enforce),
            }
        }
    }
}

/// What the diff says about one packet: `None` when it does not cover it.
fn covered(
    diff: &PlanDiff,
    facts: &PacketFacts,
    direction: Direction,
    endpoint: &str,
) -> Option<(Change, Option<Vec<StatementId>>)> {
    if let Some(change) = diff.enforcement.iter().find(|e| e.endpoint == endpoint) {
        return Some((change.change.into(), None));
    }
    let (local, remote) = match direction {
        Direction::Egress => (facts.src, facts.dst),
        Direction::Ingress => (facts.dst, facts.src),
    };
    let local = diff.local_groups.iter().position(|group| {
        group
            .members
            .iter()
            .any(|m| m.endpoint == endpoint && m.address == local)
    })?;
    let remote = remote_group(diff, remote);
    let key = packet_key(facts);
    let mut matching = diff.paths.iter().filter(|path| {
        path.direction == direction
            && path.local == local
            && path.remote == remote
            && path.l4.contains(key)
    });
    let found = matching.next()?;
    assert!(matching.next().is_none(), "two changes cover {facts}");
    Some((found.change, Some(found.statements.clone())))
}

/// The group holding the address: as a member, else by longest prefix.
fn remote_group(diff: &PlanDiff, address: IpAddr) -> usize {
    let groups = &diff.remote_groups;
    if let Some(index) = groups
        .iter()
        .position(|g| g.members.iter().any(|m| m.address == address))
    {
        return index;
    }
    groups
        .iter()
        .enumerate()
        .flat_map(|(index, group)| group.prefixes.iter().map(move |p| (index, p)))
        .filter(|(_, prefix)| zpr_agent::inventory::prefix::contains(prefix, address))
        .max_by_key(|(_, prefix)| prefix.len)
        .map(|(index, _)| index)
        .expect("the default routes hold every address")
}

fn addresses(sides: [&Side; 2]) -> Vec<IpAddr> {
    let mut addresses: Vec<IpAddr> = sides
        .iter()
        .flat_map(|side| side.inventory.endpoints())
        .flat_map(|endpoint| endpoint.addresses.iter().copied())
        .collect();
    // Around every prefix the selectors name, and elsewhere.
    for text in [
        "10.0.0.0",
        "10.0.0.3",
        "10.0.0.4",
        "9.255.255.255",
        "10.0.0.99",
        "10.1.0.99",
        "198.51.100.1",
        "fd00:a::",
        "fd00:a::ffff",
        "fd00:a:0:1::",
        "fd00:b::99",
        "2001:db8::1",
    ] {
        addresses.push(text.parse().unwrap());
    }
    addresses.sort_unstable();
    addresses.dedup();
    addresses
}

/// Protocol and port boundaries of every filter, and others.
fn l4_cases(src: IpAddr, dst: IpAddr) -> Vec<PacketFacts> {
    let mut cases = Vec::new();
    for port in [
        0, 21, 22, 23, 78, 79, 80, 81, 82, 999, 1000, 2000, 2001, 65535,
    ] {
        cases.push(PacketFacts::tcp(src, dst, port));
        cases.push(PacketFacts::udp(src, dst, port));
    }
    for (protocol, icmp_type, code) in [
        (PROTOCOL_ICMP, 8, 0),
        (PROTOCOL_ICMP, 7, 255),
        (PROTOCOL_ICMP, 9, 0),
        (PROTOCOL_ICMPV6, 128, 0),
        (PROTOCOL_ICMPV6, 135, 0),
        (PROTOCOL_ICMPV6, 255, 255),
    ] {
        cases.push(PacketFacts {
            icmp_type,
            icmp_code: code,
            ..PacketFacts::other(src, dst, protocol)
        });
    }
    cases.push(PacketFacts::other(src, dst, 47));
    cases.push(PacketFacts::other(src, dst, 0));
    cases
}

fn check(old: &Side, new: &Side) -> Result<usize, TestCaseError> {
    let old_plan = compile(&old.policies, &old.inventory);
    let new_plan = compile(&new.policies, &new.inventory);
    let diff = diff(&old_plan, &new_plan);
    let mut endpoints: Vec<&str> = [old, new]
        .iter()
        .flat_map(|side| side.inventory.endpoints())
        .map(|endpoint| endpoint.name.as_str())
        .collect();
    endpoints.sort_unstable();
    endpoints.dedup();
    let addresses = addresses([old, new]);
    let mut changed = 0;
    for endpoint in endpoints {
        let own: Vec<IpAddr> = [old, new]
            .iter()
            .filter_map(|side| side.inventory.endpoint(endpoint))
            .flat_map(|e| e.addresses.iter().copied())
            .collect();
        for &local in &own {
            for &remote in addresses
                .iter()
                .filter(|remote| remote.is_ipv4() == local.is_ipv4())
            {
                for direction in [Direction::Egress, Direction::Ingress] {
                    let (src, dst) = match direction {
                        Direction::Egress => (local, remote),
                        Direction::Ingress => (remote, local),
                    };
                    for facts in l4_cases(src, dst) {
                        let was = verdict(old, &facts, direction, endpoint);
                        let is = verdict(new, &facts, direction, endpoint);
                        let cover = covered(&diff, &facts, direction, endpoint);
                        let context =
                            || format!("{facts} {src} -> {dst} {direction} at {endpoint}");
                        let expected = match (was.passes, is.passes, was.stateless, is.stateless) {
                            (false, true, _, _) => Some((Change::Opens, is.by)),
                            (true, false, _, _) => Some((Change::Closes, was.by)),
                            (true, true, Some(false), Some(true)) => {
                                Some((Change::BecomesStateless, is.by))
                            }
                            (true, true, Some(true), Some(false)) => {
                                Some((Change::BecomesStateful, is.by))
                            }
                            _ => None,
                        };
                        let Some((change, statements)) = cover else {
                            prop_assert!(expected.is_none(), "not covered: {}", context());
                            continue;
                        };
                        let enforcement_change = statements.is_none();
                        if enforcement_change {
                            // The enforcing side decides; the other passes everything.
                            match change {
                                Change::Opens => prop_assert!(is.passes, "{}", context()),
                                Change::Closes => prop_assert!(was.passes, "{}", context()),
                                other => prop_assert!(false, "{} at {}", other, context()),
                            }
                            changed += usize::from(was.passes != is.passes);
                            continue;
                        }
                        let Some(expected) = expected else {
                            return Err(TestCaseError::fail(format!(
                                "covered but unchanged: {}",
                                context()
                            )));
                        };
                        changed += 1;
                        prop_assert_eq!((change, statements.unwrap()), expected, "{}", context());
                    }
                }
            }
        }
    }
    Ok(changed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn diff_covers_exactly_the_packets_whose_verdict_changes(
        old_endpoints in proptest::collection::vec(endpoint_spec(), 1..5),
        new_endpoints in proptest::collection::vec(endpoint_spec(), 1..5),
        old_statements in proptest::collection::vec(statement_spec(), 1..5),
        new_statements in proptest::collection::vec(statement_spec(), 1..5),
        keep_endpoints in any::<bool>(),
        keep_statements in any::<bool>(),
    ) {
        // Often change only one half, as a real change does.
        let new_endpoints = if keep_endpoints { old_endpoints.clone() } else { new_endpoints };
        let new_statements = if keep_statements && !keep_endpoints {
            old_statements.clone()
        } else {
            new_statements
        };
        let old = side(&old_endpoints, &old_statements);
        let new = side(&new_endpoints, &new_statements);
        check(&old, &new)?;
        let same = check(&old, &old)?;
        prop_assert_eq!(same, 0);
        prop_assert!(diff(&compile(&old.policies, &old.inventory), &compile(&old.policies, &old.inventory)).is_empty());
    }
}

/// A path allowed before and after, by a stateful statement before and
/// only by a stateless one after (and back): a change of its own.
#[test]
fn a_path_that_stays_allowed_but_changes_state_is_a_change() {
    let endpoints = [
        EndpointSpec {
            vcn_b: false,
            v6: false,
            extra_address: false,
            apps: vec![true, false, false],
            audit: false,
        },
        EndpointSpec {
            vcn_b: false,
            v6: false,
            extra_address: false,
            apps: vec![false, true, false],
            audit: false,
        },
    ];
    // web -> db, tcp/80 stateful; then tcp/79-81 stateless.
    let stateful = side(&endpoints, &[(0, 1, 0, false)]);
    let stateless = side(&endpoints, &[(0, 1, 6, false)]);
    for (old, new, expected) in [
        (&stateful, &stateless, Change::BecomesStateless),
        (&stateless, &stateful, Change::BecomesStateful),
    ] {
        assert!(check(old, new).unwrap() > 0);
        let plans = [old, new].map(|side| compile(&side.policies, &side.inventory));
        let difference = diff(&plans[0], &plans[1]);
        let tcp_80 = packet_key(&PacketFacts::tcp(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            80,
        ));
        let changes: Vec<Change> = difference
            .paths
            .iter()
            .filter(|path| path.l4.contains(tcp_80))
            .map(|path| path.change)
            .collect();
        // At web's egress and db's ingress.
        assert_eq!(changes, [expected, expected]);
    }
}
