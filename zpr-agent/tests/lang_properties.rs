//! Property tests: generated statements print and read back to themselves,
//! and `fmt` is idempotent and meaning-preserving on messy generated files
//! (random keyword case, blank runs, line breaks inside statements, comments,
//! optional `endpoints`, filter placement and separators).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use zpr_agent::lang::{
    Attribute, ConnectionState, Endpoint, Filter, IpPrefix, Policy, PortRange, Protocol, Scope,
    Span, Spanned, Statement, StatementId, format_source, format_statement, parse,
};

fn spanned<T>(node: T) -> Spanned<T> {
    Spanned {
        node,
        span: Span::default(),
    }
}

/// Keys start with a letter that is not a hex digit, so no attribute reads
/// like an IPv6 address (such attributes cannot be written at all).
fn name() -> impl Strategy<Value = String> {
    "[g-zG-Z][A-Za-z0-9_-]{0,11}"
}

fn attribute() -> impl Strategy<Value = Attribute> {
    let bare_value = "[A-Za-z0-9_-][A-Za-z0-9_:-]{0,10}";
    let quoted_value = "[A-Za-z0-9 .'#:,=_\u{e9}\u{2019}-]{1,16}";
    (
        proptest::option::of(name()),
        name(),
        prop_oneof![bare_value, quoted_value],
    )
        .prop_map(|(namespace, key, value)| Attribute {
            namespace: namespace.map(Into::into),
            key: key.into(),
            value: value.into(),
        })
}

fn prefix() -> impl Strategy<Value = IpPrefix> {
    let v4 = (any::<u32>(), 0u8..=32).prop_map(|(bits, len)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        IpPrefix {
            addr: IpAddr::V4(Ipv4Addr::from(bits & mask)),
            len,
        }
    });
    let v6 = (any::<u128>(), 0u8..=128).prop_map(|(bits, len)| {
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        IpPrefix {
            addr: IpAddr::V6(Ipv6Addr::from(bits & mask)),
            len,
        }
    });
    prop_oneof![v4, v6]
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop_oneof![
        3 => attribute().prop_map(Endpoint::Attribute),
        1 => prefix().prop_map(Endpoint::Prefix),
        1 => Just(Endpoint::AllEndpoints),
        1 => Just(Endpoint::OsnServices),
    ]
}

fn ports() -> impl Strategy<Value = Vec<PortRange>> {
    proptest::collection::vec(
        (1u16..=65535, 1u16..=65535).prop_map(|(a, b)| PortRange {
            low: a.min(b),
            high: a.max(b),
        }),
        0..4,
    )
}

fn filters() -> impl Strategy<Value = Vec<Filter>> {
    let protocol = prop_oneof![
        ports().prop_map(|ports| Protocol::Tcp { ports }),
        ports().prop_map(|ports| Protocol::Udp { ports }),
        Just(Protocol::Icmp),
        Just(Protocol::Icmpv6),
    ];
    let state = prop_oneof![
        Just(ConnectionState::Stateful),
        Just(ConnectionState::Stateless)
    ];
    (
        proptest::option::of(protocol),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(state),
        any::<u64>(),
    )
        .prop_map(|(protocol, icmp_type, icmp_code, state, order)| {
            let icmp = matches!(protocol, Some(Protocol::Icmp | Protocol::Icmpv6));
            let mut filters: Vec<Filter> = protocol.map(Filter::Protocol).into_iter().collect();
            if icmp {
                filters.extend(icmp_type.map(Filter::IcmpType));
                filters.extend(icmp_code.map(Filter::IcmpCode));
            }
            filters.extend(state.map(Filter::ConnectionState));
            // Filters keep their written order, whatever it is.
            let len = filters.len().max(1);
            filters.rotate_left((order as usize) % len);
            filters
        })
}

fn is_address(endpoint: &Endpoint) -> bool {
    matches!(endpoint, Endpoint::Prefix(_) | Endpoint::OsnServices)
}

/// Statements that satisfy the validator's rules.
fn statement() -> impl Strategy<Value = Statement> {
    let same_vcn = (attribute(), endpoint(), endpoint(), filters())
        .prop_filter("rules 3 and 4", |(_, source, destination, _)| {
            !(source == &Endpoint::AllEndpoints && destination == &Endpoint::AllEndpoints)
                && !(is_address(source) && is_address(destination))
        })
        .prop_map(|(vcn, source, destination, filters)| {
            build(
                Scope::SameVcn { vcn: spanned(vcn) },
                source,
                destination,
                filters,
            )
        });
    let cross_vcn = (
        attribute(),
        attribute(),
        attribute(),
        attribute(),
        filters(),
    )
        .prop_map(
            |(source_vcn, destination_vcn, source, destination, filters)| {
                build(
                    Scope::CrossVcn {
                        source_vcn: spanned(source_vcn),
                        destination_vcn: spanned(destination_vcn),
                    },
                    Endpoint::Attribute(source),
                    Endpoint::Attribute(destination),
                    filters,
                )
            },
        );
    prop_oneof![same_vcn, cross_vcn]
}

