//! Floods of new flows from spoofed sources, as an attacker who reaches a
//! public port sends them: raw IPv4 packets, each from its own address and
//! port, sent from inside a host's namespace.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context as _;

use crate::{
    Netns,
    frames::{L4, TCP_SYN, frame},
};

/// Where spoofed sources come from: 198.18.0.0/15 (benchmarking space).
const SPOOFED_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const SPOOFED_ADDRESSES: u32 = 1 << 17;
const ETHERNET_HEADER: usize = 14;

/// Sends `count` TCP SYNs to `to:port` from inside `netns`, each from a
/// distinct spoofed address and port (so each is a new flow). Returns how
/// many the kernel took.
pub fn syn_flood(netns: &Netns, to: Ipv4Addr, port: u16, count: u32) -> anyhow::Result<u32> {
    netns
        .enter(|| -> anyhow::Result<u32> {
            // SAFETY: plain socket(2); the descriptor is closed below.
            let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
            anyhow::ensure!(
                socket >= 0,
                "raw socket: {}",
                std::io::Error::last_os_error()
            );
            let destination = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(to).to_be(),
                },
                sin_zero: [0; 8],
            };
            let mut sent = 0;
            for n in 0..count {
                let source = Ipv4Addr::from(SPOOFED_BASE + n % SPOOFED_ADDRESSES);
                let l4 = L4::Tcp {
                    src_port: 1024 + (n / SPOOFED_ADDRESSES) as u16,
                    dst_port: port,
                    flags: TCP_SYN,
                };
                let mut packet = frame(IpAddr::V4(source), IpAddr::V4(to), l4);
                let ip = &mut packet[ETHERNET_HEADER..];
                set_tcp_checksum(ip);
                // SAFETY: `ip` and `destination` are valid for the lengths given.
                let result = unsafe {
                    libc::sendto(
                        socket,
                        ip.as_ptr().cast(),
                        ip.len(),
                        0,
                        (&destination as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                };
                if result > 0 {
                    sent += 1;
                }
            }
            // SAFETY: the descriptor opened above.
            unsafe { libc::close(socket) };
            Ok(sent)
        })?
        .context("flooding")
}

/// A valid TCP checksum, so the target's stack answers each SYN (with a
/// SYN-ACK or a RST) as it would a real one.
fn set_tcp_checksum(ip: &mut [u8]) {
    const IPV4_HEADER: usize = 20;
    let tcp_length = ip.len() - IPV4_HEADER;
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    };
    add(&ip[12..20]);
    add(&[0, ip[9]]);
    add(&(tcp_length as u16).to_be_bytes());
    add(&ip[IPV4_HEADER..]);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !(sum as u16);
    ip[IPV4_HEADER + 16..IPV4_HEADER + 18].copy_from_slice(&checksum.to_be_bytes());
}
