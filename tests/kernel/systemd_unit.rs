//! The Debian package and its unit (examples/zpr.service) under a real
//! systemd: a minimal Debian booted in a container (systemd-nspawn) that
//! shares the three-tier network's router namespace, where the host-side
//! vNICs are, as a hypervisor host's agent does. The package is installed
//! there, the unit started with the example's inputs, and real traffic
//! shows it enforces; then the agent is killed and restarted by systemd,
//! and the package upgraded, while traffic flows. Whatever the unit's
//! sandbox lacks shows here as a start that fails or a path that breaks.

use std::{
    collections::BTreeMap,
    fs,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use zpr_tests::{
    agent::zpr_package,
    container::{Bpffs, Container, cannot_boot_here, debian_root},
    site::{Held, Probed, while_holding_allowed, while_probing_denied},
    three_tier::{Network, example},
};

const UNIT: &str = "zpr.service";

/// `systemctl show zpr.service` for these properties.
fn show(container: &Container, properties: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
    let output = container.exec(&["systemctl", "show", UNIT, "-p", &properties.join(",")])?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect())
}

/// The journal entries of process `pid`, one JSON object each. Matched by
/// pid rather than by unit: the agent logs over journald's native socket,
/// and journald learns a sender's unit from its cgroup when it reads the
/// message, so the last line of an agent that has already exited carries
/// no unit, while its pid comes with the message.
fn journal_of(container: &Container, pid: &str) -> anyhow::Result<Vec<Value>> {
    let matched = format!("_PID={pid}");
    let output = container.exec(&["journalctl", &matched, "-o", "json", "--no-pager"])?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).context("a journal entry that is not JSON"))
        .collect()
}

