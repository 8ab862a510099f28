//! The filters compared end to end, each enforcing the same intent on the
//! host-side vNIC: the workload may reach the host's port 5201 (TCP and
//! UDP); the other allowed sources are filler, so a set or rule list of N
//! entries holds the workload's and N - 1 others; everything else from the
//! workload is dropped.

use std::{fmt::Write as _, net::Ipv4Addr};

use anyhow::{Context as _, bail};
use zpr_agent::{
    compile::compile,
    datapath::{Datapath, FromWorkloadHook, InterfaceIndexes, read_counters, write_plan},
    inventory::Inventory,
    lang,
};
use zpr_common::{Direction, counters::Reason};

use crate::{
    scratch::Scratch,
    veth_site::{HOST, VethSite, WORKLOAD},
};

/// The allowed service port (iperf3's).
pub const SERVICE_PORT: u16 = 5201;
const TABLE: &str = "zprbench";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Nothing on the path.
    None,
    /// zpr with a policy of this many statements.
    Zpr {
        hook: FromWorkloadHook,
        statements: usize,
    },
    /// iptables (filter table, INPUT): this many ACCEPT rules, the
    /// workload's last (a first-match walk reaches it after all others),
    /// policy DROP.
    Iptables { rules: usize },
    /// iptables raw table (PREROUTING): accept the workload's service
    /// traffic, drop the rest of what the vNIC receives (the cheapest
    /// place netfilter can drop).
    IptablesRaw,
    /// nftables: one set of this many sources; at the input hook (policy
    /// drop), or at prerouting with raw priority for floods.
    NftSet { elements: usize, prerouting: bool },
}

impl Filter {
    pub fn name(self) -> String {
        match self {
            Filter::None => "no filter".to_owned(),
            Filter::Zpr { hook, statements } => {
                let hook = match hook {
                    FromWorkloadHook::Tcx => "tcx",
                    FromWorkloadHook::XdpGeneric => "generic XDP",
                    FromWorkloadHook::XdpNative => "native XDP",
                };
                format!("zpr {hook} ({statements} statements)")
            }
            Filter::Iptables { rules } => format!("iptables, {rules} rules"),
            Filter::IptablesRaw => "iptables raw table".to_owned(),
            Filter::NftSet {
                elements,
                prerouting,
            } => {
                let hook = if prerouting {
                    "prerouting, raw priority"
                } else {
                    "input"
                };
                format!("nftables set of {elements} ({hook})")
            }
        }
    }
}

/// A filter in place; zpr's programs stay attached while it lives.
pub struct Installed {
    filter: Filter,
    datapath: Option<Datapath>,
}

impl Installed {
    /// Packets the filter dropped so far (None: the filter counts nothing).
    pub fn dropped(&self, site: &VethSite) -> anyhow::Result<Option<u64>> {
        Ok(match self.filter {
            Filter::None | Filter::Iptables { .. } => None,
            Filter::Zpr { .. } => {
                let datapath = self.datapath.as_ref().context("zpr has no datapath")?;
                let counters = read_counters(datapath)?;
                Some(
                    counters
                        .get(Direction::FromWorkload, Reason::NoPolicy)
                        .packets,
                )
            }
            Filter::IptablesRaw => {
                let output = site.host.exec(&[
                    "iptables",
                    "-t",
                    "raw",
                    "-L",
                    "PREROUTING",
                    "-v",
                    "-x",
                    "-n",
                ])?;
                let text = String::from_utf8_lossy(&output.stdout);
                let drop_rule = text
                    .lines()
                    .find(|line| line.split_whitespace().nth(2) == Some("DROP"))
                    .context("no DROP rule in the raw table")?;
                Some(first_number(drop_rule)?)
            }
            Filter::NftSet { .. } => {
                let output = site.host.exec(&["nft", "list", "table", "inet", TABLE])?;
                let text = String::from_utf8_lossy(&output.stdout);
                let counted = text
                    .lines()
                    .find_map(|line| line.split_once("counter packets "))
                    .context("no counter in the nftables table")?;
                Some(first_number(counted.1)?)
            }
        })
    }
}

fn first_number(text: &str) -> anyhow::Result<u64> {
    text.split_whitespace()
        .next()
        .context("no number")?
        .parse()
        .with_context(|| format!("not a count: {text}"))
}

/// The i-th filler source (never the workload).
fn filler(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, (i / 250) as u8, (i % 250 + 1) as u8)
}

