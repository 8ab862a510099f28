//! `zpr check`: the one checker the agent applies too (`inputs::check`),
//! with its diagnostics printed.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use super::Output;
use crate::inputs::{self, Loaded};
use crate::lang::JsonDiagnostic;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also check every attribute against this inventory (and the
    /// inventory itself): unknown namespaces, keys and list values are
    /// errors; attributes nothing carries are warnings. What passes is
    /// exactly what the agent applies.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// How to print the diagnostics.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
    /// Policy files (`*.zpr`). Inputs are read from regular files; a
    /// symlink only when it leads to a file inside the directory holding
    /// it (a tree under review cannot make zpr quote files outside it).
    #[arg(required = true, value_name = "POLICY")]
    pub policies: Vec<PathBuf>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    files: Vec<JsonFile<'a>>,
    errors: usize,
    warnings: usize,
    diagnostics: &'a [JsonDiagnostic],
}

#[derive(Serialize)]
struct JsonFile<'a> {
    file: &'a str,
    /// Statements free of errors.
    statements: usize,
}

/// Exit 0 when every file is valid (warnings allowed), 1 on errors; I/O
/// problems are returned as errors (exit 2).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = inputs::validate(args.inventory.as_deref(), &args.policies)?;
    match args.output {
        Output::Text => print_text(&loaded)?,
        Output::Json => print_json(&loaded)?,
    }
    Ok(if loaded.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_text(loaded: &Loaded) -> anyhow::Result<()> {
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(loaded.report.as_bytes())?;
    let statements: usize = loaded.statements.iter().map(|(_, count)| count).sum();
    let files = plural(loaded.statements.len(), "file");
    let warnings = plural(loaded.warnings, "warning");
    if loaded.errors == 0 {
        writeln!(
            stderr,
            "checked {files}: {}, {warnings}",
            plural(statements, "statement")
        )?;
    } else {
        writeln!(
            stderr,
            "error: {} found in {files} ({warnings})",
            plural(loaded.errors, "error")
        )?;
    }
    Ok(())
}

fn print_json(loaded: &Loaded) -> anyhow::Result<()> {
    let report = JsonReport {
        files: loaded
            .statements
            .iter()
            .map(|(file, statements)| JsonFile {
                file,
                statements: *statements,
            })
            .collect(),
        errors: loaded.errors,
        warnings: loaded.warnings,
        diagnostics: &loaded.diagnostics,
    };
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &report)?;
    writeln!(stdout)?;
    Ok(())
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}
