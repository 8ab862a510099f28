//! What the agent does with input files as careless operators and their
//! tools write them: emptied, truncated, written slowly, edited behind
//! symlinks, swapped the way Kubernetes swaps a ConfigMap. It applies
//! exactly what `zpr check --inventory` accepts, only once a write is
//! complete, and holds back a change that would unprotect most of the
//! host until the operator confirms it. Real traffic shows that no denied
//! path opens meanwhile.

use anyhow::Context as _;
use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use zpr_tests::{
    agent::{AgentProcess, zpr_binary},
    site::{Inputs, Site, while_probing_denied},
    three_tier::Network,
};

/// `zpr check --inventory INVENTORY POLICY`: whether it accepts them.
fn check_accepts(inventory: &Path, policy: &Path) -> anyhow::Result<bool> {
    let output = std::process::Command::new(zpr_binary())
        .arg("check")
        .arg("--inventory")
        .arg(inventory)
        .arg(policy)
        .output()?;
    match output.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        other => anyhow::bail!(
            "zpr check exited {other:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Lets process `pid` map at most `growth` bytes more than it has mapped
/// now: an allocation beyond that fails (and aborts it) rather than
/// taking the machine's memory.
fn limit_memory_growth(pid: u32, growth: u64) -> anyhow::Result<()> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mapped_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmSize:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmSize in /proc/PID/status")?;
    let limit = libc::rlimit {
        rlim_cur: (mapped_kib << 10) + growth,
        rlim_max: (mapped_kib << 10) + growth,
    };
    // SAFETY: prlimit(2) with a valid limit and no old limit wanted.
    let result = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_AS,
            &limit,
            std::ptr::null_mut(),
        )
    };
    anyhow::ensure!(result == 0, "prlimit: {}", std::io::Error::last_os_error());
    Ok(())
}

#[test]
fn emptied_truncated_and_slow_writes_never_open_a_denied_path() -> anyhow::Result<()> {
    let site = Site::start()?;
    let inventory = fs::read_to_string(site.inputs.inventory())?;
    let through = while_probing_denied(&site.network, || {
        // `: > inventory.yaml`: an empty inventory the policy's attributes
        // are not in. `zpr check` refuses it, and so does the agent.
        let before = site.agent.reloads();
        fs::File::create(site.inputs.inventory())?;
        let status = site.agent.wait_for_reload(before)?;
        let error = status["last_error"]["message"].as_str().unwrap_or_default();
        assert!(error.contains("unknown namespace"), "{status:#}");
        assert!(!check_accepts(
            &site.inputs.inventory(),
            &site.inputs.policy()
        )?);
        assert_eq!(status["generation"], 1, "the live policy stays");

        // A writer that opens (truncating), dawdles, then writes: nothing
        // is read before it closes the file.
        let before = site.agent.reloads();
        let mut slow = fs::File::create(site.inputs.inventory())?;
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(
            site.agent.reloads(),
            before,
            "no reload of a file being written"
        );
        slow.write_all(inventory.as_bytes())?;
        drop(slow);
        let status = site.agent.wait_for_reload(before)?;
        assert!(status["last_error"].is_null(), "{status:#}");
        assert_eq!(status["generation"], 2);

        // A 6 MB line: refused, and quoted as an excerpt, not whole.
        let before = site.agent.reloads();
        let huge = format!("{}{}\n", site.inputs.original_policy(), "x".repeat(6 << 20));
        site.inputs.write_policy(&huge)?;
        let status = site.agent.wait_for_reload(before)?;
        let error = status["last_error"]["message"].as_str().unwrap_or_default();
        assert!(
            error.contains("the longest line zpr reads is 64 KiB"),
            "{error}"
        );
        let written = fs::metadata(site.agent.run_dir.join("status.json"))?.len();
        assert!(written < 64 << 10, "status.json is {written} bytes");
        let (_, report) = site.agent.status_report()?;
        assert!(report.to_string().len() < 64 << 10);
        assert_eq!(status["generation"], 2, "the live policy stays");
        let before = site.agent.reloads();
        site.inputs.write_policy(&site.inputs.original_policy())?;
        site.agent.wait_for_reload(before)?;

        // A YAML alias bomb (31 KB that expand to gigabytes), read by an
        // agent allowed 1 GiB more memory than it has: refused, and the
        // agent lives on with the live policy.
        limit_memory_growth(site.agent.pid().context("the agent runs")?, 1 << 30)?;
        let generation = site.agent.generation();
        let before = site.agent.reloads();
        fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../zpr-agent/tests/hostile/alias-bomb.yaml"),
            site.inputs.inventory(),
        )?;
        let status = site.agent.wait_for_reload(before)?;
        let error = status["last_error"]["message"].as_str().unwrap_or_default();
        assert!(error.contains("YAML aliases"), "{error}");
        assert_eq!(status["generation"], generation, "the live policy stays");
        let before = site.agent.reloads();
        fs::write(site.inputs.inventory(), &inventory)?;
        let status = site.agent.wait_for_reload(before)?;
        assert!(status["last_error"].is_null(), "{status:#}");
        Ok(())
    })?
    .through;
    assert_eq!(through, 0, "no denied connection got through");
    site.assert_paths_as_in_example();
    Ok(())
}

