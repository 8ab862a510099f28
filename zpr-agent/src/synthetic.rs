//! Generated inventories and policies of a chosen size, for scale tests and
//! benchmarks. Pure and deterministic: the same arguments give the same
//! text and the same values.
//!
//! The shape imitates a large tenancy: VCNs grouped into zones (a zone is
//! the VCN attribute, shared by several VCNs), apps of ten endpoints each
//! living in one VCN, one endpoint in ten untagged, one in a hundred local
//! to this host. Statements are mostly app-to-app in one zone, with
//! cross-zone ones, external CIDR sources, port ranges and lists, stateless
//! UDP, ICMP, OSN and all-endpoints destinations.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::inventory::Inventory;
use crate::lang::{
    Attribute, ConnectionState, Endpoint, Filter, IpPrefix, Policy, PortRange, Protocol, Scope,
    Span, Spanned, Statement, StatementId,
};

/// The policy's name, so statement ids are `synthetic:LINE`.
pub const POLICY_NAME: &str = "synthetic";
const NAMESPACE: &str = "syn";
const ENDPOINTS_PER_APP: usize = 10;
const ENDPOINTS_PER_VCN: usize = 200;
const VCNS_PER_ZONE: usize = 5;
const TIERS: [&str; 3] = ["web", "app", "db"];
const PORTS: [u16; 12] = [
    22, 53, 80, 443, 1521, 3306, 5432, 6379, 8080, 8443, 9092, 9200,
];

/// One generated input set, as text (what files would hold) and as values
/// (what parsing that text gives).
pub struct Synthetic {
    pub inventory_yaml: String,
    pub inventory: Inventory,
    /// One statement per line: statement `synthetic:N` is on line N.
    pub policy_text: String,
    pub policies: Vec<Policy>,
}

/// `statements` statements over `endpoints` endpoints, chosen by `seed`.
pub fn generate(statements: usize, endpoints: usize, seed: u64) -> Synthetic {
    let shape = Shape::new(endpoints.max(1));
    let inventory_yaml = shape.inventory_yaml();
    let inventory = match Inventory::from_yaml_str(&inventory_yaml) {
        Ok(inventory) => inventory,
        Err(errors) => panic!("the generator wrote an invalid inventory: {errors}"),
    };
    let mut random = SplitMix64(seed);
    let statements: Vec<Statement> = (1..=statements)
        .map(|line| shape.statement(&mut random, line as u32))
        .collect();
    let mut policy_text = String::new();
    for statement in &statements {
        let _ = writeln!(policy_text, "{}", text(statement));
    }
    Synthetic {
        inventory_yaml,
        inventory,
        policy_text,
        policies: vec![Policy {
            name: POLICY_NAME.to_owned(),
            statements,
        }],
    }
}

struct Shape {
    endpoints: usize,
    vcns: usize,
    zones: usize,
    /// Apps by the zone of their VCN.
    apps_in_zone: Vec<Vec<usize>>,
}

impl Shape {
    fn new(endpoints: usize) -> Shape {
        let apps = endpoints.div_ceil(ENDPOINTS_PER_APP);
        let vcns = endpoints.div_ceil(ENDPOINTS_PER_VCN).clamp(1, 250);
        let zones = vcns.div_ceil(VCNS_PER_ZONE).max(2);
        let mut apps_in_zone = vec![Vec::new(); zones];
        for app in 0..apps {
            apps_in_zone[Shape::zone_of_vcn(app % vcns, zones)].push(app);
        }
        Shape {
            endpoints,
            vcns,
            zones,
            apps_in_zone,
        }
    }

    fn zone_of_vcn(vcn: usize, zones: usize) -> usize {
        vcn % zones
    }

