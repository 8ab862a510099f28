//! A [`PlanDiff`] as a reviewer reads it: by statement, then by the
//! endpoint groups on each side, with the protocols and ports between
//! them, and where (which vNIC, which way) each change is enforced.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::compile::{
    AddressGroup, Change, Direction, EnforcementChange, EnforcementEffect, L4Range, PROTOCOL_ICMP,
    PROTOCOL_ICMPV6, PROTOCOL_TCP, PROTOCOL_UDP, PlanDiff,
};
use crate::lang::address::format_prefix;

/// Everything that changes, grouped.
#[derive(Debug, Serialize)]
pub struct Report {
    pub changes: Vec<Group>,
    pub enforcement: Vec<EnforcementChange>,
    pub opens: usize,
    pub closes: usize,
    /// Paths still allowed, no longer tracking connections.
    pub becomes_stateless: usize,
    /// Paths still allowed, now tracking connections.
    pub becomes_stateful: usize,
    /// With `--live`: the live connections the change cuts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Vec<RevokedFlow>>,
}

/// Changes with the same direction and statements.
#[derive(Debug, Serialize)]
pub struct Group {
    pub change: Change,
    pub statements: Vec<String>,
    pub paths: Vec<Path>,
}

/// From one set of endpoints (or prefixes) to another, these protocols
/// and ports open or close.
#[derive(Debug, Serialize)]
pub struct Path {
    pub from: Side,
    pub to: Side,
    /// `tcp/22`, `udp/1000-2000`, `icmp type 8`, `any protocol`.
    pub protocols: Vec<String>,
    /// The same, as 24-bit `protocol << 16 | port` key ranges.
    pub l4: Vec<L4Range>,
    /// The vNICs that enforce it: `lb egress`, `db ingress`.
    pub at: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Side {
    /// Endpoints, and prefixes standing for the addresses in them that no
    /// more specific prefix or endpoint of the diff names.
    pub names: BTreeSet<String>,
    pub addresses: BTreeSet<String>,
    /// The selectors that matched, in the Plan that allows the path.
    pub attributes: BTreeSet<String>,
}

impl Side {
    fn of(group: &AddressGroup, change: Change) -> Side {
        let mut side = Side::default();
        for member in &group.members {
            side.names.insert(member.endpoint.clone());
            side.addresses.insert(member.address.to_string());
        }
        for prefix in &group.prefixes {
            side.names.insert(format_prefix(prefix));
            side.addresses.insert(format_prefix(prefix));
        }
        let selectors = if change.allowed_after() {
            &group.selectors_after
        } else {
            &group.selectors_before
        };
        side.attributes.extend(selectors.iter().cloned());
        side
    }

    fn merge(&mut self, other: Side) {
        self.names.extend(other.names);
        self.addresses.extend(other.addresses);
        self.attributes.extend(other.attributes);
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_joined(f, &self.names)?;
        if !self.attributes.is_empty() {
            f.write_str(" [")?;
            write_joined(f, &self.attributes)?;
            f.write_str("]")?;
        }
        Ok(())
    }
}

fn write_joined<'a>(
    f: &mut fmt::Formatter<'_>,
    items: impl IntoIterator<Item = &'a String>,
) -> fmt::Result {
    for (index, item) in items.into_iter().enumerate() {
        if index > 0 {
            f.write_str(", ")?;
        }
        f.write_str(item)?;
    }
    Ok(())
}

