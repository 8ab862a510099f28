//! A fleet on a real etcd: how long a change made through the API takes
//! to be enforced on every host (by real probe traffic on each), how long
//! one agent takes to resync after losing the store, how many requests
//! idle agents make of etcd, and how long a new VM's vNIC takes to be
//! enforced after the later of its registration and its appearance.
//!
//! Each host is a router namespace with two probe workloads of its own
//! (source and destination behind their vNICs), an agent following the
//! tenancy (`zpr run --store etcd://`), reaching the test's etcd at
//! 127.0.0.1 through a loopback bridge. The tenancy holds a generated
//! policy set; the change toggles one statement that opens the probes'
//! UDP port on every host at once.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_yaml::Value;
use zpr_agent::{daemon::Status, synthetic};
use zpr_tests::{
    etcd::Etcd, loopback_bridge::LoopbackBridge, topology::Topology, traffic::EchoServer,
    unique_name,
};

use crate::{
    interrupt,
    probe::Probe,
    report::{Bound, Figure, Section, Target, Unit},
    scratch::Scratch,
};

const PROBE_PORT: u16 = 4444;
/// Probes of many hosts at once: a datagram every 2 ms each.
const PROBE_PERIOD: Duration = Duration::from_millis(2);
const PROBE_STATEMENT: &str = "In bench.zone:probe VCN allow bench.role:probe endpoints to connect to bench.role:probe endpoints with protocol='udp/4444'";
/// Stands in the tenancy throughout: the probe's attributes are referenced
/// before the change, as the generated statements' are in the reload
/// measurement, so the change adds a statement, not attributes (which
/// would give every endpoint a new identity).
const STANDING_STATEMENT: &str = "In bench.zone:probe VCN allow bench.role:probe endpoints to connect to bench.role:probe endpoints with protocol='udp/4445'";
/// Statements per policy of the generated set: each policy is one etcd
/// record, well under etcd's 1.5 MiB per request.
const STATEMENTS_PER_POLICY: usize = 1_000;
/// Convergence targets on this 2-core machine, by agents and statements:
/// the fleet issue's, and the floor issue's at 100,000 statements.
const CONVERGENCE_P99_MS: [(usize, usize, f64); 3] = [
    (3, 10_000, 500.0),
    (10, 10_000, 1_000.0),
    (10, 100_000, 250.0),
];
const IDLE_REQUESTS_PER_AGENT_SECOND: f64 = 0.5;
/// A new endpoint enforced this soon after the later of its registration
/// and its vNIC (the endpoint lifecycle issue's target, at 1,000 endpoints).
const REGISTRATION_MS: f64 = 200.0;

pub struct Settings {
    /// Fleets measured, each of its own; new VMs and the resync on the
    /// first.
    pub fleets: Vec<Size>,
    /// Changes per fleet (half open the probes' path, half close it).
    pub changes: usize,
    /// Seconds of idleness over which etcd's requests are counted.
    pub idle_seconds: u64,
    /// New VMs registered in each order (registration first, vNIC first).
    pub registrations: usize,
}

/// One fleet: the generated tenancy's size and the hosts following it.
pub struct Size {
    pub statements: usize,
    pub endpoints: usize,
    pub agents: usize,
}

impl Size {
    pub fn new(statements: usize, endpoints: usize, agents: usize) -> Size {
        Size {
            statements,
            endpoints,
            agents,
        }
    }
}

