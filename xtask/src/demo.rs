//! `cargo xtask demo`: Oracle's three-tier walkthrough, enforced for real.
//! Builds the topology in network namespaces, runs `zpr run` on it, tries
//! every path with real TCP, explains a denial, streams drops with
//! `zpr monitor`, and opens a path with a live reload. Everything it
//! creates is removed at the end, also after Ctrl-C.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use zpr_tests::{
    topology::Topology,
    traffic::{EchoServer, tcp_exchange},
};

use crate::build;

/// (name, host-side vNIC, address): examples/three-tier/inventory.yaml,
/// plus an internet host outside every VCN.
const HOSTS: [(&str, &str, &str); 5] = [
    ("internet", "zpr-inet", "198.51.100.10"),
    ("lb", "zpr-lb", "10.0.1.10"),
    ("app-1", "zpr-app1", "10.0.2.10"),
    ("app-2", "zpr-app2", "10.0.2.11"),
    ("db", "zpr-db", "10.1.1.10"),
];

const PATHS: [(&str, &str, u16); 10] = [
    ("internet", "lb", 80),
    ("lb", "app-1", 80),
    ("lb", "app-2", 80),
    ("app-1", "db", 1521),
    ("app-2", "db", 1521),
    ("internet", "app-1", 80),
    ("lb", "db", 1521),
    ("app-1", "db", 22),
    ("db", "app-1", 80),
    ("lb", "internet", 80),
];

/// The statement the live reload adds: the internet may reach the apps.
const OPENING: &str = "In ocvtc002.networks:front-end VCN allow '0.0.0.0/0' to connect to ocvtc002.apps:server endpoints with protocol='tcp/80'";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn checkpoint() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted: cleaning up");
    }
    Ok(())
}

/// The demo's own state directories and the agent, torn down on drop.
struct Agent {
    zpr: PathBuf,
    bpffs: PathBuf,
    run_dir: PathBuf,
    child: Child,
}

impl Agent {
    fn args(&self) -> [String; 4] {
        [
            "--bpffs".into(),
            self.bpffs.display().to_string(),
            "--run-dir".into(),
            self.run_dir.display().to_string(),
        ]
    }