impl Report {
    pub fn new(diff: &PlanDiff) -> Report {
        // (change, statements, from names, to names, l4) -> (from, to, at):
        // the two ends of one path and both families meet here.
        type PathKey = (
            Change,
            Vec<String>,
            BTreeSet<String>,
            BTreeSet<String>,
            L4Range,
        );
        let mut by_path: BTreeMap<PathKey, (Side, Side, BTreeSet<String>)> = BTreeMap::new();
        for path in &diff.paths {
            let local = Side::of(&diff.local_groups[path.local], path.change);
            let remote = Side::of(&diff.remote_groups[path.remote], path.change);
            let at: BTreeSet<String> = local
                .names
                .iter()
                .map(|endpoint| format!("{endpoint} {}", path.direction))
                .collect();
            let (from, to) = match path.direction {
                Direction::Egress => (local, remote),
                Direction::Ingress => (remote, local),
            };
            let statements = path.statements.iter().map(ToString::to_string).collect();
            let key = (
                path.change,
                statements,
                from.names.clone(),
                to.names.clone(),
                path.l4,
            );
            let entry = by_path.entry(key).or_default();
            entry.0.merge(from);
            entry.1.merge(to);
            entry.2.extend(at);
        }
        // Then the ranges of one pair of groups, enforced at the same
        // vNICs, on one line.
        let mut groups: BTreeMap<(Change, Vec<String>), Vec<Path>> = BTreeMap::new();
        for ((change, statements, _, _, l4), (from, to, at)) in by_path {
            let at: Vec<String> = at.into_iter().collect();
            let paths = groups.entry((change, statements)).or_default();
            match paths.last_mut() {
                Some(last) if last.from == from && last.to == to && last.at == at => {
                    last.l4.push(l4);
                }
                _ => paths.push(Path {
                    from,
                    to,
                    protocols: Vec::new(),
                    l4: vec![l4],
                    at,
                }),
            }
        }
        let changes: Vec<Group> = groups
            .into_iter()
            .map(|((change, statements), mut paths)| {
                for path in &mut paths {
                    path.protocols = path.l4.iter().flat_map(|&l4| describe(l4)).collect();
                }
                Group {
                    change,
                    statements,
                    paths,
                }
            })
            .collect();
        let count = |change: Change| {
            changes
                .iter()
                .filter(|group| group.change == change)
                .map(|group| group.paths.len())
                .sum::<usize>()
                + diff
                    .enforcement
                    .iter()
                    .filter(|e| Change::from(e.change) == change)
                    .count()
        };
        Report {
            opens: count(Change::Opens),
            closes: count(Change::Closes),
            becomes_stateless: count(Change::BecomesStateless),
            becomes_stateful: count(Change::BecomesStateful),
            changes,
            enforcement: diff.enforcement.clone(),
            revoked: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.enforcement.is_empty()
            && self.revoked.as_ref().is_none_or(Vec::is_empty)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no change in what may connect");
        }
        for group in &self.changes {
            let statements = group.statements.join(", ");
            match group.change {
                Change::Opens => writeln!(f, "opens: newly allowed by {statements}")?,
                Change::Closes => writeln!(f, "closes: no longer allowed by {statements}")?,
                Change::BecomesStateless => writeln!(
                    f,
                    "becomes stateless: still allowed, only by the stateless {statements}; \
                     connections are no longer tracked, so replies need a statement of their own"
                )?,
                Change::BecomesStateful => writeln!(
                    f,
                    "becomes stateful: still allowed, now by {statements}, which tracks \
                     connections, so their replies pass"
                )?,
            }
            for path in &group.paths {
                writeln!(f, "  from {}", path.from)?;
                writeln!(f, "  to   {}", path.to)?;
                writeln!(
                    f,
                    "  {} (at {})",
                    path.protocols.join(", "),
                    path.at.join(", ")
                )?;
            }
        }
        for change in &self.enforcement {
            let what = match change.change {
                EnforcementEffect::Opens => "every packet the old policy dropped now passes",
                EnforcementEffect::Closes => {
                    "every packet the new policy does not allow is now dropped"
                }
            };
            writeln!(
                f,
                "{}: at {} ({} before, {} now): {what}",
                Change::from(change.change),
                change.endpoint,
                change.before,
                change.after
            )?;
        }
        for flow in self.revoked.iter().flatten() {
            writeln!(f, "{flow}")?;
        }
        write!(f, "{} opens, {} closes", self.opens, self.closes)?;
        for (count, what) in [
            (self.becomes_stateless, "become stateless"),
            (self.becomes_stateful, "become stateful"),
        ] {
            if count > 0 {
                write!(f, ", {count} {what}")?;
            }
        }
        match &self.revoked {
            Some(revoked) => writeln!(f, ", {} live connections cut", revoked.len()),
            None => writeln!(f),
        }
    }
}

