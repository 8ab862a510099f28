//! Reading and checking the inventory and the policy files: the one
//! checker behind `zpr check`, `compile`, `explain`, the agent and the
//! store. What `zpr check --inventory` accepts is exactly what the agent
//! applies: with an inventory, that includes compiling the Plan and
//! seeing that it fits the datapath's maps.

mod inventory_rules;
pub mod open;
pub mod text;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::compile::{
    Capacity, CapacityCounter, Compiler, Plan, Tables, capacity, capacity_problems, compile,
};
use crate::inventory::Inventory;
use crate::lang::{
    Diagnostic, JsonDiagnostic, KeptByBody, Policy, Severity, SourceFile, Span, StatementCache,
    parse, parse_cached, policy_name_from_path,
};
use crate::side_by_side;
pub use inventory_rules::check_against_inventory;
use open::Symlinks;
use text::{MAX_LINE_BYTES, overlong_line, read_text, without_byte_order_mark};

/// A valid inventory and policy set, and the Plan they compile to (which
/// fits the datapath's maps).
pub struct Inputs {
    pub inventory: Inventory,
    pub policies: Vec<Policy>,
    pub plan: Plan,
}

/// What checking found: the inputs when they are valid (and an inventory
/// was given), and every diagnostic, warnings too.
pub struct Loaded {
    pub inputs: Option<Inputs>,
    /// Every diagnostic rendered with its source line.
    pub report: String,
    /// The same diagnostics as records (`--output json`).
    pub diagnostics: Vec<JsonDiagnostic>,
    pub errors: usize,
    pub warnings: usize,
    /// Each policy file with its number of statements free of errors.
    pub statements: Vec<(String, usize)>,
}

/// One input's text: `file` names it in diagnostics, `name` is a policy's
/// name (statement ids are `name:line`).
pub struct InputText {
    pub file: String,
    pub name: String,
    pub text: String,
}

impl InputText {
    /// A policy's text, wherever it comes from (a file, the store).
    pub fn policy(file: String, name: String, text: String) -> InputText {
        InputText {
            file,
            name,
            text: without_byte_order_mark(text),
        }
    }

    /// An inventory's text.
    pub fn inventory(file: String, text: String) -> InputText {
        InputText::policy(file, String::new(), text)
    }
}

/// Reads and checks the inputs (an inventory is optional: without one,
/// the policies are checked alone and no inputs are returned). Unreadable
/// files are errors of their own; invalid content is reported in
/// [`Loaded`].
pub fn read(inventory_path: Option<&Path>, policy_paths: &[PathBuf]) -> anyhow::Result<Loaded> {
    Checker::once().read(inventory_path, policy_paths)
}

/// [`read`] for a verdict only (`zpr check`): the same diagnostics, the
/// Plan's fit to the maps counted without building it, and no inputs
/// returned. A symlink is read only within the directory holding it.
pub fn validate(inventory_path: Option<&Path>, policy_paths: &[PathBuf]) -> anyhow::Result<Loaded> {
    Checker {
        memory: None,
        builds_plan: false,
        symlinks: Symlinks::WithinTheirDirectory,
    }
    .read(inventory_path, policy_paths)
}

/// Checks an inventory (when given) and a policy set, wherever their
/// texts come from (files, or the store of `zpr serve`).
pub fn check(inventory_text: Option<&InputText>, policies: &[InputText]) -> Loaded {
    Checker::once().check(inventory_text, policies)
}

/// The checker. One for inputs checked again and again (the agent on every
/// change, `zpr diff` on both sides of a change) keeps what the last check
/// read, so that the next one parses only the statements and the inventory
/// that changed and compiles from the last Plan. Its answers are those of
/// [`check`].
pub struct Checker {
    /// `None` for a single check: keeping costs memory and time.
    memory: Option<Memory>,
    /// False for a verdict only.
    builds_plan: bool,
    /// How [`Checker::read`] treats symlinks.
    symlinks: Symlinks,
}

