//! The L4 half of a policy key: a 24-bit `protocol(8) . port(16)` value and
//! a prefix length, so one longest-prefix lookup finds "this port", "this
//! port range block", "this protocol" or "anything". For ICMP and ICMPv6 the
//! port bits are `type << 8 | code`.

use std::fmt;

use serde::Serialize;

use super::decision::{PROTOCOL_ICMP, PROTOCOL_ICMPV6, PROTOCOL_TCP, PROTOCOL_UDP, PacketFacts};
use crate::lang::{Protocol, Statement};

/// Bits in an L4 key.
pub const L4_BITS: u8 = 24;
/// Prefix length of "this protocol, any port".
pub const PROTOCOL_BITS: u8 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct L4Prefix {
    pub protocol: u8,
    /// Port, or ICMP `type << 8 | code`; bits past the prefix are zero.
    pub port: u16,
    /// 0 = any protocol, 8 = the protocol, 8 + k = the top k port bits.
    pub len: u8,
}

impl L4Prefix {
    pub const ANY: L4Prefix = L4Prefix {
        protocol: 0,
        port: 0,
        len: 0,
    };

    pub fn protocol(protocol: u8) -> L4Prefix {
        L4Prefix {
            protocol,
            port: 0,
            len: PROTOCOL_BITS,
        }
    }

    /// The prefix of `len` bits holding `key`.
    pub fn of_key(key: u32, len: u8) -> L4Prefix {
        let masked = key & mask(len);
        L4Prefix {
            protocol: (masked >> 16) as u8,
            port: (masked & 0xffff) as u16,
            len,
        }
    }

    /// The 24-bit value, for the kernel's LPM key.
    pub fn key(self) -> u32 {
        (u32::from(self.protocol) << 16) | u32::from(self.port)
    }

    pub fn contains_key(self, key: u32) -> bool {
        key & mask(self.len) == self.key()
    }

    pub fn contains(self, other: L4Prefix) -> bool {
        other.len >= self.len && self.contains_key(other.key())
    }

    /// The ports (or ICMP type/code values) the prefix spans.
    fn port_span(self) -> (u16, u16) {
        let free_bits = L4_BITS - self.len.max(PROTOCOL_BITS);
        let last = u32::from(self.port) | ((1u32 << free_bits) - 1);
        (self.port, last as u16)
    }
}

fn mask(len: u8) -> u32 {
    (0xff_ffff_u32 << (L4_BITS - len.min(L4_BITS))) & 0xff_ffff
}

/// The L4 key of a packet, as the kernel builds it.
pub fn packet_key(facts: &PacketFacts) -> u32 {
    let port = if facts.has_ports() {
        facts.dst_port
    } else if facts.is_icmp() {
        (u16::from(facts.icmp_type) << 8) | u16::from(facts.icmp_code)
    } else {
        0
    };
    (u32::from(facts.protocol) << 16) | u32::from(port)
}

/// The prefixes whose union is exactly the packets the statement's
/// filters let through.
pub fn statement_prefixes(statement: &Statement) -> Vec<L4Prefix> {
    let icmp_type = statement.icmp_type();
    let icmp_code = statement.icmp_code();
    if icmp_type.is_some() || icmp_code.is_some() {
        let protocols: &[u8] = match statement.protocol() {
            None => &[PROTOCOL_ICMP, PROTOCOL_ICMPV6],
            Some(Protocol::Icmp) => &[PROTOCOL_ICMP],
            Some(Protocol::Icmpv6) => &[PROTOCOL_ICMPV6],
            // ICMP type and code filters never match TCP or UDP.
            Some(Protocol::Tcp { .. } | Protocol::Udp { .. }) => &[],
        };
        return protocols
            .iter()
            .flat_map(|&protocol| icmp_prefixes(protocol, icmp_type, icmp_code))
            .collect();
    }
    match statement.protocol() {
        None => vec![L4Prefix::ANY],
        Some(Protocol::Icmp) => vec![L4Prefix::protocol(PROTOCOL_ICMP)],
        Some(Protocol::Icmpv6) => vec![L4Prefix::protocol(PROTOCOL_ICMPV6)],
        Some(Protocol::Tcp { ports }) if ports.is_empty() => vec![L4Prefix::protocol(PROTOCOL_TCP)],
        Some(Protocol::Udp { ports }) if ports.is_empty() => vec![L4Prefix::protocol(PROTOCOL_UDP)],
        Some(Protocol::Tcp { ports }) => port_prefixes(PROTOCOL_TCP, ports),
        Some(Protocol::Udp { ports }) => port_prefixes(PROTOCOL_UDP, ports),
    }
}

fn icmp_prefixes(protocol: u8, icmp_type: Option<u8>, icmp_code: Option<u8>) -> Vec<L4Prefix> {
    let prefix = |icmp_type: u8, code: u8, len: u8| L4Prefix {
        protocol,
        port: (u16::from(icmp_type) << 8) | u16::from(code),
        len,
    };
    match (icmp_type, icmp_code) {
        (Some(t), Some(c)) => vec![prefix(t, c, L4_BITS)],
        (Some(t), None) => vec![prefix(t, 0, L4_BITS - 8)],
        // A code without a type: the code sits below the type bits, so
        // every type needs its own entry.
        (None, Some(c)) => (0..=u8::MAX).map(|t| prefix(t, c, L4_BITS)).collect(),
        (None, None) => vec![L4Prefix::protocol(protocol)],
    }
}

