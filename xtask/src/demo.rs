//! `cargo xtask demo`: Oracle's three-tier walkthrough, enforced for real.
//! Builds the topology in network namespaces, runs `zpr run` on it, tries
//! every path with real TCP, explains a denial, streams drops with
//! `zpr monitor`, and opens a path with a live reload. Everything it
//! creates is removed at the end, also after Ctrl-C.

use std::{
    fs,
    net::Ipv4Addr,
    path::Path,
    process::Stdio,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::bail;
use zpr_tests::{
    agent::AgentProcess,
    site::OPENING,
    three_tier::{HOSTS, Network, PATHS},
    traffic::tcp_exchange,
};

use crate::build;

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

/// Waits for the agent to apply `generation`, giving up on Ctrl-C.
fn wait_for_generation(agent: &AgentProcess, generation: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while agent.generation() < generation {
        checkpoint()?;
        if started.elapsed() > Duration::from_secs(20) {
            bail!(
                "the agent did not apply generation {generation} within 20 s:\n{}",
                agent.log()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(started.elapsed())
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
    let network = Network::start()?;
    for (name, vnic, address) in HOSTS {
        println!("  {name:<9} {address:<14} vNIC {vnic}");
    }
    checkpoint()?;

    heading("zpr run (in the router namespace, where the vNICs are)");
    let agent = AgentProcess::start(
        zpr,
        network.router(),
        &inventory,
        std::slice::from_ref(&policy),
        scratch,
    )?;
    wait_for_generation(&agent, 1)?;
    print_log(&agent.log(), 0);

    let monitor = agent
        .zpr(&["monitor", "--duration", "6"])
        .args(agent.paths())
        .stdout(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));

    heading("every path, tried with real TCP (expected = `zpr explain`, observed = traffic)");
    println!(
        "  {:<9} {:<9} {:>5}  {:<9} {:<9}",
        "FROM", "TO", "PORT", "EXPECTED", "OBSERVED"
    );
    let mut mismatches = 0;
    for (from, to, port, _) in PATHS {
        checkpoint()?;
        let (source, target) = (network.address(from), network.address(to));
        let expected = explain_allows(&agent, &inventory, &policy, source, target, port)?;
        let observed = tcp_exchange(network.netns(from), target, port).is_ok();
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
    let stream = String::from_utf8_lossy(&output.stdout);
    // Lines starting `--` say what was not shown, and the totals.
    let (drops, notes): (Vec<&str>, Vec<&str>) =
        stream.lines().partition(|line| !line.starts_with("--"));
    for line in drops.iter().take(12) {
        println!("  {line}");
    }
    if drops.len() > 12 {
        println!("  ... ({} drop events in all)", drops.len());
    }
    for line in notes {
        println!("  {line}");
    }
    checkpoint()?;

    heading("live reload: allow the internet to reach the app servers on tcp/80");
    let (internet, app) = (network.netns("internet"), network.address("app-1"));
    let before = verdict(tcp_exchange(internet, app, 80).is_ok());
    println!("  before: internet -> app-1:80 {before}");
    println!("  + {OPENING}");
    let mut text = fs::read_to_string(&policy)?;
    text.push_str(OPENING);
    text.push('\n');
    let logged = agent.log().lines().count();
    fs::write(&policy, text)?;
    let waited = wait_for_generation(&agent, 2)?;
    print_log(&agent.log(), logged);
    let after = verdict(tcp_exchange(internet, app, 80).is_ok());
    println!(
        "  after:  internet -> app-1:80 {after} (seen {} ms after the write)",
        waited.as_millis()
    );

    heading("zpr status");
    let status = agent.zpr(&["status"]).args(agent.paths()).output()?;
    print!("{}", indent(&String::from_utf8_lossy(&status.stdout)));
    let protected = status.status.success();

    heading("cleaning up: zpr down, namespaces removed");
    drop(agent);
    drop(network);
    if mismatches > 0 {
        bail!("{mismatches} paths behaved unlike `zpr explain` says");
    }
    if !protected {
        bail!(
            "`zpr status` did not report every endpoint protected ({status})",
            status = status.status
        );
    }
    println!("done: every path behaved as `zpr explain` says.");
    Ok(())
}

fn explain_allows(
    agent: &AgentProcess,
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

/// Prints a log from line `from` on.
fn print_log(log: &str, from: usize) {
    for line in log.lines().skip(from) {
        println!("  agent: {line}");
    }
}
