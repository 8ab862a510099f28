//! A fleet under careless and hostile operators: a mistyped or shared
//! node name, bad records written straight into etcd, a wiped or lost
//! store, a start that holds a change back. Three simulated hosts on a
//! real etcd, real TCP. In every fault a denied path stays denied unless
//! an operator confirms, and no status, `zpr fleet status` or `zpr wait`
//! says "in force" while a node holds stale or no enforcement.
//!
//! `ext` is an untagged workload outside every VCN on host A: what it may
//! reach shows what the other hosts enforce at their vNICs.
//!
//! With signed states (the trusted control plane), a store written behind
//! the API's back opens nothing: forged, replayed and unsigned states are
//! refused on every host, and rotating the signing key leaves no gap.

use std::{process::Output, time::Duration};

use serde_json::Value;
use zpr_tests::{
    agent::zpr_binary,
    fleet::{
        Fleet, Workload, revision_of,
        three_hosts::{APPS_TO_DB, HOST_B, HOST_C, INVENTORY},
    },
};

const HOST_A: [Workload; 2] = [
    ("lb", "zpr-lb", "10.0.1.10"),
    ("ext", "zpr-ext", "10.9.0.10"),
];

const HOSTS: [&str; 3] = ["host-a", "host-b", "host-c"];
/// Long enough for a loaded CI host running fleets side by side: a passing
/// test waits only as long as it takes.
const CONVERGED: Duration = Duration::from_secs(30);

fn start_fleet() -> Fleet {
    start_fleet_with(false)
}

/// `signed`: the API server signs, every agent applies only signed states.
fn start_fleet_with(signed: bool) -> Fleet {
    let fleet = Fleet::start_with(
        &[
            ("host-a", &HOST_A),
            ("host-b", &HOST_B),
            ("host-c", &HOST_C),
        ],
        &[80, 1521],
        INVENTORY,
        signed,
    )
    .unwrap();
    let revision = revision_of(
        &fleet
            .api
            .cli(&["policy", "create", "apps-to-db", "--statement", APPS_TO_DB])
            .unwrap(),
    );
    wait_succeeds(&fleet, revision);
    assert_denied_paths_denied(&fleet, "before the fault");
    assert!(fleet.works("app-1", "db", 1521));
    fleet
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn wait_succeeds(fleet: &Fleet, revision: u64) {
    fleet.wait_everywhere(revision, CONVERGED);
}

/// `zpr wait` says no (quickly: a short timeout), and names `naming`.
fn wait_refuses(fleet: &Fleet, revision: u64, naming: &str) {
    let output = fleet.wait(revision, 3).unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "zpr wait {revision}: {said}");
    assert!(
        said.contains(naming),
        "zpr wait {revision} names no {naming}: {said}"
    );
}

/// The paths the policy denies: the untagged `ext` into db and app-1, and
/// lb into db.
fn assert_denied_paths_denied(fleet: &Fleet, when: &str) {
    assert!(!fleet.works("ext", "db", 1521), "{when}: ext reaches db");
    assert!(
        !fleet.works("ext", "app-1", 80),
        "{when}: ext reaches app-1"
    );
    assert!(!fleet.works("lb", "db", 1521), "{when}: lb reaches db");
}

fn status(fleet: &Fleet, host: &str) -> (i32, Value) {
    fleet.host(host).agent.status_report().unwrap()
}

fn problems(report: &Value) -> String {
    report["problems"].to_string()
}

/// Waits until `host`'s `zpr status` exits with `code` and its problems
/// mention `mentions`.
fn status_becomes(fleet: &Fleet, host: &str, code: i32, mentions: &str) -> Value {
    // The report that matched, not a later read (which may differ).
    let matched = std::cell::RefCell::new(Value::Null);
    fleet
        .eventually(
            &format!("{host}'s status exits {code} naming '{mentions}'"),
            CONVERGED,
            || {
                let (exit, report) = status(fleet, host);
                let found = exit == code && problems(&report).contains(mentions);
                if !found {
                    eprintln!("{host}: {exit} {}", problems(&report));
                }
                *matched.borrow_mut() = report;
                found
            },
        )
        .unwrap();
    matched.into_inner()
}

