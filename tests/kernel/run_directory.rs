//! What a local user can see of a running agent: nothing but the API
//! socket. Started with umask 022 (outside the shipped unit), the agent's
//! run directory is 0700 (0711 when it holds the API socket: reachable by
//! name, not listable), and every file in it is 0600, so the tenancy's
//! state, status and audit trail are root's alone.

use std::{os::unix::fs::PermissionsExt as _, path::Path, process::Command};

use zpr_tests::{
    Netns, os_users::TestUser, served_agent::ServedAgent, site::Site, three_tier::example,
};

const STATEMENT: &str = "In ocvtc002.networks:front-end VCN allow '0.0.0.0/0' to connect to ocvtc002.lb:frontend endpoints with protocol='tcp/80'";

/// Runs what follows under umask 022, as a shell started by hand would.
fn with_umask_022() -> Vec<String> {
    ["sh", "-c", "umask 022; exec \"$0\" \"$@\""]
        .map(str::to_owned)
        .to_vec()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Whether `user` may run `command` (exit 0).
fn user_can(user: &TestUser, command: &[&str]) -> bool {
    Command::new("setpriv")
        .arg(format!("--reuid={}", user.name))
        .arg(format!("--regid={}", user.name))
        .arg("--init-groups")
        .args(command)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_served_agent_s_state_is_root_s_and_its_socket_everyone_s() {
    let netns = Netns::new().unwrap();
    let agent = ServedAgent::start_with(
        &netns,
        &example("inventory.yaml"),
        "",
        "root",
        &[],
        &with_umask_022(),
    )
    .unwrap();
    let created = agent
        .cli(None, &["policy", "create", "p1", "--statement", STATEMENT])
        .unwrap();
    assert!(created.status.success(), "{created:?}");

    assert_eq!(mode(&agent.run_dir), 0o711);
    for file in ["status.json", "audit.jsonl", "agent.lock"] {
        assert_eq!(mode(&agent.run_dir.join(file)), 0o600, "{file}");
    }
    let user = TestUser::create("zrd").unwrap();
    let run_dir = agent.run_dir.display().to_string();
    let status = agent.run_dir.join("status.json").display().to_string();
    assert!(
        !user_can(&user, &["ls", &run_dir]),
        "the run directory is listable"
    );
    assert!(
        !user_can(&user, &["cat", &status]),
        "status.json is readable"
    );
    // The socket is reached: IAM answers (403), not the file system.
    let listed = agent.cli(Some(&user.name), &["policy", "list"]).unwrap();
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(stderr.contains("(403)"), "{stderr}");
}

#[test]
fn an_agent_without_an_api_keeps_its_run_directory_private() {
    let site = Site::start_with(|_, agent| {
        agent.wrapper = with_umask_022();
        Ok(())
    })
    .unwrap();
    let run_dir = &site.agent.run_dir;
    assert_eq!(mode(run_dir), 0o700);
    for file in ["status.json", "agent.lock"] {
        assert_eq!(mode(&run_dir.join(file)), 0o600, "{file}");
    }
}