/// What a checker keeps from one check for the next.
struct Memory {
    /// By policy name: a policy keeps its name wherever its file is.
    statements: HashMap<String, StatementCache>,
    /// The last inventory text that parsed, and what it gave.
    inventory: Option<(String, Inventory)>,
    /// By policy name: its statement bodies when rule 7 last found nothing
    /// in it, against that inventory (see [`check_against_inventory`]).
    clean: HashMap<String, KeptByBody<()>>,
    compiler: Compiler,
    /// For a checker of verdicts only.
    counter: CapacityCounter,
}

impl Checker {
    /// A checker that keeps what it reads for its next check, and builds
    /// Plans holding `tables` (the agent: its own endpoints' only).
    pub fn remembering(tables: Tables) -> Checker {
        Checker {
            memory: Some(Memory {
                statements: HashMap::new(),
                inventory: None,
                clean: HashMap::new(),
                compiler: Compiler::of(tables),
                counter: CapacityCounter::default(),
            }),
            builds_plan: true,
            symlinks: Symlinks::Followed,
        }
    }

    /// A checker that keeps what it reads for its next check, for
    /// verdicts only (the API's check of a change): the diagnostics and
    /// the Plan's fit to the maps, counted without building the Plan, and
    /// no inputs returned.
    pub fn remembering_verdicts() -> Checker {
        Checker {
            builds_plan: false,
            ..Checker::remembering(Tables::Local)
        }
    }

    /// A checker for one check.
    pub fn once() -> Checker {
        Checker {
            memory: None,
            builds_plan: true,
            symlinks: Symlinks::Followed,
        }
    }

    /// This checker, reading a symlink only within the directory holding
    /// it (a tree under review).
    pub fn within_their_directories(self) -> Checker {
        Checker {
            symlinks: Symlinks::WithinTheirDirectory,
            ..self
        }
    }

