//! A fleet on a real etcd: three simulated hosts, each a router namespace
//! with its own vNICs, pins, run directory and node name, an agent
//! following the tenancy in etcd, and an API server (`zpr serve --store
//! etcd://`) on the first host. Workloads on different hosts talk over
//! real TCP; every assertion is about real traffic or what the real
//! processes report.

use std::{
    io::{Read as _, Write as _},
    process::Output,
    sync::{Arc, Barrier},
    time::Duration,
};

use serde_json::Value;
use zpr_tests::fleet::{
    ApiServer, Fleet, revision_of,
    three_hosts::{APPS_TO_DB, LB_TO_APPS},
};

/// How long a change may take to be enforced everywhere in these tests
/// (the target is well under a second; the margin is for a loaded CI).
const CONVERGED: Duration = Duration::from_secs(10);

fn start_fleet() -> Fleet {
    Fleet::three_hosts(&[80, 1521], false).unwrap()
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn wait_everywhere(fleet: &Fleet, revision: u64) {
    fleet.wait_everywhere(revision, CONVERGED);
}

fn status(fleet: &Fleet, host: &str) -> (i32, Value) {
    fleet.host(host).agent.status_report().unwrap()
}

fn endpoint_names(status: &Value) -> Vec<String> {
    status["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|endpoint| endpoint["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn create_policy(api: &ApiServer, name: &str, statement: &str) -> u64 {
    revision_of(
        &api.cli(&["policy", "create", name, "--statement", statement])
            .unwrap(),
    )
}

#[test]
fn changes_through_the_api_are_enforced_on_the_hosts_where_workloads_run() {
    let mut fleet = start_fleet();

    // Each host attaches only to its own endpoints, though two are vnet0.
    let (_, b) = status(&fleet, "host-b");
    let (_, c) = status(&fleet, "host-c");
    assert_eq!(endpoint_names(&b), ["app-1", "app-2"], "{b:#}");
    assert_eq!(endpoint_names(&c), ["db"], "{c:#}");
    assert!(
        !fleet.works("app-1", "db", 1521),
        "default deny across hosts"
    );
    assert!(!fleet.works("lb", "app-1", 80));

    // A policy made through the API on host A opens B -> C.
    let revision = create_policy(&fleet.api, "apps-to-db", APPS_TO_DB);
    wait_everywhere(&fleet, revision);
    assert!(fleet.works("app-1", "db", 1521));
    assert!(fleet.works("app-2", "db", 1521));
    assert!(!fleet.works("lb", "db", 1521));
    assert!(!fleet.works("app-1", "db", 22));
    // Each allowed connection counts where it left (host B) and where it
    // arrived (host C); `zpr usage --store` sums the nodes' reports.
    let apps_to_db = |usage: &Value| -> Option<Value> {
        usage["statements"]
            .as_array()?
            .iter()
            .find(|line| line["statement"] == "apps-to-db:1")
            .cloned()
    };
    fleet
        .eventually("the fleet's usage counts both hosts", CONVERGED * 3, || {
            fleet.fleet_usage().is_ok_and(|usage| {
                apps_to_db(&usage).is_some_and(|line| line["flows"].as_u64() >= Some(4))
            })
        })
        .unwrap();
    let usage = fleet.fleet_usage().unwrap();
    let line = apps_to_db(&usage).unwrap();
    assert_eq!(line["flows"], 4, "{usage:#}");
    let policy_id = line["policy_id"].as_str().expect("the API's id");
    assert!(policy_id.starts_with("ocid1."), "the API's id: {usage:#}");
    // Each host's own `zpr usage` (its run directory's file, written at
    // most every ten seconds) names the same id.
    for host in ["host-b", "host-c"] {
        let agent = &fleet.host(host).agent;
        fleet
            .eventually(
                &format!("{host}'s zpr usage names apps-to-db:1"),
                CONVERGED * 3,
                || {
                    agent
                        .usage_report(&[])
                        .is_ok_and(|usage| apps_to_db(&usage).is_some())
                },
            )
            .unwrap();
        let usage = agent.usage_report(&[]).unwrap();
        let line = apps_to_db(&usage).unwrap();
        assert_eq!(line["policy_id"], policy_id, "{host}: {usage:#}");
    }
    assert_eq!(
        line["nodes"],
        serde_json::json!(["host-b", "host-c"]),
        "{usage:#}"
    );
    let nodes = fleet.fleet_status().unwrap();
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 3, "{nodes:#}");
    assert!(
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|node| node["revision"].as_u64() >= Some(revision)),
        "{nodes:#}"
    );

    // Deleting it closes the path and cuts the live connection.
    let mut live = fleet.connect("app-1", "db", 1521).unwrap();
    live.write_all(b"before").unwrap();
    let mut echoed = [0; 6];
    live.read_exact(&mut echoed).unwrap();
    let deleted = fleet.api.cli(&["policy", "delete", "apps-to-db"]).unwrap();
    wait_everywhere(&fleet, revision_of(&deleted));
    let cut = live
        .write_all(b"after!")
        .and_then(|()| live.read_exact(&mut echoed));
    assert!(cut.is_err(), "the live connection goes on after the delete");
    assert!(!fleet.works("app-1", "db", 1521));

    // Untagging app-2 changes what its own host (B) protects, and what db
    // (on C) lets in from it.
    let revision = create_policy(&fleet.api, "apps-to-db", APPS_TO_DB);
    wait_everywhere(&fleet, revision);
    let untagged = fleet
        .api
        .cli(&["endpoint", "untag", "app-2", "ocvtc002.apps:server"])
        .unwrap();
    wait_everywhere(&fleet, revision_of(&untagged));
    let (_, b) = status(&fleet, "host-b");
    let app_2 = b["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|endpoint| endpoint["name"] == "app-2")
        .unwrap();
    assert_eq!(app_2["protected"], false, "{b:#}");
    assert!(!fleet.works("app-2", "db", 1521));
    assert!(fleet.works("app-1", "db", 1521));

    // A killed agent's node is gone one lease TTL later; its host goes on
    // enforcing from the pins. zpr fleet status names it: endpoints are
    // placed on it, and no agent reports for it.
    fleet.host_mut("host-c").agent.kill();
    fleet
        .eventually(
            "host-c shows in zpr fleet status as having no agent",
            Duration::from_secs(25),
            || {
                fleet.fleet_status().is_ok_and(|status| {
                    status["nodes"].as_array().is_some_and(|nodes| {
                        nodes
                            .iter()
                            .any(|node| node["node"] == "host-c" && node["state"] == "no-agent")
                    })
                })
            },
        )
        .unwrap();
    assert!(!fleet.works("app-2", "db", 1521));
    assert!(!fleet.works("lb", "db", 1521));
    assert!(fleet.works("app-1", "db", 1521));
}

#[test]
fn an_etcd_outage_keeps_enforcement_and_the_fleet_resyncs_when_it_returns() {
    let mut fleet = start_fleet();
    let revision = create_policy(&fleet.api, "apps-to-db", APPS_TO_DB);
    wait_everywhere(&fleet, revision);

    fleet.etcd.kill();
    for host in ["host-a", "host-b", "host-c"] {
        fleet
            .eventually(
                &format!("{host}'s status shows the outage"),
                Duration::from_secs(15),
                || {
                    let (code, report) = status(&fleet, host);
                    code == 3 && report.to_string().contains("unreachable since")
                },
            )
            .unwrap();
    }
    assert!(fleet.works("app-1", "db", 1521), "allowed paths go on");
    assert!(!fleet.works("lb", "db", 1521), "denied paths stay denied");
    let refused = fleet
        .api
        .cli(&["policy", "create", "lb-to-apps", "--statement", LB_TO_APPS])
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("ServiceUnavailable (503)"), "{message}");
    // Refused for the outage, and audited all the same (locally: the
    // store is down).
    let audit = fleet.api.audit_log();
    let refusal = audit
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|record| {
            record["operation"] == "CreateZprPolicy"
                && record["outcome"] == "FAILED"
                && record["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("unavailable"))
        });
    assert!(
        refusal.is_some(),
        "no audit record of the refusal:\n{audit}"
    );

    // An agent restarted during the outage enforces its cached snapshot.
    let agent = &mut fleet.host_mut("host-b").agent;
    agent.kill();
    agent.spawn().unwrap();
    let restarted = fleet.host("host-b").agent.pid().unwrap() as u64;
    fleet
        .eventually("host-b's agent restarts", Duration::from_secs(40), || {
            let (_, report) = status(&fleet, "host-b");
            report["agent"]["pid"].as_u64() == Some(restarted)
                && report.to_string().contains("unreachable since")
        })
        .unwrap();
    assert!(fleet.works("app-1", "db", 1521));
    assert!(!fleet.works("app-1", "db", 22));
    let log = fleet.host("host-b").agent.log();
    assert!(
        log.contains("enforcing the snapshot this host applied last"),
        "{log}"
    );

    // etcd returns: every agent resyncs by itself, and the next change
    // applies everywhere.
    fleet.etcd.spawn().unwrap();
    for host in ["host-a", "host-b", "host-c"] {
        fleet
            .eventually(&format!("{host} resyncs"), Duration::from_secs(20), || {
                status(&fleet, host).0 == 0
            })
            .unwrap();
    }
    let deleted = fleet.api.cli(&["policy", "delete", "apps-to-db"]).unwrap();
    wait_everywhere(&fleet, revision_of(&deleted));
    assert!(!fleet.works("app-1", "db", 1521));
}

#[test]
fn a_frozen_etcd_is_noticed_and_deletions_missed_while_cut_off_are_applied() {
    let fleet = start_fleet();
    let revision = create_policy(&fleet.api, "apps-to-db", APPS_TO_DB);
    wait_everywhere(&fleet, revision);

    fleet.etcd.freeze().unwrap();
    let noticed = fleet
        .eventually(
            "every agent notices the frozen etcd",
            Duration::from_secs(10),
            || {
                ["host-a", "host-b", "host-c"].iter().all(|host| {
                    status(&fleet, host)
                        .1
                        .to_string()
                        .contains("unreachable since")
                })
            },
        )
        .unwrap();
    eprintln!("a frozen etcd was noticed by every agent after {noticed:?}");
    fleet.etcd.thaw().unwrap();
    fleet
        .eventually("the fleet is back", Duration::from_secs(20), || {
            ["host-a", "host-b", "host-c"]
                .iter()
                .all(|host| status(&fleet, host).0 == 0)
        })
        .unwrap();

    // Host C is cut off while the policy is deleted and the history that
    // holds the deletion is compacted away.
    fleet.host("host-c").bridge.set_cut(true);
    fleet
        .eventually(
            "host-c notices it is cut off",
            Duration::from_secs(15),
            || {
                status(&fleet, "host-c")
                    .1
                    .to_string()
                    .contains("unreachable since")
            },
        )
        .unwrap();
    let deleted = fleet.api.cli(&["policy", "delete", "apps-to-db"]).unwrap();
    let deleted = revision_of(&deleted);
    create_policy(&fleet.api, "lb-to-apps", LB_TO_APPS);
    fleet.etcd.compact().unwrap();
    let (_, cut_off) = status(&fleet, "host-c");
    assert_eq!(cut_off["agent"]["statements"], 1, "{cut_off:#}");
    assert!(
        cut_off["agent"]["revision"].as_u64() < Some(deleted),
        "host C cannot have seen the deletion: {cut_off:#}"
    );
    fleet.host("host-c").bridge.set_cut(false);
    wait_everywhere(&fleet, deleted);
    let (code, back) = status(&fleet, "host-c");
    assert_eq!(code, 0, "{back:#}");
    let policies = back["agent"]["statements"].clone();
    assert_eq!(policies, 1, "only lb-to-apps is left: {back:#}");
    assert!(!fleet.works("app-1", "db", 1521));
    assert!(fleet.works("lb", "app-1", 80));
}

#[test]
fn two_api_servers_changing_one_policy_at_once_lose_no_update() {
    let fleet = start_fleet();
    create_policy(&fleet.api, "shared", APPS_TO_DB);
    let second = fleet.second_api_server("host-b").unwrap();
    let servers = [&fleet.api, &second];

    // Replacing the statements at the same moment: one wins, the other is
    // told 409 (its change was based on what the first one replaced).
    let mut conflicts = 0;
    for round in 0..30 {
        let barrier = Arc::new(Barrier::new(2));
        let outcomes: Vec<Output> = std::thread::scope(|scope| {
            let handles: Vec<_> = servers
                .iter()
                .enumerate()
                .map(|(n, server)| {
                    let barrier = barrier.clone();
                    let statement = if n == 0 { APPS_TO_DB } else { LB_TO_APPS };
                    scope.spawn(move || {
                        barrier.wait();
                        server
                            .cli(&["policy", "update", "shared", "--statement", statement])
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let failed: Vec<&Output> = outcomes.iter().filter(|o| !o.status.success()).collect();
        assert!(failed.len() < 2, "round {round}: both updates failed");
        for output in failed {
            let message = String::from_utf8_lossy(&output.stderr);
            assert!(
                message.contains("Conflict (409)"),
                "round {round}: {message}"
            );
            conflicts += 1;
        }
        if conflicts > 0 {
            break;
        }
    }
    assert!(conflicts > 0, "no two updates ever met in 30 rounds");

    // Read-modify-write appends from both servers at once: all are kept.
    std::thread::scope(|scope| {
        for (n, server) in servers.iter().enumerate() {
            scope.spawn(move || {
                for port in 0..4 {
                    let statement = format!(
                        "In ocvtc002.networks:front-end VCN allow ocvtc002.apps:server endpoints to connect to ocvtc002.apps:server endpoints with protocol='tcp/{}'",
                        9000 + n * 10 + port
                    );
                    succeeded(
                        &server
                            .cli(&["policy", "update", "shared", "--add-statement", &statement])
                            .unwrap(),
                    );
                }
            });
        }
    });
    // Both servers' audit records are in the store, one per change.
    let tenancy = fleet.url.rsplit('/').next().unwrap();
    let audit = fleet
        .etcd
        .etcdctl(&[
            "get",
            "--prefix",
            "--keys-only",
            &format!("/zpr/v1/{tenancy}/audit/"),
        ])
        .unwrap();
    let records = String::from_utf8_lossy(&audit.stdout)
        .lines()
        .filter(|line| !line.is_empty())
        .count();
    assert!(records >= 9, "{records} audit records in the store");
    let policy = fleet
        .api
        .cli(&["policy", "get", "shared", "--output", "json"])
        .unwrap();
    let policy: Value = serde_json::from_slice(&policy.stdout).unwrap();
    let statements = policy["statements"].as_array().unwrap();
    for n in 0..2 {
        for port in 0..4 {
            let port = format!("tcp/{}", 9000 + n * 10 + port);
            assert!(
                statements
                    .iter()
                    .any(|s| s.as_str().unwrap().contains(&port)),
                "{port} was lost: {policy:#}"
            );
        }
    }
}

/// A tenancy larger than one gRPC answer (4 MiB unless the client says
/// otherwise) and of more records than one page of a list: the API server
/// reads it for every change, and every agent lists it at the start and
/// follows changes to it. Before pages, the API refused every change once
/// the tenancy passed 4 MiB ("decoded message length too large"), and an
/// agent starting then could not read its store at all.
#[test]
fn a_tenancy_larger_than_one_etcd_answer_is_read_in_pages() {
    use zpr_tests::fleet::three_hosts::{HOST_A, HOST_B, HOST_C, INVENTORY};
    // 1,500 endpoints beyond the workloads: two pages of records.
    let mut inventory = INVENTORY.to_owned();
    for index in 0..1_500 {
        inventory.push_str(&format!(
            "  - {{ name: filler-{index}, vcn: frontend-vcn, addresses: [10.0.{}.{}] }}\n",
            100 + index / 250,
            1 + index % 250
        ));
    }
    let mut fleet = Fleet::start(
        &[
            ("host-a", &HOST_A),
            ("host-b", &HOST_B),
            ("host-c", &HOST_C),
        ],
        &[80, 1521],
        &inventory,
    )
    .unwrap();
    assert!(!fleet.works("lb", "app-1", 80), "lb reaches app-1 unasked");
    // 42 policies with descriptions of 120 kB (an argument is at most
    // 128 KiB), each opening lb to the apps on a port of its own: the last
    // opens port 80, beyond 4.9 MB of the tenancy.
    let description = "x".repeat(120_000);
    let mut revision = 0;
    for index in 0..42 {
        let port = if index == 41 { 80 } else { 10_000 + index };
        let output = fleet
            .api
            .cli(&[
                "policy",
                "create",
                &format!("padded-{index}"),
                "--description",
                &description,
                "--statement",
                &LB_TO_APPS.replace("tcp/80", &format!("tcp/{port}")),
            ])
            .unwrap();
        succeeded(&output);
        revision = revision_of(&output);
    }
    wait_everywhere(&fleet, revision);
    assert!(fleet.works("lb", "app-1", 80), "lb cannot reach app-1");
    assert!(!fleet.works("lb", "db", 1521), "lb reaches db");
    assert!(
        !fleet.works("app-1", "db", 1521),
        "app-1 reaches db unasked"
    );
    // An agent that starts now lists the whole tenancy; then a change
    // after the large ones, read by the API and by each agent's watch.
    fleet.host_mut("host-c").agent.restart().unwrap();
    wait_everywhere(&fleet, create_policy(&fleet.api, "apps-to-db", APPS_TO_DB));
    assert!(fleet.works("app-1", "db", 1521), "app-1 cannot reach db");
    assert!(!fleet.works("lb", "db", 1521), "lb reaches db");
    let listed = fleet.api.cli(&["endpoint", "list"]).unwrap();
    succeeded(&listed);
    let listed = String::from_utf8_lossy(&listed.stdout);
    let fillers = listed
        .lines()
        .filter(|line| line.starts_with("filler-"))
        .count();
    assert_eq!(fillers, 1_500, "{listed}");
}

/// A page of records larger than the client takes is asked for again in
/// halves; records come whole, in one state, at one revision, however
/// they are paged; a record larger than an answer may carry is named.
#[test]
fn a_list_is_the_same_in_any_pages_and_a_page_too_large_is_halved() {
    use zpr_agent::store::{
        EtcdLocation,
        etcd::{Paging, connect, list_in_pages},
    };
    let etcd = zpr_tests::etcd::Etcd::start().unwrap();
    let location = EtcdLocation::parse(&etcd.url("pages")).unwrap();
    let prefix = location.state_prefix();
    let mut expected = std::collections::BTreeMap::new();
    for index in 0..300 {
        let value = if index % 50 == 7 {
            vec![b'a' + (index % 26) as u8; 1 << 20]
        } else {
            format!("small {index}").into_bytes()
        };
        etcd.put_bytes(&format!("{prefix}record-{index:03}"), &value)
            .unwrap();
        expected.insert(format!("record-{index:03}").into_bytes(), value);
    }
    // Outside the prefix: never listed.
    etcd.put_bytes(&format!("{}nodes/host-a", location.prefix()), b"{}")
        .unwrap();
    let revision = etcd.revision().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = connect(&location).await.unwrap();
        for paging in [
            Paging::DEFAULT,
            Paging {
                records: 1,
                answer_bytes: 2 << 20,
            },
            Paging {
                records: 1_000,
                answer_bytes: 3 << 20,
            },
            Paging {
                records: 7,
                answer_bytes: (1 << 20) + 4096,
            },
        ] {
            let listed = list_in_pages(&mut client, &location, &prefix, paging)
                .await
                .unwrap_or_else(|error| panic!("{paging:?}: {error:#}"));
            assert_eq!(listed.records.len(), expected.len(), "{paging:?}");
            assert!(listed.records == expected, "{paging:?}: records differ");
            assert_eq!(listed.revision, revision, "{paging:?}");
        }
        let refused = list_in_pages(
            &mut client,
            &location,
            &prefix,
            Paging {
                records: 1_000,
                answer_bytes: 512 << 10,
            },
        )
        .await
        .err()
        .expect("a record larger than an answer is refused");
        assert!(
            format!("{refused:#}").contains("larger than the 524288 bytes"),
            "{refused:#}"
        );
    });
}
