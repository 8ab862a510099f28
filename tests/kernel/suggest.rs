//! A policy suggested from traffic, end to end on the real kernel: the
//! three-tier site with every endpoint in audit mode and no statement,
//! real traffic along the example's paths (logged as audited), `zpr
//! suggest` on that flow log (and `zpr suggest --live` watching the agent
//! meanwhile, which suggests the same), then the suggestion enforced.
//! Every observed path works, every path the traffic did not take stays
//! denied, and `zpr diff` against the example's own policy finds nothing
//! more opened.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use zpr_tests::{agent::zpr_binary, site::Site, three_tier::PATHS};

fn zpr(arguments: &[&str]) -> std::process::Output {
    Command::new(zpr_binary()).args(arguments).output().unwrap()
}

/// Audited records in the flow log so far.
fn audited(flow_log: &Path) -> usize {
    std::fs::read_to_string(flow_log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("\"verdict\":\"AUDITED\""))
        .count()
}

#[test]
fn a_policy_suggested_from_audited_traffic_allows_it_and_nothing_more() {
    let mut flow_log = std::path::PathBuf::new();
    let site = Site::start_with(|_, agent| {
        flow_log = agent.run_dir.with_file_name("flows.json");
        agent.arguments.push("--flow-log".to_owned());
        agent.arguments.push(flow_log.display().to_string());
        // Putting every endpoint in audit mode is meant here.
        agent.arguments.push("--allow-unprotect".to_owned());
        Ok(())
    })
    .unwrap();
    let inventory = site.inputs.inventory();
    let original = std::fs::read_to_string(&inventory).unwrap();
    let example_policy = site.inputs.original_policy();

    // Onboarding: every endpoint audited, no statement yet.
    let audit_mode = original.replace(
        "    security-attributes: [",
        "    mode: audit\n    security-attributes: [",
    );
    assert_ne!(audit_mode, original);
    site.inputs.write_policy("# nothing allowed yet\n").unwrap();
    site.agent.wait_for_generation(2).unwrap();
    std::fs::write(&inventory, &audit_mode).unwrap();
    site.agent.wait_for_generation(3).unwrap();

    // Watching the agent while the traffic runs.
    let live = site
        .agent
        .zpr(&[
            "suggest",
            "--live",
            "6s",
            "--inventory",
            &inventory.display().to_string(),
        ])
        .args(site.agent.paths())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));

    let taken: Vec<_> = PATHS.iter().filter(|(.., allowed)| *allowed).collect();
    for &&(from, to, port, _) in &taken {
        assert!(
            site.works(from, to, port),
            "audit mode passes {from} -> {to}"
        );
    }
    let started = std::time::Instant::now();
    while audited(&flow_log) < taken.len() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the flow log lags"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let suggested = zpr(&[
        "suggest",
        "--inventory",
        &inventory.display().to_string(),
        &flow_log.display().to_string(),
    ]);
    assert!(suggested.status.success(), "{suggested:?}");
    let suggestion = String::from_utf8(suggested.stdout).unwrap();
    let watched = live.wait_with_output().unwrap();
    assert!(watched.status.success(), "{watched:?}");
    let statements = |policy: &str| -> Vec<String> {
        policy
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(str::to_owned)
            .collect()
    };
    let live_suggestion = String::from_utf8(watched.stdout).unwrap();
    assert!(!statements(&suggestion).is_empty(), "{suggestion}");
    assert_eq!(
        statements(&live_suggestion),
        statements(&suggestion),
        "--live:\n{live_suggestion}\nfrom the flow log:\n{suggestion}"
    );

    // What the example's own policy allows, and what the suggestion
    // opens beyond it: nothing.
    let scratch = std::env::temp_dir().join(zpr_tests::unique_name("zsg"));
    for (side, policy) in [("example", &example_policy), ("suggested", &suggestion)] {
        std::fs::create_dir_all(scratch.join(side)).unwrap();
        std::fs::write(scratch.join(side).join("inventory.yaml"), &original).unwrap();
        std::fs::write(scratch.join(side).join("three-tier.zpr"), policy).unwrap();
    }
    let diff = zpr(&[
        "diff",
        &scratch.join("example").display().to_string(),
        &scratch.join("suggested").display().to_string(),
    ]);
    let report = String::from_utf8_lossy(&diff.stdout).into_owned();
    std::fs::remove_dir_all(&scratch).unwrap();
    assert!(!report.contains("opens:"), "{report}\n{suggestion}");

    // Enforced: the traffic it saw works, nothing else does.
    site.inputs.write_policy(&suggestion).unwrap();
    site.agent.wait_for_generation(4).unwrap();
    std::fs::write(&inventory, &original).unwrap();
    site.agent.wait_for_generation(5).unwrap();
    site.assert_paths_as_in_example();
}
