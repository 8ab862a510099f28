//! Running child processes with their command line shown.

use std::process::Command;

use anyhow::{Context as _, bail};

/// Runs `command` with inherited stdio; fails unless it succeeds.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {}", shown(command));
    let status = command
        .status()
        .with_context(|| format!("spawning {}", shown(command)))?;
    if !status.success() {
        bail!("`{}` failed: {status}", shown(command));
    }
    Ok(())
}

/// Runs `command` quietly and returns its stdout; fails unless it succeeds.
pub fn output(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("spawning {}", shown(command)))?;
    if !output.status.success() {
        bail!(
            "`{}` failed: {}: {}",
            shown(command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn shown(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
