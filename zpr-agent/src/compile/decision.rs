//! What both evaluators take and give: the facts of a packet, the side it is
//! seen from, and the decision. The reference evaluator and the Plan lookup
//! share these types and nothing else.

use std::fmt;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

use crate::inventory::Mode;
use crate::lang::StatementId;

pub const PROTOCOL_ICMP: u8 = 1;
pub const PROTOCOL_TCP: u8 = 6;
pub const PROTOCOL_UDP: u8 = 17;
pub const PROTOCOL_ICMPV6: u8 = 58;

/// ICMPv6 router solicitation (133) to redirect (137): neighbour discovery,
/// without which IPv6 does not work, so it is always allowed.
pub const NEIGHBOUR_DISCOVERY_TYPES: std::ops::RangeInclusive<u8> = 133..=137;

/// The L3/L4 facts a decision depends on (the first packet of a flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PacketFacts {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (IPv6: the upper-layer next header).
    pub protocol: u8,
    /// Destination port; only read for TCP and UDP.
    pub dst_port: u16,
    /// Only read for ICMP and ICMPv6.
    pub icmp_type: u8,
    pub icmp_code: u8,
}

impl PacketFacts {
    fn new(src: IpAddr, dst: IpAddr, protocol: u8) -> PacketFacts {
        PacketFacts {
            src,
            dst,
            protocol,
            dst_port: 0,
            icmp_type: 0,
            icmp_code: 0,
        }
    }

    pub fn tcp(src: IpAddr, dst: IpAddr, dst_port: u16) -> PacketFacts {
        PacketFacts {
            dst_port,
            ..PacketFacts::new(src, dst, PROTOCOL_TCP)
        }
    }

    pub fn udp(src: IpAddr, dst: IpAddr, dst_port: u16) -> PacketFacts {
        PacketFacts {
            dst_port,
            ..PacketFacts::new(src, dst, PROTOCOL_UDP)
        }
    }

    /// ICMP for IPv4 sources, ICMPv6 for IPv6 ones.
    pub fn icmp(src: IpAddr, dst: IpAddr, icmp_type: u8, icmp_code: u8) -> PacketFacts {
        let protocol = if src.is_ipv4() {
            PROTOCOL_ICMP
        } else {
            PROTOCOL_ICMPV6
        };
        PacketFacts {
            icmp_type,
            icmp_code,
            ..PacketFacts::new(src, dst, protocol)
        }
    }

    /// Any other protocol: only its number counts.
    pub fn other(src: IpAddr, dst: IpAddr, protocol: u8) -> PacketFacts {
        PacketFacts::new(src, dst, protocol)
    }

    pub fn has_ports(&self) -> bool {
        matches!(self.protocol, PROTOCOL_TCP | PROTOCOL_UDP)
    }

    pub fn is_icmp(&self) -> bool {
        matches!(self.protocol, PROTOCOL_ICMP | PROTOCOL_ICMPV6)
    }

    pub fn is_neighbour_discovery(&self) -> bool {
        self.protocol == PROTOCOL_ICMPV6 && NEIGHBOUR_DISCOVERY_TYPES.contains(&self.icmp_type)
    }
}

/// `tcp/22`, `icmp type 8 code 0`, `protocol 47`.
impl fmt::Display for PacketFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            PROTOCOL_TCP => write!(f, "tcp/{}", self.dst_port),
            PROTOCOL_UDP => write!(f, "udp/{}", self.dst_port),
            PROTOCOL_ICMP => write!(f, "icmp type {} code {}", self.icmp_type, self.icmp_code),
            PROTOCOL_ICMPV6 => {
                write!(f, "icmpv6 type {} code {}", self.icmp_type, self.icmp_code)
            }
            other => write!(f, "protocol {other}"),
        }
    }
}

/// Which way a packet crosses the local endpoint's vNIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Leaving the local endpoint: it is the source.
    Egress,
    /// Toward the local endpoint: it is the destination.
    Ingress,
}

impl Direction {
    /// The direction of the flow's replies.
    pub const fn opposite(self) -> Direction {
        match self {
            Direction::Egress => Direction::Ingress,
            Direction::Ingress => Direction::Egress,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenyReason {
    /// No statement allows the packet.
    NoPolicy,
    /// A packet left a protected endpoint with a source that is not its own.
    SpoofedSource,
    /// A packet toward a protected endpoint is addressed to someone else;
    /// the endpoint's identity is that of its own addresses only.
    ForeignDestination,
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DenyReason::NoPolicy => "no-policy",
            DenyReason::SpoofedSource => "spoofed-source",
            DenyReason::ForeignDestination => "foreign-destination",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "decision")]
pub enum Decision {
    /// Allowed by these statements (sorted); stateless only when every one
    /// of them is.
    Allow {
        #[serde(serialize_with = "statement_ids")]
        statements: Vec<StatementId>,
        stateless: bool,
    },
    /// ICMPv6 neighbour discovery, allowed without a statement.
    NeighbourDiscovery,
    Deny {
        reason: DenyReason,
    },
    /// The local endpoint is untagged: zpr does not touch its traffic.
    NotEnforced,
}

impl Decision {
    pub fn is_deny(&self) -> bool {
        matches!(self, Decision::Deny { .. })
    }
}

/// A decision and the mode it is taken in: in audit mode a deny is
/// reported and the packet passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    #[serde(flatten)]
    pub decision: Decision,
    pub mode: Mode,
}

impl Verdict {
    pub fn passes(&self) -> bool {
        !self.decision.is_deny() || self.mode == Mode::Audit
    }
}

/// The local endpoint named in a decision does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEndpoint(pub String);

impl fmt::Display for UnknownEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no endpoint named '{}'", self.0)
    }
}

impl std::error::Error for UnknownEndpoint {}

/// Statement ids print as `policy:line` in JSON.
pub(crate) fn statement_ids<S: Serializer>(ids: &[StatementId], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ids.iter().map(ToString::to_string))
}
