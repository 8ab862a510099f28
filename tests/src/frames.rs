//! Crafted Ethernet frames for BPF_PROG_TEST_RUN.

use std::net::IpAddr;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

/// The L4 part of a crafted packet.
#[derive(Clone, Copy, Debug)]
pub enum L4 {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP for IPv4, ICMPv6 for IPv6; `id` lands where echo carries it.
    Icmp {
        icmp_type: u8,
        code: u8,
        id: u16,
    },
    /// Any other protocol, with eight bytes of payload.
    Other {
        protocol: u8,
    },
}

impl L4 {
    pub fn protocol(&self, ipv6: bool) -> u8 {
        match *self {
            L4::Tcp { .. } => PROTO_TCP,
            L4::Udp { .. } => PROTO_UDP,
            L4::Icmp { .. } if ipv6 => PROTO_ICMPV6,
            L4::Icmp { .. } => PROTO_ICMP,
            L4::Other { protocol } => protocol,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match *self {
            L4::Tcp {
                src_port,
                dst_port,
                flags,
            } => {
                let mut tcp = vec![0; 20];
                tcp[0..2].copy_from_slice(&src_port.to_be_bytes());
                tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
                tcp[12] = 5 << 4;
                tcp[13] = flags;
                tcp
            }
            L4::Udp { src_port, dst_port } => {
                let mut udp = vec![0; 8];
                udp[0..2].copy_from_slice(&src_port.to_be_bytes());
                udp[2..4].copy_from_slice(&dst_port.to_be_bytes());
                udp[4..6].copy_from_slice(&8u16.to_be_bytes());
                udp
            }
            L4::Icmp {
                icmp_type,
                code,
                id,
            } => {
                let mut icmp = vec![0; 8];
                icmp[0] = icmp_type;
                icmp[1] = code;
                icmp[4..6].copy_from_slice(&id.to_be_bytes());
                icmp
            }
            L4::Other { .. } => vec![0; 8],
        }
    }
}

/// An Ethernet frame carrying `src -> dst` with `l4` (both addresses of
/// one family).
pub fn frame(src: IpAddr, dst: IpAddr, l4: L4) -> Vec<u8> {
    let payload = l4.bytes();
    let mut frame = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            frame.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = vec![0; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&(20 + payload.len() as u16).to_be_bytes());
            ip[8] = 64;
            ip[9] = l4.protocol(false);
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            frame.extend_from_slice(&ip);
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            frame.extend_from_slice(&0x86DDu16.to_be_bytes());
            let mut ip = vec![0; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
            ip[6] = l4.protocol(true);
            ip[7] = 64;
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
            frame.extend_from_slice(&ip);
        }
        _ => panic!("frame: {src} and {dst} are of different families"),
    }
    frame.extend_from_slice(&payload);
    frame
}