    fn inventory_yaml(&self) -> String {
        let mut yaml = format!(
            "namespaces:\n  - name: {NAMESPACE}\n    attributes:\n      \
             - {{ key: zone, type: list, values: [{}] }}\n      \
             - {{ key: app, type: freeform }}\n      \
             - {{ key: tier, type: list, values: [{}] }}\nvcns:\n",
            (0..self.zones)
                .map(|z| format!("z{z}"))
                .collect::<Vec<_>>()
                .join(", "),
            TIERS.join(", ")
        );
        for vcn in 0..self.vcns {
            let zone = Shape::zone_of_vcn(vcn, self.zones);
            let _ = writeln!(
                yaml,
                "  - {{ name: vcn{vcn}, cidrs: [10.{vcn}.0.0/16, 'fd00:{vcn:x}::/48'], \
                 security-attribute: {NAMESPACE}.zone:z{zone} }}"
            );
        }
        yaml.push_str("endpoints:\n");
        let mut placed = vec![0usize; self.vcns];
        for endpoint in 0..self.endpoints {
            let app = endpoint / ENDPOINTS_PER_APP;
            let vcn = app % self.vcns;
            let slot = placed[vcn];
            placed[vcn] += 1;
            let v4 = Ipv4Addr::new(10, vcn as u8, (slot / 250) as u8, (slot % 250 + 1) as u8);
            let v6 = Ipv6Addr::new(0xfd00, vcn as u16, 0, 0, 0, 0, 0, slot as u16 + 1);
            let attributes = if endpoint % 10 == 9 {
                String::new()
            } else {
                format!(
                    "{NAMESPACE}.app:a{app}, {NAMESPACE}.tier:{}",
                    TIERS[app % TIERS.len()]
                )
            };
            let interface = if endpoint % 100 == 0 {
                format!(", interface: zs{endpoint}")
            } else {
                String::new()
            };
            let _ = writeln!(
                yaml,
                "  - {{ name: e{endpoint}, vcn: vcn{vcn}, addresses: [{v4}, '{v6}'], \
                 security-attributes: [{attributes}]{interface} }}"
            );
        }
        yaml.push_str("osn-services: [192.0.2.0/24, '2001:db8:5::/48']\n");
        yaml
    }

    fn statement(&self, random: &mut SplitMix64, line: u32) -> Statement {
        let zone = self.busy_zone(random);
        let app = |random: &mut SplitMix64, zone: usize| {
            let apps = &self.apps_in_zone[zone];
            Endpoint::Attribute(attribute(
                "app",
                &format!("a{}", apps[random.below(apps.len())]),
            ))
        };
        let port = |random: &mut SplitMix64| PORTS[random.below(PORTS.len())];
        let tcp = |ports: Vec<PortRange>| Filter::Protocol(Protocol::Tcp { ports });
        let single = |port: u16| PortRange {
            low: port,
            high: port,
        };
        let same_vcn = Scope::SameVcn {
            vcn: spanned(attribute("zone", &format!("z{zone}"))),
        };
        let roll = random.below(100);
        let (scope, source, destination, filters) = match roll {
            0..70 => {
                let filters = vec![tcp(vec![single(port(random))])];
                (same_vcn, app(random, zone), app(random, zone), filters)
            }
            70..80 => {
                let other = self.busy_zone(random);
                let scope = Scope::CrossVcn {
                    source_vcn: spanned(attribute("zone", &format!("z{zone}"))),
                    destination_vcn: spanned(attribute("zone", &format!("z{other}"))),
                };
                let filters = vec![tcp(vec![single(port(random))])];
                (scope, app(random, zone), app(random, other), filters)
            }
            80..88 => {
                let subnet = random.below(64) as u8;
                let source = Endpoint::Prefix(IpPrefix {
                    addr: IpAddr::V4(Ipv4Addr::new(172, 16, subnet, 0)),
                    len: 24,
                });
                (
                    same_vcn,
                    source,
                    app(random, zone),
                    vec![tcp(vec![single(443)])],
                )
            }
            88..93 => {
                let low = 8000 + 100 * random.below(10) as u16;
                let ranges = vec![
                    PortRange {
                        low,
                        high: low + 99,
                    },
                    single(port(random)),
                ];
                (
                    same_vcn,
                    app(random, zone),
                    app(random, zone),
                    vec![tcp(ranges)],
                )
            }
            93..96 => {
                let filters = vec![
                    Filter::Protocol(Protocol::Udp {
                        ports: vec![single(53)],
                    }),
                    Filter::ConnectionState(ConnectionState::Stateless),
                ];
                (same_vcn, app(random, zone), app(random, zone), filters)
            }
            96..98 => {
                let filters = vec![Filter::Protocol(Protocol::Icmp), Filter::IcmpType(8)];
                (same_vcn, app(random, zone), app(random, zone), filters)
            }
            98 => {
                let filters = vec![tcp(vec![single(443)])];
                (same_vcn, app(random, zone), Endpoint::OsnServices, filters)
            }
            _ => {
                let filters = vec![tcp(vec![single(443)])];
                (same_vcn, app(random, zone), Endpoint::AllEndpoints, filters)
            }
        };
        Statement::built(
            StatementId {
                policy: POLICY_NAME.into(),
                line,
            },
            scope,
            source,
            destination,
            filters,
        )
    }

    /// A zone that holds at least one app.
    fn busy_zone(&self, random: &mut SplitMix64) -> usize {
        let zone = random.below(self.zones);
        (zone..zone + self.zones)
            .map(|z| z % self.zones)
            .find(|&z| !self.apps_in_zone[z].is_empty())
            .unwrap_or(0)
    }
}

