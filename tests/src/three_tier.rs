//! Oracle's three-tier walkthrough (examples/three-tier) as a test network:
//! its endpoints plus an internet host, each listening where the paths
//! worth trying lead.

use std::{net::Ipv4Addr, path::PathBuf};

use crate::{
    Netns,
    topology::Topology,
    traffic::{EchoServer, tcp_exchange},
};

/// (name, host-side vNIC, address), as in examples/three-tier/inventory.yaml;
/// the internet is no endpoint: zpr knows no vNIC of it.
pub const HOSTS: [(&str, &str, &str); 5] = [
    ("internet", "zpr-inet", "198.51.100.10"),
    ("lb", "zpr-lb", "10.0.1.10"),
    ("app-1", "zpr-app1", "10.0.2.10"),
    ("app-2", "zpr-app2", "10.0.2.11"),
    ("db", "zpr-db", "10.1.1.10"),
];

/// Every echo server: the policy's ports, and ports it does not open.
const LISTENERS: [(&str, u16); 6] = [
    ("internet", 80),
    ("lb", 80),
    ("app-1", 80),
    ("app-2", 80),
    ("db", 1521),
    ("db", 22),
];

/// (from, to, port, allowed by examples/three-tier).
pub const PATHS: [(&str, &str, u16, bool); 10] = [
    ("internet", "lb", 80, true),
    ("lb", "app-1", 80, true),
    ("lb", "app-2", 80, true),
    ("app-1", "db", 1521, true),
    ("app-2", "db", 1521, true),
    ("internet", "app-1", 80, false),
    ("lb", "db", 1521, false),
    ("app-1", "db", 22, false),
    ("db", "app-1", 80, false),
    // Against the direction of the allowed internet -> lb flow.
    ("lb", "internet", 80, false),
];

pub fn example(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/three-tier")
        .join(file)
}

pub struct Network {
    pub topology: Topology,
    _servers: Vec<EchoServer>,
}

impl Network {
    pub fn start() -> anyhow::Result<Network> {
        let topology = Topology::new(&HOSTS)?;
        let servers = LISTENERS
            .iter()
            .map(|&(host, port)| EchoServer::start(&topology.host(host).netns, port))
            .collect::<anyhow::Result<_>>()?;
        Ok(Network {
            topology,
            _servers: servers,
        })
    }

    pub fn netns(&self, host: &str) -> &Netns {
        &self.topology.host(host).netns
    }

    pub fn address(&self, host: &str) -> Ipv4Addr {
        self.topology.host(host).address
    }

    pub fn router(&self) -> &Netns {
        &self.topology.router
    }

    /// One TCP exchange from one host to another: true when the path works.
    pub fn works(&self, from: &str, to: &str, port: u16) -> bool {
        tcp_exchange(self.netns(from), self.address(to), port).is_ok()
    }

    /// Every path of [`PATHS`] works exactly when the example allows it.
    pub fn assert_paths_as_in_example(&self) {
        for (from, to, port, allowed) in PATHS {
            assert_eq!(self.works(from, to, port), allowed, "{from} -> {to}:{port}");
        }
    }
}
