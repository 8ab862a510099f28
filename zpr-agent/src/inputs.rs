//! Reading the inventory and the policy files, as every command that
//! compiles them does (`zpr compile`, `zpr explain`, the agent).

use std::fmt::Write as _;
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

/// Reads and checks the inputs. Unreadable files are errors of their own;
/// invalid content is reported in [`Loaded::report`].
pub fn read(inventory_path: &Path, policy_paths: &[PathBuf]) -> anyhow::Result<Loaded> {
    let mut report = String::new();
    let text = std::fs::read_to_string(inventory_path)
        .with_context(|| format!("reading inventory {}", inventory_path.display()))?;
    let inventory = match Inventory::from_yaml_str(&text) {
        Ok(inventory) => Some(inventory),
        Err(errors) => {
            for error in &errors.0 {
                writeln!(report, "error: {}: {error}", inventory_path.display())?;
            }
            None
        }
    };
    let mut failed = inventory.is_none();
    let mut policies: Vec<Policy> = Vec::new();
    for path in policy_paths {
        let source =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file = path.display().to_string();
        let rendered = SourceFile::new(&file, &source);
        let name = policy_name_from_path(path);
        match parse(&name, &source) {
            Ok(parsed) => {
                let mut diagnostics = parsed.warnings;
                if let Some(inventory) = &inventory {
                    diagnostics.extend(check_against_inventory(&parsed.policy, inventory));
                    diagnostics.sort_by_key(|d| d.span.start);
                }
                for diagnostic in &diagnostics {
                    failed |= diagnostic.severity == Severity::Error;
                    writeln!(report, "{}", rendered.render(diagnostic))?;
                }
                if policies.iter().any(|p| p.name == name) {
                    writeln!(
                        report,
                        "error: two policy files are named '{name}' ({file}); statement ids \
                         (policy:line) must be unique"
                    )?;
                    failed = true;
                }
                policies.push(parsed.policy);
            }
            Err(diagnostics) => {
                for diagnostic in &diagnostics {
                    writeln!(report, "{}", rendered.render(diagnostic))?;
                }
                failed = true;
            }
        }
    }
    let inputs = match inventory {
        Some(inventory) if !failed => Some(Inputs {
            inventory,
            policies,
        }),
        _ => None,
    };
    Ok(Loaded { inputs, report })
}