/// A node's line in `zpr fleet status --output json`.
fn node_line(report: &Value, node: &str) -> Value {
    report["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|line| line["node"] == node)
        .cloned()
        .unwrap_or_else(|| panic!("no line for {node}: {report:#}"))
}

/// Asserts a node's state in `zpr fleet status --output json`.
fn assert_state(report: &Value, node: &str, state: &str) {
    assert_eq!(node_line(report, node)["state"], state, "{report:#}");
}

/// `zpr fleet status` once `node`'s record is gone (its agent's lease
/// lapsed): its exit code and report.
fn lease_lapsed(fleet: &Fleet, node: &str) -> (i32, Value) {
    fleet
        .eventually(
            &format!("{node}'s lease lapses"),
            Duration::from_secs(40),
            || {
                fleet
                    .fleet_report()
                    .is_ok_and(|(_, report)| node_line(&report, node)["state"] == "no-agent")
            },
        )
        .unwrap();
    fleet.fleet_report().unwrap()
}

/// Stops a host's agent and removes what it enforced, as on a host that
/// never ran zpr.
fn tear_down(fleet: &mut Fleet, host: &str) {
    let agent = &mut fleet.host_mut(host).agent;
    agent.kill();
    let down = agent.zpr(&["down"]).args(agent.paths()).output().unwrap();
    assert!(down.status.success(), "zpr down: {}", text(&down));
}

/// Item 1 (and 3: a node with endpoints but no live agent): a node name
/// that matches nothing.
#[test]
fn a_node_name_that_matches_nothing_is_loud_everywhere() {
    let mut fleet = start_fleet();
    tear_down(&mut fleet, "host-c");

    // --require-endpoints refuses to start under a name that places nothing.
    let agent = &fleet.host("host-c").agent;
    let refused = std::process::Command::new("nsenter")
        .arg(format!(
            "--net=/run/netns/{}",
            fleet.host("host-c").topology.router.name()
        ))
        .arg(zpr_binary())
        .arg("run")
        .args(fleet.agent_arguments("hv-17x").unwrap())
        .arg("--require-endpoints")
        .args(agent.paths())
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("no endpoint of") && text(&refused).contains("hv-17x"),
        "{}",
        text(&refused)
    );

    // Without it the agent runs, attaches to nothing, and says so: the
    // host's vnet0 is the name other nodes' endpoints carry.
    let arguments = fleet.agent_arguments("hv-17x").unwrap();
    let agent = &mut fleet.host_mut("host-c").agent;
    agent.arguments = arguments;
    agent.spawn().unwrap();
    let report = status_becomes(&fleet, "host-c", 1, "placed on node 'hv-17x'");
    assert!(problems(&report).contains("vnet0"), "{report:#}");
    assert!(fleet.works("ext", "db", 1521), "nothing protects db now");

    // The fleet view: host-c has endpoints and no live agent (once the
    // killed agent's lease lapses); the stray node is not in step.
    let (code, report) = lease_lapsed(&fleet, "host-c");
    assert_eq!(code, 1, "{report:#}");
    assert_state(&report, "host-c", "no-agent");
    assert_state(&report, "hv-17x", "not-enforcing");
    let revision = report["revision"].as_u64().unwrap();
    wait_refuses(&fleet, revision, "host-c (no live agent");

    // A tenancy that does not exist, or has no nodes, is an error at once.
    let mistyped = fleet.url.replace(fleet.tenancy(), "no-such-tenancy");
    let output = std::process::Command::new(zpr_binary())
        .args(["wait", "1", "--timeout", "30", "--store", &mistyped])
        .args(fleet.etcd_flags("root"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("does not exist"),
        "{}",
        text(&output)
    );
    let output = std::process::Command::new(zpr_binary())
        .args(["fleet", "status", "--store", &mistyped])
        .args(fleet.etcd_flags("root"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
}

/// Item 2: two hosts under one node name.
#[test]
fn a_second_agent_under_a_held_node_name_is_refused_and_both_say_so() {
    let mut fleet = start_fleet();
    tear_down(&mut fleet, "host-c");
    let arguments = fleet.agent_arguments("host-b").unwrap();
    let agent = &mut fleet.host_mut("host-c").agent;
    agent.arguments = arguments;
    agent.spawn().unwrap();

    status_becomes(&fleet, "host-c", 1, "is held by another live agent");
    status_becomes(&fleet, "host-b", 1, "also claimed by");
    let (code, report) = lease_lapsed(&fleet, "host-c");
    assert_eq!(code, 1, "{report:#}");
    assert_state(&report, "host-c", "no-agent");
    assert!(
        report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|line| line["node"] == "host-b" && line["state"] == "refused"),
        "{report:#}"
    );
    wait_refuses(&fleet, report["revision"].as_u64().unwrap(), "host-c");
    // host-b's own vNICs are still its agent's: its denied path stays so.
    assert!(!fleet.works("ext", "app-1", 80));
}

/// Items 4 and 5: garbage and non-UTF-8 records written straight into etcd.
#[test]
fn bad_records_fail_closed_are_named_and_do_not_flap() {
    let mut fleet = start_fleet();
    let policy = fleet.key("state/policies/bogus");
    let garbage_at = fleet
        .etcd
        .put_bytes(&policy, b"{\"id\": \"bogus\", \"statem")
        .unwrap();
    for host in HOSTS {
        status_becomes(&fleet, host, 3, "policies/bogus");
    }
    // It stays so (the keepalive must not clear it), and says why, not
    // "unreachable".
    for _ in 0..12 {
        let (code, report) = status(&fleet, "host-b");
        assert_eq!(code, 3, "{report:#}");
        assert!(!problems(&report).contains("unreachable"), "{report:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (code, report) = fleet.fleet_report().unwrap();
    assert_ne!(code, 0, "{report:#}");
    let line = node_line(&report, "host-c");
    assert_eq!(line["state"], "held-back", "{report:#}");
    assert!(
        line["problems"].to_string().contains("policies/bogus"),
        "{report:#}"
    );
    assert_denied_paths_denied(&fleet, "with a garbage record");
    wait_refuses(&fleet, garbage_at, "policies/bogus");
    fleet.etcd.etcdctl(&["del", &policy]).unwrap();
    for host in HOSTS {
        status_becomes(&fleet, host, 0, "");
    }

    // One byte that is not UTF-8 in db's record: the watch and a restart's
    // list both refuse the state; db is never untagged.
    let db = fleet.key("state/endpoints/db");
    let good = fleet.etcd.get_bytes(&db).unwrap();
    let mut bad = good.clone();
    let at = bad.windows(11).position(|w| w == b"customer-db").unwrap();
    bad[at] = 0xff;
    fleet.etcd.put_bytes(&db, &bad).unwrap();
    status_becomes(&fleet, "host-c", 3, "endpoints/db");
    assert!(!fleet.works("ext", "db", 1521));
    let agent = &mut fleet.host_mut("host-c").agent;
    agent.kill();
    agent.spawn().unwrap();
    let restarted = fleet.host("host-c").agent.pid().unwrap() as u64;
    fleet
        .eventually("host-c's agent restarts", CONVERGED, || {
            let (code, report) = status(&fleet, "host-c");
            report["agent"]["pid"].as_u64() == Some(restarted)
                && code == 3
                && problems(&report).contains("not UTF-8")
        })
        .unwrap();
    assert_denied_paths_denied(&fleet, "after a restart with a non-UTF-8 record");
    fleet.etcd.put_bytes(&db, &good).unwrap();
    status_becomes(&fleet, "host-c", 0, "");
    assert!(fleet.works("app-1", "db", 1521));
}

/// Item 6: a start that holds a change back does not report it enforced;
/// `zpr fleet confirm` applies it.
#[test]
fn a_held_back_start_reports_what_is_enforced_and_confirm_applies_it() {
    let mut fleet = start_fleet();
    fleet.host_mut("host-c").agent.kill();
    // db untagged behind the API's back while host-c's agent is down.
    let db = fleet.key("state/endpoints/db");
    let tagged = String::from_utf8(fleet.etcd.get_bytes(&db).unwrap()).unwrap();
    let untagged = tagged.replace("\"ocvtc002.db:customer-db\"", "");
    assert_ne!(tagged, untagged);
    let untagged_at = fleet.etcd.put_bytes(&db, untagged.as_bytes()).unwrap();

    fleet.host_mut("host-c").agent.spawn().unwrap();
    let report = status_becomes(&fleet, "host-c", 3, "held back");
    // Other nodes' reports move etcd's revision on too: what host-c read
    // is at least the untagging's.
    let revision = report["agent"]["pending_revision"].as_u64().unwrap();
    assert!(revision >= untagged_at, "{report:#}");
    assert!(
        report["agent"]["revision"]
            .as_u64()
            .is_none_or(|r| r < untagged_at),
        "an unapplied revision reported as enforced: {report:#}"
    );
    assert_denied_paths_denied(&fleet, "with the untagging held back");
    let (code, report) = fleet.fleet_report().unwrap();
    assert_ne!(code, 0, "{report:#}");
    assert_state(&report, "host-c", "held-back");
    wait_refuses(&fleet, untagged_at, "host-c");

    // The operator confirms it on the host: now it is in force.
    let agent = &fleet.host("host-c").agent;
    let wrong = agent
        .zpr(&["fleet", "confirm", &(revision + 100).to_string()])
        .args(agent.paths())
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "{}", text(&wrong));
    let confirmed = agent
        .zpr(&["fleet", "confirm", &revision.to_string()])
        .args(agent.paths())
        .output()
        .unwrap();
    assert!(confirmed.status.success(), "{}", text(&confirmed));
    wait_succeeds(&fleet, untagged_at);
    assert!(
        fleet.works("ext", "db", 1521),
        "db is untagged, as confirmed"
    );
}

/// Item 7 (and the API's confirmation): a wiped tenancy is held back on
/// every host; a change confirmed through the API is applied.
#[test]
fn a_wiped_store_is_held_back_everywhere_and_api_confirmation_is_needed() {
    let fleet = start_fleet();
    let untag = ["endpoint", "untag", "db", "ocvtc002.db:customer-db"];
    let refused = fleet.api.cli(&untag).unwrap();
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("--allow-unprotect"),
        "{}",
        text(&refused)
    );
    let dry = fleet
        .api
        .cli(&[&untag[..], &["--dry-run"]].concat())
        .unwrap();
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains("unprotects: stops protecting 1 of the 1"),
        "{}",
        text(&dry)
    );
    assert!(!fleet.works("ext", "db", 1521));

    let confirmed = fleet
        .api
        .cli(&[&untag[..], &["--allow-unprotect"]].concat())
        .unwrap();
    let revision = revision_of(&confirmed);
    wait_succeeds(&fleet, revision);
    assert!(
        fleet.works("ext", "db", 1521),
        "db is untagged, as confirmed"
    );
    let tag = ["endpoint", "tag", "db", "ocvtc002.db:customer-db"];
    wait_succeeds(&fleet, revision_of(&fleet.api.cli(&tag).unwrap()));
    assert_denied_paths_denied(&fleet, "db tagged again");

    let wiped = fleet
        .etcd
        .etcdctl(&["del", "--prefix", &fleet.key("")])
        .unwrap();
    assert!(wiped.status.success());
    for host in HOSTS {
        status_becomes(&fleet, host, 3, "the live policy stays");
    }
    assert_denied_paths_denied(&fleet, "after the wipe");
    assert!(
        fleet.works("app-1", "db", 1521),
        "allowed paths stay allowed"
    );
    let (code, report) = fleet.fleet_report().unwrap();
    assert_ne!(code, 0, "{report:#}");
    wait_refuses(&fleet, fleet.etcd.revision().unwrap(), "does not exist");
}

/// Item 8: etcd comes back empty. Agents hold the live policy and say
/// the store was reset; restoring a host's snapshot brings the fleet back.
#[test]
fn a_store_restored_empty_is_noticed_and_a_snapshot_restores_it() {
    let mut fleet = start_fleet();
    fleet.etcd.start_empty().unwrap();
    for host in HOSTS {
        status_becomes(&fleet, host, 3, "reset or restored");
    }
    assert_denied_paths_denied(&fleet, "with the store reset");
    assert!(fleet.works("app-1", "db", 1521));
    let (code, report) = fleet.fleet_report().unwrap();
    assert_eq!(code, 1, "{report:#}");
    wait_refuses(&fleet, 1, "does not exist");

    let snapshot = fleet
        .host("host-c")
        .agent
        .run_dir
        .join("store-snapshot.json");
    let restore = |dry: bool| {
        let mut command = std::process::Command::new(zpr_binary());
        command.args(["fleet", "restore", "--store", &fleet.url, "--from"]);
        command.arg(&snapshot).args(fleet.etcd_flags("api"));
        if dry {
            command.arg("--dry-run");
        }
        command.output().unwrap()
    };
    let dry = restore(true);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains("state/endpoints/db") || text(&dry).contains("endpoints/db"),
        "{}",
        text(&dry)
    );
    let restored = restore(false);
    assert!(restored.status.success(), "{}", text(&restored));
    // Exactly what every host enforces: taken on without a confirmation.
    for host in HOSTS {
        status_becomes(&fleet, host, 0, "");
    }
    let again = restore(false);
    assert!(
        !again.status.success(),
        "a restore into a tenancy that is not empty"
    );
    assert_denied_paths_denied(&fleet, "after the restore");
    assert!(fleet.works("app-1", "db", 1521));
}

