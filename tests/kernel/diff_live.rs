//! `zpr diff --live` lists the open connections a change would cut, and
//! once the change is applied they are cut: real TCP on the three-tier
//! network.

use std::{fs, time::Duration};

use zpr_tests::{
    site::Site,
    traffic::{connect, echo},
    unique_name,
};

#[test]
fn live_diff_lists_the_connections_the_change_cuts() -> anyhow::Result<()> {
    let site = Site::start()?;
    let app = site.network.netns("app-1");
    let db = site.network.address("db");
    let mut open = connect(app, None, db, 1521)?;
    echo(&mut open, b"before the change")?;

    // The change: the cross-VCN statement (three-tier:3) blanked, so the
    // other statements keep their ids.
    let changed: String = site
        .inputs
        .original_policy()
        .lines()
        .enumerate()
        .map(|(index, line)| {
            if index == 2 {
                "\n".to_owned()
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let new = std::env::temp_dir().join(unique_name("zdn"));
    fs::create_dir_all(&new)?;
    fs::copy(site.inputs.inventory(), new.join("inventory.yaml"))?;
    fs::write(new.join("three-tier.zpr"), &changed)?;

    let old = site.inputs.dir.display().to_string();
    let new_dir = new.display().to_string();
    let mut arguments = vec!["diff", "--live", old.as_str(), new_dir.as_str()];
    let paths = site.agent.paths();
    arguments.extend(paths.iter().map(String::as_str));
    let output = site.agent.zpr(&arguments).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    let local_port = open.local_addr()?.port();
    for at in ["app-1 egress", "db ingress"] {
        let line = format!(
            "revoked: tcp/1521 10.0.2.10:{local_port} -> 10.1.1.10:1521 at {at} (allowed by three-tier:3 before)"
        );
        assert!(stdout.contains(&line), "{line:?} not in\n{stdout}{stderr}");
    }
    assert!(
        stdout.contains("closes: no longer allowed by three-tier:3"),
        "{stdout}"
    );

    arguments.extend(["--output", "json"]);
    let output = site.agent.zpr(&arguments).output()?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(
        report["revoked"].as_array().map(Vec::len),
        Some(2),
        "{report:#}"
    );

    // Applied: the same connection is cut at its next packet.
    let generation = site.agent.generation();
    site.inputs.write_policy(&changed)?;
    site.agent.wait_for_generation(generation + 1)?;
    open.set_read_timeout(Some(Duration::from_secs(2)))?;
    assert!(
        echo(&mut open, b"after the change").is_err(),
        "the revoked connection still works"
    );
    fs::remove_dir_all(&new)?;
    Ok(())
}
