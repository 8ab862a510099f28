//! The incremental compile is the whole compile: random edit sequences of
//! a generated policy set and inventory (statements added, removed and
//! edited, endpoints tagged, untagged and moved, attribute values changed,
//! addresses added), each state compiled both ways.

use proptest::prelude::*;

use super::Compiler;
use crate::compile::{Plan, Tables, compile, compile_whole};
use crate::inventory::Inventory;
use crate::lang::{Policy, parse};
use crate::synthetic::generate;

#[derive(Debug, Clone)]
enum Edit {
    RemoveStatement(usize),
    /// Another statement's text inserted at a line.
    CopyStatement {
        from: usize,
        to: usize,
    },
    /// One more port.
    AddPort(usize),
    /// Stateless where stateful, and back.
    ToggleState(usize),
    Untag(usize),
    /// An untagged endpoint gets the attributes of a tagged one.
    Tag {
        endpoint: usize,
        like: usize,
    },
    /// Into another VCN, with addresses of that VCN.
    Move {
        endpoint: usize,
        vcn: usize,
    },
    /// A tagged endpoint's app value becomes another's.
    ChangeApp {
        endpoint: usize,
        like: usize,
    },
    AddAddress(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let n = || any::<usize>();
    prop_oneof![
        3 => n().prop_map(Edit::RemoveStatement),
        3 => (n(), n()).prop_map(|(from, to)| Edit::CopyStatement { from, to }),
        3 => n().prop_map(Edit::AddPort),
        3 => n().prop_map(Edit::ToggleState),
        1 => n().prop_map(Edit::Untag),
        1 => (n(), n()).prop_map(|(endpoint, like)| Edit::Tag { endpoint, like }),
        1 => (n(), n()).prop_map(|(endpoint, vcn)| Edit::Move { endpoint, vcn }),
        1 => (n(), n()).prop_map(|(endpoint, like)| Edit::ChangeApp { endpoint, like }),
        1 => n().prop_map(Edit::AddAddress),
    ]
}

/// Policy and inventory as lines of text.
#[derive(Clone)]
struct Texts {
    policy: Vec<String>,
    inventory: Vec<String>,
}

impl Texts {
    /// Indices of the inventory's endpoint lines.
    fn endpoints(&self) -> Vec<usize> {
        (0..self.inventory.len())
            .filter(|&i| self.inventory[i].starts_with("  - { name: e"))
            .collect()
    }

    fn endpoint_line(&self, pick: usize, tagged: Option<bool>) -> Option<usize> {
        let lines: Vec<usize> = self
            .endpoints()
            .into_iter()
            .filter(|&i| {
                let untagged = self.inventory[i].contains("security-attributes: []");
                tagged.is_none_or(|tagged| tagged != untagged)
            })
            .collect();
        (!lines.is_empty()).then(|| lines[pick % lines.len()])
    }

