//! Random edits of a generated policy set and inventory, as an operator
//! makes them: statements added, removed and edited, endpoints tagged,
//! untagged and moved, attribute values changed, addresses added. The
//! compile's tests hold each state's Plans to the whole compile's.

use proptest::prelude::*;

use crate::inventory::Inventory;
use crate::lang::{Policy, StatementCache, parse_cached};
use crate::synthetic::Synthetic;

#[derive(Debug, Clone)]
pub enum Edit {
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
    /// A statement's zone misspelled: an attribute the inventory lacks.
    Misspell(usize),
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

pub fn edit() -> impl Strategy<Value = Edit> {
    let n = || any::<usize>();
    prop_oneof![
        3 => n().prop_map(Edit::RemoveStatement),
        3 => (n(), n()).prop_map(|(from, to)| Edit::CopyStatement { from, to }),
        3 => n().prop_map(Edit::AddPort),
        3 => n().prop_map(Edit::ToggleState),
        1 => n().prop_map(Edit::Misspell),
        1 => n().prop_map(Edit::Untag),
        1 => (n(), n()).prop_map(|(endpoint, like)| Edit::Tag { endpoint, like }),
        1 => (n(), n()).prop_map(|(endpoint, vcn)| Edit::Move { endpoint, vcn }),
        1 => (n(), n()).prop_map(|(endpoint, like)| Edit::ChangeApp { endpoint, like }),
        1 => n().prop_map(Edit::AddAddress),
    ]
}

/// Policy and inventory as lines of text.
#[derive(Clone)]
pub struct Texts {
    pub policy: Vec<String>,
    pub inventory: Vec<String>,
}

impl Texts {
    /// A generated set's texts, to edit.
    pub fn of(generated: &Synthetic) -> Texts {
        Texts {
            policy: generated.policy_text.lines().map(str::to_owned).collect(),
            inventory: generated
                .inventory_yaml
                .lines()
                .map(str::to_owned)
                .collect(),
        }
    }

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

    pub fn apply(&mut self, edit: &Edit) {
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
            Edit::Misspell(i) if !self.policy.is_empty() => {
                let line = &mut self.policy[i % statements];
                *line = line.replacen("syn.zone:", "syn.zones:", 1);
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
            | Edit::ToggleState(_)
            | Edit::Misspell(_) => {}
        }
    }

    /// The inputs, when the edits left them valid.
    pub fn parsed(&self) -> Option<(Vec<Policy>, Inventory)> {
        self.parsed_with(&mut StatementCache::default())
    }

    /// [`Texts::parsed`], read with `cache` as a reload reads them: the
    /// statements the last state shared are the same bodies.
    pub fn parsed_with(&self, cache: &mut StatementCache) -> Option<(Vec<Policy>, Inventory)> {
        let policy = parse_cached("synthetic", &self.policy.join("\n"), cache)
            .ok()?
            .policy;
        let inventory = Inventory::from_yaml_str(&self.inventory.join("\n")).ok()?;
        Some((vec![policy], inventory))
    }
}