fn port_prefixes(protocol: u8, ports: &[crate::lang::PortRange]) -> Vec<L4Prefix> {
    let mut prefixes: Vec<L4Prefix> = ports
        .iter()
        .flat_map(|range| port_range_blocks(range.low, range.high))
        .map(|(port, bits)| L4Prefix {
            protocol,
            port,
            len: PROTOCOL_BITS + bits,
        })
        .collect();
    prefixes.sort();
    prefixes.dedup();
    prefixes
}

/// The fewest aligned blocks `(first port, prefix bits)` whose union is
/// `low..=high`, the way an address range is covered by CIDR blocks.
pub fn port_range_blocks(low: u16, high: u16) -> Vec<(u16, u8)> {
    let mut blocks = Vec::new();
    let mut start = u32::from(low);
    let end = u32::from(high);
    while start <= end {
        let mut size_bits = start.trailing_zeros().min(16);
        while start + (1 << size_bits) - 1 > end {
            size_bits -= 1;
        }
        blocks.push((start as u16, 16 - size_bits as u8));
        start += 1 << size_bits;
    }
    blocks
}

/// `any`, `tcp`, `tcp/80`, `tcp/1024-2047`, `icmp type 8`, `icmp type 8 code 0`.
impl fmt::Display for L4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            return f.write_str("any");
        }
        let name = match self.protocol {
            PROTOCOL_TCP => "tcp",
            PROTOCOL_UDP => "udp",
            PROTOCOL_ICMP => "icmp",
            PROTOCOL_ICMPV6 => "icmpv6",
            other => return write!(f, "protocol {other}"),
        };
        f.write_str(name)?;
        if self.len == PROTOCOL_BITS {
            return Ok(());
        }
        if matches!(self.protocol, PROTOCOL_ICMP | PROTOCOL_ICMPV6) {
            let (first, last) = self.port_span();
            let (first_type, last_type) = (first >> 8, last >> 8);
            if first_type != last_type {
                return write!(f, " type {first_type}-{last_type}");
            }
            write!(f, " type {first_type}")?;
            if self.len == L4_BITS {
                write!(f, " code {}", first & 0xff)?;
            }
            return Ok(());
        }
        match self.port_span() {
            (first, last) if first == last => write!(f, "/{first}"),
            (first, last) => write!(f, "/{first}-{last}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_range_blocks_cover_exactly_and_minimally() {
        assert_eq!(port_range_blocks(80, 80), vec![(80, 16)]);
        assert_eq!(port_range_blocks(1024, 2047), vec![(1024, 6)]);
        assert_eq!(port_range_blocks(1, 65535).len(), 16);
        assert_eq!(port_range_blocks(0, 65535), vec![(0, 0)]);
        assert_eq!(port_range_blocks(1521, 1522), vec![(1521, 16), (1522, 16)]);
        for (low, high) in [(1, 1), (3, 17), (999, 11199), (65534, 65535), (1, 65535)] {
            let blocks = port_range_blocks(low, high);
            let covered: Vec<u32> = blocks
                .iter()
                .flat_map(|&(start, bits)| {
                    let size = 1u32 << (16 - bits);
                    u32::from(start)..u32::from(start) + size
                })
                .collect();
            let expected: Vec<u32> = (u32::from(low)..=u32::from(high)).collect();
            assert_eq!(covered, expected, "{low}-{high}");
            assert!(blocks.len() <= 30, "{low}-{high}: {} blocks", blocks.len());
        }
    }

    #[test]
    fn keys_and_containment() {
        let http = L4Prefix {
            protocol: PROTOCOL_TCP,
            port: 80,
            len: 24,
        };
        let tcp = L4Prefix::protocol(PROTOCOL_TCP);
        assert!(L4Prefix::ANY.contains(tcp) && tcp.contains(http) && !http.contains(tcp));
        assert_eq!(http.key(), 0x06_0050);
        assert!(http.contains_key(0x06_0050) && !http.contains_key(0x06_0051));
        assert!(!tcp.contains_key(0x11_0050));
        assert_eq!(
            L4Prefix::of_key(0x06_0457, 14),
            L4Prefix {
                protocol: PROTOCOL_TCP,
                port: 1024,
                len: 14
            }
        );
    }

    #[test]
    fn display_names_what_an_entry_covers() {
        let block = L4Prefix {
            protocol: PROTOCOL_TCP,
            port: 1024,
            len: 14,
        };
        assert_eq!(block.to_string(), "tcp/1024-2047");
        assert_eq!(L4Prefix::ANY.to_string(), "any");
        assert_eq!(L4Prefix::protocol(PROTOCOL_UDP).to_string(), "udp");
        let echo = L4Prefix {
            protocol: PROTOCOL_ICMP,
            port: 8 << 8,
            len: 16,
        };
        assert_eq!(echo.to_string(), "icmp type 8");
        let echo_code = L4Prefix { len: 24, ..echo };
        assert_eq!(echo_code.to_string(), "icmp type 8 code 0");
    }
}
