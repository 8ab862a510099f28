use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;

use super::Output;
use crate::inventory::Inventory;
use crate::lang::{
    Diagnostic, JsonDiagnostic, SourceFile, UnknownAttributes, check_against_inventory_with, parse,
    policy_name_from_path,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also check every attribute against this inventory: unknown namespaces,
    /// keys and list values are errors; attributes nothing carries are warnings.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// How to print the diagnostics.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
    /// Policy files (`*.zpr`).
    #[arg(required = true, value_name = "POLICY")]
    pub policies: Vec<PathBuf>,
}

/// The result of checking one file.
struct Checked {
    file: String,
    source: String,
    statements: usize,
    diagnostics: Vec<Diagnostic>,
}

#[derive(Serialize)]
struct JsonReport {
    files: Vec<JsonFile>,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<JsonDiagnostic>,
}

#[derive(Serialize)]
struct JsonFile {
    file: String,
    /// Statements free of errors.
    statements: usize,
}

/// Exit 0 when every file is valid (warnings allowed), 1 on errors; I/O
/// problems are returned as errors (exit 2).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let inventory = args
        .inventory
        .as_ref()
        .map(|path| -> anyhow::Result<Inventory> {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading inventory {}", path.display()))?;
            Inventory::from_yaml_str(&text)
                .with_context(|| format!("invalid inventory {}", path.display()))
        })
        .transpose()?;

    let mut checked = Vec::with_capacity(args.policies.len());
    for path in &args.policies {
        let source =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let (statements, diagnostics) = match parse(&policy_name_from_path(path), &source) {
            Ok(parsed) => {
                let mut diagnostics = parsed.warnings;
                if let Some(inventory) = &inventory {
                    diagnostics.extend(check_against_inventory_with(
                        &parsed.policy,
                        inventory,
                        UnknownAttributes::AreErrors,
                    ));
                    diagnostics.sort_by_key(|d| d.span.start);
                }
                (parsed.policy.statements.len(), diagnostics)
            }
            Err(diagnostics) => (0, diagnostics),
        };
        checked.push(Checked {
            file: path.display().to_string(),
            source,
            statements,
            diagnostics,
        });
    }

    let all = || checked.iter().flat_map(|c| &c.diagnostics);
    let errors = all().filter(|d| d.is_error()).count();
    let warnings = all().count() - errors;
    match args.output {
        Output::Text => print_text(&checked, errors, warnings)?,
        Output::Json => print_json(&checked, errors, warnings)?,
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_text(checked: &[Checked], errors: usize, warnings: usize) -> anyhow::Result<()> {
    let mut stderr = std::io::stderr().lock();
    for file in checked {
        let source = SourceFile::new(&file.file, &file.source);
        for diagnostic in &file.diagnostics {
            writeln!(stderr, "{}", source.render(diagnostic))?;
        }
    }
    let statements: usize = checked.iter().map(|c| c.statements).sum();
    let files = plural(checked.len(), "file");
    if errors == 0 {
        writeln!(
            stderr,
            "checked {files}: {}, {}",
            plural(statements, "statement"),
            plural(warnings, "warning")
        )?;
    } else {
        writeln!(
            stderr,
            "error: {} found in {files} ({})",
            plural(errors, "error"),
            plural(warnings, "warning")
        )?;
    }
    Ok(())
}

fn print_json(checked: &[Checked], errors: usize, warnings: usize) -> anyhow::Result<()> {
    let report = JsonReport {
        files: checked
            .iter()
            .map(|c| JsonFile {
                file: c.file.clone(),
                statements: c.statements,
            })
            .collect(),
        errors,
        warnings,
        diagnostics: checked
            .iter()
            .flat_map(|c| {
                let source = SourceFile::new(&c.file, &c.source);
                c.diagnostics
                    .iter()
                    .map(|d| source.to_json(d))
                    .collect::<Vec<_>>()
            })
            .collect(),
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
