//! Reading the inventory and the policy files, as every command that
//! compiles them does (`zpr compile`, `zpr explain`, the agent).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::inventory::Inventory;
use crate::lang::{
    Policy, Severity, SourceFile, check_against_inventory, parse, policy_name_from_path,
};

/// A valid inventory and policy set.
pub struct Inputs {
    pub inventory: Inventory,
    pub policies: Vec<Policy>,
}

/// What reading found: the inputs when they are valid, and every
/// diagnostic rendered with its source line (warnings too).
pub struct Loaded {
    pub inputs: Option<Inputs>,
    pub report: String,
}

/// One input's text: `file` names it in diagnostics, `name` is a policy's
/// name (statement ids are `name:line`).
pub struct InputText {
    pub file: String,
    pub name: String,
    pub text: String,
}

/// Reads and checks the inputs. Unreadable files are errors of their own;
/// invalid content is reported in [`Loaded::report`].
pub fn read(inventory_path: &Path, policy_paths: &[PathBuf]) -> anyhow::Result<Loaded> {
    let inventory = InputText {
        file: inventory_path.display().to_string(),
        name: String::new(),
        text: std::fs::read_to_string(inventory_path)
            .with_context(|| format!("reading inventory {}", inventory_path.display()))?,
    };
    let policies = policy_paths
        .iter()
        .map(|path| {
            Ok(InputText {
                file: path.display().to_string(),
                name: policy_name_from_path(path),
                text: std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(check(&inventory, &policies))
}

/// Checks an inventory and a policy set, wherever their texts come from
/// (files, or the store of `zpr serve`).
pub fn check(inventory: &InputText, policies: &[InputText]) -> Loaded {
    // The inventory and the policies parse independently: side by side (a
    // reload waits for both).
    let (inventory_parsed, policies_parsed) = std::thread::scope(|scope| {
        let inventory_parse = scope.spawn(|| Inventory::from_yaml_str(&inventory.text));
        let policies_parsed: Vec<_> = policies
            .iter()
            .map(|policy| parse(&policy.name, &policy.text))
            .collect();
        let inventory_parsed = inventory_parse
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (inventory_parsed, policies_parsed)
    });
    let mut report = String::new();
    let inventory_path = &inventory.file;
    let inventory = match inventory_parsed {
        Ok(inventory) => Some(inventory),
        Err(errors) => {
            for error in &errors.0 {
                report += &format!("error: {inventory_path}: {error}\n");
            }
            None
        }
    };
    let mut failed = inventory.is_none();
    let mut policies_read: Vec<Policy> = Vec::new();
    for (policy, parsed) in policies.iter().zip(policies_parsed) {
        let (file, name, source) = (&policy.file, &policy.name, &policy.text);
        let rendered = SourceFile::new(file, source);
        match parsed {
            Ok(parsed) => {
                let mut diagnostics = parsed.warnings;
                if let Some(inventory) = &inventory {
                    diagnostics.extend(check_against_inventory(&parsed.policy, inventory));
                    diagnostics.sort_by_key(|d| d.span.start);
                }
                for diagnostic in &diagnostics {
                    failed |= diagnostic.severity == Severity::Error;
                    report += &format!("{}\n", rendered.render(diagnostic));
                }
                if policies_read.iter().any(|p| &p.name == name) {
                    report += &format!(
                        "error: two policy files are named '{name}' ({file}); statement ids \
                         (policy:line) must be unique\n"
                    );
                    failed = true;
                }
                policies_read.push(parsed.policy);
            }
            Err(diagnostics) => {
                for diagnostic in &diagnostics {
                    report += &format!("{}\n", rendered.render(diagnostic));
                }
                failed = true;
            }
        }
    }
    let inputs = match inventory {
        Some(inventory) if !failed => Some(Inputs {
            inventory,
            policies: policies_read,
        }),
        _ => None,
    };
    Loaded { inputs, report }
}
