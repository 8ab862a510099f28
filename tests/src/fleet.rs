//! A fleet of simulated hosts for the etcd tests. Each host is a router
//! namespace with vNICs of its own (a [`Topology`]), its own bpffs pins,
//! run directory and node name, and an agent (`zpr run --store etcd://`).
//! The routers are joined through a spine namespace, so workloads on
//! different hosts talk over real TCP. etcd runs in the test's namespace
//! on 127.0.0.1; every host reaches it at the same address through a
//! [`LoopbackBridge`]. The API server (`zpr serve --store etcd://`) runs
//! on the first host.

use std::{
    collections::BTreeMap,
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Output},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{
    Netns,
    agent::{AgentProcess, zpr_binary},
    etcd::Etcd,
    loopback_bridge::LoopbackBridge,
    served_agent::start_zpr_serve,
    topology::Topology,
    traffic::{EchoServer, tcp_exchange},
    unique_name, veth_pair,
};

/// A workload: (name, vNIC on its host, IPv4 address).
pub type Workload = (&'static str, &'static str, &'static str);

pub struct FleetHost {
    pub topology: Topology,
    pub agent: AgentProcess,
    /// The host's way to etcd (cut it to take the host off the network).
    pub bridge: LoopbackBridge,
}

pub struct Fleet {
    pub etcd: Etcd,
    pub url: String,
    pub hosts: BTreeMap<String, FleetHost>,
    pub api: ApiServer,
    /// Which host each workload runs on.
    placement: BTreeMap<String, String>,
    _servers: Vec<EchoServer>,
    spine: Netns,
    /// Each host's router address on the spine (where the spine routes
    /// its workloads' addresses).
    spine_gateways: BTreeMap<String, String>,
    state: PathBuf,
    /// What every agent is started with beyond its node and etcd access
    /// (trusted keys), and what the API server is.
    agent_arguments: Vec<String>,
    api_arguments: Vec<String>,
    /// The nodes etcd has a user for.
    nodes: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Fleet {
    /// Hosts with their workloads, each workload listening on `ports`;
    /// `inventory` (YAML, endpoints placed with `node:`) seeds the tenancy.
    pub fn start(
        hosts: &[(&str, &[Workload])],
        ports: &[u16],
        inventory: &str,
    ) -> anyhow::Result<Fleet> {
        Fleet::start_with(hosts, ports, inventory, false)
    }

    /// As [`Fleet::start`]; `signed`: the API server signs every state
    /// with a key of its own (`<state>/keys/first.key`), and every agent
    /// trusts the public keys in `<state>/trusted/` ([`Fleet::trusted`]).
    pub fn start_with(
        hosts: &[(&str, &[Workload])],
        ports: &[u16],
        inventory: &str,
        signed: bool,
    ) -> anyhow::Result<Fleet> {
        let state = std::env::temp_dir().join(unique_name("zfl"));
        fs::create_dir_all(&state)?;
        let mut api_arguments: Vec<String> = Vec::new();
        let mut agent_arguments = Vec::new();
        if signed {
            let key = generate_key(&state, "first")?;
            fs::create_dir_all(state.join("trusted"))?;
            fs::copy(key.with_extension("pub"), state.join("trusted/first.pub"))?;
            api_arguments = vec!["--signing-key".to_owned(), key.display().to_string()];
            agent_arguments = vec![
                "--trusted-keys".to_owned(),
                state.join("trusted").display().to_string(),
            ];
        }
        let etcd = Etcd::start_secure()?;
        let tenancy = unique_name("t");
        let url = etcd.url(&tenancy);
        let nodes: Vec<&str> = hosts.iter().map(|(host, _)| *host).collect();
        authorise_tenancy(&etcd, &tenancy, &nodes)?;
        api_arguments.extend(etcd.zpr_flags(&format!("zpr-{tenancy}-api"))?);
        let spine = Netns::new()?;
        spine.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        spine.exec(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"])?;
        let mut built = BTreeMap::new();
        let mut placement = BTreeMap::new();
        let mut spine_gateways = BTreeMap::new();
        let mut servers = Vec::new();
        for (index, &(host, workloads)) in hosts.iter().enumerate() {
            let topology = Topology::new(workloads)?;
            let (router_side, spine_side) = (
                format!("172.31.{index}.2/24"),
                format!("172.31.{index}.1/24"),
            );
            veth_pair(&topology.router, &router_side, &spine, &spine_side)?;
            spine_gateways.insert(host.to_owned(), format!("172.31.{index}.2"));
            topology.router.exec(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &format!("172.31.{index}.1"),
            ])?;
            for &(workload, _, address) in workloads {
                spine.exec(&[
                    "ip",
                    "route",
                    "add",
                    &format!("{address}/32"),
                    "via",
                    &format!("172.31.{index}.2"),
                ])?;
                placement.insert(workload.to_owned(), host.to_owned());
                for &port in ports {
                    servers.push(EchoServer::start(&topology.host(workload).netns, port)?);
                }
            }
            let bridge = LoopbackBridge::new(&topology.router, etcd.client_port)?;
            built.insert(host.to_owned(), (topology, bridge));
        }
        let inventory_file = state.join("inventory.yaml");
        fs::write(&inventory_file, inventory)?;
        let first = hosts[0].0;
        let api = ApiServer::start_with(
            &built[first].0.router,
            &url,
            &inventory_file,
            &state,
            &api_arguments,
        )?;
        let mut fleet_hosts = BTreeMap::new();
        for (host, (topology, bridge)) in built {
            let host_state = state.join(&host);
            fs::create_dir_all(&host_state)?;
            let mut agent = AgentProcess::prepare(
                &zpr_binary(),
                &topology.router,
                Path::new(""),
                &[],
                &host_state,
            );
            agent.arguments = fleet_agent_arguments(&url, &host);
            agent
                .arguments
                .extend(etcd.zpr_flags(&format!("zpr-{tenancy}-node-{host}"))?);
            agent.arguments.extend(agent_arguments.iter().cloned());
            agent.spawn()?;
            fleet_hosts.insert(
                host,
                FleetHost {
                    topology,
                    agent,
                    bridge,
                },
            );
        }
        let fleet = Fleet {
            etcd,
            url,
            hosts: fleet_hosts,
            api,
            placement,
            _servers: servers,
            spine,
            spine_gateways,
            state,
            agent_arguments,
            api_arguments,
            nodes: std::sync::Mutex::new(nodes.iter().map(|node| node.to_string()).collect()),
        };
        for host in fleet.hosts.values() {
            host.agent.wait_for_generation(1)?;
        }
        Ok(fleet)
    }

    /// The three-tier tenancy over three hosts ([`three_hosts`]), its
    /// workloads listening on `ports`.
    pub fn three_hosts(ports: &[u16], signed: bool) -> anyhow::Result<Fleet> {
        use three_hosts::{HOST_A, HOST_B, HOST_C, INVENTORY};
        Fleet::start_with(
            &[
                ("host-a", &HOST_A),
                ("host-b", &HOST_B),
                ("host-c", &HOST_C),
            ],
            ports,
            INVENTORY,
            signed,
        )
    }

    /// The directory of public keys a signed fleet's agents trust.
    pub fn trusted(&self) -> PathBuf {
        self.state.join("trusted")
    }

    /// A new key pair in the fleet's state: the private key's path
    /// (`<name>.key`; the public one is beside it, `<name>.pub`).
    pub fn new_key(&self, name: &str) -> anyhow::Result<PathBuf> {
        generate_key(&self.state, name)
    }

    /// Another API server on the same tenancy, on `host`.
    pub fn second_api_server(&self, host: &str) -> anyhow::Result<ApiServer> {
        let seed = self.state.join("inventory.yaml");
        ApiServer::start_with(
            &self.hosts[host].topology.router,
            &self.url,
            &seed,
            &self.state,
            &self.api_arguments,
        )
    }

    /// `zpr run`'s arguments for an agent of `node` (its etcd user made
    /// first when the fleet has none yet).
    pub fn agent_arguments(&self, node: &str) -> anyhow::Result<Vec<String>> {
        let fresh = self
            .nodes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(node.to_owned());
        if fresh {
            authorise_nodes(&self.etcd, self.tenancy(), &[node])?;
        }
        let mut arguments = fleet_agent_arguments(&self.url, node);
        arguments.extend(
            self.etcd
                .zpr_flags(&format!("zpr-{}-node-{node}", self.tenancy()))?,
        );
        arguments.extend(self.agent_arguments.iter().cloned());
        Ok(arguments)
    }

    /// zpr's flags to reach the store as the tenancy's `role` user
    /// (`api`, `monitor`), or as etcd's root.
    pub fn etcd_flags(&self, role: &str) -> Vec<String> {
        let user = match role {
            "root" => "root".to_owned(),
            role => format!("zpr-{}-{role}", self.tenancy()),
        };
        self.etcd.zpr_flags(&user).expect("a client certificate")
    }

    pub fn host(&self, name: &str) -> &FleetHost {
        &self.hosts[name]
    }

    pub fn host_mut(&mut self, name: &str) -> &mut FleetHost {
        self.hosts.get_mut(name).expect("a host of the fleet")
    }

    /// Live-migrates a workload to host `to`, behind its vNIC `vnic`: the
    /// vNIC on its old host goes, one on the new host comes, and the spine
    /// routes its address there. Its namespace (the VM, with its open
    /// connections) is the same.
    pub fn migrate(&mut self, workload: &str, to: &str, vnic: &str) -> anyhow::Result<()> {
        let from = self.placement[workload].clone();
        let vm = self.host_mut(&from).topology.detach(workload)?;
        let address = vm.address;
        self.host_mut(to).topology.attach(workload, vm, vnic)?;
        self.spine.exec(&[
            "ip",
            "route",
            "replace",
            &format!("{address}/32"),
            "via",
            &self.spine_gateways[to],
        ])?;
        self.placement.insert(workload.to_owned(), to.to_owned());
        Ok(())
    }

    fn workload_netns(&self, workload: &str) -> &Netns {
        let host = &self.placement[workload];
        &self.hosts[host].topology.host(workload).netns
    }

    fn address(&self, workload: &str) -> Ipv4Addr {
        let host = &self.placement[workload];
        self.hosts[host].topology.host(workload).address
    }

    /// One TCP exchange from one workload to another (on any hosts).
    pub fn works(&self, from: &str, to: &str, port: u16) -> bool {
        tcp_exchange(self.workload_netns(from), self.address(to), port).is_ok()
    }

    /// A TCP connection from one workload to another, kept open.
    pub fn connect(&self, from: &str, to: &str, port: u16) -> anyhow::Result<std::net::TcpStream> {
        crate::traffic::connect(self.workload_netns(from), None, self.address(to), port)
    }

    /// The tenancy's name (the URL's last part).
    pub fn tenancy(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or_default()
    }

    /// The etcd key of a tenancy record (`state/endpoints/db`, `next-id`...).
    pub fn key(&self, record: &str) -> String {
        format!("/zpr/v1/{}/{record}", self.tenancy())
    }

    /// `zpr fleet status --output json`: its exit code and report.
    pub fn fleet_report(&self) -> anyhow::Result<(i32, Value)> {
        let output = Command::new(zpr_binary())
            .args(["fleet", "status", "--output", "json", "--store", &self.url])
            .args(self.etcd_flags("monitor"))
            .output()?;
        let report = serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "zpr fleet status: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        Ok((output.status.code().unwrap_or(-1), report))
    }

    /// `zpr usage --store URL --output json`: the tenancy's statements
    /// with the flows every reporting node counted.
    pub fn fleet_usage(&self) -> anyhow::Result<Value> {
        let output = Command::new(zpr_binary())
            .args(["usage", "--output", "json", "--store", &self.url])
            .args(self.etcd_flags("monitor"))
            .output()?;
        serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "zpr usage --store: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }

    /// `zpr fleet status --output json`.
    pub fn fleet_status(&self) -> anyhow::Result<Value> {
        Ok(self.fleet_report()?.1)
    }

    /// `zpr wait REVISION` with a timeout: its exit code and output.
    pub fn wait(&self, revision: u64, timeout_seconds: u32) -> anyhow::Result<Output> {
        Ok(Command::new(zpr_binary())
            .args(["wait", &revision.to_string(), "--store", &self.url])
            .args(["--timeout", &timeout_seconds.to_string()])
            .args(self.etcd_flags("monitor"))
            .output()?)
    }

    /// Waits until every node that must enforces `revision` (`zpr wait`
    /// with `timeout`); panics naming the nodes that do not.
    pub fn wait_everywhere(&self, revision: u64, timeout: Duration) {
        let output = self.wait(revision, timeout.as_secs() as u32).unwrap();
        assert!(
            output.status.success(),
            "zpr wait {revision}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Waits until `ready` holds, or fails after `timeout` saying `what`.
    pub fn eventually(
        &self,
        what: &str,
        timeout: Duration,
        ready: impl Fn() -> bool,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        while !ready() {
            if started.elapsed() > timeout {
                bail!("{what}: not within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(started.elapsed())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.state);
    }
}

/// The store revision the CLI reported for a change (which must have
/// succeeded).
pub fn revision_of(output: &Output) -> u64 {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let after = stderr
        .split("store revision ")
        .nth(1)
        .unwrap_or_else(|| panic!("no store revision in: {stderr}"));
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The tenancy's roles and users (`zpr fleet etcd-roles`), made in etcd.
fn authorise_tenancy(etcd: &Etcd, tenancy: &str, nodes: &[&str]) -> anyhow::Result<()> {
    etcd.authorise(etcd_roles(tenancy, nodes)?)
}

/// Users for more nodes: the node lines of `zpr fleet etcd-roles` (the
/// tenancy's own roles exist already).
fn authorise_nodes(etcd: &Etcd, tenancy: &str, nodes: &[&str]) -> anyhow::Result<()> {
    let node_users = format!("zpr-{tenancy}-node-");
    let commands = etcd_roles(tenancy, nodes)?
        .into_iter()
        .filter(|command| {
            command
                .get(2)
                .is_some_and(|name| name.starts_with(&node_users))
        })
        .collect();
    etcd.authorise(commands)
}

/// `zpr fleet etcd-roles --tenancy T --node N...`, as etcdctl arguments.
fn etcd_roles(tenancy: &str, nodes: &[&str]) -> anyhow::Result<Vec<Vec<String>>> {
    let mut command = Command::new(zpr_binary());
    command.args(["fleet", "etcd-roles", "--tenancy", tenancy]);
    for node in nodes {
        command.args(["--node", node]);
    }
    let output = command.output()?;
    anyhow::ensure!(
        output.status.success(),
        "zpr fleet etcd-roles: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?
        .lines()
        .filter_map(|line| line.strip_prefix("etcdctl "))
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect())
}

/// `zpr key generate --out <state>/keys/<name>`: the private key's path.
fn generate_key(state: &Path, name: &str) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(state.join("keys"))?;
    let prefix = state.join("keys").join(name);
    let output = Command::new(zpr_binary())
        .args(["key", "generate", "--out"])
        .arg(&prefix)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "zpr key generate: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(prefix.with_extension("key"))
}

/// `zpr run`'s arguments for a host of the fleet.
pub fn fleet_agent_arguments(url: &str, node: &str) -> Vec<String> {
    [
        "--store",
        url,
        "--node-name",
        node,
        "--metrics-address",
        "none",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `zpr serve --store etcd://...` (the API alone) in a host's namespace.
pub struct ApiServer {
    pub socket: PathBuf,
    netns: String,
    /// `zpr serve`'s arguments (change them, then kill and spawn).
    pub arguments: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl ApiServer {
    pub fn start(
        netns: &Netns,
        url: &str,
        seed_inventory: &Path,
        state: &Path,
    ) -> anyhow::Result<ApiServer> {
        ApiServer::start_with(netns, url, seed_inventory, state, &[])
    }

    /// As [`ApiServer::start`], with more arguments for `zpr serve`.
    pub fn start_with(
        netns: &Netns,
        url: &str,
        seed_inventory: &Path,
        state: &Path,
        more: &[String],
    ) -> anyhow::Result<ApiServer> {
        let run_dir = state.join(unique_name("api"));
        let socket = run_dir.join("api.sock");
        let arguments = [
            "--store",
            url,
            "--seed-inventory",
            &seed_inventory.display().to_string(),
            "--bootstrap-admin",
            "root",
            "--run-dir",
            &run_dir.display().to_string(),
            "--socket",
            &socket.display().to_string(),
        ]
        .map(str::to_owned)
        .into_iter()
        .chain(more.iter().cloned())
        .collect();
        let mut server = ApiServer {
            socket,
            netns: netns.name().to_owned(),
            arguments,
            log: state.join(format!("{}.log", unique_name("api"))),
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let _ = fs::remove_file(&self.socket);
        self.child = Some(start_zpr_serve(
            &self.netns,
            &[],
            &self.arguments,
            &self.log,
            || self.socket.exists(),
        )?);
        Ok(())
    }

    /// `zpr ARGS... --socket S` as root.
    pub fn cli(&self, arguments: &[&str]) -> anyhow::Result<Output> {
        Command::new(zpr_binary())
            .args(arguments)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .context("running the zpr CLI")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's local audit log (`<run-dir>/audit.jsonl`).
    pub fn audit_log(&self) -> String {
        let run_dir = self
            .socket
            .parent()
            .expect("the socket is in the run directory");
        fs::read_to_string(run_dir.join("audit.jsonl")).unwrap_or_default()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The three-tier tenancy the fleet tests spread over three hosts: lb on
/// host-a, app-1 and app-2 on host-b (`vnet0`, `vnet1`), db on host-c
/// (`vnet0` again, as every libvirt host has one).
pub mod three_hosts {
    use super::Workload;

    /// The load balancer alone on host A.
    pub const HOST_A: [Workload; 1] = [("lb", "zpr-lb", "10.0.1.10")];

    /// Two hosts each with a `vnet0`, as every libvirt hypervisor has.
    pub const HOST_B: [Workload; 2] = [
        ("app-1", "vnet0", "10.0.2.10"),
        ("app-2", "vnet1", "10.0.2.11"),
    ];
    pub const HOST_C: [Workload; 1] = [("db", "vnet0", "10.1.1.10")];

    pub const INVENTORY: &str = "
namespaces:
  - name: ocvtc002
    attributes:
      - { key: networks, type: list, values: [front-end, back-end] }
      - { key: lb, type: list, values: [frontend] }
      - { key: apps, type: list, values: [server] }
      - { key: db, type: list, values: [customer-db] }
vcns:
  - { name: frontend-vcn, cidrs: [10.0.0.0/16], security-attribute: ocvtc002.networks:front-end }
  - { name: backend-vcn, cidrs: [10.1.0.0/16], security-attribute: ocvtc002.networks:back-end }
endpoints:
  - { name: lb, vcn: frontend-vcn, addresses: [10.0.1.10], interface: zpr-lb, node: host-a,
      security-attributes: [ocvtc002.lb:frontend] }
  - { name: app-1, vcn: frontend-vcn, addresses: [10.0.2.10], interface: vnet0, node: host-b,
      security-attributes: [ocvtc002.apps:server] }
  - { name: app-2, vcn: frontend-vcn, addresses: [10.0.2.11], interface: vnet1, node: host-b,
      security-attributes: [ocvtc002.apps:server] }
  - { name: db, vcn: backend-vcn, addresses: [10.1.1.10], interface: vnet0, node: host-c,
      security-attributes: [ocvtc002.db:customer-db] }
";

    pub const APPS_TO_DB: &str = "allow ocvtc002.apps:server endpoints in ocvtc002.networks:front-end VCN to connect to ocvtc002.db:customer-db endpoints with protocol='tcp/1521' in ocvtc002.networks:back-end VCN";
    pub const LB_TO_APPS: &str = "In ocvtc002.networks:front-end VCN allow ocvtc002.lb:frontend endpoints to connect to ocvtc002.apps:server endpoints with protocol='tcp/80'";
}