/// Item 9: a seed onto a tenancy that lost `next-id` is refused, and
/// nothing is deleted.
#[test]
fn a_seed_never_destroys_a_tenancy_that_lost_its_next_id() {
    let fleet = start_fleet();
    let next_id = fleet.key("state/next-id");
    assert!(
        fleet
            .etcd
            .etcdctl(&["del", &next_id])
            .unwrap()
            .status
            .success()
    );
    let Err(error) = fleet.second_api_server("host-a") else {
        panic!("zpr serve --seed-inventory started over a tenancy that holds a policy");
    };
    let error = format!("{error:#}");
    assert!(error.contains("never wiped"), "{error}");
    let policies = fleet
        .etcd
        .etcdctl(&[
            "get",
            "--prefix",
            "--keys-only",
            &fleet.key("state/policies/"),
        ])
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&policies.stdout).trim().is_empty(),
        "the policy was deleted"
    );
    assert_denied_paths_denied(&fleet, "after the refused seed");
    // The state the agents and the API keep is root's alone, though they
    // run with umask 022 here.
    use std::os::unix::fs::MetadataExt as _;
    let run_dir = &fleet.host("host-a").agent.run_dir;
    for file in ["status.json", "store-snapshot.json", "node-lease"] {
        let mode = std::fs::metadata(run_dir.join(file)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}: {mode:o}");
    }
    let audit = fleet.api.socket.with_file_name("audit.jsonl");
    assert_eq!(std::fs::metadata(&audit).unwrap().mode() & 0o777, 0o600);
    assert!(
        fleet.works("app-1", "db", 1521),
        "the policy still allows app-1 to db"
    );
}

