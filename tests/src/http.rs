//! Plain HTTP from inside a test network's namespace: what the agent's
//! metrics endpoint and Prometheus's query API are reached with.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::Context as _;

use crate::Netns;

/// A TCP port nothing listens on in `netns` now, below the ephemeral
/// range (see [`crate::ports`]).
pub fn free_port(netns: &Netns) -> anyhow::Result<u16> {
    netns.enter(crate::ports::listen_port)?
}

/// `GET path` on `address` from inside `netns`: the status code and body.
pub fn http_get(netns: &Netns, address: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let response = netns.enter(|| -> anyhow::Result<Vec<u8>> {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        Ok(response)
    })??;
    let text = String::from_utf8(response)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP response: {text}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status in {head}"))?;
    Ok((status, body.to_owned()))
}
