//! Dry runs through the management API: `--dry-run` on policy and
//! tagging changes answers what the change would open and close and
//! changes nothing (store, generation, work requests, kernel maps, real
//! traffic), needs the same IAM permission as the change itself, and the
//! audit log records it as a dry run.

use std::collections::BTreeMap;

use serde_json::Value;
use zpr_common::maps;
use zpr_tests::{
    os_users::TestUser,
    run,
    served_agent::ServedAgent,
    three_tier::{Network, example},
    traffic::{connect, echo, tcp_exchange},
};

/// internet -> lb on tcp/80 (statement 1 of the example).
const OPEN_LB: &str = "In ocvtc002.networks:front-end VCN allow '0.0.0.0/0' to connect to ocvtc002.lb:frontend endpoints with protocol='tcp/80'";
/// lb -> app servers on tcp/80 (statement 2).
const LB_TO_APPS: &str = "In ocvtc002.networks:front-end VCN allow ocvtc002.lb:frontend endpoints to connect to ocvtc002.apps:server endpoints with protocol='tcp/80'";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Everything a dry run must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    generation: u64,
    policies: Value,
    work_requests: Value,
    /// The Plan's maps in the kernel, as bpftool dumps them.
    kernel_maps: BTreeMap<&'static str, Value>,
}

fn snapshot(agent: &ServedAgent, admin: Option<&str>) -> anyhow::Result<Snapshot> {
    let json = |arguments: &[&str]| -> anyhow::Result<Value> {
        let output = agent.cli(admin, arguments)?;
        anyhow::ensure!(output.status.success(), "{}", text(&output.stderr));
        Ok(serde_json::from_slice(&output.stdout)?)
    };
    let mut kernel_maps = BTreeMap::new();
    for map in [
        maps::CONFIG,
        maps::ENDPOINTS,
        maps::LOCAL_ADDRESSES,
        maps::HOSTS,
        maps::PREFIXES,
        maps::POLICY,
    ] {
        let path = agent.bpffs.join("zpr/maps").join(map);
        let dumped = run(
            "bpftool",
            &["-j", "map", "dump", "pinned", path.to_str().unwrap()],
        )?;
        kernel_maps.insert(map, serde_json::from_slice(&dumped.stdout)?);
    }
    Ok(Snapshot {
        generation: agent.generation(),
        policies: json(&["policy", "list", "--output", "json"])?,
        work_requests: json(&["work-request", "list", "--output", "json"])?,
        kernel_maps,
    })
}

#[test]
fn dry_runs_answer_the_impact_change_nothing_and_need_the_same_permission() -> anyhow::Result<()> {
    let network = Network::start()?;
    let admin = TestUser::create("zda")?;
    let reader = TestUser::create("zdr")?;
    let agent = ServedAgent::start(
        network.router(),
        &example("inventory.yaml"),
        &format!("Allow group {} to read zpr-policy in tenancy", reader.name),
        &admin.name,
    )?;
    let (admin, reader) = (Some(admin.name.as_str()), Some(reader.name.as_str()));
    let created = agent.cli(
        admin,
        &["policy", "create", "front-door", "--statement", OPEN_LB],
    )?;
    assert!(created.status.success(), "{}", text(&created.stderr));
    let works =
        |from: &str, to: &str| tcp_exchange(network.netns(from), network.address(to), 80).is_ok();
    assert!(works("internet", "lb") && !works("lb", "app-1"));
    let audited = agent.audit().len();
    let before = snapshot(&agent, admin)?;
    let id = before.policies["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let dry_runs: [(&[&str], &str); 4] = [
        (
            &["policy", "create", "back-door", "--statement", LB_TO_APPS],
            "opens: newly allowed by back-door:1",
        ),
        (
            &["policy", "update", &id, "--statement", LB_TO_APPS],
            "closes: no longer allowed by front-door:1",
        ),
        (
            &["policy", "delete", &id],
            "closes: no longer allowed by front-door:1",
        ),
        (
            &["endpoint", "untag", "db", "ocvtc002.db:customer-db"],
            "opens: at db (enforced before, not protected (no attribute) now)",
        ),
    ];
    for (arguments, expected) in dry_runs {
        let mut arguments = arguments.to_vec();
        arguments.push("--dry-run");
        let output = agent.cli(admin, &arguments)?;
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "{arguments:?}: {}",
            text(&output.stderr)
        );
        assert!(stdout.starts_with("dry run, nothing changed"), "{stdout}");
        assert!(stdout.contains(expected), "{expected:?} not in\n{stdout}");
        assert!(
            !text(&output.stderr).contains("work request"),
            "{}",
            text(&output.stderr)
        );
    }
    // A live connection the deletion would cut is listed (the agent runs
    // beside the API, as `zpr diff --live` lists it).
    let mut live = connect(network.netns("internet"), None, network.address("lb"), 80)?;
    echo(&mut live, b"live")?;
    let json = agent.cli(
        admin,
        &["policy", "delete", &id, "--dry-run", "--output", "json"],
    )?;
    let answer: Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(answer["dryRun"], true);
    let revoked = answer["impact"]["revoked"].as_array().unwrap();
    assert!(
        revoked
            .iter()
            .any(|flow| flow["endpoint"] == "lb" && flow["protocol"] == "tcp/80"),
        "{answer:#}"
    );
    echo(&mut live, b"still live after the dry run")?;
    let change = &answer["impact"]["changes"][0];
    assert_eq!(
        (&change["change"], &change["statements"][0]),
        (&Value::from("closes"), &Value::from("front-door:1")),
        "{answer:#}"
    );

    // The same permission as the change: reading policies is not enough.
    let real = agent.cli(
        reader,
        &["policy", "create", "sneaky", "--statement", LB_TO_APPS],
    )?;
    let dry = agent.cli(
        reader,
        &[
            "policy",
            "create",
            "sneaky",
            "--statement",
            LB_TO_APPS,
            "--dry-run",
        ],
    )?;
    for output in [&real, &dry] {
        assert_eq!(output.status.code(), Some(1));
        assert!(
            text(&output.stderr).contains("NotAuthorized (403)"),
            "{}",
            text(&output.stderr)
        );
    }
    assert_eq!(text(&real.stderr), text(&dry.stderr));

    assert_eq!(
        snapshot(&agent, admin)?,
        before,
        "a dry run changed something"
    );
    assert!(works("internet", "lb") && !works("lb", "app-1"));

    let records = agent.audit();
    let new_records = &records[audited..];
    let dry: Vec<&Value> = new_records.iter().filter(|r| r["dryRun"] == true).collect();
    assert_eq!(dry.len(), 6, "{new_records:#?}");
    assert!(
        dry.iter()
            .all(|r| r["generation"].is_null() && r["workRequestId"].is_null())
    );
    assert_eq!(
        dry.iter().filter(|r| r["allowed"] == false).count(),
        1,
        "{dry:#?}"
    );
    Ok(())
}
