//! Network filters (section 5 of the dialect): names, typed values, port and
//! ICMP ranges (rule 6), and the rules that relate filters of one statement.

use crate::lang::ast::{ConnectionState, Filter, PortRange, Protocol, Span, Spanned};
use crate::lang::cst::RawFilter;
use crate::lang::diagnostic::Diagnostic;
use crate::lang::lexer::quoted_content;
use crate::lang::suggest::{closest, protocol_for_service};

const PROTOCOL: &str = "protocol";
const ICMP_TYPE: &str = "protocol.icmp.type";
const ICMP_CODE: &str = "protocol.icmp.code";
const CONNECTION_STATE: &str = "connection-state";

type ValueParser = fn(&str) -> Result<Filter, ValueError>;

/// Every filter name with the parser of its (unquoted) value.
const FILTERS: [(&str, ValueParser); 4] = [
    (PROTOCOL, |value| {
        parse_protocol(value).map(Filter::Protocol)
    }),
    (ICMP_TYPE, |value| {
        parse_icmp_number(value).map(Filter::IcmpType)
    }),
    (ICMP_CODE, |value| {
        parse_icmp_number(value).map(Filter::IcmpCode)
    }),
    (CONNECTION_STATE, |value| {
        parse_connection_state(value).map(Filter::ConnectionState)
    }),
];

fn filter_names() -> impl Iterator<Item = &'static str> {
    FILTERS.iter().map(|&(name, _)| name)
}

/// The name a filter is written with.
pub fn filter_name(filter: &Filter) -> &'static str {
    match filter {
        Filter::Protocol(_) => PROTOCOL,
        Filter::IcmpType(_) => ICMP_TYPE,
        Filter::IcmpCode(_) => ICMP_CODE,
        Filter::ConnectionState(_) => CONNECTION_STATE,
    }
}

/// The value a filter is written with, without quotes.
pub fn filter_value(filter: &Filter) -> String {
    match filter {
        Filter::Protocol(protocol) => protocol_text(protocol),
        Filter::IcmpType(number) | Filter::IcmpCode(number) => number.to_string(),
        Filter::ConnectionState(ConnectionState::Stateful) => "stateful".to_owned(),
        Filter::ConnectionState(ConnectionState::Stateless) => "stateless".to_owned(),
    }
}

fn protocol_text(protocol: &Protocol) -> String {
    let (name, ports) = match protocol {
        Protocol::Tcp { ports } => ("tcp", ports),
        Protocol::Udp { ports } => ("udp", ports),
        Protocol::Icmp => return "icmp".to_owned(),
        Protocol::Icmpv6 => return "icmpv6".to_owned(),
    };
    if ports.is_empty() {
        return name.to_owned();
    }
    let ports: Vec<String> = ports
        .iter()
        .map(|range| match range.low == range.high {
            true => range.low.to_string(),
            false => format!("{}-{}", range.low, range.high),
        })
        .collect();
    format!("{name}/{}", ports.join(","))
}

