//! The four paths a packet takes through zpr's decision code, and the
//! frames that drive each: one frame repeated (warm cache) and many
//! distinct flows each run once (spread).

use std::net::IpAddr;

use serde::Serialize;
use zpr_common::counters::Reason;
use zpr_tests::frames::{L4, TCP_SYN, frame};

use crate::generated::{DENIED_PORT, Generated};

const TCP_FIN: u8 = 0x01;
pub const TCP_ACK: u8 = 0x10;

/// Source ports: the warm frames use their own, spread flows count up from
/// theirs, so no two paths share a conntrack entry.
const WARM_PORT: u16 = 61_000;
const SPREAD_PORT: u16 = 10_000;
const SPREAD_NEW_FLOW_PORT: u16 = 30_000;
/// The most distinct flows a path is spread over (ports left per base).
pub const MAX_SPREAD: usize = 20_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Path {
    ConntrackHit,
    NewFlow,
    Denied,
    Untagged,
}

impl Path {
    pub const ALL: [Path; 4] = [
        Path::ConntrackHit,
        Path::NewFlow,
        Path::Denied,
        Path::Untagged,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Path::ConntrackHit => "conntrack hit",
            Path::NewFlow => "new allowed flow",
            Path::Denied => "denied packet",
            Path::Untagged => "untagged pass-through",
        }
    }

    pub fn passes(self) -> bool {
        self != Path::Denied
    }

    /// The counter zpr counts a packet of this path under.
    pub fn reason(self) -> Reason {
        match self {
            Path::ConntrackHit => Reason::Established,
            Path::NewFlow => Reason::NewFlow,
            Path::Denied => Reason::NoPolicy,
            Path::Untagged => Reason::NotProtected,
        }
    }
}

pub struct Frames {
    pub warm: Vec<u8>,
    pub spread: Vec<Vec<u8>>,
}

/// The frames of `path` at `generated`, with `spread` distinct flows.
pub fn frames(generated: &Generated, path: Path, spread: usize) -> Frames {
    assert!(
        spread <= MAX_SPREAD,
        "{spread} flows overflow the port range"
    );
    let tcp = tcp_frame;
    let allowed = |i: usize| generated.allowed[i % generated.allowed.len()];
    let denied = |i: usize| (generated.denied[i % generated.denied.len()], DENIED_PORT);
    let local = generated.local;
    let (warm, spread): (Vec<u8>, Vec<Vec<u8>>) = match path {
        Path::ConntrackHit => (
            tcp(local, WARM_PORT, allowed(0), TCP_ACK),
            (0..spread)
                .map(|i| tcp(local, SPREAD_PORT + i as u16, allowed(i), TCP_ACK))
                .collect(),
        ),
        // Repeating one frame would hit the entry its first run made. A SYN
        // that also carries FIN re-opens the closing flow it left behind, so
        // every repetition walks the whole new-flow path: conntrack lookup,
        // endpoint, identities, policy, and the insert (the kernel's LRU
        // update takes a free node and links it as for a new key, then frees
        // the replaced one). The spread frames are plain SYNs of new flows.
        Path::NewFlow => (
            tcp(local, WARM_PORT + 1, allowed(0), TCP_SYN | TCP_FIN),
            (0..spread)
                .map(|i| tcp(local, SPREAD_NEW_FLOW_PORT + i as u16, allowed(i), TCP_SYN))
                .collect(),
        ),
        Path::Denied => (
            tcp(local, WARM_PORT + 2, denied(0), TCP_SYN),
            (0..spread)
                .map(|i| tcp(local, SPREAD_PORT + i as u16, denied(i), TCP_SYN))
                .collect(),
        ),
        Path::Untagged => (
            tcp(generated.untagged, WARM_PORT + 3, denied(0), TCP_SYN),
            (0..spread)
                .map(|i| {
                    tcp(
                        generated.untagged,
                        SPREAD_PORT + i as u16,
                        denied(i),
                        TCP_SYN,
                    )
                })
                .collect(),
        ),
    };
    Frames { warm, spread }
}

/// The frame the other side sends back on `frame`'s flow: addresses and
/// ports swapped (frames carry no IPv6 extension headers).
pub fn reply(frame: &[u8]) -> Vec<u8> {
    const ETHERNET: usize = 14;
    let mut reply = frame.to_vec();
    let (addresses, length, l4) = if u16::from_be_bytes([frame[12], frame[13]]) == 0x86DD {
        (ETHERNET + 8, 16, ETHERNET + 40)
    } else {
        (
            ETHERNET + 12,
            4,
            ETHERNET + usize::from(frame[ETHERNET] & 0x0f) * 4,
        )
    };
    let (src, dst) = (
        addresses..addresses + length,
        addresses + length..addresses + 2 * length,
    );
    reply[src.clone()].copy_from_slice(&frame[dst.clone()]);
    reply[dst].copy_from_slice(&frame[src]);
    reply[l4..l4 + 2].copy_from_slice(&frame[l4 + 2..l4 + 4]);
    reply[l4 + 2..l4 + 4].copy_from_slice(&frame[l4..l4 + 2]);
    reply
}

/// A TCP frame `src:src_port -> dst:dst_port` with `flags`.
pub fn tcp_frame(src: IpAddr, src_port: u16, (dst, dst_port): (IpAddr, u16), flags: u8) -> Vec<u8> {
    frame(
        src,
        dst,
        L4::Tcp {
            src_port,
            dst_port,
            flags,
        },
    )
}
