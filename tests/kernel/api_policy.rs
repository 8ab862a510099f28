//! Policies created through the management API are enforced on the real
//! kernel: creating one opens a path, an invalid one is rejected with the
//! checker's diagnostics and changes nothing, the store survives a restart
//! with no pinned state and no policy file, and deleting the policy closes
//! the path again.

use zpr_tests::{
    http::http_get,
    os_users::TestUser,
    served_agent::ServedAgent,
    three_tier::{Network, example},
};

/// Opens internet -> lb on tcp/80 (statement 1 of the example).
const OPEN_LB: &str = "In ocvtc002.networks:front-end VCN allow '0.0.0.0/0' to connect to ocvtc002.lb:frontend endpoints with protocol='tcp/80'";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn api_policies_open_and_close_paths_and_survive_restart() -> anyhow::Result<()> {
    let network = Network::start()?;
    let admin = TestUser::create("zad")?;
    let mut agent = ServedAgent::start(
        network.router(),
        &example("inventory.yaml"),
        "",
        &admin.name,
    )?;
    let admin = Some(admin.name.as_str());

    // Seeded with the inventory and no policy: every tagged endpoint is closed.
    assert!(!network.works("internet", "lb", 80));

    let created = agent.cli(
        admin,
        &["policy", "create", "front-door", "--statement", OPEN_LB],
    )?;
    assert!(
        created.status.success(),
        "{}\n{}",
        text(&created.stderr),
        agent.log()
    );
    assert!(
        text(&created.stdout).contains("front-door:1 In ocvtc002"),
        "{}",
        text(&created.stdout)
    );
    assert!(
        text(&created.stderr).contains("policy generation"),
        "{}",
        text(&created.stderr)
    );
    assert!(
        network.works("internet", "lb", 80),
        "the created policy opens the path"
    );
    assert!(!network.works("lb", "app-1", 80), "and nothing else");

    // zpr serve serves its metrics where zpr run does, by default.
    let (status, metrics) = http_get(network.router(), "127.0.0.1:9565".parse()?, "/metrics")?;
    assert_eq!(status, 200, "{metrics}");
    let live = format!("\nzpr_policy_generation {}\n", agent.generation());
    assert!(metrics.contains(&live), "{live} in:\n{metrics}");

    // A statement with a misspelt attribute: the checker's diagnostics, no change.
    let generation = agent.generation();
    let invalid = agent.cli(
        admin,
        &[
            "policy", "create", "broken", "--statement",
            "In ocvtc002.networks:front-end VCN allow ocvtc002.lb:frontend endpoints to conect to ocvtc002.apps:server endpoints with protocol='tcp/80'",
        ],
    )?;
    let stderr = text(&invalid.stderr);
    assert_eq!(invalid.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("InvalidParameter (400)"), "{stderr}");
    assert!(stderr.contains("--> broken:1:"), "{stderr}");
    assert!(stderr.contains("conect"), "{stderr}");
    assert_eq!(
        agent.generation(),
        generation,
        "a rejected policy makes no generation"
    );
    let list = agent.cli(admin, &["policy", "list", "--output", "json"])?;
    let names: serde_json::Value = serde_json::from_slice(&list.stdout)?;
    assert_eq!(names["items"].as_array().map(Vec::len), Some(1), "{names}");
    assert!(network.works("internet", "lb", 80));
    assert!(!network.works("lb", "app-1", 80));

    // Kill the agent and remove every pin: nothing enforces any more.
    agent.kill();
    agent.down()?;
    assert!(
        network.works("lb", "app-1", 80),
        "zpr down left no enforcement"
    );
    // Restarted with no policy file: the store's policy is enforced again.
    agent.spawn()?;
    assert!(network.works("internet", "lb", 80), "{}", agent.log());
    assert!(
        !network.works("lb", "app-1", 80),
        "the store's inventory is enforced again"
    );
    assert!(
        agent
            .log()
            .contains("the seed inventory is not imported again")
    );

    let deleted = agent.cli(admin, &["policy", "delete", "front-door"])?;
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    assert!(
        !network.works("internet", "lb", 80),
        "deleting the policy closes the path"
    );
    Ok(())
}