/// The statement as a policy file line (the subset of the language the
/// generator uses).
fn text(statement: &Statement) -> String {
    let attribute_text = |a: &Attribute| format!("{}.{}:{}", a.namespace(), a.key, a.value);
    let side = |endpoint: &Endpoint| match endpoint {
        Endpoint::Attribute(a) => format!("{} endpoints", attribute_text(a)),
        Endpoint::Prefix(p) => format!("'{}/{}'", p.addr, p.len),
        Endpoint::AllEndpoints => "all-endpoints".to_owned(),
        Endpoint::OsnServices => "osn-services-ip-addresses".to_owned(),
    };
    let filters: Vec<String> = statement
        .filters
        .iter()
        .map(|filter| match &filter.node {
            Filter::Protocol(Protocol::Tcp { ports }) => {
                format!("protocol='tcp/{}'", ports_text(ports))
            }
            Filter::Protocol(Protocol::Udp { ports }) => {
                format!("protocol='udp/{}'", ports_text(ports))
            }
            Filter::Protocol(Protocol::Icmp) => "protocol='icmp'".to_owned(),
            Filter::Protocol(Protocol::Icmpv6) => "protocol='icmpv6'".to_owned(),
            Filter::IcmpType(t) => format!("protocol.icmp.type='{t}'"),
            Filter::IcmpCode(c) => format!("protocol.icmp.code='{c}'"),
            Filter::ConnectionState(ConnectionState::Stateless) => {
                "connection-state='stateless'".to_owned()
            }
            Filter::ConnectionState(ConnectionState::Stateful) => {
                "connection-state='stateful'".to_owned()
            }
        })
        .collect();
    let with = format!("with {}", filters.join(", "));
    let (source, destination) = (
        side(&statement.source.node),
        side(&statement.destination.node),
    );
    match &statement.scope {
        Scope::SameVcn { vcn } => format!(
            "in {} VCN allow {source} to connect to {destination} {with}",
            attribute_text(&vcn.node)
        ),
        Scope::CrossVcn {
            source_vcn,
            destination_vcn,
        } => format!(
            "allow {source} in {} VCN to connect to {destination} {with} in {} VCN",
            attribute_text(&source_vcn.node),
            attribute_text(&destination_vcn.node)
        ),
    }
}

fn ports_text(ports: &[PortRange]) -> String {
    let items: Vec<String> = ports
        .iter()
        .map(|r| match r.low == r.high {
            true => r.low.to_string(),
            false => format!("{}-{}", r.low, r.high),
        })
        .collect();
    items.join(",")
}

fn attribute(key: &str, value: &str) -> Attribute {
    Attribute {
        namespace: Some(NAMESPACE.into()),
        key: key.into(),
        value: value.into(),
    }
}

fn spanned<T>(node: T) -> Spanned<T> {
    Spanned {
        node,
        span: Span::default(),
    }
}

/// A small, fixed pseudo-random sequence (SplitMix64), so the output
/// depends on the seed alone.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough below `bound` (> 0) for generating test data.
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::parse;

    #[test]
    fn text_and_values_say_the_same() {
        let synthetic = generate(300, 120, 7);
        let parsed = parse(POLICY_NAME, &synthetic.policy_text)
            .unwrap_or_else(|errors| panic!("{errors:#?}"));
        assert_eq!(parsed.policy, synthetic.policies[0]);
        assert_eq!(synthetic.policies[0].statements.len(), 300);
        assert_eq!(synthetic.inventory.endpoints().len(), 120);
        let locals = synthetic
            .inventory
            .endpoints()
            .iter()
            .filter(|e| e.interface.is_some());
        assert_eq!(locals.count(), 2);
    }

    #[test]
    fn deterministic_by_seed() {
        let a = generate(50, 40, 1);
        let b = generate(50, 40, 1);
        let c = generate(50, 40, 2);
        assert_eq!(a.policy_text, b.policy_text);
        assert_eq!(a.inventory_yaml, b.inventory_yaml);
        assert_ne!(a.policy_text, c.policy_text);
    }

    #[test]
    fn every_kind_of_statement_appears() {
        let text = generate(2000, 500, 3).policy_text;
        for kind in [
            "in syn.zone:",
            "allow syn.app:",
            "'172.16.",
            "tcp/8",
            "connection-state='stateless'",
            "protocol.icmp.type='8'",
            "osn-services-ip-addresses",
            "all-endpoints",
        ] {
            assert!(text.contains(kind), "no {kind:?}");
        }
    }
}
