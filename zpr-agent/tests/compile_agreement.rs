//! The contract the kernel is held to: for random inventories, policies and
//! packets, reading the compiled Plan the kernel's way (`plan_decide`) gives
//! exactly what the policy means (`decide`): same verdict, same statements,
//! same statefulness, same mode.
//!
//! The generator aims at the hard cases: overlapping CIDR selectors (some
//! covering endpoints, some covering VCNs, some host routes), attributes
//! shared by VCNs and endpoints, both families, OSN prefixes overlapping a
//! VCN, port ranges and lists, ICMP type/code, stateless mixes, wildcards.

use std::net::IpAddr;

use proptest::prelude::*;
use zpr_agent::compile::{Direction, PacketFacts, PlanLookup, compile, decide};
use zpr_agent::inventory::Inventory;
use zpr_agent::lang::{
    Attribute, ConnectionState, Endpoint, Filter, IpPrefix, Policy, PortRange, Protocol, Scope,
    Span, Spanned, Statement, StatementId,
};

const VCNS: usize = 3;
const NETS: [&str; 2] = ["a", "b"];
const APPS: [&str; 2] = ["x", "y"];

/// Prefixes that nest and overlap each other, the VCNs and the endpoints.
const PREFIXES: &[&str] = &[
    "0.0.0.0/0",
    "10.0.0.0/8",
    "10.0.0.0/16",
    "10.0.0.0/24",
    "10.0.0.0/31",
    "10.0.0.1/32",
    "10.0.0.2/32",
    "10.1.0.0/16",
    "10.2.0.0/15",
    "10.0.0.128/25",
    "192.0.2.0/25",
    "::/0",
    "fd00::/16",
    "fd00::/48",
    "fd00:1::/48",
    "fd00::1/128",
    "fd00::/127",
];

/// Ports around the edges of the generated ranges.
const PORTS: &[u16] = &[
    1, 2, 21, 22, 23, 53, 79, 80, 81, 443, 1000, 1023, 1024, 2047, 2048, 65534, 65535,
];

/// Addresses that are not endpoints: inside VCNs, prefixes, OSN, outside all.
const OTHER_ADDRESSES: &[&str] = &[
    "10.0.0.200",
    "10.0.5.5",
    "10.1.9.9",
    "10.3.0.1",
    "10.2.200.1",
    "192.0.2.7",
    "192.0.2.200",
    "198.51.100.1",
    "fd00::99",
    "fd00:1::77",
    "2001:db8:5::1",
    "2001:db8:9::1",
    "fe80::1",
    "::",
];

#[derive(Debug, Clone)]
struct EndpointSpec {
    vcn: usize,
    has_v6: bool,
    apps: Vec<usize>,
    audit: bool,
    local: bool,
}

#[derive(Debug, Clone)]
struct World {
    vcn_nets: Vec<Option<usize>>,
    endpoints: Vec<EndpointSpec>,
    statements: Vec<Statement>,
}

impl World {
    fn v4(&self, index: usize) -> String {
        format!("10.{}.0.{}", self.endpoints[index].vcn, index + 1)
    }

    fn v6(&self, index: usize) -> String {
        format!("fd00:{}::{}", self.endpoints[index].vcn, index + 1)
    }

    fn addresses(&self, index: usize) -> Vec<String> {
        let mut addresses = vec![self.v4(index)];
        if self.endpoints[index].has_v6 {
            addresses.push(self.v6(index));
        }
        addresses
    }

    fn inventory_yaml(&self) -> String {
        let mut yaml = String::from(
            "namespaces:\n  - name: ns\n    attributes:\n      \
             - { key: net, type: list, values: [a, b] }\n      \
             - { key: app, type: freeform }\nvcns:\n",
        );
        for (vcn, net) in self.vcn_nets.iter().enumerate() {
            let attribute = match net {
                Some(net) => format!(", security-attribute: ns.net:{}", NETS[*net]),
                None => String::new(),
            };
            yaml.push_str(&format!(
                "  - {{ name: v{vcn}, cidrs: [10.{vcn}.0.0/16, 'fd00:{vcn}::/48']{attribute} }}\n"
            ));
        }
        yaml.push_str("endpoints:\n");
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            let addresses: Vec<String> = self
                .addresses(index)
                .iter()
                .map(|a| format!("'{a}'"))
                .collect();
            let apps: Vec<String> = endpoint
                .apps
                .iter()
                .map(|&a| format!("ns.app:{}", APPS[a]))
                .collect();
            yaml.push_str(&format!(
                "  - {{ name: e{index}, vcn: v{}, addresses: [{}], security-attributes: [{}], mode: {}{} }}\n",
                endpoint.vcn,
                addresses.join(", "),
                apps.join(", "),
                if endpoint.audit { "audit" } else { "enforce" },
                if endpoint.local { format!(", interface: zpr-e{index}") } else { String::new() },
            ));
        }
        yaml.push_str("osn-services: [192.0.2.0/24, 10.2.128.0/17, '2001:db8:5::/48']\n");
        yaml
    }
}