    fn zpr(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.zpr);
        command.args(args);
        command
    }

    fn generation(&self) -> u32 {
        let status = self
            .zpr(&["status", "--output", "json"])
            .args(self.args())
            .output();
        status
            .ok()
            .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
            .and_then(|json| json["agent"]["generation"].as_u64())
            .unwrap_or(0) as u32
    }

    fn wait_for_generation(&self, generation: u32) -> anyhow::Result<Duration> {
        let started = Instant::now();
        while self.generation() < generation {
            checkpoint()?;
            if started.elapsed() > Duration::from_secs(20) {
                bail!("the agent did not apply generation {generation} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(started.elapsed())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self
            .zpr(&["down"])
            .args(self.args())
            .stdout(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.run_dir);
        let _ = fs::remove_dir_all(&self.bpffs);
    }
}

fn heading(text: &str) {
    println!("\n\x1b[1m== {text}\x1b[0m");
}

pub fn run() -> anyhow::Result<()> {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_interrupt as *const () as libc::sighandler_t,
        );
    }
    let zpr = build::run()?;
    let workspace = xtask::workspace_root();
    let scratch = std::env::temp_dir().join(format!("zpr-demo-{}", std::process::id()));
    fs::create_dir_all(&scratch)?;
    let result = demo(&zpr, &workspace, &scratch);
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn demo(zpr: &Path, workspace: &Path, scratch: &Path) -> anyhow::Result<()> {
    heading("the three-tier example (examples/three-tier)");
    let example = workspace.join("examples/three-tier");
    let inventory = scratch.join("inventory.yaml");
    let policy = scratch.join("three-tier.zpr");
    fs::copy(example.join("inventory.yaml"), &inventory)?;
    fs::copy(example.join("three-tier.zpr"), &policy)?;
    for line in fs::read_to_string(&policy)?
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        println!("  {line}");
    }

    heading("topology: one network namespace per endpoint, vNICs in a router namespace");
    let topology = Topology::new(&HOSTS)?;
    for (name, vnic, address) in HOSTS {
        println!("  {name:<9} {address:<14} vNIC {vnic}");
    }
    let mut servers = Vec::new();
    for (host, port) in [
        ("internet", 80),
        ("lb", 80),
        ("app-1", 80),
        ("app-2", 80),
        ("db", 1521),
        ("db", 22),
    ] {
        servers.push(EchoServer::start(&topology.host(host).netns, port)?);
    }
    checkpoint()?;

    heading("zpr run (in the router namespace, where the vNICs are)");
    let bpffs = PathBuf::from("/sys/fs/bpf").join(format!("zpr-demo-{}", std::process::id()));
    let run_dir = scratch.join("run");
    let log = fs::File::create(scratch.join("agent.log"))?;
    let netns = format!("--net=/run/netns/{}", topology.router.name());
    let child = Command::new("nsenter")
        .arg(&netns)
        .arg(zpr)
        .args(["run", "--inventory"])
        .arg(&inventory)
        .arg(&policy)
        .arg("--bpffs")
        .arg(&bpffs)
        .arg("--run-dir")
        .arg(&run_dir)
        .stderr(log)
        .spawn()
        .context("starting zpr run")?;
    let agent = Agent {
        zpr: zpr.to_owned(),
        bpffs,
        run_dir,
        child,
    };
    agent.wait_for_generation(1)?;
    print_agent_log(scratch, 0)?;

    let monitor = agent
        .zpr(&["monitor", "--duration", "6"])
        .args(agent.args())
        .stdout(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));

    heading("every path, tried with real TCP (expected = `zpr explain`, observed = traffic)");
    println!(
        "  {:<9} {:<9} {:>5}  {:<9} {:<9}",
        "FROM", "TO", "PORT", "EXPECTED", "OBSERVED"
    );
    let mut mismatches = 0;
    for (from, to, port) in PATHS {
        checkpoint()?;
        let expected = explain_allows(
            &agent,
            &inventory,
            &policy,
            topology.host(from).address,
            topology.host(to).address,
            port,
        )?;
        let observed =
            tcp_exchange(&topology.host(from).netns, topology.host(to).address, port).is_ok();
        let word = |allowed| if allowed { "allowed" } else { "denied" };
        let mark = if expected == observed {
            ""
        } else {
            "  <-- MISMATCH"
        };
        mismatches += usize::from(expected != observed);
        println!(
            "  {from:<9} {to:<9} {port:>5}  {:<9} {:<9}{mark}",
            word(expected),
            word(observed)
        );
    }

    heading("zpr explain: why app-1 cannot reach the database on port 22");
    let explanation = agent
        .zpr(&["explain", "--inventory"])
        .arg(&inventory)
        .arg(&policy)
        .args([
            "--from",
            "10.0.2.10",
            "--to",
            "10.1.1.10",
            "--protocol",
            "tcp",
            "--port",
            "22",
        ])
        .output()?;
    print!("{}", indent(&String::from_utf8_lossy(&explanation.stdout)));

    heading("zpr monitor: the drops those attempts caused");
    let output = monitor.wait_with_output()?;
    let drops = String::from_utf8_lossy(&output.stdout);
    for line in drops.lines().take(12) {
        println!("  {line}");
    }
    if drops.lines().count() > 12 {
        println!("  ... ({} drop events in all)", drops.lines().count());
    }
    checkpoint()?;

    heading("live reload: allow the internet to reach the app servers on tcp/80");
    let internet = &topology.host("internet");
    let app = topology.host("app-1").address;
    println!(
        "  before: internet -> app-1:80 {}",
        verdict(tcp_exchange(&internet.netns, app, 80).is_ok())
    );
    println!("  + {OPENING}");
    let mut text = fs::read_to_string(&policy)?;
    text.push_str(OPENING);
    text.push('\n');
    let log_lines = agent_log_lines(scratch)?;
    fs::write(&policy, text)?;
    let waited = agent.wait_for_generation(2)?;
    print_agent_log(scratch, log_lines)?;
    println!(
        "  after:  internet -> app-1:80 {} (observed {} ms after the write)",
        verdict(tcp_exchange(&internet.netns, app, 80).is_ok()),
        waited.as_millis()
    );

    heading("zpr status");
    let status = agent.zpr(&["status"]).args(agent.args()).output()?;
    print!("{}", indent(&String::from_utf8_lossy(&status.stdout)));

    heading("cleaning up: zpr down, namespaces removed");
    drop(agent);
    drop(servers);
    drop(topology);
    if mismatches > 0 {
        bail!("{mismatches} paths behaved unlike `zpr explain` says");
    }
    println!("done: every path behaved as `zpr explain` says.");
    Ok(())
}

fn explain_allows(
    agent: &Agent,
    inventory: &Path,
    policy: &Path,
    from: Ipv4Addr,
    to: Ipv4Addr,
    port: u16,
) -> anyhow::Result<bool> {
    let status = agent
        .zpr(&["explain", "--inventory"])
        .arg(inventory)
        .arg(policy)
        .args([
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
            "--protocol",
            "tcp",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .status()?;
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => bail!("zpr explain failed: {status}"),
    }
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "denied" }
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

fn agent_log_lines(scratch: &Path) -> anyhow::Result<usize> {
    Ok(fs::read_to_string(scratch.join("agent.log"))?
        .lines()
        .count())
}

/// Prints the agent's log from line `from` on.
fn print_agent_log(scratch: &Path, from: usize) -> anyhow::Result<()> {
    for line in fs::read_to_string(scratch.join("agent.log"))?
        .lines()
        .skip(from)
    {
        println!("  agent: {line}");
    }
    Ok(())
}
