//! What an operator gets wrong must never unprotect what is tagged: a host
//! without bpffs, `ip netns exec`, a second agent on the same pins, `zpr
//! down` with another run directory, deleted pins, a broken first start.
//! Each is tried with the agent on the three-tier network, and real
//! traffic shows that no denied path opens.

use std::{
    fs,
    process::Output,
    time::{Duration, Instant},
};

use zpr_agent::{
    compile::compile,
    datapath::{ConntrackSize, Datapath, InterfaceIndexes, PinLayout, write_plan},
    inputs,
};
use zpr_tests::{
    agent::AgentProcess,
    mount_namespace::FreshMountNamespace,
    site::{Inputs, OPENING, Site, UNRELATED, while_probing_denied},
    three_tier::{HOSTS, Network},
    unique_name,
};

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A scratch directory for an extra agent's state, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(unique_name("zpf"));
        fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// 1. A freshly booted host has no bpffs at /sys/fs/bpf: the agent mounts
///    one, pins there, and enforcement survives `kill -9`.
#[test]
fn a_host_without_bpffs_gets_one_and_enforcement_survives_kill_9() -> anyhow::Result<()> {
    let fresh = FreshMountNamespace::new()?;
    let network = Network::start()?;
    let inputs = Inputs::new()?;
    let mut agent = inputs.prepare_agent(&network, &inputs.dir);
    agent.mount_namespace_of = Some(fresh.pid());
    agent.spawn()?;
    agent.wait_for_generation(1)?;
    assert_eq!(fresh.filesystem_of("/sys/fs/bpf")?, "bpf_fs");
    assert!(agent.log().contains("mounted bpffs"), "{}", agent.log());
    let site = Site {
        network,
        inputs,
        agent,
    };
    site.assert_paths_as_in_example();
    let (code, report) = site.agent.status_report()?;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["health"], "protected");

    let mut site = site;
    site.agent.kill();
    site.assert_paths_as_in_example();
    let (code, report) = site.agent.status_report()?;
    assert_eq!(code, 3, "degraded without an agent: {report:#}");
    assert_eq!(report["live_generation"], 1, "the pins survived");
    Ok(())
}

/// 2. `ip netns exec` gives the agent a bpffs only it sees: it refuses and
///    names the fix; allowed explicitly, it runs and says so. `status` and
///    `down` run that way say what they see, and change nothing.
#[test]
fn ip_netns_exec_is_refused_and_explained() -> anyhow::Result<()> {
    let site = Site::start()?;
    let router = site.network.router().name().to_owned();

    let scratch = Scratch::new()?;
    let mut private = site.inputs.prepare_agent(&site.network, &scratch.0);
    private.ip_netns_exec = true;
    private.spawn()?;
    let exit = private.wait_exit(Duration::from_secs(20))?;
    assert!(!exit.success(), "refused: {}", private.log());
    let log = private.log();
    assert!(log.contains("would not outlive this agent"), "{log}");
    assert!(
        log.contains(&format!("nsenter --net=/run/netns/{router}")),
        "names the fix: {log}"
    );

    // Commands run through `ip netns exec` beside a running agent.
    let in_private_sys = |command: &str| -> anyhow::Result<Output> {
        Ok(std::process::Command::new("ip")
            .args(["netns", "exec", &router])
            .arg(zpr_tests::agent::zpr_binary())
            .arg(command)
            .args(site.agent.paths())
            .output()?)
    };
    let status = in_private_sys("status")?;
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));
    let said = text(&status);
    let pid = site.agent.pid().unwrap().to_string();
    assert!(
        said.contains(&format!("an agent is running (pid {pid}")),
        "{said}"
    );
    assert!(
        said.contains("not visible from this mount namespace"),
        "{said}"
    );
    assert!(
        said.contains(&format!("nsenter --net=/run/netns/{router}")),
        "{said}"
    );
    let down = in_private_sys("down")?;
    assert_eq!(down.status.code(), Some(1), "{}", text(&down));
    assert!(text(&down).contains("refusing"), "{}", text(&down));
    assert!(site.agent.pid().is_some());
    site.assert_paths_as_in_example();
    assert_eq!(site.agent.status_report()?.0, 0, "the agent is untouched");
    drop(private);

    // Explicitly allowed: runs, with a warning in its status and log; a
    // status from outside sees the agent but not its pins.
    let other = Network::start()?;
    let scratch = Scratch::new()?;
    let mut throwaway = site.inputs.prepare_agent(&other, &scratch.0);
    throwaway.ip_netns_exec = true;
    throwaway.arguments.push("--allow-private-bpffs".to_owned());
    throwaway.spawn()?;
    let status = throwaway.wait_for_generation(1)?;
    let warnings = status["warnings"].to_string();
    assert!(warnings.contains("--allow-private-bpffs"), "{warnings}");
    let output = throwaway
        .zpr(&["status"])
        .args(throwaway.paths())
        .output()?;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("not visible from this mount namespace"),
        "{}",
        text(&output)
    );
    assert!(
        text(&output).contains("the agent warns: --allow-private-bpffs"),
        "{}",
        text(&output)
    );
    Ok(())
}