/// A key range in protocol terms, one item per protocol it touches (runs
/// of whole protocols without ports joined).
pub fn describe(range: L4Range) -> Vec<String> {
    if range.low == 0 && range.high == 0xff_ffff {
        return vec!["any protocol".to_owned()];
    }
    let mut items = Vec::new();
    let mut other_run: Option<(u32, u32)> = None;
    let flush = |run: &mut Option<(u32, u32)>, items: &mut Vec<String>| match run.take() {
        Some((first, last)) if first == last => items.push(format!("protocol {first}")),
        Some((first, last)) => items.push(format!("protocols {first}-{last}")),
        None => {}
    };
    for protocol in range.low >> 16..=range.high >> 16 {
        let low = if protocol == range.low >> 16 {
            range.low & 0xffff
        } else {
            0
        };
        let high = if protocol == range.high >> 16 {
            range.high & 0xffff
        } else {
            0xffff
        };
        let whole = low == 0 && high == 0xffff;
        let name = match protocol as u8 {
            PROTOCOL_TCP => Some("tcp"),
            PROTOCOL_UDP => Some("udp"),
            PROTOCOL_ICMP => Some("icmp"),
            PROTOCOL_ICMPV6 => Some("icmpv6"),
            _ => None,
        };
        match name {
            // Other protocols have no ports: their key is port 0.
            None if whole || low == 0 => {
                other_run = match other_run {
                    Some((first, last)) if last + 1 == protocol => Some((first, protocol)),
                    run => {
                        let mut pending = run;
                        flush(&mut pending, &mut items);
                        Some((protocol, protocol))
                    }
                };
                continue;
            }
            None => continue,
            Some(name) => {
                flush(&mut other_run, &mut items);
                if whole {
                    items.push(name.to_owned());
                } else if matches!(protocol as u8, PROTOCOL_TCP | PROTOCOL_UDP) {
                    items.push(port_range(name, low, high));
                } else {
                    items.extend(icmp_ranges(name, low, high));
                }
            }
        }
    }
    flush(&mut other_run, &mut items);
    items
}

fn port_range(name: &str, low: u32, high: u32) -> String {
    if low == high {
        format!("{name}/{low}")
    } else {
        format!("{name}/{low}-{high}")
    }
}

/// ICMP keys are `type << 8 | code`: whole types by type, the rest by code.
fn icmp_ranges(name: &str, low: u32, high: u32) -> Vec<String> {
    let mut items = Vec::new();
    let (mut cursor, end) = (low, high);
    while cursor <= end {
        let icmp_type = cursor >> 8;
        if cursor & 0xff == 0 && (icmp_type << 8 | 0xff) <= end {
            let last_type = if end & 0xff == 0xff {
                end >> 8
            } else {
                (end >> 8) - 1
            };
            items.push(match last_type == icmp_type {
                true => format!("{name} type {icmp_type}"),
                false => format!("{name} type {icmp_type}-{last_type}"),
            });
            cursor = (last_type + 1) << 8;
        } else {
            let last = end.min(icmp_type << 8 | 0xff);
            let (first_code, last_code) = (cursor & 0xff, last & 0xff);
            items.push(match first_code == last_code {
                true => format!("{name} type {icmp_type} code {first_code}"),
                false => format!("{name} type {icmp_type} code {first_code}-{last_code}"),
            });
            cursor = last + 1;
        }
    }
    items
}

/// A live connection the change cuts.
#[derive(Debug, Serialize)]
pub struct RevokedFlow {
    pub endpoint: String,
    pub interface: String,
    /// The direction of its first packet at the endpoint's vNIC.
    pub direction: Direction,
    /// `tcp/1521`, `icmp type 8 code 0`: the question its first packet asked.
    pub protocol: String,
    pub from: String,
    pub to: String,
    /// The statements that allow it now (by the old inputs).
    pub allowed_by: Vec<String>,
}

impl fmt::Display for RevokedFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "revoked: {} {} -> {} at {} {}",
            self.protocol, self.from, self.to, self.endpoint, self.direction
        )?;
        if !self.allowed_by.is_empty() {
            write!(f, " (allowed by {} before)", self.allowed_by.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(protocol: u8, port: u32) -> u32 {
        u32::from(protocol) << 16 | port
    }

    #[test]
    fn ranges_read_as_protocols_and_ports() {
        let range = |low, high| describe(L4Range { low, high });
        assert_eq!(range(0, 0xff_ffff), ["any protocol"]);
        assert_eq!(range(key(6, 22), key(6, 22)), ["tcp/22"]);
        assert_eq!(range(key(17, 1000), key(17, 2000)), ["udp/1000-2000"]);
        assert_eq!(range(key(6, 0), key(6, 0xffff)), ["tcp"]);
        assert_eq!(
            range(key(6, 23), key(17, 0xffff)),
            ["tcp/23-65535", "protocols 7-16", "udp"]
        );
        assert_eq!(
            range(key(1, 8 << 8), key(1, 8 << 8 | 0xff)),
            ["icmp type 8"]
        );
        assert_eq!(
            range(key(58, 0), key(58, 132 << 8 | 0xff)),
            ["icmpv6 type 0-132"]
        );
        assert_eq!(
            range(key(1, 3 << 8 | 4), key(1, 5 << 8 | 0xff)),
            ["icmp type 3 code 4-255", "icmp type 4-5"]
        );
        assert_eq!(range(key(47, 0), key(47, 0xffff)), ["protocol 47"]);
    }
}
