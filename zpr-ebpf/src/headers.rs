//! Bounded parsing of Ethernet, IPv4 (with options), IPv6 (with a bounded
//! walk over extension headers), TCP, UDP, ICMP and ICMPv6.

use zpr_common::{
    Address, FAMILY_IPV4, FAMILY_IPV6,
    event::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
};

use crate::packet::Packet;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;

const IPV6_HLEN: usize = 40;
/// Extension headers walked before giving up (counted as malformed).
const IPV6_MAX_EXTENSIONS: usize = 6;
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// Where the packet is in its IP datagram.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    Whole,
    /// Offset 0, more to come: carries the L4 header, decides for the rest.
    First {
        id: u32,
    },
    /// No L4 header: judged by its first fragment.
    Later {
        id: u32,
    },
}

/// The L3/L4 facts decisions are made on.
#[derive(Clone, Copy)]
pub struct Headers {
    pub family: u8,
    pub protocol: u8,
    pub src: Address,
    pub dst: Address,
    pub fragment: Fragment,
    /// TCP/UDP ports; for ICMP echo, `src_port` and `dst_port` both carry
    /// the identifier. 0 where the protocol has none.
    pub src_port: u16,
    pub dst_port: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub tcp_flags: u8,
    /// Offset of the L4 header (for reading an ICMP error's payload).
    pub l4_offset: usize,
}

/// No facts known yet: where parsing starts, and what events about frames
/// without IP headers carry.
pub const EMPTY: Headers = Headers {
    family: 0,
    protocol: 0,
    src: [0; 16],
    dst: [0; 16],
    fragment: Fragment::Whole,
    src_port: 0,
    dst_port: 0,
    icmp_type: 0,
    icmp_code: 0,
    tcp_flags: 0,
    l4_offset: 0,
};

impl Headers {
    #[inline(always)]
    pub fn is_tcp_syn_only(&self) -> bool {
        self.protocol == IPPROTO_TCP && self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }

    #[inline(always)]
    pub fn tcp_syn(&self) -> bool {
        self.tcp_flags & TCP_SYN != 0
    }

    #[inline(always)]
    pub fn tcp_fin(&self) -> bool {
        self.tcp_flags & TCP_FIN != 0
    }

    #[inline(always)]
    pub fn tcp_rst(&self) -> bool {
        self.tcp_flags & TCP_RST != 0
    }

    #[inline(always)]
    pub fn is_icmp(&self) -> bool {
        self.protocol == IPPROTO_ICMP || self.protocol == IPPROTO_ICMPV6
    }

    /// ICMP destination unreachable, time exceeded, parameter problem
    /// (and ICMPv6 packet too big): they quote a packet of another flow.
    #[inline(always)]
    pub fn is_icmp_error(&self) -> bool {
        match self.protocol {
            IPPROTO_ICMP => matches!(self.icmp_type, 3 | 11 | 12),
            IPPROTO_ICMPV6 => matches!(self.icmp_type, 1..=4),
            _ => false,
        }
    }

    /// ICMPv6 router/neighbour solicitation and advertisement, redirect.
    #[inline(always)]
    pub fn is_neighbor_discovery(&self) -> bool {
        self.protocol == IPPROTO_ICMPV6 && matches!(self.icmp_type, 133..=137)
    }

    /// The 16 bits the policy matches after the protocol: the destination
    /// port, or `type << 8 | code` for ICMP.
    #[inline(always)]
    pub fn policy_port(&self) -> u16 {
        if self.is_icmp() {
            (self.icmp_type as u16) << 8 | self.icmp_code as u16
        } else {
            self.dst_port
        }
    }
}

pub enum ParseError {
    /// Truncated or inconsistent headers.
    Malformed,
}

/// The EtherType of the frame, host order.
#[inline(always)]
pub fn ethertype(packet: &Packet) -> Option<u16> {
    packet.read::<[u8; 2]>(ETH_HLEN - 2).map(u16::from_be_bytes)
}

/// Parses the IP packet that starts at `offset` (the frame's L3 header, or
/// the packet quoted inside an ICMP error, where `quoted` tolerates the
/// truncation the quote allows: only 8 bytes of L4 header).
#[inline(always)]
pub fn parse_ip(
    packet: &Packet,
    offset: usize,
    family: u8,
    quoted: bool,
) -> Result<Headers, ParseError> {
    let mut headers = Headers { family, ..EMPTY };
    let l4 = if family == FAMILY_IPV4 {
        parse_ipv4(packet, offset, &mut headers)?
    } else {
        parse_ipv6(packet, offset, &mut headers)?
    };
    headers.l4_offset = l4;
    if let Fragment::Later { .. } = headers.fragment {
        return Ok(headers);
    }
    parse_l4(packet, l4, &mut headers, quoted)?;
    Ok(headers)
}

// Each header is copied out with one bounds check: the verifier then
// tracks one packet pointer per header instead of one per field, which
// LLVM would otherwise merge into checks the verifier cannot follow.