#[test]
fn a_change_that_unprotects_the_host_waits_for_the_operator() -> anyhow::Result<()> {
    let site = Site::start()?;
    let inventory = fs::read_to_string(site.inputs.inventory())?;
    // Valid inputs that tag nothing: `zpr check` accepts them.
    let without_tags = strip_endpoint_attributes(&inventory);
    let through = while_probing_denied(&site.network, || {
        let before = site.agent.reloads();
        fs::write(site.inputs.inventory(), &without_tags)?;
        site.inputs.write_policy("")?;
        let status = site.agent.wait_for("the change held back", |s| {
            s["reloads"].as_u64().unwrap_or(0) > before && !s["held_back"].is_null()
        })?;
        assert!(check_accepts(
            &site.inputs.inventory(),
            &site.inputs.policy()
        )?);
        let why = status["held_back"]["message"].as_str().unwrap();
        assert!(why.contains("would stop protecting 4 of the 4"), "{why}");
        assert_eq!(status["generation"], 1, "the live policy stays");
        let (code, report) = site.agent.status_report()?;
        assert_eq!(code, 3, "degraded while held back: {report:#}");
        assert!(report["problems"].to_string().contains("held back"));
        Ok(())
    })?
    .through;
    assert_eq!(
        through, 0,
        "no denied connection got through while held back"
    );
    site.assert_paths_as_in_example();

    // The operator confirms: applied, and nothing is enforced any more.
    let generation = site.agent.generation();
    site.agent.hang_up()?;
    let status = site.agent.wait_for_generation(generation + 1)?;
    assert!(status["held_back"].is_null());
    assert!(
        site.works("internet", "app-1", 80),
        "confirmed: unprotected"
    );

    // Putting the inputs back protects again, without confirmation.
    fs::write(site.inputs.inventory(), &inventory)?;
    site.inputs.write_policy(&site.inputs.original_policy())?;
    site.agent.wait_for("protected again", |s| {
        s["generation"].as_u64().unwrap_or(0) > generation + 1 && s["statements"] == 3
    })?;
    site.assert_paths_as_in_example();
    assert_eq!(site.agent.status_report()?.0, 0);
    Ok(())
}

/// The inventory with every endpoint's attributes removed (VCNs keep
/// theirs): valid, and nothing is tagged.
fn strip_endpoint_attributes(inventory: &str) -> String {
    let endpoints = inventory.find("endpoints:").expect("an endpoints section");
    let (head, tail) = inventory.split_at(endpoints);
    let tail: String = tail
        .lines()
        .filter(|line| !line.trim_start().starts_with("security-attributes:"))
        .map(|line| format!("{line}\n"))
        .collect();
    format!("{head}{tail}")
}

/// A policy behind two symlinks: `live.zpr -> current/p.zpr` and
/// `current -> sw/v1` (a directory symlink, as a ConfigMap's `..data`).
struct Layered {
    root: PathBuf,
}

impl Layered {
    fn new(inputs: &Inputs, original: &str) -> anyhow::Result<Layered> {
        let root = inputs.dir.join("layered");
        for version in ["v1", "v2"] {
            fs::create_dir_all(root.join("sw").join(version))?;
            fs::write(root.join("sw").join(version).join("p.zpr"), original)?;
        }
        std::os::unix::fs::symlink("sw/v1", root.join("current"))?;
        std::os::unix::fs::symlink("current/p.zpr", root.join("live.zpr"))?;
        Ok(Layered { root })
    }

