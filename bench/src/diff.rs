//! Reviewing a change at size: `zpr diff OLD NEW` end to end (two policy
//! repositories read, checked, compiled and compared, the report printed)
//! for a one-statement change and for one endpoint untagged (the
//! identities change: both sides compile whole), and `zpr check` of the
//! same repository.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context as _, ensure};
use zpr_agent::synthetic;

use crate::{
    generated::endpoints_for,
    interrupt,
    report::{Bound, Figure, Section, Target, Unit},
    scratch::Scratch,
};

const DIFF_LIMIT_MS: f64 = 1_000.0;
const CHECK_LIMIT_MS: f64 = 150.0;
/// `zpr diff`'s exit code when something changes.
const SOMETHING_CHANGES: i32 = 2;

pub struct Settings {
    pub statements: usize,
    pub rounds: usize,
}

pub fn measure(settings: &Settings, zpr: &Path) -> anyhow::Result<(Section, Vec<Target>)> {
    let statements = settings.statements;
    let endpoints = endpoints_for(statements);
    eprintln!("diff: generating {statements} statements over {endpoints} endpoints");
    let synthetic = synthetic::generate(statements, endpoints, 1);
    let scratch = Scratch::new("diff")?;
    let (old, new, untagged) = (
        scratch.path().join("old"),
        scratch.path().join("new"),
        scratch.path().join("untagged"),
    );
    let policy_file = format!("{}.zpr", synthetic::POLICY_NAME);
    for (directory, inventory, policy) in [
        (
            &old,
            synthetic.inventory_yaml.clone(),
            synthetic.policy_text.clone(),
        ),
        (
            &new,
            synthetic.inventory_yaml.clone(),
            one_statement_changed(&synthetic.policy_text)?,
        ),
        (
            &untagged,
            one_endpoint_untagged(&synthetic.inventory_yaml)?,
            synthetic.policy_text.clone(),
        ),
    ] {
        std::fs::create_dir_all(directory)?;
        std::fs::write(directory.join("inventory.yaml"), inventory)?;
        std::fs::write(directory.join(&policy_file), policy)?;
    }

    let (mut diff_ms, mut untag_ms, mut check_ms) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=settings.rounds {
        interrupt::checkpoint()?;
        eprintln!("diff: round {round}/{}", settings.rounds);
        diff_ms.push(timed(
            Command::new(zpr).arg("diff").arg(&old).arg(&new),
            SOMETHING_CHANGES,
        )?);
        untag_ms.push(timed(
            Command::new(zpr).arg("diff").arg(&old).arg(&untagged),
            SOMETHING_CHANGES,
        )?);
        check_ms.push(timed(
            Command::new(zpr)
                .arg("check")
                .arg("--inventory")
                .arg(old.join("inventory.yaml"))
                .arg(old.join(&policy_file)),
            0,
        )?);
    }
    let diff_figure = |change: &str, samples| {
        Figure::new(
            format!(
                "`zpr diff OLD NEW` at {statements} statements and {endpoints} endpoints, \
                 {change} (end to end)"
            ),
            Unit::Milliseconds,
            samples,
        )
    };
    let diff = diff_figure("one statement changed", diff_ms);
    let untag = diff_figure("one endpoint untagged", untag_ms);
    let check = Figure::new(
        format!("`zpr check --inventory` at {statements} statements (end to end)"),
        Unit::Milliseconds,
        check_ms,
    );
    let targets = vec![
        Target::check(
            format!("zpr diff, one statement at {statements} statements < {DIFF_LIMIT_MS} ms"),
            Bound::AtMost(DIFF_LIMIT_MS),
            diff.summary.median,
        ),
        Target::check(
            format!("zpr check at {statements} statements < {CHECK_LIMIT_MS} ms"),
            Bound::AtMost(CHECK_LIMIT_MS),
            check.summary.median,
        ),
    ];
    let section = Section {
        title: "Reviewing a change".to_owned(),
        method: vec![format!(
            "Two policy repositories (inventory.yaml and one policy file) from zpr-agent's \
             synthetic generator, seed 1: OLD; NEW with one port added to one statement in \
             the middle of the file; and NEW with the tagged endpoint in the middle of the \
             inventory untagged. `zpr diff OLD NEW` of each and `zpr check --inventory` of \
             OLD are run as processes, {} rounds; the wall time from spawn to exit.",
            settings.rounds
        )],
        figures: vec![diff, untag, check],
    };
    Ok((section, targets))
}

/// The policy with a port added to the first TCP statement past the middle.
fn one_statement_changed(policy: &str) -> anyhow::Result<String> {
    first_past_the_middle_changed(policy, "protocol='tcp/", |line| {
        Ok(line.replacen("protocol='tcp/", "protocol='tcp/7,", 1))
    })
}

/// The inventory with the first tagged endpoint past the middle untagged.
fn one_endpoint_untagged(inventory: &str) -> anyhow::Result<String> {
    first_past_the_middle_changed(inventory, "security-attributes: [syn.", |line| {
        let start = line
            .find("security-attributes: [")
            .context("no attribute list")?;
        let end = start + line[start..].find(']').context("an unclosed list")?;
        Ok(format!(
            "{}security-attributes: []{}",
            &line[..start],
            &line[end + 1..]
        ))
    })
}

/// `text` with its first line past the middle that holds `marker` changed.
fn first_past_the_middle_changed(
    text: &str,
    marker: &str,
    change: impl FnOnce(&str) -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    let mut lines: Vec<&str> = text.lines().collect();
    let middle = lines.len() / 2;
    let line = lines[middle..]
        .iter()
        .position(|line| line.contains(marker))
        .with_context(|| format!("no line past the middle holds {marker:?}"))?
        + middle;
    let changed = change(lines[line])?;
    lines[line] = &changed;
    Ok(lines.join("\n") + "\n")
}

/// Milliseconds `command` took, checking its exit code.
fn timed(command: &mut Command, expected: i32) -> anyhow::Result<f64> {
    let started = Instant::now();
    let output = command.output().context("running zpr")?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    ensure!(
        output.status.code() == Some(expected),
        "{command:?} exited with {} (expected {expected}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(elapsed)
}
