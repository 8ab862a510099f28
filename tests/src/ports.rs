//! Ports for servers a test starts and may restart on the same port.
//!
//! A port the kernel hands out for `bind(0)` comes from the ephemeral
//! range, which is also where every outgoing connection takes its source
//! port. A server killed and started again on such a port can find it
//! taken by a client's connection made in between (an agent reconnecting
//! to the etcd it lost, say), and fail to start. Ports below the range are
//! never handed out that way, so only another test choosing the same one
//! can take it.

use std::{
    net::{Ipv4Addr, TcpListener},
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;

/// The lowest port this chooses from: above the well-known and the
/// commonly configured service ports.
const LOWEST: u16 = 20_000;

/// A TCP port on 127.0.0.1 nothing listens on now, below the ephemeral
/// range.
pub fn listen_port() -> anyhow::Result<u16> {
    let ephemeral_low = ephemeral_range_start()?;
    anyhow::ensure!(
        ephemeral_low > LOWEST + 1_000,
        "net.ipv4.ip_local_port_range starts at {ephemeral_low}: too low to keep test servers out of it"
    );
    let span = u64::from(ephemeral_low - LOWEST);
    let mut seed = spread_seed();
    for _ in 0..1_000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = LOWEST + ((seed >> 33) % span) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port between {LOWEST} and {ephemeral_low}")
}

/// Different in every call and every process, so that tests running at
/// once rarely try the same ports.
fn spread_seed() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64);
    nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ CALLS
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn ephemeral_range_start() -> anyhow::Result<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .context("reading net.ipv4.ip_local_port_range")?;
    range
        .split_whitespace()
        .next()
        .and_then(|low| low.parse().ok())
        .with_context(|| format!("net.ipv4.ip_local_port_range is {range:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listen_port_is_free_and_below_the_ephemeral_range() {
        let low = ephemeral_range_start().unwrap();
        for _ in 0..50 {
            let port = listen_port().unwrap();
            assert!((LOWEST..low).contains(&port), "{port}");
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        }
    }
}