pub fn measure(settings: &Settings, zpr: &Path) -> anyhow::Result<(Section, Vec<Target>)> {
    let mut figures = Vec::new();
    let mut targets = Vec::new();
    let mut inputs: Option<((usize, usize), Inputs)> = None;
    for (index, size) in settings.fleets.iter().enumerate() {
        interrupt::checkpoint()?;
        let Size {
            statements,
            endpoints,
            agents,
        } = *size;
        eprintln!("fleet: {agents} agents at {statements} statements and {endpoints} endpoints");
        if inputs
            .as_ref()
            .is_none_or(|(generated, _)| *generated != (statements, endpoints))
        {
            let most_agents = settings
                .fleets
                .iter()
                .filter(|other| (other.statements, other.endpoints) == (statements, endpoints))
                .map(|other| other.agents)
                .max()
                .unwrap_or(agents);
            inputs = Some((
                (statements, endpoints),
                Inputs::generate(statements, endpoints, most_agents)?,
            ));
        }
        let (_, generated) = inputs.as_ref().expect("generated above");
        let mut fleet = BenchFleet::start(zpr, generated, agents)?;
        let converged = fleet.convergence(settings.changes)?;
        let figure = Figure::new(
            format!(
                "{agents} agents at {statements} statements: API write → every host's probe \
                 sees the change"
            ),
            Unit::Milliseconds,
            converged.milliseconds,
        );
        if let Some(&(_, _, limit)) = CONVERGENCE_P99_MS
            .iter()
            .find(|(n, at, _)| (*n, *at) == (agents, statements))
        {
            targets.push(Target::check(
                format!(
                    "fleet convergence p99 with {agents} agents at {statements} statements < \
                     {limit} ms"
                ),
                Bound::AtMost(limit),
                figure.summary.max,
            ));
        }
        figures.push(figure);
        figures.push(Figure::new(
            format!(
                "{agents} agents at {statements} statements: the API call (read, check, commit)"
            ),
            Unit::Milliseconds,
            converged.api_milliseconds,
        ));
        figures.push(Figure::new(
            format!(
                "{agents} agents at {statements} statements: each agent's own reload_ms (change \
                 seen → generation live)"
            ),
            Unit::Milliseconds,
            converged.reload_milliseconds,
        ));
        figures.push(Figure::new(
            format!(
                "{agents} agents at {statements} statements: bytes etcd sent each agent per \
                 change"
            ),
            Unit::Kibibytes,
            vec![converged.kib_per_agent_change],
        ));
        let idle = fleet.idle_requests(settings.idle_seconds)?;
        targets.push(Target::check(
            format!(
                "idle etcd requests per agent per second ≤ {IDLE_REQUESTS_PER_AGENT_SECOND} \
                 ({agents} agents at {statements} statements)"
            ),
            Bound::AtMost(IDLE_REQUESTS_PER_AGENT_SECOND),
            idle,
        ));
        figures.push(Figure::new(
            format!("{agents} agents idle at {statements} statements: etcd requests per agent per second"),
            Unit::RequestsPerSecond,
            vec![idle],
        ));
        if index == 0 {
            for registration_first in [true, false] {
                let samples = fleet.registrations(settings.registrations, registration_first)?;
                let order = if registration_first {
                    "registered, then its vNIC appears"
                } else {
                    "its vNIC appears, then it is registered"
                };
                let figure = Figure::new(
                    format!(
                        "a new VM at {endpoints} endpoints ({order}): the later of the two → its \
                         vNIC drops what policy denies (probe)"
                    ),
                    Unit::Milliseconds,
                    samples,
                );
                targets.push(Target::check(
                    format!("new VM enforced < {REGISTRATION_MS} ms after the later of registration and vNIC ({order})"),
                    Bound::AtMost(REGISTRATION_MS),
                    figure.summary.max,
                ));
                figures.push(figure);
            }
            let (resync, reload) = fleet.resync()?;
            figures.push(Figure::new(
                format!(
                    "one agent's resync at {statements} statements and {endpoints} endpoints: \
                     store back → the change it missed is enforced (probe)"
                ),
                Unit::Milliseconds,
                vec![resync],
            ));
            figures.push(Figure::new(
                "that resync's compile and write (the agent's reload_ms)".to_owned(),
                Unit::Milliseconds,
                vec![reload],
            ));
        }
    }
    let sizes = settings
        .fleets
        .iter()
        .map(|size| {
            format!(
                "{} agents at {} statements over {} endpoints",
                size.agents, size.statements, size.endpoints
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let method = vec![
        format!(
            "A real etcd (Debian's 3.4) on 127.0.0.1; an API server (`zpr serve --store \
             etcd://`); N hosts, each a router namespace with a source and a destination \
             workload behind vNICs and `zpr run --store etcd:// --node-name host-i`, reaching \
             etcd through a loopback bridge (a thread carrying each connection out of the \
             host's namespace). The tenancy holds the synthetic generator's statements and \
             endpoints (seed 1, in policies of {STATEMENTS_PER_POLICY} statements) plus the \
             probe workloads, and a policy allowing UDP 4445 between them (so the probe's \
             attributes are referenced before the change, as in the reload measurement). Fleets: {sizes}; the new VMs and the resync on the first."
        ),
        format!(
            "Convergence: {} times, `zpr policy create` (then `delete`) of one statement that \
             opens UDP {PROBE_PORT} between every host's probe workloads; each host's probe \
             sends a datagram every {} ms; a sample is the time from starting the CLI call to \
             the last host's probe seeing the new verdict (opened: first datagram answered; \
             closed: first of the datagrams never answered). Its max is checked against the p99 \
             target (at most 30 samples). Bytes per change: what etcd sent into the hosts' \
             namespaces (every connection of every agent, counted by the bridges) over all the \
             changes, per agent and change.",
            settings.changes,
            PROBE_PERIOD.as_millis()
        ),
        format!(
            "New VMs: {} times in each order, on host 0: a VM's namespace and vNIC (`ip link \
             add`, addressed and routed as an orchestrator does) and `zpr endpoint create` (placed \
             on host-0, tagged bench.role:probe). An unregistered workload on the same host \
             probes the VM on UDP {PROBE_PORT}, which no statement allows: answered while the \
             vNIC runs no zpr, dropped once the agent enforces the VM's identity on it. A sample \
             is the time from the later step's start to the first datagram of the run that is \
             never answered. Its max is checked against the target.",
            settings.registrations
        ),
        "Resync: host 0's bridge to etcd is cut, the probe statement is added, the bridge \
         restored; the time from restoring to its probe seeing the change includes the \
         agent's pause between attempts (0.5 s, doubling to 4 s) as well as the list, compile \
         and write."
            .to_owned(),
        format!(
            "Idle requests: etcd's own `grpc_server_msg_received_total` (every method) over \
             {} s with nothing changing, per agent per second (the agents keep their node \
             leases alive every 3 s and otherwise only watch).",
            settings.idle_seconds
        ),
    ];
    Ok((
        Section {
            title: "Fleet (etcd)".to_owned(),
            method,
            figures,
        },
        targets,
    ))
}

/// A generated tenancy with probe workloads for `agents` hosts.
struct Inputs {
    inventory_yaml: String,
    policies: Vec<String>,
}

fn probe_address(host: usize, role: &str) -> String {
    let last = match role {
        "src" => 10,
        "dst" => 20,
        _ => 30,
    };
    format!("172.30.{host}.{last}")
}

impl Inputs {
    fn generate(statements: usize, endpoints: usize, agents: usize) -> anyhow::Result<Inputs> {
        let generated = synthetic::generate(statements, endpoints, 1);
        let mut inventory: Value = serde_yaml::from_str(&generated.inventory_yaml)?;
        let list = |value: &mut Value, key: &str| -> anyhow::Result<Vec<Value>> {
            Ok(value[key]
                .as_sequence()
                .with_context(|| format!("the generated inventory has no {key}"))?
                .clone())
        };
        let mut namespaces = list(&mut inventory, "namespaces")?;
        namespaces.push(serde_yaml::from_str(
            "{ name: bench, attributes: [ { key: zone, type: list, values: [probe] }, \
               { key: role, type: list, values: [probe] } ] }",
        )?);
        inventory["namespaces"] = Value::Sequence(namespaces);
        let mut vcns = list(&mut inventory, "vcns")?;
        vcns.push(serde_yaml::from_str(
            "{ name: bench-vcn, cidrs: [172.30.0.0/16], security-attribute: bench.zone:probe }",
        )?);
        inventory["vcns"] = Value::Sequence(vcns);
        let mut all = list(&mut inventory, "endpoints")?;
        // Generated endpoints are remote to every host (no interface).
        for endpoint in &mut all {
            if let Some(map) = endpoint.as_mapping_mut() {
                map.remove("interface");
            }
        }
        for host in 0..agents {
            for role in ["src", "dst"] {
                all.push(serde_yaml::from_str(&format!(
                    "{{ name: {role}-{host}, vcn: bench-vcn, addresses: [{}], \
                       interface: zb-{role}, node: host-{host}, \
                       security-attributes: [bench.role:probe] }}",
                    probe_address(host, role)
                ))?);
            }
        }
        inventory["endpoints"] = Value::Sequence(all);
        let lines: Vec<&str> = generated.policy_text.lines().collect();
        let mut policies: Vec<String> = lines
            .chunks(STATEMENTS_PER_POLICY)
            .map(|chunk| chunk.join("\n"))
            .collect();
        policies.push(STANDING_STATEMENT.to_owned());
        Ok(Inputs {
            inventory_yaml: serde_yaml::to_string(&inventory)?,
            policies,
        })
    }
}

struct Host {
    /// The host's namespaces, kept while it runs.
    topology: Topology,
    bridge: LoopbackBridge,
    agent: Child,
    bpffs: PathBuf,
    run_dir: PathBuf,
    probe: Probe,
    _server: EchoServer,
}

struct BenchFleet {
    zpr: PathBuf,
    hosts: Vec<Host>,
    api: Child,
    socket: PathBuf,
    etcd: Etcd,
    url: String,
    scratch: Scratch,
}

impl BenchFleet {
    fn start(zpr: &Path, inputs: &Inputs, agents: usize) -> anyhow::Result<BenchFleet> {
        let scratch = Scratch::new(&format!("fleet{agents}"))?;
        let etcd = Etcd::start()?;
        let url = etcd.url("bench");
        let inventory = scratch.write("inventory.yaml", &inputs.inventory_yaml)?;
        let socket = scratch.path().join("api.sock");
        let api = Command::new(zpr)
            .args([
                "serve",
                "--log-level",
                "warn",
                "--store",
                &url,
                "--bootstrap-admin",
                "root",
            ])
            .arg("--seed-inventory")
            .arg(&inventory)
            .arg("--run-dir")
            .arg(scratch.path().join("api"))
            .arg("--socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(scratch.path().join("api.log"))?)
            .spawn()
            .context("starting zpr serve")?;
        let mut fleet = BenchFleet {
            zpr: zpr.to_owned(),
            hosts: Vec::new(),
            api,
            socket,
            etcd,
            url,
            scratch,
        };
        fleet.wait_for_socket()?;
        for (index, policy) in inputs.policies.iter().enumerate() {
            let file = fleet
                .scratch
                .write(&format!("generated-{index}.zpr"), policy)?;
            let file = file.display().to_string();
            fleet.cli(&[
                "policy",
                "create",
                &format!("generated-{index}"),
                "--file",
                &file,
            ])?;
        }
        // The store's revision once the policies are in: each agent lists
        // at least this one. Not the revision after the hosts start: their
        // node reports move it on outside the state the agents watch.
        let revision = fleet.etcd.revision()?;
        for host in 0..agents {
            fleet.hosts.push(fleet.start_host(host)?);
        }
        for host in &fleet.hosts {
            wait_for_revision(&host.run_dir, revision)?;
        }
        Ok(fleet)
    }

    fn start_host(&self, host: usize) -> anyhow::Result<Host> {
        let (source, destination) = (probe_address(host, "src"), probe_address(host, "dst"));
        let outsider = probe_address(host, "out");
        let topology = Topology::new(&[
            ("src", "zb-src", source.as_str()),
            ("dst", "zb-dst", destination.as_str()),
            // No endpoint: what a new VM must be protected from.
            ("out", "zb-out", outsider.as_str()),
        ])?;
        let server = EchoServer::start(&topology.host("dst").netns, PROBE_PORT)?;
        let bridge = LoopbackBridge::new(&topology.router, self.etcd.client_port)?;
        let bpffs = PathBuf::from("/sys/fs/bpf").join(unique_name("zbf"));
        let run_dir = self.scratch.path().join(format!("host-{host}"));
        let agent = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", topology.router.name()))
            .arg(&self.zpr)
            .args(["run", "--log-level", "warn", "--metrics-address", "none"])
            .args(["--store", &self.url, "--node-name", &format!("host-{host}")])
            .arg("--bpffs")
            .arg(&bpffs)
            .arg("--run-dir")
            .arg(&run_dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(
                self.scratch.path().join(format!("host-{host}.log")),
            )?)
            .spawn()
            .context("starting zpr run")?;
        let probe = Probe::every(
            PROBE_PERIOD,
            &topology.host("src").netns,
            SocketAddr::new(destination.parse()?, PROBE_PORT),
        )?;
        Ok(Host {
            topology,
            bridge,
            agent,
            bpffs,
            run_dir,
            probe,
            _server: server,
        })
    }

    fn wait_for_socket(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        while !self.socket.exists() {
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "zpr serve did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn cli(&self, arguments: &[&str]) -> anyhow::Result<()> {
        let output = Command::new(&self.zpr)
            .args(arguments)
            .arg("--socket")
            .arg(&self.socket)
            .output()?;
        ensure!(
            output.status.success(),
            "zpr {}: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    fn toggle(&self, open: bool) -> anyhow::Result<()> {
        if open {
            self.cli(&["policy", "create", "probe", "--statement", PROBE_STATEMENT])
        } else {
            self.cli(&["policy", "delete", "probe"])
        }
    }

    /// Milliseconds from each change's API call to the last host's probe
    /// seeing it, and what etcd sent the agents for the changes.
    fn convergence(&self, changes: usize) -> anyhow::Result<Converged> {
        let mut samples = Vec::new();
        let received = || {
            self.hosts
                .iter()
                .map(|host| host.bridge.received())
                .sum::<u64>()
        };
        let before = received();
        let mut api_milliseconds = Vec::new();
        let mut reload_milliseconds = Vec::new();
        for change in 0..changes {
            interrupt::checkpoint()?;
            let open = change % 2 == 0;
            // The previous verdict settles on every probe first.
            std::thread::sleep(Duration::from_millis(300));
            let enforced = self
                .hosts
                .iter()
                .map(|host| Status::read(&host.run_dir).ok().and_then(|s| s.revision))
                .collect::<Vec<_>>();
            let since = Instant::now();
            self.toggle(open)?;
            api_milliseconds.push(since.elapsed().as_secs_f64() * 1000.0);
            let mut slowest = Duration::ZERO;
            for host in &self.hosts {
                let seen = if open {
                    host.probe.opened_after(since)
                } else {
                    host.probe.closed_after(since)
                }
                .with_context(|| format!("change {change} (open: {open})"))?;
                slowest = slowest.max(seen);
            }
            samples.push(slowest.as_secs_f64() * 1000.0);
            // The status is written once the change is live, maybe after
            // the probe saw it: this change's reload once its revision is.
            for (host, before) in self.hosts.iter().zip(enforced) {
                let status = wait_for_status(&host.run_dir, |status| status.revision != before)?;
                reload_milliseconds.extend(status.reload_ms);
            }
        }
        // Every agent has applied the last change once its probe sees it,
        // but its node report may still be on the way: what etcd sends
        // for it is counted with the change.
        std::thread::sleep(Duration::from_millis(300));
        let bytes = received() - before;
        // Leave the path closed, as it started.
        if changes % 2 == 1 {
            self.toggle(false)?;
        }
        Ok(Converged {
            milliseconds: samples,
            api_milliseconds,
            reload_milliseconds,
            kib_per_agent_change: bytes as f64 / 1024.0 / (changes * self.hosts.len()) as f64,
        })
    }

    /// Milliseconds from the later of a new VM's registration and its vNIC
    /// to its vNIC enforcing, `count` times, in the order asked.
    fn registrations(
        &mut self,
        count: usize,
        registration_first: bool,
    ) -> anyhow::Result<Vec<f64>> {
        let mut samples = Vec::new();
        for round in 0..count {
            interrupt::checkpoint()?;
            let name = format!("vm{}-{round}", u8::from(registration_first));
            let vnic = format!("zbvm{}x{round}", u8::from(registration_first));
            let address = format!(
                "172.30.250.{}",
                1 + round + if registration_first { 0 } else { 100 }
            );
            let register = [
                "endpoint",
                "create",
                &name,
                "--vcn",
                "bench-vcn",
                "--address",
                &address,
                "--interface",
                &vnic,
                "--node",
                "host-0",
                "--attribute",
                "bench.role:probe",
            ];
            let revision = self.etcd.revision()?;
            let since = if registration_first {
                self.cli(&register)?;
                wait_for_revision(&self.hosts[0].run_dir, revision + 1)?;
                let since = Instant::now();
                self.hosts[0].topology.add_host(&name, &vnic, &address)?;
                since
            } else {
                self.hosts[0].topology.add_host(&name, &vnic, &address)?;
                Instant::now()
            };
            let host = &self.hosts[0];
            let vm = &host.topology.host(&name).netns;
            let _server = EchoServer::start(vm, PROBE_PORT)?;
            let probe = Probe::start(
                &host.topology.host("out").netns,
                SocketAddr::new(address.parse()?, PROBE_PORT),
            )?;
            let since = if registration_first {
                since
            } else {
                // Unregistered and unprotected: the outsider gets through.
                probe.opened_after(since)?;
                let since = Instant::now();
                self.cli(&register)?;
                since
            };
            samples.push(probe.closed_after(since)?.as_secs_f64() * 1000.0);
            drop(probe);
            self.cli(&["endpoint", "delete", &name])?;
            self.hosts[0].topology.detach(&name)?;
        }
        Ok(samples)
    }

    /// etcd requests per agent per second while nothing changes.
    fn idle_requests(&self, seconds: u64) -> anyhow::Result<f64> {
        std::thread::sleep(Duration::from_secs(1));
        let before = etcd_messages_received(self.etcd.client_port)?;
        std::thread::sleep(Duration::from_secs(seconds));
        let after = etcd_messages_received(self.etcd.client_port)?;
        Ok((after - before) / seconds as f64 / self.hosts.len() as f64)
    }

    /// Host 0 misses a change while cut off: milliseconds from the store
    /// coming back to its probe seeing the change, and the agent's own
    /// reload_ms for it.
    fn resync(&self) -> anyhow::Result<(f64, f64)> {
        let host = &self.hosts[0];
        host.bridge.set_cut(true);
        let cut_off = Instant::now();
        while !Status::read(&host.run_dir).is_ok_and(|status| status.store_unreachable.is_some()) {
            ensure!(
                cut_off.elapsed() < Duration::from_secs(20),
                "the agent did not notice it was cut off"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.toggle(true)?;
        let since = Instant::now();
        host.bridge.set_cut(false);
        let seen = host.probe.opened_after(since)?;
        // The probe saw it: the agent has applied the snapshot it listed.
        let status = Status::read(&host.run_dir)?;
        self.toggle(false)?;
        Ok((
            seen.as_secs_f64() * 1000.0,
            status.reload_ms.unwrap_or(f64::NAN),
        ))
    }
}

struct Converged {
    milliseconds: Vec<f64>,
    /// The CLI call: the API's read, check and commit.
    api_milliseconds: Vec<f64>,
    /// Every agent's own reload_ms (change seen → generation live).
    reload_milliseconds: Vec<f64>,
    kib_per_agent_change: f64,
}

/// The agent's status once it enforces `revision` or later.
fn wait_for_revision(run_dir: &Path, revision: u64) -> anyhow::Result<Status> {
    wait_for_status(run_dir, |status| {
        status.revision.is_some_and(|enforced| enforced >= revision)
    })
    .with_context(|| format!("waiting for revision {revision}"))
}

/// The agent's status once `ready` holds for it.
fn wait_for_status(run_dir: &Path, ready: impl Fn(&Status) -> bool) -> anyhow::Result<Status> {
    let started = Instant::now();
    loop {
        if let Ok(status) = Status::read(run_dir)
            && ready(&status)
        {
            return Ok(status);
        }
        interrupt::checkpoint()?;
        if started.elapsed() > Duration::from_secs(120) {
            bail!("an agent's status did not say so within 120 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The sum of etcd's `grpc_server_msg_received_total` (every method).
fn etcd_messages_received(port: u16) -> anyhow::Result<f64> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    let total = body
        .lines()
        .filter(|line| line.starts_with("grpc_server_msg_received_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    Ok(total)
}

impl Drop for BenchFleet {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            let _ = Command::new(&self.zpr)
                .arg("down")
                .arg("--bpffs")
                .arg(&host.bpffs)
                .arg("--run-dir")
                .arg(&host.run_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = host.agent.kill();
            let _ = host.agent.wait();
            let _ = std::fs::remove_dir_all(&host.bpffs);
        }
        let _ = self.api.kill();
        let _ = self.api.wait();
    }
}