pub fn install(filter: Filter, site: &VethSite, scratch: &Scratch) -> anyhow::Result<Installed> {
    let mut datapath = None;
    match filter {
        Filter::None => {}
        Filter::Zpr { hook, statements } => datapath = Some(install_zpr(site, hook, statements)?),
        Filter::Iptables { rules } => {
            let mut text = String::from("*filter\n:INPUT DROP [0:0]\n");
            for i in 1..rules {
                let _ = writeln!(
                    text,
                    "-A INPUT -s {} -p tcp --dport {SERVICE_PORT} -j ACCEPT",
                    filler(i)
                );
            }
            for protocol in ["tcp", "udp"] {
                let _ = writeln!(
                    text,
                    "-A INPUT -s {WORKLOAD} -p {protocol} --dport {SERVICE_PORT} -j ACCEPT"
                );
            }
            text += "COMMIT\n";
            restore(site, scratch, "iptables-restore", &text)?;
        }
        Filter::IptablesRaw => {
            let mut text = String::from("*raw\n");
            for protocol in ["tcp", "udp"] {
                let _ = writeln!(
                    text,
                    "-A PREROUTING -i {} -s {WORKLOAD} -p {protocol} --dport {SERVICE_PORT} -j ACCEPT",
                    site.vnic
                );
            }
            let _ = writeln!(text, "-A PREROUTING -i {} -j DROP\nCOMMIT", site.vnic);
            restore(site, scratch, "iptables-restore", &text)?;
        }
        Filter::NftSet {
            elements,
            prerouting,
        } => {
            let sources: Vec<String> = std::iter::once(WORKLOAD)
                .chain((1..elements).map(filler))
                .map(|address| address.to_string())
                .collect();
            let chain = if prerouting {
                format!(
                    "chain prerouting {{ type filter hook prerouting priority raw; policy accept;\n\
                     iifname \"{vnic}\" ip saddr @allowed tcp dport {SERVICE_PORT} accept\n\
                     iifname \"{vnic}\" ip saddr @allowed udp dport {SERVICE_PORT} accept\n\
                     iifname \"{vnic}\" counter drop\n}}",
                    vnic = site.vnic
                )
            } else {
                format!(
                    "chain input {{ type filter hook input priority filter; policy drop;\n\
                     ip saddr @allowed tcp dport {SERVICE_PORT} accept\n\
                     ip saddr @allowed udp dport {SERVICE_PORT} accept\n}}"
                )
            };
            let text = format!(
                "table inet {TABLE} {{\nset allowed {{ type ipv4_addr; elements = {{ {} }} }}\n{chain}\n}}\n",
                sources.join(", ")
            );
            restore(site, scratch, "nft", &text)?;
        }
    }
    Ok(Installed { filter, datapath })
}

/// Loads a rule file with `iptables-restore FILE` or `nft -f FILE` in the
/// host namespace.
fn restore(site: &VethSite, scratch: &Scratch, tool: &str, text: &str) -> anyhow::Result<()> {
    let file = scratch.write("rules", text)?;
    let file = file.to_str().context("non-UTF-8 scratch path")?;
    let args: Vec<&str> = match tool {
        "nft" => vec!["nft", "-f", file],
        _ => vec![tool, file],
    };
    site.host.exec(&args).map(drop)
}

/// zpr on the vNIC with a policy of `statements` statements: the
/// workload's two, and filler sources allowed to the host's service.
fn install_zpr(
    site: &VethSite,
    hook: FromWorkloadHook,
    statements: usize,
) -> anyhow::Result<Datapath> {
    let inventory = format!(
        "namespaces:\n  - name: bench\n    attributes:\n      \
         - {{ key: net, type: list, values: [lan] }}\n      \
         - {{ key: app, type: list, values: [client, server] }}\n\
         vcns:\n  - {{ name: lan, cidrs: [10.0.0.0/24], security-attribute: bench.net:lan }}\n\
         endpoints:\n  \
         - {{ name: workload, vcn: lan, addresses: [{WORKLOAD}], security-attributes: \
         [bench.app:client], interface: {vnic} }}\n  \
         - {{ name: host, vcn: lan, addresses: [{HOST}], security-attributes: [bench.app:server] }}\n",
        vnic = site.vnic
    );
    let inventory =
        Inventory::from_yaml_str(&inventory).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let mut policy = String::new();
    for protocol in ["tcp", "udp"] {
        let _ = writeln!(
            policy,
            "in bench.net:lan VCN allow bench.app:client endpoints to connect to \
             bench.app:server endpoints with protocol='{protocol}/{SERVICE_PORT}'"
        );
    }
    for i in 2..statements {
        let _ = writeln!(
            policy,
            "in bench.net:lan VCN allow '{}/32' to connect to bench.app:server endpoints \
             with protocol='tcp/{SERVICE_PORT}'",
            filler(i)
        );
    }
    let policy = match lang::parse("bench", &policy) {
        Ok(parsed) => parsed.policy,
        Err(diagnostics) => bail!("the bench policy does not parse: {diagnostics:?}"),
    };
    let plan = compile(&[policy], &inventory);
    let interfaces = InterfaceIndexes::from([(site.vnic.clone(), site.host.ifindex(&site.vnic)?)]);
    let mut datapath = Datapath::load()?;
    write_plan(&mut datapath, &plan, &interfaces)?;
    site.host.enter(|| datapath.attach(&site.vnic, hook))??;
    Ok(datapath)
}
