//! Capacity is planned: the live and the next Plan share each map, so an
//! agent enforcing a Plan of 100,000 prefix entries takes another of
//! 100,000 (and real traffic follows the new one), while a Plan beyond half
//! of the prefix map is refused by `zpr check --inventory`, `zpr compile`
//! and the agent, each naming the limit, and the live Plan stays.

use std::{fs, net::Ipv4Addr, path::Path, process::Output};

use zpr_common::maps::PREFIXES_MAX;
use zpr_tests::{
    site::Inputs,
    three_tier::{HOSTS, Network},
    traffic::tcp_exchange,
};

/// Prefix entries per Plan that fit, with room to spare.
const FITTING: u32 = 100_000;
/// Beyond half of the prefix map.
const OVER: u32 = PREFIXES_MAX / 2 + 10_000;
/// Opens the app servers' tcp/80 to the inventory's OSN service prefixes.
const OSN_TO_APPS: &str = "In ocvtc002.networks:front-end VCN allow osn-services-ip-addresses to connect to ocvtc002.apps:server endpoints with protocol='tcp/80'";

/// The example inventory with `count` OSN service addresses (each a
/// prefix entry of its own) counted up from `first`, and `also`.
fn inventory_with_osn(count: u32, first: Ipv4Addr, also: Option<Ipv4Addr>) -> String {
    let example = fs::read_to_string(zpr_tests::three_tier::example("inventory.yaml")).unwrap();
    let mut osn = String::from("\nosn-services:\n");
    let base = u32::from(first);
    for address in (0..count - u32::from(also.is_some()))
        .map(|n| Ipv4Addr::from(base + n))
        .chain(also)
    {
        osn += &format!("  - {address}\n");
    }
    assert!(example.contains("\nvcns:\n"));
    example.replace("\nvcns:\n", &format!("{osn}\nvcns:\n"))
}

/// Replaces a file the way editors do: a new file renamed over it.
fn replace(path: &Path, text: &str) -> anyhow::Result<()> {
    let temporary = path.with_extension("swp");
    fs::write(&temporary, text)?;
    fs::rename(&temporary, path)?;
    Ok(())
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_big_plan_replaces_another_and_one_beyond_the_maps_is_refused() -> anyhow::Result<()> {
    let internet: Ipv4Addr = HOSTS
        .iter()
        .find(|(name, _, _)| *name == "internet")
        .map(|(_, _, address)| address.parse().unwrap())
        .unwrap();
    let network = Network::start()?;
    let inputs = Inputs::new()?;
    fs::write(
        inputs.policy(),
        format!("{}{OSN_TO_APPS}\n", inputs.original_policy()),
    )?;
    let internet_to_app =
        || tcp_exchange(network.netns("internet"), network.address("app-1"), 80).is_ok();

    // 100,000 OSN addresses, the internet host not among them.
    fs::write(
        inputs.inventory(),
        inventory_with_osn(FITTING, Ipv4Addr::new(11, 0, 0, 0), None),
    )?;
    let agent = inputs.start_agent(&network)?;
    let first = agent.wait_for_generation(1)?;
    let generation = first["generation"].as_u64().unwrap();
    assert!(!internet_to_app(), "the internet is no OSN address yet");

    // Another 100,000, the internet host among them: the live Plan and this
    // one fit the maps together.
    let before = agent.reloads();
    replace(
        &inputs.inventory(),
        &inventory_with_osn(FITTING, Ipv4Addr::new(12, 0, 0, 0), Some(internet)),
    )?;
    let reloaded = agent.wait_for_reload(before)?;
    assert!(reloaded["last_error"].is_null(), "{reloaded:#}");
    assert_eq!(reloaded["generation"].as_u64(), Some(generation + 1));
    assert!(internet_to_app(), "the new Plan is in force");
    assert!(tcp_exchange(network.netns("lb"), network.address("app-1"), 80).is_ok());

    // Beyond the limit: every way in says so, naming the limit.
    let too_big = inputs.dir.join("too-big.yaml");
    fs::write(
        &too_big,
        inventory_with_osn(OVER, Ipv4Addr::new(13, 0, 0, 0), None),
    )?;
    let limit = format!("at most {} fit", PREFIXES_MAX / 2);
    let (too_big_arg, policy_arg) = (too_big.display().to_string(), inputs.policy());
    let policy_arg = policy_arg.display().to_string();
    for command in ["check", "compile"] {
        let output = agent
            .zpr(&[command, "--inventory", &too_big_arg, &policy_arg])
            .output()?;
        assert_eq!(
            output.status.code(),
            Some(1),
            "{command}: {}",
            text(&output)
        );
        assert!(
            text(&output).contains(&format!("prefix entries; {limit}")),
            "{command}: {}",
            text(&output)
        );
    }
    let output = agent
        .zpr(&[
            "check",
            "--output",
            "json",
            "--inventory",
            &too_big_arg,
            &policy_arg,
        ])
        .output()?;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(report["errors"], 1, "{report:#}");
    assert!(
        report["diagnostics"][0]["message"]
            .as_str()
            .is_some_and(|message| message.contains(&limit)),
        "{report:#}"
    );

    let before = agent.reloads();
    fs::rename(&too_big, inputs.inventory())?;
    let refused = agent.wait_for_reload(before)?;
    let error = refused["last_error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains(&limit), "{refused:#}");
    assert_eq!(
        refused["generation"].as_u64(),
        Some(generation + 1),
        "the live Plan stays"
    );
    assert!(internet_to_app(), "the live Plan is still in force");
    Ok(())
}