#[inline(always)]
fn parse_ipv4(packet: &Packet, offset: usize, headers: &mut Headers) -> Result<usize, ParseError> {
    let ip: [u8; 20] = packet.read(offset).ok_or(ParseError::Malformed)?;
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 {
        return Err(ParseError::Malformed);
    }
    let id = u16::from_be_bytes([ip[4], ip[5]]) as u32;
    let flags_offset = u16::from_be_bytes([ip[6], ip[7]]);
    headers.protocol = ip[9];
    headers.src[..4].copy_from_slice(&ip[12..16]);
    headers.dst[..4].copy_from_slice(&ip[16..20]);
    let more_fragments = flags_offset & 0x2000 != 0;
    headers.fragment = match (flags_offset & 0x1fff, more_fragments) {
        (0, false) => Fragment::Whole,
        (0, true) => Fragment::First { id },
        _ => Fragment::Later { id },
    };
    Ok(offset + ihl)
}

#[inline(always)]
fn parse_ipv6(packet: &Packet, offset: usize, headers: &mut Headers) -> Result<usize, ParseError> {
    let ip: [u8; IPV6_HLEN] = packet.read(offset).ok_or(ParseError::Malformed)?;
    if ip[0] >> 4 != 6 {
        return Err(ParseError::Malformed);
    }
    headers.src.copy_from_slice(&ip[8..24]);
    headers.dst.copy_from_slice(&ip[24..40]);
    let mut next = ip[6];
    let mut at = offset + IPV6_HLEN;
    for _ in 0..IPV6_MAX_EXTENSIONS {
        let extension: [u8; 8] = match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_AUTH | NEXTHDR_FRAGMENT => {
                packet.read(at).ok_or(ParseError::Malformed)?
            }
            _ => {
                headers.protocol = next;
                return Ok(at);
            }
        };
        let this = next;
        next = extension[0];
        at += match this {
            NEXTHDR_AUTH => (extension[1] as usize + 2) * 4,
            NEXTHDR_FRAGMENT => {
                let offset_flags = u16::from_be_bytes([extension[2], extension[3]]);
                let id =
                    u32::from_be_bytes([extension[4], extension[5], extension[6], extension[7]]);
                headers.fragment = match (offset_flags >> 3, offset_flags & 1 != 0) {
                    (0, false) => Fragment::Whole,
                    (0, true) => Fragment::First { id },
                    _ => Fragment::Later { id },
                };
                8
            }
            _ => (extension[1] as usize + 1) * 8,
        };
    }
    Err(ParseError::Malformed)
}

#[inline(always)]
fn parse_l4(
    packet: &Packet,
    at: usize,
    headers: &mut Headers,
    quoted: bool,
) -> Result<(), ParseError> {
    match headers.protocol {
        IPPROTO_TCP if !quoted => {
            let tcp: [u8; 14] = packet.read(at).ok_or(ParseError::Malformed)?;
            headers.src_port = u16::from_be_bytes([tcp[0], tcp[1]]);
            headers.dst_port = u16::from_be_bytes([tcp[2], tcp[3]]);
            headers.tcp_flags = tcp[13];
        }
        IPPROTO_TCP | IPPROTO_UDP => {
            let ports: [u8; 4] = packet.read(at).ok_or(ParseError::Malformed)?;
            headers.src_port = u16::from_be_bytes([ports[0], ports[1]]);
            headers.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let icmp: [u8; 8] = packet.read(at).ok_or(ParseError::Malformed)?;
            headers.icmp_type = icmp[0];
            headers.icmp_code = icmp[1];
            if is_echo(headers.protocol, headers.icmp_type) {
                let id = u16::from_be_bytes([icmp[4], icmp[5]]);
                headers.src_port = id;
                headers.dst_port = id;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Echo request or reply: the identifier ties the pair to one flow.
#[inline(always)]
fn is_echo(protocol: u8, icmp_type: u8) -> bool {
    match protocol {
        IPPROTO_ICMP => icmp_type == 8 || icmp_type == 0,
        _ => icmp_type == 128 || icmp_type == 129,
    }
}

/// The family of an EtherType that carries IP.
#[inline(always)]
pub fn ip_family(ethertype: u16) -> Option<u8> {
    match ethertype {
        ETH_P_IP => Some(FAMILY_IPV4),
        ETH_P_IPV6 => Some(FAMILY_IPV6),
        _ => None,
    }
}

/// Offset of the packet an ICMP error quotes.
#[inline(always)]
pub fn quoted_offset(headers: &Headers) -> usize {
    headers.l4_offset + 8
}

/// fe80::/10 or :: (an IPv6 source neighbour discovery may use).
#[inline(always)]
pub fn is_link_local_or_unspecified(addr: &Address) -> bool {
    (addr[0] == 0xfe && addr[1] & 0xc0 == 0x80) || *addr == [0; 16]
}