fn spanned<T>(node: T) -> Spanned<T> {
    Spanned {
        node,
        span: Span::default(),
    }
}

fn attribute(key: &str, value: &str) -> Attribute {
    Attribute {
        namespace: Some("ns".into()),
        key: key.into(),
        value: value.into(),
    }
}

fn prefix(text: &str) -> IpPrefix {
    let (addr, len) = text.split_once('/').unwrap_or((text, ""));
    let addr: IpAddr = addr.parse().unwrap();
    let len = len.parse().unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
    IpPrefix { addr, len }
}

fn endpoint_selector() -> impl Strategy<Value = Endpoint> {
    prop_oneof![
        4 => (0..APPS.len()).prop_map(|a| Endpoint::Attribute(attribute("app", APPS[a]))),
        3 => proptest::sample::select(PREFIXES).prop_map(|p| Endpoint::Prefix(prefix(p))),
        2 => Just(Endpoint::AllEndpoints),
        1 => Just(Endpoint::OsnServices),
    ]
}

fn scope() -> impl Strategy<Value = Scope> {
    let net = || (0..NETS.len()).prop_map(|n| spanned(attribute("net", NETS[n])));
    prop_oneof![
        net().prop_map(|vcn| Scope::SameVcn { vcn }),
        (net(), net()).prop_map(|(source_vcn, destination_vcn)| Scope::CrossVcn {
            source_vcn,
            destination_vcn
        }),
    ]
}

fn port_ranges() -> impl Strategy<Value = Vec<PortRange>> {
    proptest::collection::vec(
        (proptest::sample::select(PORTS), 0u16..1100).prop_map(|(low, width)| PortRange {
            low,
            high: low.saturating_add(width),
        }),
        0..3,
    )
}

