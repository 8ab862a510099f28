//! A routed test network: every host is a namespace joined by a veth pair
//! to one router namespace, where the host-side vNICs live (as a hypervisor
//! host would hold them). Routes are /32 host routes, and every host's
//! gateway is a link-local address all router-side vNICs share.
//!
//! Every second vNIC gets an ifindex beyond zpr's endpoint index
//! ([`INDEXED_IFINDEX_LIMIT`]), so every topology test covers both ways the
//! datapath finds an endpoint (the array and the hash behind it).

use std::{collections::BTreeMap, net::Ipv4Addr};

use zpr_common::endpoint::INDEXED_IFINDEX_LIMIT;

use crate::Netns;

const GATEWAY: &str = "169.254.1.1";

pub struct Host {
    pub netns: Netns,
    pub address: Ipv4Addr,
    /// The host-side vNIC's name, in the router namespace.
    pub vnic: String,
}

pub struct Topology {
    pub router: Netns,
    hosts: BTreeMap<String, Host>,
}

impl Topology {
    /// `hosts`: (name, host-side vNIC name, IPv4 address).
    pub fn new(hosts: &[(&str, &str, &str)]) -> anyhow::Result<Topology> {
        let router = Netns::new()?;
        router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        router.exec(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"])?;
        let mut topology = Topology {
            router,
            hosts: BTreeMap::new(),
        };
        for &(name, vnic, address) in hosts {
            topology.add_host(name, vnic, address)?;
        }
        Ok(topology)
    }

    /// Adds a host behind a new vNIC (as a workload starting on the host).
    pub fn add_host(&mut self, name: &str, vnic: &str, address: &str) -> anyhow::Result<()> {
        let netns = Netns::new()?;
        let ordinal = self.hosts.len() as u32;
        let ifindex = if ordinal % 2 == 1 {
            INDEXED_IFINDEX_LIMIT + ordinal
        } else {
            // The router namespace's own numbering (loopback is 1).
            2 + ordinal
        };
        crate::run(
            "ip",
            &[
                "link",
                "add",
                vnic,
                "index",
                &ifindex.to_string(),
                "netns",
                self.router.name(),
                "type",
                "veth",
                "peer",
                "name",
                "e0",
                "netns",
                netns.name(),
            ],
        )?;
        let host_address = format!("{address}/32");
        netns.exec(&["ip", "addr", "add", &host_address, "dev", "e0"])?;
        netns.exec(&["ip", "link", "set", "e0", "up"])?;
        netns.exec(&["ip", "route", "add", GATEWAY, "dev", "e0"])?;
        netns.exec(&["ip", "route", "add", "default", "via", GATEWAY, "dev", "e0"])?;
        let router = &self.router;
        router.exec(&["ip", "addr", "add", &format!("{GATEWAY}/32"), "dev", vnic])?;
        router.exec(&["ip", "link", "set", vnic, "up"])?;
        router.exec(&["ip", "route", "add", &host_address, "dev", vnic])?;
        let host = Host {
            netns,
            address: address.parse()?,
            vnic: vnic.to_owned(),
        };
        self.hosts.insert(name.to_owned(), host);
        Ok(())
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .get(name)
            .unwrap_or_else(|| panic!("the topology has no host {name}"))
    }
}