/// The ifindexes of the three-tier vNICs, in the router's namespace.
fn vnic_indexes(network: &Network) -> anyhow::Result<InterfaceIndexes> {
    HOSTS
        .iter()
        .filter(|(name, _, _)| *name != "internet")
        .map(|&(_, vnic, _)| Ok((vnic.to_owned(), network.router().ifindex(vnic)?)))
        .collect()
}

/// Writes `plan` into both slots of the site's maps as another process
/// would, and sees the path it allows open (again, should the agent's
/// read-back of the live policy have undone it before the test looked).
fn tamper(
    site: &Site,
    plan: &zpr_agent::compile::Plan,
    interfaces: &InterfaceIndexes,
) -> anyhow::Result<()> {
    for _ in 0..3 {
        let (mut outsider, _) =
            Datapath::open_pinned(&PinLayout::new(&site.agent.bpffs), ConntrackSize::default())?;
        write_plan(&mut outsider, plan, interfaces)?;
        write_plan(&mut outsider, plan, interfaces)?;
        drop(outsider);
        if site.works("internet", "app-1", 80) {
            return Ok(());
        }
    }
    anyhow::bail!("the outsider's plan never opened internet -> app-1:80")
}

/// 3. A second agent on the same pin root refuses, whatever its run
///    directory; and maps someone else wrote behind the agent's back are
///    rewritten, not trusted, at the next reloads.
#[test]
fn a_second_agent_on_the_pin_root_refuses_and_outside_writes_are_undone() -> anyhow::Result<()> {
    let site = Site::start()?;
    let scratch = Scratch::new()?;
    let more = scratch.0.join("more.zpr");
    fs::write(
        &more,
        format!("{}{OPENING}\n", site.inputs.original_policy()),
    )?;
    let mut second = AgentProcess::prepare(
        &zpr_tests::agent::zpr_binary(),
        site.network.router(),
        &site.inputs.inventory(),
        std::slice::from_ref(&more),
        &scratch.0,
    );
    second.bpffs = site.agent.bpffs.clone();
    second.spawn()?;
    let exit = second.wait_exit(Duration::from_secs(20))?;
    assert!(!exit.success());
    let log = second.log();
    let pid = site.agent.pid().unwrap().to_string();
    assert!(log.contains("one agent per pin root"), "{log}");
    assert!(
        log.contains(&format!("pid {pid}")),
        "names the owner: {log}"
    );
    site.assert_paths_as_in_example();
    std::mem::forget(second); // its Drop would `zpr down` the first agent's pins

    // Someone (an older zpr, a script) writes a more permissive Plan into
    // both slots of the first agent's maps, bypassing the lock.
    let loaded = inputs::read(Some(&site.inputs.inventory()), &[more])?;
    let permissive = loaded.inputs.expect("valid inputs");
    let plan = compile(&permissive.policies, &permissive.inventory);
    let interfaces = vnic_indexes(&site.network)?;
    tamper(&site, &plan, &interfaces)?;

    // The agent's next reloads (both slots) close it and keep it closed.
    let original = site.inputs.original_policy();
    let mut generation = site.agent.generation();
    for round in 0..4 {
        let text = if round % 2 == 0 {
            format!("{original}{UNRELATED}\n")
        } else {
            original.clone()
        };
        site.inputs.write_policy(&text)?;
        generation += 1;
        site.agent.wait_for_generation(generation)?;
        site.assert_paths_as_in_example();
    }
    let status = site.agent.status().unwrap();
    let repairs = status["repairs"].as_u64().unwrap();
    assert!(repairs >= 1, "{status:#}");

    // Tampering that no reload follows: the agent reads the live policy
    // back every ten seconds and writes its own again.
    tamper(&site, &plan, &interfaces)?;
    site.agent.wait_for("the live policy written again", |s| {
        s["repairs"].as_u64().unwrap_or(0) > repairs
    })?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !site
        .agent
        .log()
        .contains("the live policy is written again")
    {
        assert!(Instant::now() < deadline, "{}", site.agent.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(site.agent.log().contains("not what this agent wrote"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while site.works("internet", "app-1", 80) {
        assert!(
            Instant::now() < deadline,
            "the outsider's path is closed again"
        );
    }
    site.assert_paths_as_in_example();
    Ok(())
}

/// 4. `zpr down` given another run directory acts on the agent that owns
///    the pins: stops it first, then removes everything.
#[test]
fn down_from_another_run_directory_stops_the_owner_first() -> anyhow::Result<()> {
    let mut site = Site::start()?;
    let pid = site.agent.pid().unwrap();
    let elsewhere = Scratch::new()?;
    let output = site
        .agent
        .zpr(&["down", "--bpffs"])
        .arg(&site.agent.bpffs)
        .arg("--run-dir")
        .arg(&elsewhere.0)
        .output()?;
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains(&format!("stopping the agent (pid {pid}")),
        "{}",
        text(&output)
    );
    let exit = site.agent.wait_exit(Duration::from_secs(5))?;
    assert!(exit.success(), "the agent stopped on SIGTERM");
    assert!(!site.agent.bpffs.join("zpr").exists(), "nothing is pinned");
    assert!(
        !site.agent.run_dir.join("status.json").exists(),
        "the owner's status went too"
    );
    let (code, report) = site.agent.status_report()?;
    assert_eq!(code, 1, "{report:#}");
    assert!(
        report["problems"][0]
            .as_str()
            .unwrap()
            .contains("not running"),
        "{report:#}"
    );
    Ok(())
}

/// 5. Pins removed by hand cost no enforcement and come back; `zpr status`
///    reports what the kernel has attached, not what the pins say.
#[test]
fn deleted_pins_are_restored_and_status_tells_the_kernels_truth() -> anyhow::Result<()> {
    let mut site = Site::start()?;
    let links = site.agent.bpffs.join("zpr/links");
    let app1_links = ["zpr-app1:from-tcx", "zpr-app1:to-tcx"].map(|name| links.join(name));
    let policy_pin = site.agent.bpffs.join("zpr/maps/ZPR_POLICY");

    let probed = while_probing_denied(&site.network, || {
        for pin in app1_links.iter().chain([&policy_pin]) {
            fs::remove_file(pin)?;
        }
        // Right after, before any repair: status still reads everything
        // but the removed map.
        let (code, report) = site.agent.status_report()?;
        let repaired = site.agent.wait_for("three pins restored", |s| {
            s["repairs"].as_u64().unwrap_or(0) >= 3
        })?;
        Ok((repaired, code, report))
    })?;
    let ((repaired, code, report), through, tries) = (probed.result, probed.through, probed.tries);
    assert!(code == 3 || code == 0, "status works: {code} {report:#}");
    assert!(tries > 0);
    assert_eq!(through, 0, "no denied connection got through");
    for pin in app1_links.iter().chain([&policy_pin]) {
        assert!(pin.exists(), "{} restored", pin.display());
    }
    assert!(
        repaired["last_repair"]["message"]
            .as_str()
            .unwrap()
            .contains("restored the pin"),
        "{repaired:#}"
    );
    assert!(site.agent.log().contains("restored the pin"));
    site.assert_paths_as_in_example();
    assert_eq!(site.agent.status_report()?.0, 0);

    // The whole pin root removed: made again, owned again, every pin back.
    let root = site.agent.bpffs.join("zpr");
    let before = repaired["repairs"].as_u64().unwrap();
    let through = while_probing_denied(&site.network, || {
        fs::remove_dir_all(&root)?;
        site.agent.wait_for("the pin root made again", |s| {
            s["repairs"].as_u64().unwrap_or(0) > before + 2
        })?;
        Ok(())
    })?
    .through;
    assert_eq!(through, 0, "no denied connection got through");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(policy_pin.exists() && app1_links.iter().all(|pin| pin.exists())) {
        assert!(Instant::now() < deadline, "the pins are back");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, report) = site.agent.status_report()?;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        report["agent_pid"].as_u64(),
        site.agent.pid().map(u64::from),
        "the agent owns the new pin root: {report:#}"
    );

    // With no agent to mend it, a removed link pin detaches the program:
    // status must say app-1 is unprotected, as the traffic shows.
    site.agent.kill();
    for pin in &app1_links {
        fs::remove_file(pin)?;
    }
    // The kernel releases a link whose last reference went shortly after.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !site.works("internet", "app-1", 80) {
        assert!(Instant::now() < deadline, "app-1 is unprotected");
    }
    let (code, report) = site.agent.status_report()?;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["health"], "not-enforcing");
    let app1 = report["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "app-1")
        .unwrap();
    assert_eq!(app1["attached"], false, "{report:#}");
    assert!(
        report["problems"].to_string().contains("app-1"),
        "{report:#}"
    );

    // A restarted agent attaches again.
    site.agent.spawn()?;
    site.agent.wait_for_generation(2)?;
    site.assert_paths_as_in_example();
    assert_eq!(site.agent.status_report()?.0, 0);

    // Pins removed just before the agent is stopped: it pins them again
    // on its way out, so its descriptors do not take the links along.
    for pin in &app1_links {
        fs::remove_file(pin)?;
    }
    assert!(site.agent.terminate()?.success());
    for pin in &app1_links {
        assert!(
            pin.exists(),
            "{} pinned again on the way out",
            pin.display()
        );
    }
    assert!(
        !site.works("internet", "app-1", 80),
        "app-1 stays protected"
    );
    Ok(())
}

/// 6. A first start with a broken policy and nothing pinned refuses (exit
///    non-zero, diagnostics) and leaves nothing behind; with an earlier
///    policy pinned, a broken restart keeps it and says so.
#[test]
fn a_broken_first_start_refuses_and_a_broken_restart_keeps_the_pins() -> anyhow::Result<()> {
    let network = Network::start()?;
    let inputs = Inputs::new()?;
    let original = inputs.original_policy();
    let broken = original.replacen("to connect to", "to conect to", 1);
    inputs.write_policy(&broken)?;
    let mut agent = inputs.prepare_agent(&network, &inputs.dir);
    agent.spawn()?;
    let exit = agent.wait_exit(Duration::from_secs(20))?;
    assert!(!exit.success(), "{}", agent.log());
    let log = agent.log();
    assert!(log.contains("refusing to start"), "{log}");
    assert!(log.contains("three-tier.zpr:1:"), "the diagnostics: {log}");
    assert!(!agent.bpffs.join("zpr").exists(), "nothing left pinned");
    let (code, _) = agent.status_report()?;
    assert_eq!(code, 1);

    inputs.write_policy(&original)?;
    agent.spawn()?;
    agent.wait_for_generation(1)?;
    let mut site = Site {
        network,
        inputs,
        agent,
    };
    site.agent.kill();
    site.inputs.write_policy(&broken)?;
    site.agent.spawn()?;
    let started = Instant::now();
    let status = site
        .agent
        .wait_for("the reload error of the restart", |s| {
            !s["last_error"].is_null() && s["pid"].as_u64() == site.agent.pid().map(u64::from)
        })?;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(site.agent.pid().is_some());
    assert!(
        status["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("three-tier.zpr:1:")
    );
    site.assert_paths_as_in_example();
    let (code, report) = site.agent.status_report()?;
    assert_eq!(code, 3, "degraded: older inputs in force: {report:#}");
    Ok(())
}