/// Types every filter of a statement and checks how they combine. Filters
/// that fail are reported into `diagnostics` and left out.
pub fn lower_filters(
    raw: &[RawFilter],
    source: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Spanned<Filter>> {
    let mut filters: Vec<Spanned<Filter>> = Vec::with_capacity(raw.len());
    for filter in raw {
        let Some(node) = lower_filter(filter, source, diagnostics) else {
            continue;
        };
        let name = filter_name(&node);
        if filters.iter().any(|seen| filter_name(&seen.node) == name) {
            diagnostics.push(
                Diagnostic::error(
                    format!("'{name}' is given twice in one statement"),
                    filter.span,
                )
                .with_label("second one")
                .with_help(
                    "keep one: a statement's filters all restrict the same connection, \
                         so a filter can stand only once (write two statements to allow both)",
                ),
            );
            continue;
        }
        filters.push(Spanned {
            node,
            span: filter.span,
        });
    }
    check_icmp_fields(&filters, diagnostics);
    filters
}

fn lower_filter(
    filter: &RawFilter,
    source: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Filter> {
    let name = &source[filter.name.start..filter.name.end];
    let value = quoted_content(&source[filter.value.start..filter.value.end]);
    let value = value.trim();
    let error = |problem: ValueError| {
        Diagnostic::error(problem.message, filter.value).with_help(problem.help)
    };
    let result = match FILTERS
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
    {
        Some((_, parse_value)) => parse_value(value).map_err(error),
        None => Err(unknown_filter(name, filter.name)),
    };
    result
        .map_err(|diagnostic| diagnostics.push(diagnostic))
        .ok()
}

fn unknown_filter(name: &str, span: Span) -> Diagnostic {
    let diagnostic = Diagnostic::error(format!("unknown filter '{name}'"), span);
    let lower = name.to_ascii_lowercase();
    let help = if let Some(known) = closest(name, filter_names()) {
        format!("did you mean '{known}'?")
    } else if lower.starts_with("port") {
        "ports go in the protocol filter: protocol='tcp/22'".to_owned()
    } else if lower.contains("state") {
        format!("did you mean '{CONNECTION_STATE}'?")
    } else if lower.contains("icmp") {
        format!("ICMP filters are '{ICMP_TYPE}' and '{ICMP_CODE}'")
    } else if lower == "ip-address" {
        "name the address as the source or destination instead: '10.0.0.0/16'".to_owned()
    } else {
        let names: Vec<String> = filter_names().map(|f| format!("'{f}'")).collect();
        format!("the filters are {}", names.join(", "))
    };
    diagnostic.with_help(help)
}

/// Why a filter value is wrong, and how to write it instead.
#[derive(Debug, PartialEq, Eq)]
struct ValueError {
    message: String,
    help: String,
}

fn value_error<T>(message: impl Into<String>, help: impl Into<String>) -> Result<T, ValueError> {
    Err(ValueError {
        message: message.into(),
        help: help.into(),
    })
}

const PORT_FORMS: &str = "ports are numbers 1..65535: 'tcp/22', a range 'tcp/1000-2000' or a \
                          list 'tcp/22,1521-1522'";

fn parse_protocol(value: &str) -> Result<Protocol, ValueError> {
    let (name, ports) = match value.split_once('/') {
        Some((name, ports)) => (name.trim(), Some(ports)),
        None => (value, None),
    };
    let port_list = || ports.map_or(Ok(Vec::new()), |ports| parse_ports(name, ports));
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "tcp" => Ok(Protocol::Tcp {
            ports: port_list()?,
        }),
        "udp" => Ok(Protocol::Udp {
            ports: port_list()?,
        }),
        "icmp" | "icmpv6" if ports.is_some() => value_error(
            format!("{lower} has no ports"),
            format!(
                "write protocol='{lower}' and select messages with {ICMP_TYPE} and {ICMP_CODE}"
            ),
        ),
        "icmp" => Ok(Protocol::Icmp),
        "icmpv6" => Ok(Protocol::Icmpv6),
        _ => match protocol_for_service(name) {
            Some(protocol) => value_error(
                format!("'{name}' is a service name, not a protocol"),
                format!("policies name the protocol and port: use '{protocol}'"),
            ),
            None if name.parse::<u8>().is_ok() => value_error(
                format!("protocols are named, not numbered: '{name}'"),
                "use 'tcp', 'udp', 'icmp' or 'icmpv6'",
            ),
            None => value_error(
                format!("unknown protocol '{name}'"),
                "the protocol is 'tcp', 'udp', 'icmp' or 'icmpv6', with ports for tcp and \
                 udp, e.g. 'tcp/22'",
            ),
        },
    }
}

fn parse_ports(protocol: &str, ports: &str) -> Result<Vec<PortRange>, ValueError> {
    let protocol = protocol.to_ascii_lowercase();
    if ports.trim().is_empty() {
        return value_error(
            format!("missing port after '{protocol}/'"),
            format!("write e.g. '{protocol}/22', or '{protocol}' alone for every port"),
        );
    }
    ports
        .split(',')
        .map(|item| {
            let (low, high) = match item.split_once('-') {
                Some((low, high)) => (parse_port(&protocol, low)?, parse_port(&protocol, high)?),
                None => {
                    let port = parse_port(&protocol, item)?;
                    (port, port)
                }
            };
            if low > high {
                return value_error(
                    format!("port range {low}-{high} runs backwards"),
                    format!("write {high}-{low}"),
                );
            }
            Ok(PortRange { low, high })
        })
        .collect()
}

fn parse_port(protocol: &str, text: &str) -> Result<u16, ValueError> {
    let text = text.trim();
    if text.is_empty() {
        return value_error(format!("missing port in a '{protocol}/' list"), PORT_FORMS);
    }
    if !text.chars().all(|c| c.is_ascii_digit()) {
        return match protocol_for_service(text) {
            Some(fixed) => value_error(
                format!("'{text}' is a service name, not a port"),
                format!("ports are numbers: use '{fixed}'"),
            ),
            None => value_error(format!("port '{text}' is not a number"), PORT_FORMS),
        };
    }
    match text.parse::<u16>() {
        Ok(port) if port >= 1 => Ok(port),
        _ => value_error(format!("port {text} is out of range"), PORT_FORMS),
    }
}

fn parse_icmp_number(value: &str) -> Result<u8, ValueError> {
    match value.parse::<u8>() {
        Ok(number) => Ok(number),
        Err(_) if value.chars().all(|c| c.is_ascii_digit()) && !value.is_empty() => value_error(
            format!("ICMP number {value} is out of range"),
            "ICMP type and code are 0..255",
        ),
        Err(_) => value_error(
            format!("'{value}' is not an ICMP number"),
            "write a number 0..255, e.g. '8' for echo request",
        ),
    }
}

fn parse_connection_state(value: &str) -> Result<ConnectionState, ValueError> {
    if value.eq_ignore_ascii_case("stateful") {
        Ok(ConnectionState::Stateful)
    } else if value.eq_ignore_ascii_case("stateless") {
        Ok(ConnectionState::Stateless)
    } else {
        value_error(
            format!("unknown connection-state '{value}'"),
            "connection-state is 'stateful' (the default) or 'stateless'",
        )
    }
}

/// `protocol.icmp.type` and `.code` mean something only for ICMP traffic.
fn check_icmp_fields(filters: &[Spanned<Filter>], diagnostics: &mut Vec<Diagnostic>) {
    let protocol = filters.iter().find_map(|filter| match &filter.node {
        Filter::Protocol(protocol) => Some(protocol),
        _ => None,
    });
    if matches!(protocol, Some(Protocol::Icmp | Protocol::Icmpv6))
        || !filters
            .iter()
            .any(|filter| matches!(filter.node, Filter::IcmpType(_) | Filter::IcmpCode(_)))
    {
        return;
    }
    let context = match protocol {
        Some(protocol) => format!("this statement's protocol is '{}'", protocol_text(protocol)),
        None => "this statement has no protocol filter".to_owned(),
    };
    for filter in filters {
        if matches!(filter.node, Filter::IcmpType(_) | Filter::IcmpCode(_)) {
            let name = filter_name(&filter.node);
            diagnostics.push(
                Diagnostic::error(
                    format!("'{name}' needs protocol='icmp' or protocol='icmpv6'"),
                    filter.span,
                )
                .with_help(format!(
                    "{context}; add protocol='icmp' (or 'icmpv6') or remove '{name}'"
                )),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols() {
        let ports = |ranges: &[(u16, u16)]| {
            ranges
                .iter()
                .map(|&(low, high)| PortRange { low, high })
                .collect()
        };
        assert_eq!(parse_protocol("tcp"), Ok(Protocol::Tcp { ports: vec![] }));
        assert_eq!(
            parse_protocol("TCP/22"),
            Ok(Protocol::Tcp {
                ports: ports(&[(22, 22)])
            })
        );
        assert_eq!(
            parse_protocol("udp/22,1521-1522,6200"),
            Ok(Protocol::Udp {
                ports: ports(&[(22, 22), (1521, 1522), (6200, 6200)])
            })
        );
        assert_eq!(parse_protocol("icmpv6"), Ok(Protocol::Icmpv6));
        for (value, expected) in [
            ("ssh", "use 'tcp/22'"),
            ("tcp/ssh", "use 'tcp/22'"),
            ("tcp/", "missing port"),
            ("tcp/0", "out of range"),
            ("tcp/65536", "out of range"),
            ("tcp/2000-1000", "runs backwards"),
            ("tcp/22,", "missing port"),
            ("tcp/x", "not a number"),
            ("icmp/8", "icmp has no ports"),
            ("6", "protocols are named"),
            ("sctp", "unknown protocol"),
        ] {
            let problem = parse_protocol(value).unwrap_err();
            let text = format!("{} / {}", problem.message, problem.help);
            assert!(text.contains(expected), "{value}: {text}");
        }
    }

    #[test]
    fn values_print_back() {
        for value in ["tcp", "udp/1-65535", "tcp/22,1521-1522,6200", "icmp"] {
            assert_eq!(protocol_text(&parse_protocol(value).unwrap()), value);
        }
        assert!(
            parse_icmp_number("256")
                .unwrap_err()
                .help
                .contains("0..255")
        );
        assert_eq!(parse_icmp_number("255"), Ok(255));
        assert!(
            parse_connection_state("established")
                .unwrap_err()
                .help
                .contains("'stateless'")
        );
    }
}
