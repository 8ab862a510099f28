//! `zpr run` as users run it, on the three-tier network: hot reload under
//! load, a broken reload, kill -9 and restart, `zpr down`, one agent per
//! host.

use std::{
    fs,
    io::Read as _,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use zpr_tests::{
    agent::zpr_binary,
    run,
    site::{Inputs, OPENING, Site, UNRELATED, while_probing_denied},
    three_tier::Network,
    traffic::{EchoServer, connect, echo, tcp_exchange},
};

fn counter(status: &serde_json::Value, reason: &str) -> u64 {
    status["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["reason"] == reason)
        .map(|row| row["from_workload"].as_u64().unwrap() + row["to_workload"].as_u64().unwrap())
        .unwrap()
}

#[test]
fn reloads_under_load_lose_nothing_and_change_paths() -> anyhow::Result<()> {
    let site = Site::start()?;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let exchanges = Arc::new(AtomicUsize::new(0));
    // A long-lived TCP stream (lb -> app-1) and a loop of new connections
    // (internet -> lb), both allowed throughout.
    let mut stream = connect(
        site.network.netns("lb"),
        None,
        site.network.address("app-1"),
        80,
    )?;
    let lb = site.network.address("lb");
    std::thread::scope(|scope| -> anyhow::Result<()> {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                match echo(&mut stream, b"stream") {
                    Ok(()) => exchanges.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                match tcp_exchange(site.network.netns("internet"), lb, 80) {
                    Ok(()) => exchanges.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
        let original = site.inputs.original_policy();
        let reloads = (0..50u64).try_for_each(|round| {
            let text = if round % 2 == 0 {
                format!("{original}{UNRELATED}\n")
            } else {
                original.clone()
            };
            site.inputs.write_policy(&text)?;
            site.agent.wait_for_generation(round + 2).map(drop)
        });
        // Stop the traffic whatever happened, or the scope never ends.
        stop.store(true, Ordering::Relaxed);
        reloads
    })?;
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "an allowed exchange failed during reloads"
    );
    assert!(
        exchanges.load(Ordering::Relaxed) > 50,
        "traffic ran during the reloads"
    );
    let status = site.status_json()?;
    assert_eq!(status["agent"]["generation"], 51);
    assert_eq!(counter(&status, "revoked"), 0, "no allowed flow was cut");
    let latency = status["agent"]["reload_ms"].as_f64().unwrap();
    assert!(latency > 0.0, "the reload latency is recorded");

    // A reload that adds a path opens it...
    assert!(!site.works("internet", "app-1", 80));
    site.inputs
        .write_policy(&format!("{}{OPENING}\n", site.inputs.original_policy()))?;
    site.agent.wait_for_generation(52)?;
    assert!(
        site.works("internet", "app-1", 80),
        "the added statement opens the path"
    );
    // ...and one that removes a path closes it, live connections included.
    let mut live = connect(
        site.network.netns("lb"),
        None,
        site.network.address("app-2"),
        80,
    )?;
    echo(&mut live, b"before")?;
    let without_lb_to_apps = site.inputs.policy_without_lb_to_apps();
    site.inputs.write_policy(&without_lb_to_apps)?;
    site.agent.wait_for_generation(53)?;
    assert!(
        echo(&mut live, b"after").is_err(),
        "the removed statement cuts the live flow"
    );
    assert!(!site.works("lb", "app-1", 80));
    assert!(counter(&site.status_json()?, "revoked") >= 1);
    let log = site.agent.log();
    assert!(
        log.contains("a tracked flow lost its statement and was cut"),
        "the kernel's own log line reaches the agent's log:\n{log}"
    );
    Ok(())
}

#[test]
fn a_broken_reload_keeps_the_live_policy_and_says_where() -> anyhow::Result<()> {
    let site = Site::start()?;
    let broken = site
        .inputs
        .original_policy()
        .replacen("to connect to", "to conect to", 1);
    site.inputs.write_policy(&broken)?;
    let status = site
        .agent
        .wait_for("the reload error", |s| !s["last_error"].is_null())?;
    let message = status["last_error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("three-tier.zpr:1:"),
        "the error names file:line: {message}"
    );
    assert!(
        message.contains("connect to"),
        "the error suggests the fix: {message}"
    );
    assert_eq!(status["generation"], 1, "the live policy stays");
    site.assert_paths_as_in_example();
    let text = site
        .agent
        .zpr(&["status"])
        .args(site.agent.paths())
        .output()?;
    assert!(String::from_utf8_lossy(&text.stdout).contains("three-tier.zpr:1:"));

    site.inputs.write_policy(&site.inputs.original_policy())?;
    let status = site.agent.wait_for_generation(2)?;
    assert!(
        status["last_error"].is_null(),
        "a fixed file clears the error"
    );
    site.assert_paths_as_in_example();
    Ok(())
}

#[test]
fn enforcement_survives_kill_9_and_a_restart_adopts_it() -> anyhow::Result<()> {
    let mut site = Site::start()?;
    let mut stream = connect(
        site.network.netns("lb"),
        None,
        site.network.address("app-1"),
        80,
    )?;
    echo(&mut stream, b"before the crash")?;
    let before = site.status_json()?;

    site.agent.kill();
    // While no agent runs: the live flow goes on, allowed paths open,
    // denied ones stay shut.
    echo(&mut stream, b"while down")?;
    site.assert_paths_as_in_example();
    let (code, down) = site.agent.status_report()?;
    assert_eq!(code, 3, "degraded while no agent runs: {down:#}");
    assert_eq!(down["health"], "degraded");
    assert!(down["agent_pid"].is_null(), "zpr status sees no agent");
    assert!(
        counter(&down, "new-flow") > counter(&before, "new-flow"),
        "counters go on"
    );

    site.agent.spawn()?;
    let status = site.agent.wait_for_generation(2)?;
    let adoption = status["adoption"].as_str().unwrap();
    assert!(
        adoption.starts_with("adopted pinned maps at generation 1"),
        "{adoption}"
    );
    echo(&mut stream, b"after the restart")?;
    site.assert_paths_as_in_example();
    let after = site.status_json()?;
    assert!(
        counter(&after, "established") >= counter(&down, "established"),
        "counters survive"
    );
    assert_eq!(counter(&after, "revoked"), 0);
    Ok(())
}

fn link_ids(pins: &Path) -> anyhow::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(pins.join("zpr/links"))? {
        let path = entry?.path();
        let output = run(
            "bpftool",
            &["-j", "link", "show", "pinned", path.to_str().unwrap()],
        )?;
        let link: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        ids.push(link["id"].as_u64().unwrap());
    }
    Ok(ids)
}

#[test]
fn zpr_down_removes_every_program_and_pin() -> anyhow::Result<()> {
    let site = Site::start()?;
    let links = link_ids(&site.agent.bpffs)?;
    assert_eq!(links.len(), 8, "two links on each of the four vNICs");
    assert!(!site.works("internet", "app-1", 80), "enforced before down");

    let output = site
        .agent
        .zpr(&["down"])
        .args(site.agent.paths())
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("detached from zpr-lb"), "{said}");

    assert!(
        !site.agent.bpffs.join("zpr").exists(),
        "nothing is left pinned"
    );
    assert!(
        fs::read_dir(&site.agent.bpffs)?.next().is_none(),
        "the pin directory is empty"
    );
    for id in links {
        let shown = std::process::Command::new("bpftool")
            .args(["link", "show", "id", &id.to_string()])
            .output()?;
        assert!(!shown.status.success(), "link {id} is gone");
    }
    assert!(
        site.works("internet", "app-1", 80),
        "nothing enforces any more"
    );
    Ok(())
}

#[test]
fn a_second_agent_refuses_to_start() -> anyhow::Result<()> {
    let site = Site::start()?;
    let mut second = std::process::Command::new(zpr_binary())
        .arg("run")
        .arg("--inventory")
        .arg(site.inputs.inventory())
        .arg(site.inputs.policy())
        .args(site.agent.paths())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stderr = String::new();
    second.stderr.take().unwrap().read_to_string(&mut stderr)?;
    let status = second.wait()?;
    assert!(!status.success());
    let pid = site.agent.pid().unwrap().to_string();
    assert!(stderr.contains("another zpr agent is running"), "{stderr}");
    assert!(stderr.contains(&pid), "names the running agent: {stderr}");
    // The first agent is untouched.
    site.assert_paths_as_in_example();
    Ok(())
}

#[test]
fn endpoints_leaving_and_joining_the_inventory_are_detached_and_attached() -> anyhow::Result<()> {
    let site = Site::start()?;
    assert!(
        !site.works("internet", "db", 1521),
        "the database is protected"
    );
    let inventory = fs::read_to_string(site.inputs.inventory())?;
    let without_db = inventory.replace("    interface: zpr-db\n", "");
    assert_ne!(
        without_db, inventory,
        "the example names the database's vNIC"
    );

    fs::write(site.inputs.inventory(), &without_db)?;
    let status = site.agent.wait_for_generation(2)?;
    let db = status["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "db");
    assert!(db.is_none(), "no local endpoint db any more: {status}");
    assert!(
        site.works("internet", "db", 1521),
        "nothing enforces at the database's vNIC"
    );
    assert!(
        site.agent
            .log()
            .contains("detached: no longer a local endpoint")
    );

    fs::write(site.inputs.inventory(), &inventory)?;
    site.agent.wait_for_generation(3)?;
    assert!(!site.works("internet", "db", 1521), "attached again");
    site.assert_paths_as_in_example();
    Ok(())
}

/// An app server the inventory knows before its workload starts.
const LATE_ENDPOINT: &str = "  - name: late
    vcn: frontend-vcn
    addresses: [10.0.3.10]
    interface: zpr-late
    security-attributes: [ocvtc002.apps:server]
";

#[test]
fn a_vnic_that_appears_later_is_attached() -> anyhow::Result<()> {
    let mut network = Network::start()?;
    let inputs = Inputs::new()?;
    let inventory = fs::read_to_string(inputs.inventory())?;
    assert!(
        inventory.trim_end().ends_with("customer-db]"),
        "endpoints come last"
    );
    fs::write(inputs.inventory(), format!("{inventory}{LATE_ENDPOINT}"))?;
    let agent = inputs.start_agent(&network)?;
    let late = |status: &serde_json::Value| {
        status["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "late")
            .cloned()
    };
    let status = agent.wait_for_generation(1)?;
    assert!(late(&status).unwrap()["ifindex"].is_null(), "no vNIC yet");

    network.topology.add_host("late", "zpr-late", "10.0.3.10")?;
    let _server = EchoServer::start(network.netns("late"), 80)?;
    agent.wait_for("the late vNIC attached", |s| {
        late(s).is_some_and(|e| !e["ifindex"].is_null())
    })?;
    let address = network.address("late");
    assert!(
        tcp_exchange(network.netns("lb"), address, 80).is_ok(),
        "lb -> app server"
    );
    assert!(
        tcp_exchange(network.netns("internet"), address, 80).is_err(),
        "enforced"
    );
    Ok(())
}

/// A workload restarted: its vNIC deleted and created again (same name,
/// new ifindex), configured step by step, while the denied internet ->
/// app-1:80 is tried over and over. The link notification has zpr
/// attached before the orchestrator has the vNIC up and routed.
#[test]
fn a_recreated_vnic_is_protected_before_traffic_reaches_it() -> anyhow::Result<()> {
    let site = Site::start()?;
    let ifindex_of_app1 = |status: &serde_json::Value| {
        status["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "app-1")
            .and_then(|e| e["ifindex"].as_u64())
    };
    for round in 0..5 {
        let probed = while_probing_denied(&site.network, || {
            let started = std::time::Instant::now();
            site.network.topology.recreate_vnic("app-1")?;
            let configured = started.elapsed();
            let now = site.network.router().ifindex("zpr-app1")?;
            let status = site.agent.wait_for("app-1's new vNIC attached", |s| {
                ifindex_of_app1(s) == Some(u64::from(now))
            })?;
            eprintln!(
                "round {round}: the vNIC was created and configured in {configured:?}; zpr \
                 enforced on it {:.1} ms after the link notification",
                status["reload_ms"].as_f64().unwrap_or_default()
            );
            // Keep probing the configured vNIC a little longer.
            std::thread::sleep(std::time::Duration::from_millis(300));
            Ok(())
        })?;
        probed.assert_denied_throughout(&format!("round {round}"));
        site.assert_paths_as_in_example();
    }
    Ok(())
}

/// The kernel's program types (`BPF_PROG_TYPE_*`) of the programs a
/// process holds, one entry each. The agent opens every loaded program for
/// a moment when it lists the kernel's attachments: the fewest of a few
/// readings is what it holds.
fn held_program_types(pid: u32) -> anyhow::Result<Vec<u32>> {
    let mut fewest: Option<Vec<u32>> = None;
    for _ in 0..5 {
        let types = program_types_open(pid)?;
        if fewest
            .as_ref()
            .is_none_or(|fewest| types.len() < fewest.len())
        {
            fewest = Some(types);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(fewest.unwrap_or_default())
}

/// The program types of the descriptors `pid` has open now.
fn program_types_open(pid: u32) -> anyhow::Result<Vec<u32>> {
    let mut types = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        // A descriptor closed meanwhile has no fdinfo left: skip it.
        let Ok(info) = fs::read_to_string(entry?.path()) else {
            continue;
        };
        if let Some(kind) = info
            .lines()
            .find_map(|line| line.strip_prefix("prog_type:"))
        {
            types.push(kind.trim().parse()?);
        }
    }
    types.sort_unstable();
    Ok(types)
}

const SCHED_CLS: u32 = 3;
const XDP: u32 = 6;

/// The link ends pinned for zpr's vNICs (`from-tcx`, `from-xdp`, `to-tcx`),
/// each with how many vNICs have it.
fn pinned_ends(pins: &Path) -> anyhow::Result<std::collections::BTreeMap<String, usize>> {
    let mut ends = std::collections::BTreeMap::new();
    for entry in fs::read_dir(pins.join("zpr/links"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let end = name.rsplit_once(':').map_or(name.as_str(), |(_, end)| end);
        *ends.entry(end.to_owned()).or_default() += 1;
    }
    Ok(ends)
}

/// An agent loads only the programs its hook attaches (each costs the
/// verifier's walk at every start), and an agent restarted with another
/// hook moves every vNIC to it with no moment unprotected: the new hook's
/// program runs before the old one is detached.
#[test]
fn an_agent_loads_its_hooks_programs_only_and_a_new_hook_takes_over_with_no_gap()
-> anyhow::Result<()> {
    let mut site = Site::start_with(|_, agent| {
        agent
            .arguments
            .extend(["--hook", "xdp-generic"].map(str::to_owned));
        Ok(())
    })?;
    let pid = site.agent.pid().expect("the agent runs");
    assert_eq!(
        held_program_types(pid)?,
        [SCHED_CLS, SCHED_CLS, XDP, XDP],
        "XDP from the workload, tc to it: the policy's and the quarantine's"
    );
    assert_eq!(
        pinned_ends(&site.agent.bpffs)?,
        [("from-xdp".to_owned(), 4), ("to-tcx".to_owned(), 4)].into(),
    );
    site.assert_paths_as_in_example();

    let probed = while_probing_denied(&site.network, || {
        site.agent.terminate()?;
        let hook = site
            .agent
            .arguments
            .iter()
            .position(|argument| argument == "--hook")
            .expect("the hook was given");
        site.agent.arguments.drain(hook..hook + 2);
        site.agent.spawn()?;
        site.agent.wait_for_generation(2)?;
        // Keep probing the moved vNICs a little longer.
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(())
    })?;
    probed.assert_denied_throughout("while the hook changed");
    let pid = site.agent.pid().expect("the agent runs");
    assert_eq!(
        held_program_types(pid)?,
        [SCHED_CLS; 4],
        "tcx both ways: no XDP program is loaded"
    );
    assert_eq!(
        pinned_ends(&site.agent.bpffs)?,
        [("from-tcx".to_owned(), 4), ("to-tcx".to_owned(), 4)].into(),
        "every vNIC moved to tcx, no XDP link left"
    );
    site.assert_paths_as_in_example();
    Ok(())
}