/// The first journal entry of the agent `pid` whose message starts with
/// `message`; fails, showing the journal, if there is none within 10 s
/// (journald reads what was sent on its own schedule).
fn logged_by(container: &Container, pid: &str, message: &str) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let entry = journal_of(container, pid)?.into_iter().find(|entry| {
            entry["MESSAGE"]
                .as_str()
                .is_some_and(|logged| logged.starts_with(message))
        });
        if let Some(entry) = entry {
            return Ok(entry);
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!(
                "agent {pid} logged no {message:?} in 10 s:\n{}",
                journal_text(container)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `journalctl -u zpr` as text, for failure messages.
fn journal_text(container: &Container) -> String {
    container
        .try_exec(&["journalctl", "-u", UNIT, "--no-pager"])
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
}

/// Waits until the unit runs a main process other than `before`, and is
/// active again (so READY came from it); returns its pid.
fn wait_for_new_main_pid(container: &Container, before: &str) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        let state = show(container, &["MainPID", "ActiveState", "SubState"])?;
        let pid = &state["MainPID"];
        if pid != before && pid != "0" && state["ActiveState"] == "active" {
            return Ok(pid.clone());
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "no new agent after 30 s: {state:?}\n{}",
                journal_text(container)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where [`install`] puts the package in the container.
const PACKAGE_INSIDE: &str = "/root/zpr.deb";

/// Copies `deb` into the container and installs it with dpkg.
fn install(container: &Container, deb: &Path) -> anyhow::Result<()> {
    container.write(PACKAGE_INSIDE, &fs::read(deb)?, 0o644)?;
    container
        .exec(&["dpkg", "--install", PACKAGE_INSIDE])
        .map(drop)
}

/// Installs, over the installed package, the same package with its
/// version bumped to `version`, as the next release would come: the same
/// files, so only the upgrade itself is tried. Built in the container, with
/// its dpkg-deb.
fn upgrade_to(container: &Container, version: &str) -> anyhow::Result<()> {
    let (tree, next) = ("/root/next", "/root/next.deb");
    container.exec(&["dpkg-deb", "--raw-extract", PACKAGE_INSIDE, tree])?;
    let control = format!("{tree}/DEBIAN/control");
    let bump = format!("s/^Version: .*/Version: {version}/");
    container.exec(&["sed", "-i", &bump, &control])?;
    // Uncompressed: quicker to build, and dpkg installs it the same way.
    container.exec(&[
        "dpkg-deb",
        "-Znone",
        "--root-owner-group",
        "--build",
        tree,
        next,
    ])?;
    container.exec(&["dpkg", "--install", next]).map(drop)
}

/// The agent `pid` found the pins of the one before it and kept them.
fn assert_adopted_the_pins(container: &Container, pid: &str) -> anyhow::Result<()> {
    logged_by(container, pid, "adopted pinned maps at generation").map(drop)
}

/// Checks that no denied probe passed and the held allowed connection
/// answered every time while `what` happened; returns what it returned.
fn nothing_passed_or_broke<R>(probed: Probed<Held<R>>, what: &str) -> R {
    let held = probed.result;
    assert_eq!(probed.through, 0, "denied connections passed {what}");
    assert!(probed.tries > 0, "no denied connection was tried {what}");
    assert_eq!(
        held.echoed, held.tries,
        "the allowed connection stalled or was cut {what}"
    );
    assert!(
        held.tries > 0,
        "nothing was sent over the allowed connection {what}"
    );
    held.result
}

/// `zpr status`, run in the container as an operator would, says the host
/// is protected, and real traffic takes exactly the paths the example
/// allows.
fn assert_enforcing(container: &Container, network: &Network) -> anyhow::Result<()> {
    let report = container.try_exec(&["zpr", "status"])?;
    ensure!(
        report.status.code() == Some(0),
        "zpr status exited {}: {}",
        report.status,
        String::from_utf8_lossy(&report.stdout)
    );
    network.assert_paths_as_in_example();
    Ok(())
}

/// Writes the example's inputs where the unit looks for them, and starts
/// it: `systemctl start` returns once the agent said READY (Type=notify),
/// and fails if it did not.
fn start_with_the_example(container: &Container) -> anyhow::Result<()> {
    for (file, inside) in [
        ("inventory.yaml", "/etc/zpr/inventory.yaml"),
        ("three-tier.zpr", "/etc/zpr/policy/three-tier.zpr"),
    ] {
        container.write(inside, &fs::read(example(file))?, 0o644)?;
    }
    if let Err(err) = container.exec(&["systemctl", "start", UNIT]) {
        bail!("{err:#}\n{}", journal_text(container));
    }
    Ok(())
}

/// Boots the cached Debian root in `network`'s router namespace, or says
/// why this machine cannot (None: skip the test).
fn boot(network: &Network, bpffs: Bpffs) -> anyhow::Result<Option<Container>> {
    let image = debian_root()?;
    if let Some(why) = cannot_boot_here(&image)? {
        eprintln!("skipped: {why}");
        return Ok(None);
    }
    Container::boot(&image, network.router(), bpffs).map(Some)
}

#[test]
fn the_package_enforces_under_systemd_across_a_kill_and_an_upgrade() -> anyhow::Result<()> {
    let network = Network::start()?;
    let Some(container) = boot(&network, Bpffs::MountedAtBoot)? else {
        return Ok(());
    };

    // Installed: enabled, and without inputs a start is a no-op.
    install(&container, &zpr_package())?;
    let enabled = container.try_exec(&["systemctl", "is-enabled", UNIT])?;
    assert_eq!(String::from_utf8_lossy(&enabled.stdout).trim(), "enabled");
    container.exec(&["systemctl", "start", UNIT])?;
    let state = show(&container, &["ActiveState", "ConditionResult"])?;
    assert_eq!(state["ActiveState"], "inactive", "{state:?}");
    assert_eq!(
        state["ConditionResult"], "no",
        "started without inputs: {state:?}"
    );
    assert!(
        network.works("internet", "app-1", 80),
        "installing began enforcement"
    );

    start_with_the_example(&container)?;
    let state = show(
        &container,
        &["ActiveState", "SubState", "StatusText", "MainPID"],
    )?;
    assert_eq!(
        (state["ActiveState"].as_str(), state["SubState"].as_str()),
        ("active", "running"),
        "{state:?}"
    );
    // STATUS= comes with READY=1 in one message, once every vNIC runs zpr.
    assert_eq!(
        state["StatusText"], "enforcing generation 1 on 4 vNICs",
        "{state:?}"
    );
    let status = container.exec(&["systemctl", "status", "--no-pager", UNIT])?;
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("Active: active (running)"), "{status}");
    assert!(
        status.contains("Status: \"enforcing generation 1 on 4 vNICs\""),
        "{status}"
    );
    assert_enforcing(&container, &network)?;

    // The journal holds the agent's own entries with their fields, not
    // text lines on stderr.
    let first = state["MainPID"].clone();
    let started = logged_by(&container, &first, "fresh: nothing was pinned")?;
    assert_eq!(started["F_PINS"], "/sys/fs/bpf/zpr", "{started:#}");
    // tracing-journald logs INFO as notice.
    assert_eq!(started["PRIORITY"], "5", "{started:#}");
    assert_eq!(started["SYSLOG_IDENTIFIER"], "zpr", "{started:#}");
    assert!(
        started["TARGET"]
            .as_str()
            .is_some_and(|target| target.starts_with("zpr")),
        "{started:#}"
    );

    // SIGKILL: systemd restarts the agent, which adopts the pins; denied
    // stays denied and the allowed connection lives on meanwhile.
    let restarted = while_probing_denied(&network, || {
        while_holding_allowed(&network, || {
            container.exec(&[
                "systemctl",
                "kill",
                "--signal=SIGKILL",
                "--kill-whom=main",
                UNIT,
            ])?;
            wait_for_new_main_pid(&container, &first)
        })
    })?;
    let second = nothing_passed_or_broke(restarted, "while systemd restarted the agent");
    let state = show(&container, &["NRestarts", "Result"])?;
    assert_eq!(state["NRestarts"], "1", "{state:?}");
    assert_adopted_the_pins(&container, &second)?;
    assert_enforcing(&container, &network)?;

    // The next version installed over this one: the agent restarts into
    // it, and nothing passes or breaks that should not.
    let version = format!("{}+upgrade1", env!("CARGO_PKG_VERSION"));
    let upgraded = while_probing_denied(&network, || {
        while_holding_allowed(&network, || {
            upgrade_to(&container, &version)?;
            wait_for_new_main_pid(&container, &second)
        })
    })?;
    let third = nothing_passed_or_broke(upgraded, "during the upgrade");
    // Stopped as systemd stops it (SIGTERM), not killed.
    logged_by(&container, &second, "stopping; enforcement stays in place")?;
    let installed = container.exec(&["dpkg-query", "--show", "--showformat=${Version}", "zpr"])?;
    assert_eq!(String::from_utf8_lossy(&installed.stdout), version);
    assert_adopted_the_pins(&container, &third)?;
    assert_enforcing(&container, &network)?;
    Ok(())
}

/// In a container systemd mounts no bpffs: the unit mounts one in PID 1's
/// mount namespace, not in the service's own (where it would vanish with
/// the agent), so the pins outlive the agent and `zpr status` sees them.
#[test]
fn without_bpffs_the_unit_mounts_one_that_outlives_the_agent() -> anyhow::Result<()> {
    let network = Network::start()?;
    let Some(container) = boot(&network, Bpffs::Absent)? else {
        return Ok(());
    };
    install(&container, &zpr_package())?;
    start_with_the_example(&container)?;
    let mounted = container.exec(&["stat", "--file-system", "--format=%T", "/sys/fs/bpf"])?;
    assert_eq!(String::from_utf8_lossy(&mounted.stdout).trim(), "bpf_fs");
    assert_enforcing(&container, &network)?;

    let first = show(&container, &["MainPID"])?["MainPID"].clone();
    container.exec(&["systemctl", "restart", UNIT])?;
    let second = show(&container, &["MainPID"])?["MainPID"].clone();
    assert_ne!(first, second, "the agent was not restarted");
    assert_adopted_the_pins(&container, &second)?;
    assert_enforcing(&container, &network)?;
    Ok(())
}