fn build(scope: Scope, source: Endpoint, destination: Endpoint, filters: Vec<Filter>) -> Statement {
    Statement::built(
        StatementId {
            policy: "p".into(),
            line: 1,
        },
        scope,
        source,
        destination,
        filters,
    )
}

/// Random choices drawn from a byte string proptest generates (and shrinks).
struct Noise {
    bytes: Vec<u8>,
    at: usize,
}

impl Noise {
    fn pick(&mut self, choices: usize) -> usize {
        let byte = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        usize::from(byte) % choices
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.pick(one_in) == 0
    }

    fn keyword(&mut self, word: &str) -> String {
        match self.pick(3) {
            0 => word.to_owned(),
            1 => word.to_uppercase(),
            _ => word
                .chars()
                .map(|c| {
                    if self.chance(2) {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect(),
        }
    }

    fn blank(&mut self) -> &'static str {
        [" ", " ", "  ", "\t", " \t "][self.pick(5)]
    }
}

/// Writes a statement the way a careless person might, as a list of words
/// (breaking lines only where the statement is still incomplete).
fn messy(statement: &Statement, noise: &mut Noise) -> String {
    let mut words: Vec<String> = Vec::new();
    let filters: Vec<String> = statement
        .filters
        .iter()
        .map(|filter| messy_filter(&filter.node, noise))
        .collect();
    // How many filters stand in the first of two possible places.
    let split = noise.pick(filters.len() + 1);
    let filter_words = |words: &mut Vec<String>, filters: &[String], noise: &mut Noise| {
        for (index, filter) in filters.iter().enumerate() {
            let separator = if index == 0 {
                noise.keyword("with")
            } else {
                [",", "and", "with", ", and"][noise.pick(4)].to_owned()
            };
            if separator == "," && noise.chance(2) {
                // A comma may touch the previous word.
                let previous = words.pop().unwrap_or_default();
                words.push(format!("{previous},"));
            } else {
                words.push(separator);
            }
            words.push(filter.clone());
        }
    };
    // Index of the first word after which a line break would end the statement.
    let complete_at;
    match &statement.scope {
        Scope::SameVcn { vcn } => {
            words.push(noise.keyword("in"));
            words.push(messy_attribute(&vcn.node, noise));
            words.push(noise.keyword("VCN"));
            words.push(noise.keyword("allow"));
            messy_endpoint(&statement.source.node, &mut words, noise);
            filter_words(&mut words, &filters[..split], noise);
            words.push(noise.keyword("to"));
            words.push(noise.keyword("connect"));
            words.push(noise.keyword("to"));
            complete_at = words.len();
            messy_endpoint(&statement.destination.node, &mut words, noise);
            filter_words(&mut words, &filters[split..], noise);
        }
        Scope::CrossVcn {
            source_vcn,
            destination_vcn,
        } => {
            words.push(noise.keyword("allow"));
            messy_endpoint(&statement.source.node, &mut words, noise);
            words.push(noise.keyword("in"));
            words.push(messy_attribute(&source_vcn.node, noise));
            words.push(noise.keyword("VCN"));
            words.push(noise.keyword("to"));
            words.push(noise.keyword("connect"));
            words.push(noise.keyword("to"));
            messy_endpoint(&statement.destination.node, &mut words, noise);
            filter_words(&mut words, &filters[..split], noise);
            words.push(noise.keyword("in"));
            words.push(messy_attribute(&destination_vcn.node, noise));
            complete_at = words.len();
            words.push(noise.keyword("VCN"));
            filter_words(&mut words, &filters[split..], noise);
        }
    }
    let mut text = String::new();
    for (index, word) in words.iter().enumerate() {
        if index > 0 {
            if index <= complete_at && noise.chance(8) {
                if noise.chance(3) {
                    text += "  # a comment inside";
                }
                text += "\n";
                text += ["", "  ", "\t"][noise.pick(3)];
            } else {
                text += noise.blank();
            }
        }
        text += word;
    }
    text
}

fn messy_attribute(attribute: &Attribute, noise: &mut Noise) -> String {
    let text = match &attribute.namespace {
        Some(namespace) => format!("{namespace}.{}:{}", attribute.key, attribute.value),
        None => format!("{}:{}", attribute.key, attribute.value),
    };
    let bare = attribute
        .value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'));
    if bare && !noise.chance(4) {
        text
    } else {
        format!("'{}'", text.replace('\'', "''"))
    }
}

fn messy_endpoint(endpoint: &Endpoint, words: &mut Vec<String>, noise: &mut Noise) {
    match endpoint {
        Endpoint::Attribute(attribute) => words.push(messy_attribute(attribute, noise)),
        Endpoint::Prefix(prefix) => {
            let full = if prefix.addr.is_ipv4() { 32 } else { 128 };
            let text = if prefix.len == full && !noise.chance(3) {
                prefix.addr.to_string()
            } else {
                format!("{}/{}", prefix.addr, prefix.len)
            };
            let bare_allowed = prefix.addr.is_ipv4() && !text.contains('/');
            words.push(if bare_allowed && noise.chance(2) {
                text
            } else {
                format!("'{text}'")
            });
        }
        Endpoint::AllEndpoints => {
            words.push(noise.keyword("all-endpoints"));
            return;
        }
        Endpoint::OsnServices => words.push(match noise.pick(3) {
            0 => noise.keyword("osn-services-ip-addresses"),
            1 => noise.keyword("osn-services-ip-endpoints"),
            _ => "'osn-services-ip-addresses'".to_owned(),
        }),
    }
    if noise.chance(2) {
        words.push(noise.keyword("endpoints"));
    }
}

fn messy_filter(filter: &Filter, noise: &mut Noise) -> String {
    let (name, value) = match filter {
        Filter::Protocol(protocol) => {
            let (name, ports) = match protocol {
                Protocol::Tcp { ports } => ("tcp", ports.as_slice()),
                Protocol::Udp { ports } => ("udp", ports.as_slice()),
                Protocol::Icmp => ("icmp", &[][..]),
                Protocol::Icmpv6 => ("icmpv6", &[][..]),
            };
            let ports: Vec<String> = ports
                .iter()
                .map(|range| {
                    if range.low == range.high && noise.chance(2) {
                        range.low.to_string()
                    } else {
                        format!("{}-{}", range.low, range.high)
                    }
                })
                .collect();
            let value = if ports.is_empty() {
                noise.keyword(name)
            } else {
                format!(
                    "{}/{}",
                    noise.keyword(name),
                    ports.join([",", ", "][noise.pick(2)])
                )
            };
            ("protocol", value)
        }
        Filter::IcmpType(number) => ("protocol.icmp.type", number.to_string()),
        Filter::IcmpCode(number) => ("protocol.icmp.code", number.to_string()),
        Filter::ConnectionState(ConnectionState::Stateful) => {
            ("connection-state", noise.keyword("stateful"))
        }
        Filter::ConnectionState(ConnectionState::Stateless) => {
            ("connection-state", noise.keyword("stateless"))
        }
    };
    let equals = ["=", " = ", "= ", " ="][noise.pick(4)];
    format!("{}{equals}'{value}'", noise.keyword(name))
}

/// The statements with identities dropped (lines change under `fmt`).
fn without_ids(policy: &Policy) -> Vec<Statement> {
    policy
        .statements
        .iter()
        .map(|statement| Statement {
            id: StatementId {
                policy: "p".into(),
                line: 1,
            },
            ..statement.clone()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printed_statements_read_back_to_themselves(statement in statement()) {
        let text = format_statement(&statement);
        let parsed = parse("p", &text)
            .unwrap_or_else(|errors| panic!("{text:?} fails: {errors:#?}"));
        prop_assert_eq!(&parsed.policy.statements, &vec![statement]);
        prop_assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    }

    #[test]
    fn fmt_is_idempotent_and_keeps_the_meaning_of_messy_files(
        statements in proptest::collection::vec(statement(), 1..5),
        noise in proptest::collection::vec(any::<u8>(), 256),
    ) {
        let mut noise = Noise { bytes: noise, at: 0 };
        let mut text = String::new();
        for statement in &statements {
            if noise.chance(3) {
                text += "# comment line\n";
            }
            if noise.chance(3) {
                text += "\n \n";
            }
            text += ["", " ", "\t"][noise.pick(3)];
            text += &messy(statement, &mut noise);
            text += ["", "  # trailing", " "][noise.pick(3)];
            text += ["\n", "\r\n"][noise.pick(2)];
        }
        let original = parse("p", &text)
            .unwrap_or_else(|errors| panic!("messy {text:?} fails: {errors:#?}"));
        prop_assert_eq!(without_ids(&original.policy), statements);

        let formatted = format_source("p", &text).expect("valid input formats");
        let again = format_source("p", &formatted).expect("fmt output formats");
        prop_assert_eq!(&again, &formatted);
        let reparsed = parse("p", &formatted).expect("fmt output parses");
        prop_assert_eq!(without_ids(&reparsed.policy), without_ids(&original.policy));
        prop_assert_eq!(
            formatted.matches("comment").count(),
            text.matches("comment").count(),
            "comments are kept"
        );
    }
}