const LB_TO_DB: &str = "allow ocvtc002.lb:frontend endpoints in ocvtc002.networks:front-end VCN to connect to ocvtc002.db:customer-db endpoints with protocol='tcp/1521' in ocvtc002.networks:back-end VCN";

/// A policy made through the API (signed, when the fleet signs) opens
/// lb -> db everywhere.
fn open_lb_to_db(fleet: &Fleet) {
    let created = fleet
        .api
        .cli(&["policy", "create", "lb-to-db", "--statement", LB_TO_DB])
        .unwrap();
    wait_succeeds(fleet, revision_of(&created));
    assert!(fleet.works("lb", "db", 1521));
}

/// Every host refuses the store's state, naming why, and keeps enforcing.
fn every_host_refuses(fleet: &Fleet, why: &str) {
    for host in HOSTS {
        status_becomes(fleet, host, 3, "not signed by a trusted key");
        status_becomes(fleet, host, 3, why);
    }
}

/// A policy record written straight into etcd (valid, as the API would
/// write it) opens nothing on any host.
#[test]
fn a_forged_policy_record_opens_nothing_on_any_host() {
    let fleet = start_fleet_with(true);
    let policy = fleet.key("state/policies/forged");
    let forged = serde_json::json!({
        "id": "forged", "name": "forged", "description": "",
        "statements": [LB_TO_DB],
        "lifecycleState": "ACTIVE", "timeCreated": 0, "timeUpdated": 0,
    });
    fleet
        .etcd
        .put_bytes(&policy, forged.to_string().as_bytes())
        .unwrap();
    every_host_refuses(&fleet, "behind the API's back");
    assert_denied_paths_denied(&fleet, "with a forged policy in the store");
    assert!(
        fleet.works("app-1", "db", 1521),
        "allowed paths stay allowed"
    );
    let (code, report) = fleet.fleet_report().unwrap();
    assert_ne!(code, 0, "{report:#}");

    // The forgery removed: the signed state is back, and in force.
    assert!(
        fleet
            .etcd
            .etcdctl(&["del", &policy])
            .unwrap()
            .status
            .success()
    );
    for host in HOSTS {
        status_becomes(&fleet, host, 0, "");
    }
    // A change through the API is signed, and applied everywhere.
    open_lb_to_db(&fleet);
}

