//! How much each statement is used, on the three-tier site with real
//! traffic: `zpr usage` counts, per statement, exactly the allowed flows
//! the flow log names it in; the counts follow a statement whose line
//! moved, start at zero for a new one, survive an agent restart, and
//! `--unused-since` marks what allowed nothing.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use std::net::{Ipv4Addr, SocketAddr};

use serde_json::Value;
use zpr_tests::{
    http::{free_port, http_get},
    site::{Site, UNRELATED},
};

/// `zpr usage --output json [extra]`.
fn usage(site: &Site, extra: &[&str]) -> anyhow::Result<Value> {
    site.agent.usage_report(extra)
}

/// Flows by statement id (`policy:line`).
fn flows_by_statement(report: &Value) -> BTreeMap<String, u64> {
    report["statements"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|line| {
            (
                line["statement"].as_str().unwrap().to_owned(),
                line["flows"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Allowed flow records of the flow log, by the statements they name.
fn logged_by_statement(flow_log: &Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let text = fs::read_to_string(flow_log).unwrap_or_default();
    for record in text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
    {
        if record["verdict"] != "ALLOWED" {
            continue;
        }
        for statement in record["statements"].as_array().unwrap() {
            let id = format!(
                "{}:{}",
                statement["policy"].as_str().unwrap(),
                statement["line"]
            );
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

/// Waits (the agent writes the sums at most every ten seconds) until
/// `done` holds of `zpr usage`'s report; returns it.
fn wait_for_usage(site: &Site, done: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let report = usage(site, &[])?;
        if done(&report) {
            return Ok(report);
        }
        if started.elapsed() > Duration::from_secs(25) {
            anyhow::bail!("zpr usage did not get there: {report:#}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn statements_count_the_flows_they_allowed_as_the_flow_log_names_them() -> anyhow::Result<()> {
    let mut flow_log = PathBuf::new();
    let mut metrics = None;
    let mut site = Site::start_with(|network, agent| {
        flow_log = agent.run_dir.with_file_name("flows.json");
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(network.router())?));
        metrics = Some(address);
        agent.arguments.extend([
            "--flow-log".to_owned(),
            flow_log.display().to_string(),
            "--metrics-address".to_owned(),
            address.to_string(),
        ]);
        Ok(())
    })?;
    let metrics = metrics.unwrap();
    // Before any traffic: every statement, none used.
    let fresh = wait_for_usage(&site, |report| {
        report["statements"]
            .as_array()
            .is_some_and(|s| s.len() == 3)
    })?;
    assert!(
        flows_by_statement(&fresh).values().all(|&flows| flows == 0),
        "{fresh:#}"
    );

    site.assert_paths_as_in_example();
    let logged = {
        let started = Instant::now();
        loop {
            let logged = logged_by_statement(&flow_log);
            if logged.values().sum::<u64>() > 0 || started.elapsed() > Duration::from_secs(10) {
                break logged;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(
        logged.len(),
        3,
        "every statement allowed something: {logged:?}"
    );
    let counted = wait_for_usage(&site, |report| flows_by_statement(report) == logged)?;
    for line in counted["statements"].as_array().unwrap() {
        assert!(line["last_allowed_at"].is_u64(), "{line}");
        assert_eq!(line["since_generation"], 1, "{line}");
        // Policy files: no API id.
        assert!(line.get("policy_id").is_none(), "{line}");
    }
    // Prometheus reads the same counts.
    let (_, body) = http_get(site.network.router(), metrics, "/metrics")?;
    for (id, flows) in &logged {
        let series = format!(
            "zpr_statement_flows_total{{policy=\"three-tier\",statement=\"{id}\"}} {flows}"
        );
        assert!(
            body.lines().any(|line| line == series),
            "no {series} in:\n{body}"
        );
    }
    let unused = usage(&site, &["--unused-since", "1h"])?;
    assert!(
        unused["statements"]
            .as_array()
            .unwrap()
            .iter()
            .all(|line| line["unused"] == false),
        "{unused:#}"
    );

    // A comment above moves every statement down a line, and a new one is
    // added: the moved ones keep their counts, the new one starts at 0.
    let policy = fs::read_to_string(site.inputs.policy())?;
    let reloads = site.agent.reloads();
    site.inputs
        .write_policy(&format!("# moved down\n{policy}{UNRELATED}\n"))?;
    site.agent.wait_for_reload(reloads)?;
    let moved: BTreeMap<String, u64> = logged
        .iter()
        .map(|(id, &flows)| {
            let (policy, line) = id.rsplit_once(':').unwrap();
            (
                format!("{policy}:{}", line.parse::<u32>().unwrap() + 1),
                flows,
            )
        })
        .collect();
    let after_move = wait_for_usage(&site, |report| {
        let flows = flows_by_statement(report);
        moved.iter().all(|(id, f)| flows.get(id) == Some(f)) && flows.len() == 4
    })?;
    let added = after_move["statements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| !moved.contains_key(line["statement"].as_str().unwrap()))
        .unwrap()
        .clone();
    assert_eq!(added["flows"], 0, "{added}");
    assert!(added["since_generation"].as_u64() > Some(1), "{added}");
    let marked = usage(&site, &["--unused-since", "1h"])?;
    let unused: Vec<&str> = marked["statements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|line| line["unused"] == true)
        .map(|line| line["statement"].as_str().unwrap())
        .collect();
    assert_eq!(unused, [added["statement"].as_str().unwrap()], "{marked:#}");

    // The counts outlive the agent.
    site.agent.restart()?;
    site.assert_paths_as_in_example();
    let after_restart = wait_for_usage(&site, |report| {
        let flows = flows_by_statement(report);
        moved.iter().all(|(id, f)| flows.get(id) > Some(f))
    })?;
    let since: Vec<u64> = after_restart["statements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|line| moved.contains_key(line["statement"].as_str().unwrap()))
        .map(|line| line["since_generation"].as_u64().unwrap())
        .collect();
    assert_eq!(since, [1, 1, 1], "{after_restart:#}");
    Ok(())
}