    /// [`read`], with what the last check read.
    pub fn read(
        &mut self,
        inventory_path: Option<&Path>,
        policy_paths: &[PathBuf],
    ) -> anyhow::Result<Loaded> {
        let inventory = inventory_path
            .map(|path| -> anyhow::Result<InputText> {
                Ok(InputText::inventory(
                    path.display().to_string(),
                    read_text(path, "inventory", self.symlinks)?,
                ))
            })
            .transpose()?;
        let policies = policy_paths
            .iter()
            .map(|path| {
                Ok(InputText::policy(
                    path.display().to_string(),
                    policy_name_from_path(path),
                    read_text(path, "policy", self.symlinks)?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(self.check(inventory.as_ref(), &policies))
    }

    /// [`check`], with what the last check read.
    pub fn check(&mut self, inventory_text: Option<&InputText>, policies: &[InputText]) -> Loaded {
        let mut found = Found::default();
        let mut caches: Vec<Option<StatementCache>> = match &mut self.memory {
            Some(memory) => {
                memory
                    .statements
                    .retain(|name, _| policies.iter().any(|policy| &policy.name == name));
                policies
                    .iter()
                    .map(|policy| Some(memory.statements.remove(&policy.name).unwrap_or_default()))
                    .collect()
            }
            None => policies.iter().map(|_| None).collect(),
        };
        let known_inventory = self
            .memory
            .as_mut()
            .and_then(|memory| memory.inventory.take())
            .filter(|(known, _)| inventory_text.is_some_and(|text| *known == text.text));
        // Rule 7's findings hold for the inventory they were checked
        // against only.
        let mut clean = match &mut self.memory {
            Some(memory) if known_inventory.is_some() => std::mem::take(&mut memory.clean),
            _ => HashMap::new(),
        };
        // The inventory and the policies parse independently: side by side (a
        // reload waits for both).
        let (policies_parsed, inventory_parsed) = side_by_side::join(
            || -> Vec<_> {
                policies
                    .iter()
                    .zip(&mut caches)
                    .map(
                        |(policy, cache)| match (overlong_line(&policy.text), cache) {
                            (Some(line), _) => Err(vec![overlong_line_error(&policy.text, line)]),
                            (None, Some(cache)) => parse_cached(&policy.name, &policy.text, cache),
                            (None, None) => parse(&policy.name, &policy.text),
                        },
                    )
                    .collect()
            },
            || {
                inventory_text.map(|text| match known_inventory {
                    Some((_, inventory)) => Ok(inventory),
                    None => parse_inventory(text),
                })
            },
        );
        if let Some(memory) = &mut self.memory {
            for (policy, cache) in policies.iter().zip(caches) {
                memory
                    .statements
                    .insert(policy.name.clone(), cache.unwrap_or_default());
            }
            if let (Some(text), Some(Ok(inventory))) = (inventory_text, &inventory_parsed) {
                memory.inventory = Some((text.text.clone(), inventory.clone()));
            }
        }
        let inventory = match (inventory_text, inventory_parsed) {
            (Some(text), Some(Err(errors))) => {
                for error in errors {
                    found.inventory_error(&text.file, error);
                }
                None
            }
            (_, parsed) => parsed.and_then(Result::ok),
        };
        let mut policies_read: Vec<Policy> = Vec::new();
        for (policy, parsed) in policies.iter().zip(policies_parsed) {
            let (statements, diagnostics) = match parsed {
                Ok(parsed) => {
                    let mut diagnostics = parsed.warnings;
                    if let Some(inventory) = &inventory {
                        let clean = clean.entry(policy.name.clone()).or_default();
                        diagnostics.extend(check_against_inventory(
                            &parsed.policy,
                            inventory,
                            clean,
                        ));
                        diagnostics.sort_by_key(|d| d.span.start);
                    }
                    let statements = parsed.policy.statements.len();
                    if policies_read.iter().any(|p| p.name == policy.name) {
                        diagnostics.push(Diagnostic::error(
                            format!(
                                "two policy files are named '{}'; statement ids (policy:line) must \
                             be unique",
                                policy.name
                            ),
                            Span::new(0, 0),
                        ));
                    }
                    policies_read.push(parsed.policy);
                    (statements, diagnostics)
                }
                Err(diagnostics) => (0, diagnostics),
            };
            if !diagnostics.is_empty() {
                // Indexing the lines of a large file costs: only to render.
                let source = SourceFile::new(&policy.file, &policy.text);
                for diagnostic in &diagnostics {
                    found.diagnostic(&source, diagnostic);
                }
            }
            found.statements.push((policy.file.clone(), statements));
        }
        if let Some(memory) = &mut self.memory {
            clean.retain(|name, _| policies.iter().any(|policy| &policy.name == name));
            memory.clean = clean;
        }
        let inputs = match (inventory, inventory_text) {
            (Some(inventory), Some(text)) if found.errors == 0 && !self.builds_plan => {
                let capacity = match &mut self.memory {
                    Some(memory) => memory.counter.count(&policies_read, &inventory),
                    None => capacity(&policies_read, &inventory),
                };
                for problem in capacity_problems(&capacity) {
                    found.plan_error(&text.file, problem);
                }
                None
            }
            (Some(inventory), Some(text)) if found.errors == 0 => {
                let plan = match &mut self.memory {
                    Some(memory) => memory.compiler.compile(&policies_read, &inventory),
                    None => compile(&policies_read, &inventory),
                };
                for problem in capacity_problems(&Capacity::from(&plan.sizes)) {
                    found.plan_error(&text.file, problem);
                }
                (found.errors == 0).then_some(Inputs {
                    inventory,
                    policies: policies_read,
                    plan,
                })
            }
            _ => None,
        };
        Loaded {
            inputs,
            report: found.report,
            diagnostics: found.diagnostics,
            errors: found.errors,
            warnings: found.warnings,
            statements: found.statements,
        }
    }
}

fn parse_inventory(text: &InputText) -> Result<Inventory, Vec<crate::inventory::InventoryError>> {
    if let Some(line) = overlong_line(&text.text) {
        let (line, length) = line;
        return Err(vec![crate::inventory::InventoryError {
            path: String::new(),
            message: overlong_line_message(length),
            location: Some(crate::inventory::Location { line, column: 1 }),
        }]);
    }
    Inventory::from_yaml_str(&text.text).map_err(|errors| errors.0)
}

fn overlong_line_message(length: usize) -> String {
    format!(
        "this line is {length} bytes long; the longest line zpr reads is {} KiB (is the file \
         damaged?)",
        MAX_LINE_BYTES >> 10
    )
}

/// The error for an overlong line of a policy, at its first character.
fn overlong_line_error(text: &str, (line, length): (usize, usize)) -> Diagnostic {
    let start: usize = text.split('\n').take(line - 1).map(|l| l.len() + 1).sum();
    Diagnostic::error(overlong_line_message(length), Span::new(start, start))
}

/// Diagnostics as they are found, rendered and counted.
#[derive(Default)]
struct Found {
    report: String,
    diagnostics: Vec<JsonDiagnostic>,
    errors: usize,
    warnings: usize,
    statements: Vec<(String, usize)>,
}

impl Found {
    fn diagnostic(&mut self, source: &SourceFile, diagnostic: &Diagnostic) {
        self.count(diagnostic.severity);
        self.report += &format!("{}\n", source.render(diagnostic));
        self.diagnostics.push(source.to_json(diagnostic));
    }

    /// A problem of the compiled Plan as a whole (it does not fit the
    /// maps): no line of any input is to blame, so it is put on the
    /// inventory, which declares the addresses and prefixes.
    fn plan_error(&mut self, file: &str, message: String) {
        self.inventory_error(
            file,
            crate::inventory::InventoryError {
                path: String::new(),
                message,
                location: None,
            },
        );
    }

    fn inventory_error(&mut self, file: &str, error: crate::inventory::InventoryError) {
        self.count(Severity::Error);
        self.report += &format!("error: {file}: {error}\n");
        let (line, col) = error
            .location
            .map_or((0, 0), |location| (location.line, location.column));
        let message = match error.path.is_empty() {
            true => error.message,
            false => format!("{}: {}", error.path, error.message),
        };
        self.diagnostics.push(JsonDiagnostic {
            file: file.to_owned(),
            line,
            col,
            end_line: line,
            end_col: col,
            severity: Severity::Error,
            message,
            help: None,
        });
    }

    fn count(&mut self, severity: Severity) {
        match severity {
            Severity::Error => self.errors += 1,
            Severity::Warning => self.warnings += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Checker, InputText, check};
    use crate::compile::Tables;
    use crate::compile::edits::{Texts, edit};
    use crate::synthetic::generate;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The agent's checker, which re-reads and re-checks only what
        /// changed, finds what one check of each state finds: the same
        /// diagnostics (rule 7's among them, as edits misspell attributes
        /// and leave values carried by nothing) and the same Plan.
        #[test]
        fn a_remembering_checker_finds_what_one_check_finds(
            seed in 1u64..1000,
            edits in proptest::collection::vec(edit(), 1..16),
        ) {
            let synthetic = generate(200, 60, seed);
            let mut texts = Texts::of(&synthetic);
            let mut checker = Checker::remembering(Tables::Every);
            for edit in std::iter::once(None).chain(edits.iter().map(Some)) {
                if let Some(edit) = edit {
                    texts.apply(edit);
                }
                let inventory =
                    InputText::inventory("inventory.yaml".to_owned(), texts.inventory.join("\n"));
                let policy = InputText::policy(
                    "synthetic.zpr".to_owned(),
                    "synthetic".to_owned(),
                    texts.policy.join("\n"),
                );
                let policies = std::slice::from_ref(&policy);
                let remembered = checker.check(Some(&inventory), policies);
                let once = check(Some(&inventory), policies);
                prop_assert_eq!(&remembered.report, &once.report, "after {:?}", edit);
                prop_assert_eq!(remembered.errors, once.errors);
                prop_assert_eq!(remembered.warnings, once.warnings);
                prop_assert!(
                    remembered.inputs.map(|inputs| inputs.plan) == once.inputs.map(|inputs| inputs.plan),
                    "after {:?}", edit
                );
            }
        }
    }
}
