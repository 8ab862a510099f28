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
        let address: Ipv4Addr = address.parse()?;
        self.connect(&netns, vnic, Some(ifindex), address)?;
        let host = Host {
            netns,
            address,
            vnic: vnic.to_owned(),
        };
        self.hosts.insert(name.to_owned(), host);
        Ok(())
    }

    /// Takes a host off this router (its vNIC deleted, as when a VM leaves
    /// a hypervisor): its namespace, with its sockets, lives on.
    pub fn detach(&mut self, name: &str) -> anyhow::Result<Host> {
        let host = self
            .hosts
            .remove(name)
            .unwrap_or_else(|| panic!("the topology has no host {name}"));
        self.router.exec(&["ip", "link", "del", &host.vnic])?;
        Ok(host)
    }

    /// Joins a detached host here behind `vnic` (a VM arriving by live
    /// migration, with its address and open connections).
    pub fn attach(&mut self, name: &str, mut host: Host, vnic: &str) -> anyhow::Result<()> {
        self.connect(&host.netns, vnic, None, host.address)?;
        host.vnic = vnic.to_owned();
        self.hosts.insert(name.to_owned(), host);
        Ok(())
    }

    /// Deletes a host's vNIC and creates it again, configured step by step
    /// as an orchestrator does (a workload restarted): the new vNIC has
    /// the same name and another ifindex.
    pub fn recreate_vnic(&self, name: &str) -> anyhow::Result<()> {
        let host = self.host(name);
        self.router.exec(&["ip", "link", "del", &host.vnic])?;
        self.connect(&host.netns, &host.vnic, None, host.address)
    }

    /// Joins `netns` to the router by a veth pair: `vnic` on the router's
    /// side (at `ifindex` when given), `e0` in `netns` with `address`.
    fn connect(
        &self,
        netns: &Netns,
        vnic: &str,
        ifindex: Option<u32>,
        address: Ipv4Addr,
    ) -> anyhow::Result<()> {
        let index = ifindex.map(|i| i.to_string());
        let mut add = vec!["link", "add", vnic];
        if let Some(index) = &index {
            add.extend(["index", index]);
        }
        add.extend([
            "netns",
            self.router.name(),
            "type",
            "veth",
            "peer",
            "name",
            "e0",
            "netns",
            netns.name(),
        ]);
        crate::run("ip", &add)?;
        let host_address = format!("{address}/32");
        netns.exec(&["ip", "addr", "add", &host_address, "dev", "e0"])?;
        netns.exec(&["ip", "link", "set", "e0", "up"])?;
        netns.exec(&["ip", "route", "add", GATEWAY, "dev", "e0"])?;
        netns.exec(&["ip", "route", "add", "default", "via", GATEWAY, "dev", "e0"])?;
        let router = &self.router;
        router.exec(&["ip", "addr", "add", &format!("{GATEWAY}/32"), "dev", vnic])?;
        router.exec(&["ip", "link", "set", vnic, "up"])?;
        router.exec(&["ip", "route", "add", &host_address, "dev", vnic])?;
        Ok(())
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .get(name)
            .unwrap_or_else(|| panic!("the topology has no host {name}"))
    }
}
