//! `zpr suggest` on a flow log of the three-tier example in audit mode:
//! what it suggests passes `zpr check`, allows every flow the log saw
//! (`zpr explain` says so for each), and nothing else on the ports the
//! log did not see; records that are no policy's matter are left out.

use std::{path::PathBuf, process::Command};

fn zpr(arguments: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zpr"))
        .args(arguments)
        .output()
        .unwrap()
}

fn inventory() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/three-tier/inventory.yaml")
        .display()
        .to_string()
}

fn record(verdict: &str, reason: &str, from: &str, to: &str, port: u16) -> String {
    format!(
        r#"{{"type":"flow","version":"zpr-1","startTime":1796189107862,"action":"ACCEPT","verdict":"{verdict}","reason":"{reason}","sourceAddress":"{from}","sourcePort":54358,"destinationAddress":"{to}","destinationPort":{port},"protocol":6,"protocolName":"TCP","statements":[],"generation":1,"vnic":"zpr-lb","endpoint":"lb","direction":"from-workload"}}"#
    )
}

#[test]
fn a_suggestion_from_a_flow_log_checks_and_allows_exactly_what_was_seen() {
    let dir = std::env::temp_dir().join(format!("zpr-suggest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seen = [
        ("198.51.100.10", "10.0.1.10", 80),
        ("10.0.1.10", "10.0.2.10", 80),
        ("10.0.1.10", "10.0.2.11", 80),
        ("10.0.2.10", "10.1.1.10", 1521),
    ];
    let mut log: Vec<String> = seen
        .iter()
        .map(|&(from, to, port)| record("AUDITED", "audited", from, to, port))
        .collect();
    log.push(record(
        "DROPPED",
        "no-policy",
        "10.0.2.11",
        "10.1.1.10",
        1521,
    ));
    // Not a policy's matter: a spoofed source, and an allowed flow.
    log.push(record(
        "DROPPED",
        "spoofed-source",
        "10.9.9.9",
        "10.1.1.10",
        22,
    ));
    log.push(record("ALLOWED", "new-flow", "10.0.2.10", "10.1.1.10", 22));
    log.push(r#"{"type":"suppressed","version":"zpr-1","time":1,"lost":0,"rateLimited":0,"queueFull":0,"writeFailed":0}"#.to_owned());
    let flow_log = dir.join("flows.json");
    std::fs::write(&flow_log, log.join("\n") + "\n").unwrap();

    let suggested = zpr(&[
        "suggest",
        "--inventory",
        &inventory(),
        &flow_log.display().to_string(),
    ]);
    assert!(suggested.status.success(), "{suggested:?}");
    let policy = dir.join("suggested.zpr");
    std::fs::write(&policy, &suggested.stdout).unwrap();
    let text = String::from_utf8_lossy(&suggested.stdout).into_owned();
    assert!(
        !text.contains("0.0.0.0/0") && !text.contains(":22"),
        "{text}"
    );

    let policy = policy.display().to_string();
    let checked = zpr(&["check", "--inventory", &inventory(), &policy]);
    assert!(checked.status.success(), "{checked:?}\n{text}");
    let explain = |from: &str, to: &str, port: u16| {
        zpr(&[
            "explain",
            "--inventory",
            &inventory(),
            "--from",
            from,
            "--to",
            to,
            "--port",
            &port.to_string(),
            &policy,
        ])
        .status
        .success()
    };
    for (from, to, port) in seen
        .iter()
        .copied()
        .chain([("10.0.2.11", "10.1.1.10", 1521)])
    {
        assert!(explain(from, to, port), "{from} -> {to}:{port} in\n{text}");
    }
    assert!(
        !explain("10.0.2.10", "10.1.1.10", 22),
        "a port never seen\n{text}"
    );
    assert!(
        !explain("198.51.100.10", "10.0.2.10", 80),
        "a path never seen\n{text}"
    );
    let malformed = std::fs::write(&flow_log, "not json\n");
    malformed.unwrap();
    let refused = zpr(&[
        "suggest",
        "--inventory",
        &inventory(),
        &flow_log.display().to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("flows.json:1"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