/// An older signed state written back over a later one is refused.
#[test]
fn a_replayed_signed_state_is_refused() {
    let fleet = start_fleet_with(true);
    let policy = fleet.key(&format!(
        "state/policies/{}",
        policy_id(&fleet, "apps-to-db")
    ));
    let signature = fleet.key("state/signature");
    let (old_policy, old_signature) = (
        fleet.etcd.get_bytes(&policy).unwrap(),
        fleet.etcd.get_bytes(&signature).unwrap(),
    );
    let deleted = fleet.api.cli(&["policy", "delete", "apps-to-db"]).unwrap();
    wait_succeeds(&fleet, revision_of(&deleted));
    assert!(!fleet.works("app-1", "db", 1521));

    fleet.etcd.put_bytes(&policy, &old_policy).unwrap();
    fleet.etcd.put_bytes(&signature, &old_signature).unwrap();
    every_host_refuses(&fleet, "rollback");
    assert!(
        !fleet.works("app-1", "db", 1521),
        "the replay reopened a path"
    );
    assert_denied_paths_denied(&fleet, "with a replayed state");
}

/// The signing key rotates: the new public key to the agents, the API
/// server to the new private key, the old public key removed; every
/// change on the way is applied, and nothing opens or closes meanwhile.
#[test]
fn rotating_the_signing_key_leaves_no_gap() {
    let mut fleet = start_fleet_with(true);
    let second = fleet.new_key("second").unwrap();
    std::fs::copy(
        second.with_extension("pub"),
        fleet.trusted().join("second.pub"),
    )
    .unwrap();
    let api = &mut fleet.api;
    api.kill();
    let key_at = api
        .arguments
        .iter()
        .position(|argument| argument == "--signing-key")
        .unwrap();
    api.arguments[key_at + 1] = second.display().to_string();
    api.spawn().unwrap();
    open_lb_to_db(&fleet);
    assert!(fleet.works("app-1", "db", 1521));

    std::fs::remove_file(fleet.trusted().join("first.pub")).unwrap();
    let deleted = fleet.api.cli(&["policy", "delete", "lb-to-db"]).unwrap();
    wait_succeeds(&fleet, revision_of(&deleted));
    assert_denied_paths_denied(&fleet, "after the rotation");
    assert!(fleet.works("app-1", "db", 1521));
    for host in HOSTS {
        let (code, report) = status(&fleet, host);
        assert_eq!(code, 0, "{report:#}");
    }
}

