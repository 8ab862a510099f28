//! VMs come and go in a three-host fleet (real etcd over mutual TLS,
//! signed states, real traffic): a workload live-migrated from host B to
//! host C, its endpoint moved through the API, keeps its connection to the
//! database; B stops attaching and C attaches. Deleting the endpoint then
//! cuts its flow and closes its address's paths on every host. What all
//! that churn leaves in etcd (work requests, audit records) expires.

use std::{process::Output, time::Duration};

use serde_json::Value;
use zpr_tests::{
    fleet::{Fleet, revision_of, three_hosts::APPS_TO_DB},
    traffic::echo,
};

const CONVERGED: Duration = Duration::from_secs(30);

fn succeeded(output: &Output) -> u64 {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    revision_of(output)
}

fn endpoint_names(status: &Value) -> Vec<String> {
    status["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|endpoint| endpoint["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_migrated_workload_keeps_its_paths_and_a_deleted_one_loses_them_everywhere() {
    let mut fleet = Fleet::three_hosts(&[1521], true).unwrap();
    let created = fleet
        .api
        .cli(&["policy", "create", "apps-to-db", "--statement", APPS_TO_DB])
        .unwrap();
    fleet.wait_everywhere(succeeded(&created), CONVERGED);
    let mut live = fleet.connect("app-2", "db", 1521).unwrap();
    echo(&mut live, b"on host b").unwrap();

    // The VM moves; its orchestrator moves its endpoint.
    fleet.migrate("app-2", "host-c", "vnet7").unwrap();
    let moved = fleet
        .api
        .cli(&[
            "endpoint",
            "update",
            "app-2",
            "--node",
            "host-c",
            "--interface",
            "vnet7",
        ])
        .unwrap();
    fleet.wait_everywhere(succeeded(&moved), CONVERGED);
    let (_, b) = fleet.host("host-b").agent.status_report().unwrap();
    let (_, c) = fleet.host("host-c").agent.status_report().unwrap();
    assert_eq!(endpoint_names(&b), ["app-1"], "{b:#}");
    assert_eq!(endpoint_names(&c), ["app-2", "db"], "{c:#}");
    echo(&mut live, b"on host c").expect("the connection goes on after the migration");
    assert!(fleet.works("app-2", "db", 1521));
    assert!(!fleet.works("app-2", "db", 22));
    assert!(!fleet.works("lb", "db", 1521));

    // Deleted: its flow is cut and its address opens nothing anywhere.
    let deleted = fleet.api.cli(&["endpoint", "delete", "app-2"]).unwrap();
    fleet.wait_everywhere(succeeded(&deleted), CONVERGED);
    assert!(echo(&mut live, b"after").is_err(), "the live flow goes on");
    assert!(!fleet.works("app-2", "db", 1521));
    assert!(fleet.works("app-1", "db", 1521));

    // Idle, the three agents write nothing: each node record is written
    // when it changes (once it was rewritten in a loop, ~2,000 a second).
    let revision = || fleet.etcd.revision().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let before = revision();
    std::thread::sleep(Duration::from_secs(4));
    // A late report of the last change may land; a loop writes thousands.
    let written = revision() - before;
    assert!(
        written <= 3,
        "idle agents wrote to etcd {written} times in 4 s"
    );

    // A day of VMs coming and going leaves a week of history, not all of it.
    for prefix in ["work-requests/", "audit/"] {
        let listed = fleet
            .etcd
            .etcdctl_as(
                "root",
                &["get", &fleet.key(prefix), "--prefix", "-w", "json"],
            )
            .unwrap();
        let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
        let records = listed["kvs"].as_array().cloned().unwrap_or_default();
        assert!(records.len() >= 3, "{prefix}: {listed:#}");
        for record in records {
            let lease = record["lease"].as_i64().unwrap_or(0);
            assert!(lease != 0, "{prefix} record kept for ever: {record:#}");
            let alive = fleet
                .etcd
                .etcdctl_as(
                    "root",
                    &["lease", "timetolive", &format!("{lease:x}"), "-w", "json"],
                )
                .unwrap();
            let alive: Value = serde_json::from_slice(&alive.stdout).unwrap();
            let ttl = alive["ttl"].as_i64().unwrap_or(0);
            let week = 7 * 24 * 3600;
            assert!((week..=week + 3600).contains(&ttl), "{prefix}: {alive:#}");
        }
    }
}