fn filters() -> impl Strategy<Value = Vec<Filter>> {
    let icmp_number = || {
        proptest::option::of(prop_oneof![
            Just(0u8),
            Just(3),
            Just(8),
            Just(128),
            Just(135),
            0u8..=255
        ])
    };
    let protocol = prop_oneof![
        2 => Just(None),
        3 => port_ranges().prop_map(|ports| Some(Protocol::Tcp { ports })),
        2 => port_ranges().prop_map(|ports| Some(Protocol::Udp { ports })),
        1 => Just(Some(Protocol::Icmp)),
        1 => Just(Some(Protocol::Icmpv6)),
    ];
    (
        protocol,
        icmp_number(),
        icmp_number(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(protocol, icmp_type, icmp_code, with_icmp, stateless)| {
            let icmp_protocol = matches!(protocol, None | Some(Protocol::Icmp | Protocol::Icmpv6));
            let mut filters: Vec<Filter> = protocol.into_iter().map(Filter::Protocol).collect();
            if with_icmp && icmp_protocol {
                filters.extend(icmp_type.map(Filter::IcmpType));
                filters.extend(icmp_code.map(Filter::IcmpCode));
            }
            if stateless {
                filters.push(Filter::ConnectionState(ConnectionState::Stateless));
            }
            filters
        })
}

fn statement() -> impl Strategy<Value = (Scope, Endpoint, Endpoint, Vec<Filter>)> {
    (scope(), endpoint_selector(), endpoint_selector(), filters())
}

fn world() -> impl Strategy<Value = World> {
    let endpoint = (
        0..VCNS,
        any::<bool>(),
        proptest::collection::vec(0..APPS.len(), 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(vcn, has_v6, mut apps, audit, local)| {
            apps.sort_unstable();
            apps.dedup();
            EndpointSpec {
                vcn,
                has_v6,
                apps,
                audit,
                local,
            }
        });
    (
        proptest::collection::vec(proptest::option::weighted(0.8, 0..NETS.len()), VCNS),
        proptest::collection::vec(endpoint, 1..7),
        proptest::collection::vec(statement(), 0..10),
    )
        .prop_map(|(vcn_nets, endpoints, statements)| World {
            vcn_nets,
            endpoints,
            statements: statements
                .into_iter()
                .enumerate()
                .map(|(line, (scope, source, destination, filters))| {
                    Statement::built(
                        StatementId {
                            policy: "p".into(),
                            line: line as u32 + 1,
                        },
                        scope,
                        source,
                        destination,
                        filters,
                    )
                })
                .collect(),
        })
}

/// A packet: addresses picked from the endpoints' and the others', L4 from
/// edges of the generated filters.
#[derive(Debug, Clone)]
struct PacketSpec {
    src: usize,
    dst: usize,
    kind: usize,
    port: u16,
    icmp_type: u8,
    icmp_code: u8,
}

fn packet() -> impl Strategy<Value = PacketSpec> {
    (
        0usize..64,
        0usize..64,
        0usize..5,
        proptest::sample::select(PORTS),
        prop_oneof![
            Just(0u8),
            Just(3),
            Just(8),
            Just(128),
            133u8..=137,
            any::<u8>()
        ],
        prop_oneof![Just(0u8), Just(4), any::<u8>()],
    )
        .prop_map(|(src, dst, kind, port, icmp_type, icmp_code)| PacketSpec {
            src,
            dst,
            kind,
            port,
            icmp_type,
            icmp_code,
        })
}

/// An address of `family` (any when `None`): endpoint addresses are twice
/// as likely as the others.
fn pick_address(world: &World, choice: usize, family: Option<bool>) -> IpAddr {
    let same_family = |address: &IpAddr| family.is_none_or(|v4| address.is_ipv4() == v4);
    let endpoints: Vec<IpAddr> = (0..world.endpoints.len())
        .flat_map(|i| world.addresses(i))
        .map(|a| a.parse().unwrap())
        .filter(same_family)
        .collect();
    let others: Vec<IpAddr> = OTHER_ADDRESSES
        .iter()
        .map(|a| a.parse().unwrap())
        .filter(same_family)
        .collect();
    if !choice.is_multiple_of(3) && !endpoints.is_empty() {
        endpoints[choice % endpoints.len()]
    } else {
        others[choice % others.len()]
    }
}

fn facts(world: &World, spec: &PacketSpec) -> PacketFacts {
    // A packet's addresses are of one family.
    let src = pick_address(world, spec.src, None);
    let dst = pick_address(world, spec.dst, Some(src.is_ipv4()));
    match spec.kind {
        0 => PacketFacts::tcp(src, dst, spec.port),
        1 => PacketFacts::udp(src, dst, spec.port),
        2 | 3 => PacketFacts::icmp(src, dst, spec.icmp_type, spec.icmp_code),
        _ => PacketFacts::other(src, dst, 47),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn plan_lookup_agrees_with_the_reference(world in world(), packets in proptest::collection::vec(packet(), 1..24)) {
        let inventory = Inventory::from_yaml_str(&world.inventory_yaml())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", world.inventory_yaml())))?;
        let policies = vec![Policy { name: "p".to_owned(), statements: world.statements.clone() }];
        let plan = compile(&policies, &inventory);
        let lookup = PlanLookup::new(&plan);
        for spec in &packets {
            let facts = facts(&world, spec);
            for endpoint in inventory.endpoints() {
                // Each endpoint sees the packet leave it and arrive at it;
                // most generated packets use its own addresses.
                for direction in [Direction::Egress, Direction::Ingress] {
                    let reference = decide(&inventory, &policies, &facts, direction, &endpoint.name).unwrap();
                    let planned = lookup.decide(&facts, direction, &endpoint.name).unwrap();
                    prop_assert_eq!(&reference, &planned, "{:?} {} at {}", facts, direction, endpoint.name);
                }
            }
        }
    }

    #[test]
    fn compiling_is_deterministic(world in world()) {
        let inventory = Inventory::from_yaml_str(&world.inventory_yaml()).unwrap();
        let mut statements = world.statements.clone();
        let policies = vec![Policy { name: "p".to_owned(), statements: statements.clone() }];
        statements.reverse();
        let reversed = vec![Policy { name: "p".to_owned(), statements }];
        let plan = compile(&policies, &inventory);
        prop_assert_eq!(&plan, &compile(&reversed, &inventory));
        prop_assert_eq!(plan.content_hash, compile(&policies, &inventory).content_hash);
    }
}
