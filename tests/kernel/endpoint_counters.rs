//! Per-vNIC counters on the three-tier site, with real traffic: a denied
//! connection counts on the vNIC that dropped it and on no other, exactly
//! the packets and bytes sent; the
//! endpoints' counts add up to the host's; `zpr status --endpoint` and the
//! Prometheus series agree; counts survive a reload and an agent restart;
//! an endpoint that leaves takes its series with it, and the next endpoint
//! given its row starts from zero while the host's totals never go back.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::Value;
use zpr_common::counters::Reason;
use zpr_tests::{
    http::{free_port, http_get},
    site::{Site, UNRELATED},
};

const ENDPOINTS: [&str; 4] = ["lb", "app-1", "app-2", "db"];

/// `zpr status --endpoint NAME --output json`.
fn endpoint_report(site: &Site, name: &str) -> anyhow::Result<Value> {
    let output = site
        .agent
        .zpr(&["status", "--endpoint", name, "--output", "json"])
        .args(site.agent.paths())
        .output()?;
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "zpr status --endpoint {name} printed no report: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Packets a counters list (an endpoint's, or the host's) holds under
/// `reason` in `direction` (`from_workload` / `to_workload`).
fn packets(lines: &Value, reason: Reason, direction: &str) -> u64 {
    lines
        .as_array()
        .into_iter()
        .flatten()
        .find(|line| line["reason"] == reason.name())
        .map_or(0, |line| line[direction].as_u64().unwrap())
}

/// An endpoint's no-policy drops toward its workload.
fn denied_toward(site: &Site, name: &str) -> anyhow::Result<u64> {
    let report = endpoint_report(site, name)?;
    Ok(packets(
        &report["counters"],
        Reason::NoPolicy,
        "to_workload",
    ))
}

/// The host's no-policy drops, both directions.
fn host_denied(site: &Site) -> anyhow::Result<u64> {
    let report = site.status_json()?;
    Ok(
        packets(&report["counters"], Reason::NoPolicy, "to_workload")
            + packets(&report["counters"], Reason::NoPolicy, "from_workload"),
    )
}

#[test]
fn each_vnic_counts_its_own_packets_across_reloads_restarts_and_departures() -> anyhow::Result<()> {
    let mut metrics = None;
    let mut site = Site::start_with(|network, agent| {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(network.router())?));
        agent.arguments.extend([
            "--metrics-address".to_owned(),
            address.to_string(),
            "--allow-unprotect".to_owned(),
        ]);
        metrics = Some(address);
        Ok(())
    })?;
    let metrics = metrics.unwrap();

    // Denied from the internet toward app-1: dropped at app-1's vNIC only.
    let before: Vec<u64> = ENDPOINTS
        .iter()
        .map(|name| denied_toward(&site, name))
        .collect::<anyhow::Result<_>>()?;
    assert!(!site.works("internet", "app-1", 80));
    let after: Vec<u64> = ENDPOINTS
        .iter()
        .map(|name| denied_toward(&site, name))
        .collect::<anyhow::Result<_>>()?;
    for ((name, before), after) in ENDPOINTS.iter().zip(&before).zip(&after) {
        if *name == "app-1" {
            assert!(after > before, "app-1 counted no drop: {before} -> {after}");
        } else {
            assert_eq!(after, before, "{name} counted app-1's drop");
        }
    }
    // Exactly what was sent: 25 denied datagrams of 100 bytes are 25 drops
    // at app-1's vNIC, of 142 bytes each (Ethernet 14, IPv4 20, UDP 8).
    let before = endpoint_report(&site, "app-1")?["counters"].clone();
    let to = site.network.address("app-1");
    site.network
        .netns("internet")
        .enter(|| -> anyhow::Result<()> {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            for _ in 0..25 {
                socket.send_to(&[0; 100], (to, 9))?;
            }
            Ok(())
        })??;
    let grown = |field: &str| -> anyhow::Result<u64> {
        let now = endpoint_report(&site, "app-1")?["counters"].clone();
        Ok(packets(&now, Reason::NoPolicy, field) - packets(&before, Reason::NoPolicy, field))
    };
    let started = Instant::now();
    while grown("to_workload")? < 25 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing more arrives later.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(grown("to_workload")?, 25);
    assert_eq!(grown("to_workload_bytes")?, 25 * 142);

    // An allowed connection counts a new flow where it leaves and where it
    // arrives.
    assert!(site.works("lb", "app-1", 80));
    let lb = endpoint_report(&site, "lb")?;
    assert!(
        packets(&lb["counters"], Reason::NewFlow, "from_workload") >= 1,
        "{lb:#}"
    );
    let app1 = endpoint_report(&site, "app-1")?;
    assert!(
        packets(&app1["counters"], Reason::NewFlow, "to_workload") >= 1,
        "{app1:#}"
    );

    // Every drop happens at an endpoint's vNIC: their sums are the host's.
    assert!(!site.works("app-1", "db", 22));
    assert!(!site.works("db", "app-1", 80));
    let report = site.status_json()?;
    let endpoints = report["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), ENDPOINTS.len());
    for direction in ["from_workload", "to_workload"] {
        let summed: u64 = endpoints
            .iter()
            .map(|endpoint| packets(&endpoint["counters"], Reason::NoPolicy, direction))
            .sum();
        assert_eq!(
            summed,
            packets(&report["counters"], Reason::NoPolicy, direction),
            "{direction}: {report:#}"
        );
    }

    // Prometheus reads what zpr status reads.
    let series = "zpr_endpoint_packets_total{endpoint=\"app-1\",direction=\"to-workload\",\
                  reason=\"no-policy\",verdict=\"drop\"}";
    let scraped = |site: &Site| -> anyhow::Result<Option<u64>> {
        let (status, body) = http_get(site.network.router(), metrics, "/metrics")?;
        anyhow::ensure!(status == 200, "{body}");
        Ok(body
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok()))
    };
    assert_eq!(scraped(&site)?, Some(denied_toward(&site, "app-1")?));

    // A reload keeps every endpoint's counts, and its row.
    let app1_row = app1["counter_row"].as_u64().context("app-1 has no row")?;
    let counted = denied_toward(&site, "app-1")?;
    let reloads = site.agent.reloads();
    let policy = fs::read_to_string(site.inputs.policy())?;
    site.inputs
        .write_policy(&format!("{policy}{UNRELATED}\n"))?;
    site.agent.wait_for_reload(reloads)?;
    assert!(denied_toward(&site, "app-1")? >= counted);
    assert_eq!(endpoint_report(&site, "app-1")?["counter_row"], app1_row);

    // So does a restart: the new agent learns the rows from the pins.
    site.agent.restart()?;
    assert!(denied_toward(&site, "app-1")? >= counted);
    assert_eq!(endpoint_report(&site, "app-1")?["counter_row"], app1_row);

    // app-2 leaves (its vNIC stays): its series go, the host's totals stay.
    assert!(!site.works("internet", "app-2", 80));
    let app2_row = endpoint_report(&site, "app-2")?["counter_row"].clone();
    assert!(denied_toward(&site, "app-2")? > 0);
    let host_before = host_denied(&site)?;
    let inventory = fs::read_to_string(site.inputs.inventory())?;
    let app2 = "  - name: app-2\n";
    assert!(inventory.contains(app2));
    // First no endpoint on that vNIC, then app-3 on it.
    let removed = {
        let start = inventory.find(app2).unwrap();
        let rest = start + app2.len();
        let end = inventory[rest..]
            .find("  - name:")
            .map_or(inventory.len(), |offset| rest + offset);
        format!("{}{}", &inventory[..start], &inventory[end..])
    };
    let renamed = inventory.replace(app2, "  - name: app-3\n");
    let reloads = site.agent.reloads();
    site.inputs.write_inventory(&removed)?;
    site.agent.wait_for_reload(reloads)?;
    let report = site.status_json()?;
    assert!(
        report["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .all(|endpoint| endpoint["name"] != "app-2"),
        "{report:#}"
    );
    let (_, body) = http_get(site.network.router(), metrics, "/metrics")?;
    assert!(!body.contains("endpoint=\"app-2\""), "{body}");
    assert!(host_denied(&site)? >= host_before);

    let reloads = site.agent.reloads();
    site.inputs.write_inventory(&renamed)?;
    site.agent.wait_for_reload(reloads)?;
    let app3 = endpoint_report(&site, "app-3")?;
    assert_eq!(
        app3["counter_row"], app2_row,
        "app-3 did not take app-2's row"
    );
    assert_eq!(app3["counters"], serde_json::json!([]), "{app3:#}");
    assert!(host_denied(&site)? >= host_before);
    assert!(!site.works("internet", "app-2", 80));
    assert!(denied_toward(&site, "app-3")? > 0);
    Ok(())
}