    fn live(&self) -> PathBuf {
        self.root.join("live.zpr")
    }

    /// Points `current` at `version` in one rename, as kubelet does.
    fn switch_to(&self, version: &str) -> anyhow::Result<()> {
        let temporary = self.root.join("current.tmp");
        std::os::unix::fs::symlink(format!("sw/{version}"), &temporary)?;
        fs::rename(&temporary, self.root.join("current"))?;
        Ok(())
    }
}

#[test]
fn edits_behind_symlinks_and_directory_swaps_reload() -> anyhow::Result<()> {
    let network = Network::start()?;
    let inputs = Inputs::new()?;
    let original = inputs.original_policy();
    let layered = Layered::new(&inputs, &original)?;
    let mut agent = AgentProcess::prepare(
        &zpr_binary(),
        network.router(),
        &inputs.inventory(),
        &[layered.live()],
        &inputs.dir,
    );
    agent.spawn()?;
    agent.wait_for_generation(1)?;
    let site = Site {
        network,
        inputs,
        agent,
    };
    site.assert_paths_as_in_example();

    // The target edited in place: lb -> app servers revoked.
    let revoked = site.inputs.policy_without_lb_to_apps();
    fs::write(site.inputs.dir.join("layered/sw/v1/p.zpr"), &revoked)?;
    let status = site.agent.wait_for_generation(2)?;
    assert_eq!(status["statements"], 2, "{status:#}");
    assert!(
        !site.works("lb", "app-1", 80),
        "the revoked statement is gone"
    );

    // The directory symlink swapped to a version that has it again.
    layered.switch_to("v2")?;
    let status = site.agent.wait_for_generation(3)?;
    assert_eq!(status["statements"], 3, "{status:#}");
    site.assert_paths_as_in_example();

    // And edits in the new target are followed too.
    fs::write(site.inputs.dir.join("layered/sw/v2/p.zpr"), &revoked)?;
    site.agent.wait_for_generation(4)?;
    assert!(!site.works("lb", "app-1", 80));
    Ok(())
}

/// Truncations of the example inputs at pseudo-random places: the agent
/// applies exactly those `zpr check --inventory` accepts (unless the
/// unprotect guard holds them back) and keeps the live policy for the
/// rest, under which the denied path stays denied.
#[test]
fn random_truncations_are_applied_only_when_check_accepts_them() -> anyhow::Result<()> {
    let site = Site::start()?;
    let inventory = fs::read_to_string(site.inputs.inventory())?;
    let policy = site.inputs.original_policy();
    let mut seed: u64 = 0x5eed_2026_1201;
    let mut next = move |below: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % below as u64) as usize
    };
    let (mut applied, mut kept) = (0, 0);
    for round in 0..12 {
        let (file, text) = if round % 2 == 0 {
            (site.inputs.inventory(), &inventory)
        } else {
            (site.inputs.policy(), &policy)
        };
        let mut cut = next(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let before = site.agent.reloads();
        let generation = site.agent.generation();
        fs::write(&file, &text[..cut])?;
        let status = site.agent.wait_for_reload(before)?;
        let accepted = check_accepts(&site.inputs.inventory(), &site.inputs.policy())?;
        let moved_on = status["generation"].as_u64().unwrap() > generation;
        let held = !status["held_back"].is_null();
        assert_eq!(
            accepted,
            moved_on || held,
            "cut {file:?} at {cut}: check {accepted}, agent applied {moved_on}, held {held}"
        );
        if moved_on {
            applied += 1;
        } else {
            kept += 1;
            assert!(
                !site.works("internet", "app-1", 80),
                "cut {file:?} at {cut}: kept policy, still denied"
            );
        }
        // Back to the whole file (confirming, should the guard hold it).
        let before = site.agent.reloads();
        fs::write(&file, text)?;
        let status = site.agent.wait_for_reload(before)?;
        if !status["held_back"].is_null() {
            site.agent.hang_up()?;
            site.agent.wait_for_reload(before + 1)?;
        }
    }
    eprintln!("truncations applied: {applied}, kept the live policy: {kept}");
    assert!(kept > 0, "some truncation was refused");
    site.assert_paths_as_in_example();
    Ok(())
}