/// A policy's id, by its name (through the API).
fn policy_id(fleet: &Fleet, name: &str) -> String {
    let output = fleet
        .api
        .cli(&["policy", "get", name, "--output", "json"])
        .unwrap();
    let policy: Value = serde_json::from_slice(&output.stdout).unwrap();
    policy["id"].as_str().unwrap().to_owned()
}

/// Each component reaches etcd with its own certificate and the narrowest
/// role: an agent cannot write the tenancy's state or read another
/// tenancy, and a client of another CA is refused at the handshake.
#[test]
fn etcd_credentials_are_least_privilege_and_another_ca_is_refused() {
    let fleet = start_fleet();
    let node = format!("zpr-{}-node-host-c", fleet.tenancy());
    let forged = fleet
        .etcd
        .etcdctl_as(&node, &["put", &fleet.key("state/policies/x"), "{}"])
        .unwrap();
    assert!(!forged.status.success());
    assert!(
        text(&forged).contains("permission denied"),
        "{}",
        text(&forged)
    );
    let other = fleet
        .etcd
        .etcdctl_as(&node, &["get", "--prefix", "/zpr/v1/"])
        .unwrap();
    assert!(
        text(&other).contains("permission denied"),
        "{}",
        text(&other)
    );

    // `zpr fleet etcd-roles --apply` makes a new node's user, with root's
    // credentials: it may write its own record, not the state; a second
    // run changes nothing and succeeds.
    for _ in 0..2 {
        let applied = std::process::Command::new(zpr_binary())
            .args([
                "fleet",
                "etcd-roles",
                "--node",
                "host-d",
                "--apply",
                "--store",
                &fleet.url,
            ])
            .args(fleet.etcd_flags("root"))
            .output()
            .unwrap();
        assert!(applied.status.success(), "{}", text(&applied));
    }
    let host_d = format!("zpr-{}-node-host-d", fleet.tenancy());
    let own = fleet
        .etcd
        .etcdctl_as(&host_d, &["put", &fleet.key("nodes/host-d"), "{}"])
        .unwrap();
    assert!(own.status.success(), "{}", text(&own));
    let state = fleet
        .etcd
        .etcdctl_as(&host_d, &["put", &fleet.key("state/next-id"), "1"])
        .unwrap();
    assert!(
        text(&state).contains("permission denied"),
        "{}",
        text(&state)
    );

    // What zpr says when etcd refuses (an agent's credentials read only
    // the state, not the nodes): one line, naming the store.
    let restore = std::process::Command::new(zpr_binary())
        .args(["fleet", "status", "--store", &fleet.url])
        .args(fleet.etcd_flags("node-host-c"))
        .output()
        .unwrap();
    assert!(!restore.status.success());
    let said = String::from_utf8_lossy(&restore.stderr);
    assert!(said.contains("permission denied"), "{said}");
    assert!(
        said.contains(&fleet.url) && said.lines().count() <= 2,
        "{said}"
    );

    // A certificate from another CA: the handshake fails, nothing is read.
    let stranger =
        zpr_tests::pki::Pki::new(&std::env::temp_dir().join(zpr_tests::unique_name("zca")))
            .unwrap();
    let client = stranger.issue(&node, &[]).unwrap();
    let refused = std::process::Command::new(zpr_binary())
        .args(["fleet", "status", "--store", &fleet.url])
        .arg("--etcd-cacert")
        .arg(fleet.etcd.ca().unwrap())
        .arg("--etcd-cert")
        .arg(&client.cert)
        .arg("--etcd-key")
        .arg(&client.key)
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{}", text(&refused));
    // Plaintext to the TLS port is refused too.
    let plaintext = std::process::Command::new(zpr_binary())
        .args(["fleet", "status", "--store", &fleet.url])
        .output()
        .unwrap();
    assert!(!plaintext.status.success(), "{}", text(&plaintext));
    assert_denied_paths_denied(&fleet, "after the refused attempts");
}

