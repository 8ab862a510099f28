//! A Prometheus scrape of an agent with many local endpoints: each a veth
//! pair in the agent's namespace whose host side is the vNIC, all attached,
//! each having counted a packet (so every endpoint's row has a series),
//! scraped as Prometheus does (`GET /metrics`) on the default
//! `--metrics-endpoints`.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    time::Instant,
};

use anyhow::Context as _;
use zpr_tests::{Netns, http::http_get};

use crate::{
    agent::Agent,
    interrupt,
    report::{Figure, Section, Target, Unit},
    scratch::Scratch,
    sender::{packet_socket, udp_frame},
};

pub struct Settings {
    pub endpoints: usize,
    pub rounds: usize,
}

/// The agent's default metrics address, in its namespace.
const METRICS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9565);

pub fn measure(settings: &Settings, zpr: &Path) -> anyhow::Result<(Section, Vec<Target>)> {
    let scratch = Scratch::new("scrape")?;
    let netns = Netns::new()?;
    let endpoints = settings.endpoints;
    eprintln!("scrape: {endpoints} veth pairs");
    let mut batch = String::new();
    for index in 0..endpoints {
        batch.push_str(&format!(
            "link add zs{index} type veth peer name zw{index}\nlink set zs{index} up\nlink set zw{index} up\n"
        ));
    }
    let batch_file = scratch.write("links.batch", &batch)?;
    netns.exec(&["ip", "-batch", &batch_file.display().to_string()])?;
    let address = |index: usize| Ipv4Addr::new(10, (index / 250) as u8, (index % 250) as u8, 1);
    let mut inventory = String::from(
        "namespaces: [{ name: s, attributes: [{ key: app, type: list, values: [web] }, \
         { key: net, type: list, values: [a] }] }]\n\
         vcns: [{ name: a, cidrs: [10.0.0.0/8], security-attribute: 's.net:a' }]\n\
         endpoints:\n",
    );
    for index in 0..endpoints {
        inventory.push_str(&format!(
            "  - {{ name: e{index}, vcn: a, addresses: [{}], interface: zs{index}, \
             security-attributes: ['s.app:web'] }}\n",
            address(index)
        ));
    }
    let inventory = scratch.write("inventory.yaml", &inventory)?;
    let policy = scratch.write(
        "scrape.zpr",
        "in s.net:a VCN allow '0.0.0.0/0' to connect to s.app:web endpoints with \
         protocol='tcp/443'\n",
    )?;
    eprintln!("scrape: the agent attaches to {endpoints} vNICs");
    let agent = Agent::start(zpr, &netns, &inventory, &policy, &scratch)?;
    // One packet from each workload (UDP, which no statement allows): a
    // drop on every endpoint's row.
    netns.enter(|| -> anyhow::Result<()> {
        for index in 0..endpoints {
            let ifindex = interface_index(&format!("zw{index}"))?;
            let frame = udp_frame(
                ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]),
                (address(index), address((index + 1) % endpoints)),
                (40_000, 9),
            );
            let socket = packet_socket(ifindex)?;
            // SAFETY: the frame outlives the call; the socket is ours.
            let sent = unsafe {
                libc::send(
                    std::os::fd::AsRawFd::as_raw_fd(&socket),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                )
            };
            anyhow::ensure!(sent >= 0, "send: {}", std::io::Error::last_os_error());
        }
        Ok(())
    })??;

    let mut milliseconds = Vec::new();
    let mut body_bytes = 0;
    let mut series = 0;
    for round in 1..=settings.rounds {
        interrupt::checkpoint()?;
        eprintln!("scrape: round {round}/{}", settings.rounds);
        let started = Instant::now();
        let (status, body) = http_get(&netns, METRICS, "/metrics")?;
        milliseconds.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(status == 200, "GET /metrics answered {status}");
        body_bytes = body.len();
        series = body
            .lines()
            .filter(|line| line.starts_with("zpr_endpoint_packets_total{"))
            .count();
    }
    anyhow::ensure!(
        series > 0,
        "the scrape held no zpr_endpoint_packets_total series"
    );
    drop(agent);
    Ok((
        Section {
            title: format!("Prometheus scrape at {endpoints} endpoints"),
            method: vec![format!(
                "`zpr run` in a namespace with {endpoints} local endpoints, each a veth pair \
                 whose host side is its vNIC (all attached), each having dropped one UDP frame \
                 its workload sent. `GET /metrics` on the agent's default address and \
                 `--metrics-endpoints` (256), {} times: the wall time from the request to the \
                 whole answer. The last answer was {body_bytes} bytes with {series} \
                 `zpr_endpoint_packets_total` series.",
                settings.rounds
            )],
            figures: vec![Figure::new(
                format!("scrape at {endpoints} endpoints (GET /metrics)"),
                Unit::Milliseconds,
                milliseconds,
            )],
        },
        Vec::new(),
    ))
}

fn interface_index(name: &str) -> anyhow::Result<u32> {
    let name = std::ffi::CString::new(name)?;
    // SAFETY: a valid C string; if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0)
        .then_some(index)
        .with_context(|| format!("no interface {name:?}"))
}