    /// The value of `field: value,` in an endpoint line.
    fn field<'a>(line: &'a str, field: &str) -> &'a str {
        let start = line.find(field).unwrap() + field.len();
        let end = start + line[start..].find([',', ']', ' ']).unwrap();
        &line[start..end]
    }

    fn apply(&mut self, edit: &Edit) {
        let statements = self.policy.len().max(1);
        match *edit {
            Edit::RemoveStatement(i) if !self.policy.is_empty() => {
                self.policy.remove(i % statements);
            }
            Edit::CopyStatement { from, to } if !self.policy.is_empty() => {
                let text = self.policy[from % statements].clone();
                self.policy.insert(to % (statements + 1), text);
            }
            Edit::AddPort(i) if !self.policy.is_empty() => {
                let line = &mut self.policy[i % statements];
                *line = line.replacen("protocol='tcp/", "protocol='tcp/7,", 1);
            }
            Edit::ToggleState(i) if !self.policy.is_empty() => {
                let line = &mut self.policy[i % statements];
                *line = if line.contains("connection-state='stateless'") {
                    line.replacen(
                        "connection-state='stateless'",
                        "connection-state='stateful'",
                        1,
                    )
                } else {
                    line.replacen("with ", "with connection-state='stateless', ", 1)
                };
            }
            Edit::Untag(pick) => {
                if let Some(i) = self.endpoint_line(pick, Some(true)) {
                    let line = &self.inventory[i];
                    let start = line.find("security-attributes: [").unwrap();
                    let end = start + line[start..].find(']').unwrap();
                    self.inventory[i] =
                        format!("{}security-attributes: [{}", &line[..start], &line[end..]);
                }
            }
            Edit::Tag { endpoint, like } => {
                if let (Some(i), Some(j)) = (
                    self.endpoint_line(endpoint, Some(false)),
                    self.endpoint_line(like, Some(true)),
                ) {
                    let attributes = {
                        let line = &self.inventory[j];
                        let start = line.find("security-attributes: [").unwrap();
                        let end = start + line[start..].find(']').unwrap();
                        line[start..end].to_owned()
                    };
                    self.inventory[i] =
                        self.inventory[i].replacen("security-attributes: [", &attributes, 1);
                }
            }
            Edit::Move { endpoint, vcn } => {
                if let Some(i) = self.endpoint_line(endpoint, None) {
                    let vcns = self
                        .inventory
                        .iter()
                        .filter(|l| l.starts_with("  - { name: vcn"))
                        .count();
                    let to = vcn % vcns;
                    let line = &self.inventory[i];
                    let from = Self::field(line, "vcn: vcn");
                    // Addresses no other endpoint has (slots end at .250 of
                    // the first /24s), one per line.
                    let start = line.find("addresses: [").unwrap();
                    let end = start + line[start..].find(']').unwrap();
                    self.inventory[i] = format!(
                        "{}addresses: [10.{to}.99.{i}, 'fd00:{to:x}::99:{i}'{}",
                        line[..start].replacen(
                            &format!("vcn: vcn{from},"),
                            &format!("vcn: vcn{to},"),
                            1
                        ),
                        &line[end..]
                    );
                }
            }
            Edit::ChangeApp { endpoint, like } => {
                if let (Some(i), Some(j)) = (
                    self.endpoint_line(endpoint, Some(true)),
                    self.endpoint_line(like, Some(true)),
                ) {
                    let app = Self::field(&self.inventory[j], "syn.app:").to_owned();
                    let own = Self::field(&self.inventory[i], "syn.app:").to_owned();
                    self.inventory[i] = self.inventory[i].replacen(
                        &format!("syn.app:{own}"),
                        &format!("syn.app:{app}"),
                        1,
                    );
                }
            }
            Edit::AddAddress(pick) => {
                if let Some(i) = self.endpoint_line(pick, None) {
                    let line = &self.inventory[i];
                    let vcn = Self::field(line, "vcn: vcn");
                    let address = format!("10.{vcn}.200.{}", i % 250 + 1);
                    if !line.contains(&address) {
                        self.inventory[i] =
                            line.replacen("addresses: [", &format!("addresses: [{address}, "), 1);
                    }
                }
            }
            Edit::RemoveStatement(_)
            | Edit::CopyStatement { .. }
            | Edit::AddPort(_)
            | Edit::ToggleState(_) => {}
        }
    }

    /// The inputs, when the edits left them valid.
    fn parsed(&self) -> Option<(Vec<Policy>, Inventory)> {
        let policy = parse("synthetic", &self.policy.join("\n")).ok()?.policy;
        let inventory = Inventory::from_yaml_str(&self.inventory.join("\n")).ok()?;
        Some((vec![policy], inventory))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_plan_is_the_whole_compile(
        seed in 1u64..1000,
        edits in proptest::collection::vec(edit(), 1..16),
    ) {
        let synthetic = generate(200, 60, seed);
        let mut texts = Texts {
            policy: synthetic.policy_text.lines().map(str::to_owned).collect(),
            inventory: synthetic.inventory_yaml.lines().map(str::to_owned).collect(),
        };
        let mut compiler = Compiler::default();
        let mut local = Compiler::of(Tables::Local);
        let whole = compile(&synthetic.policies, &synthetic.inventory);
        prop_assert_eq!(compiler.compile(&synthetic.policies, &synthetic.inventory), whole.clone());
        let whole_local = local.compile(&synthetic.policies, &synthetic.inventory);
        prop_assert!(!whole_local.policy.is_empty(), "the generated set has local tables");
        prop_assert_eq!(whole_local, local_part(&whole));
        for edit in &edits {
            let before = texts.clone();
            texts.apply(edit);
            let Some((policies, inventory)) = texts.parsed() else {
                // An edit the generated shape does not allow: undone.
                texts = before;
                continue;
            };
            let whole = compile(&policies, &inventory);
            let incremental = compiler.compile(&policies, &inventory);
            prop_assert!(incremental == whole, "after {:?}", edit);
            let whole_local = compile_whole(&policies, &inventory, Tables::Local).0;
            prop_assert!(whole_local == local_part(&whole), "after {:?}", edit);
            let incremental_local = local.compile(&policies, &inventory);
            prop_assert!(incremental_local == whole_local, "local, after {:?}", edit);
        }
    }
}

/// `plan` with only the policy tables of its endpoints with an interface.
fn local_part(plan: &Plan) -> Plan {
    let local_uids: std::collections::HashSet<_> = plan
        .endpoints
        .iter()
        .filter(|endpoint| endpoint.interface.is_some())
        .flat_map(|endpoint| endpoint.addresses.iter().map(|address| address.uid))
        .collect();
    Plan::assemble(
        plan.statements.clone(),
        plan.identities.clone(),
        plan.hosts.clone(),
        plan.prefixes.clone(),
        plan.endpoints.clone(),
        plan.policy
            .iter()
            .filter(|entry| local_uids.contains(&entry.key.local))
            .cloned()
            .collect(),
    )
}

/// Removing a statement whose selectors and attributes earlier statements
/// use too is compiled from the last Plan, not whole.
#[test]
fn a_statement_change_is_not_compiled_whole() {
    let synthetic = generate(2_000, 200, 7);
    let mut compiler = Compiler::default();
    compiler.compile(&synthetic.policies, &synthetic.inventory);
    let statements = &synthetic.policies[0].statements;
    let removed = statements
        .iter()
        .enumerate()
        .position(|(index, statement)| {
            let alike = statements[..index]
                .iter()
                .filter(|other| {
                    other.source == statement.source
                        && other.destination == statement.destination
                        && other.scope == statement.scope
                })
                .count();
            alike > 0 && statement.source.node != crate::lang::Endpoint::AllEndpoints
        })
        .unwrap();
    let mut policies = synthetic.policies.clone();
    policies[0].statements.remove(removed);
    let last = compiler.last.take().unwrap();
    let plan = last.changed(&policies, &synthetic.inventory, &mut compiler.last);
    assert_eq!(plan, Some(compile(&policies, &synthetic.inventory)));
    assert!(compiler.last.is_some(), "what it worked out is kept");
}