/// Certificates renewed on disk are used without a restart: a running
/// agent connects again with whatever its files hold now.
#[test]
fn renewed_etcd_certificates_are_used_without_a_restart() {
    let fleet = start_fleet();
    let user = format!("zpr-{}-node-host-c", fleet.tenancy());
    // The agent's own files (issued again in place: same paths).
    let files = fleet.etcd.client(&user).unwrap().unwrap();
    let stranger =
        zpr_tests::pki::Pki::new(&std::env::temp_dir().join(zpr_tests::unique_name("zca")))
            .unwrap();
    let foreign = stranger.issue(&user, &[]).unwrap();
    std::fs::copy(&foreign.cert, &files.cert).unwrap();
    std::fs::copy(&foreign.key, &files.key).unwrap();
    status_becomes(&fleet, "host-c", 3, "unreachable");
    assert_denied_paths_denied(&fleet, "with host-c cut off by its certificate");

    // A certificate of the fleet's CA, renewed in place: back by itself.
    fleet.etcd.client(&user).unwrap();
    status_becomes(&fleet, "host-c", 0, "");
    open_lb_to_db(&fleet);
}

/// etcd's user and password, the password read from a file (never a
/// flag): accepted when right; a wrong one is refused in one line that
/// does not echo it.
#[test]
fn an_etcd_user_and_password_file_authenticate() {
    let etcd = zpr_tests::etcd::Etcd::start().unwrap();
    let tenancy = zpr_tests::unique_name("t");
    let url = etcd.url(&tenancy);
    let roles = std::process::Command::new(zpr_binary())
        .args(["fleet", "etcd-roles", "--tenancy", &tenancy])
        .output()
        .unwrap();
    let mut commands: Vec<Vec<String>> = vec![
        vec!["user".into(), "add".into(), "root:root-secret".into()],
        vec![
            "user".into(),
            "grant-role".into(),
            "root".into(),
            "root".into(),
        ],
        vec!["user".into(), "add".into(), "watcher:s3cret-pw".into()],
    ];
    commands.extend(
        String::from_utf8_lossy(&roles.stdout)
            .lines()
            .filter_map(|line| line.strip_prefix("etcdctl "))
            .filter(|line| line.starts_with("role "))
            .map(|line| line.split_whitespace().map(str::to_owned).collect()),
    );
    commands.push(
        [
            "user",
            "grant-role",
            "watcher",
            &format!("zpr-{tenancy}-monitor"),
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    commands.push(vec!["auth".into(), "enable".into()]);
    for command in &commands {
        etcd.etcdctl_succeeds(command).unwrap();
    }
    let dir = std::env::temp_dir().join(zpr_tests::unique_name("zpw"));
    std::fs::create_dir_all(&dir).unwrap();
    let status = |password: &str| {
        let file = dir.join("password");
        std::fs::write(&file, format!("{password}\n")).unwrap();
        std::process::Command::new(zpr_binary())
            .args(["fleet", "status", "--store", &url, "--etcd-user", "watcher"])
            .arg("--etcd-password-file")
            .arg(&file)
            .output()
            .unwrap()
    };
    // Authenticated, and allowed to read: the (empty) tenancy is judged.
    let right = status("s3cret-pw");
    assert!(text(&right).contains("does not exist"), "{}", text(&right));
    let wrong = status("not-it");
    assert!(!wrong.status.success());
    let said = text(&wrong);
    assert!(said.contains("authentication failed"), "{said}");
    assert!(
        !said.contains("not-it") && said.trim().lines().count() == 1,
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
