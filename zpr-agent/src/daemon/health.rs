//! How well what is tagged here is protected, judged from the kernel and
//! the agent's status: `zpr status` prints it (and exits with it), the
//! agent's metrics export it. One judgement, so both always agree.

use std::path::Path;

use serde::Serialize;

use super::{AttachedEndpoint, QuarantinedVnic, Status};
use crate::clock::unix_now;
use crate::datapath::{ConntrackSummary, KernelAttachments, LinkEnd};

/// How well what is tagged here is protected; `zpr status`'s exit code.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Health {
    /// Every protected local endpoint has zpr attached in the kernel, and
    /// a running agent applied the latest inputs. Exit 0. Quarantined
    /// vNICs do not lower it: they are closed (fail-closed), not
    /// unprotected, and wait for a registration, not for the operator.
    Protected,
    /// Enforcing, but not as intended: no agent runs (nothing follows
    /// changes or mends what is undone), the last reload failed or was
    /// held back (older inputs stay in force), or part of the pinned
    /// state is unreadable.
    /// Exit 3.
    Degraded,
    /// Something tagged is not protected: nothing is live, a protected
    /// endpoint's vNIC has no zpr program in the kernel, or the pins
    /// cannot be seen from here. Exit 1.
    NotEnforcing,
}

impl Health {
    pub const ALL: [Health; 3] = [Health::Protected, Health::Degraded, Health::NotEnforcing];

    pub fn name(self) -> &'static str {
        match self {
            Health::Protected => "protected",
            Health::Degraded => "degraded",
            Health::NotEnforcing => "not-enforcing",
        }
    }
}

/// By name, in `zpr status --output json` as in the metrics' `state` label.
impl Serialize for Health {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A local endpoint, and whether the kernel runs zpr on its vNIC.
#[derive(Serialize, Clone, Debug)]
pub struct EndpointState {
    #[serde(flatten)]
    pub endpoint: AttachedEndpoint,
    /// zpr's programs run on the vNIC in both directions (the kernel's
    /// own list of links, not the pins).
    pub attached: bool,
}

/// The agent's local endpoints, with what the kernel has attached.
pub fn endpoint_states(agent: Option<&Status>, kernel: &KernelAttachments) -> Vec<EndpointState> {
    agent
        .iter()
        .flat_map(|status| &status.endpoints)
        .map(|endpoint| EndpointState {
            endpoint: endpoint.clone(),
            attached: endpoint
                .ifindex
                .is_some_and(|ifindex| attached_both_ways(kernel, ifindex)),
        })
        .collect()
}

/// A quarantined vNIC, and whether the kernel runs zpr on it.
#[derive(Serialize, Clone, Debug)]
pub struct QuarantineState {
    #[serde(flatten)]
    pub vnic: QuarantinedVnic,
    /// zpr's programs run on the vNIC in both directions.
    pub attached: bool,
}

/// The agent's quarantined vNICs, with what the kernel has attached.
pub fn quarantine_states(
    agent: Option<&Status>,
    kernel: &KernelAttachments,
) -> Vec<QuarantineState> {
    agent
        .iter()
        .flat_map(|status| &status.quarantined)
        .map(|vnic| QuarantineState {
            vnic: vnic.clone(),
            attached: attached_both_ways(kernel, vnic.ifindex),
        })
        .collect()
}

/// The kernel runs zpr on the vNIC in both directions.
fn attached_both_ways(kernel: &KernelAttachments, ifindex: u32) -> bool {
    kernel.get(&ifindex).is_some_and(|ends| {
        ends.contains(&LinkEnd::ToTcx)
            && (ends.contains(&LinkEnd::FromTcx) || ends.contains(&LinkEnd::FromXdp))
    })
}

/// What the health is judged from.
pub struct Observed<'a> {
    /// The agent that holds the pin root, if one runs.
    pub agent_pid: Option<u32>,
    /// Its status file.
    pub agent: Option<&'a Status>,
    pub run_dir: &'a Path,
    /// The generation the kernel enforces (from the pinned config).
    pub live_generation: u32,
    pub endpoints: &'a [EndpointState],
    pub quarantined: &'a [QuarantineState],
    pub conntrack: Option<&'a ConntrackSummary>,
    /// Pinned state that could not be read, one line each.
    pub unreadable: &'a [String],
}

/// The health, and what makes it less than `protected` (worst first).
pub fn assess(observed: &Observed) -> (Health, Vec<String>) {
    let mut problems: Vec<(Health, String)> = Vec::new();
    if observed.live_generation == 0 {
        problems.push((
            Health::NotEnforcing,
            "no policy generation is live in the kernel: nothing is enforced".to_owned(),
        ));
    }
    for state in observed.endpoints {
        let endpoint = &state.endpoint;
        if endpoint.protected && endpoint.ifindex.is_some() && !state.attached {
            problems.push((
                Health::NotEnforcing,
                format!(
                    "{} ({}): zpr is not attached to its vNIC in the kernel; it is unprotected",
                    endpoint.name, endpoint.interface
                ),
            ));
        }
    }
    for state in observed.quarantined.iter().filter(|state| !state.attached) {
        problems.push((
            Health::NotEnforcing,
            format!(
                "{}: quarantined (no endpoint is registered for it here), but zpr is not \
                 attached to it in the kernel: it passes everything",
                state.vnic.interface
            ),
        ));
    }
    match (observed.agent_pid, observed.agent) {
        (None, _) => problems.push((
            Health::Degraded,
            "no agent is running: enforcement continues from the pins, but nothing follows \
             input changes or mends what is undone"
                .to_owned(),
        )),
        (Some(_), Some(status)) => {
            if let Some(held) = &status.held_back {
                problems.push((
                    Health::Degraded,
                    format!("input changes {} ({})", held.message, ago(held.at)),
                ));
            }
            if let Some(outage) = &status.store_unreachable {
                problems.push((
                    Health::Degraded,
                    format!(
                        "the store {} is unreachable since {} ({}): revision {} stays in \
                         force here until it returns",
                        status.store.as_deref().unwrap_or("?"),
                        ago(outage.at),
                        outage.message,
                        status
                            .revision
                            .map_or_else(|| "(none)".to_owned(), |r| r.to_string()),
                    ),
                ));
            }
            if let Some(invalid) = &status.store_refused {
                problems.push((
                    Health::Degraded,
                    format!(
                        "{} ({}): revision {} stays in force",
                        invalid.message,
                        ago(invalid.at),
                        status
                            .revision
                            .map_or_else(|| "(none)".to_owned(), |r| r.to_string()),
                    ),
                ));
            }
            if let Some(conflict) = &status.node_conflict {
                problems.push((Health::NotEnforcing, conflict.message.clone()));
            }
            if let (Some(node), Some(0)) = (&status.node, status.placed_endpoints) {
                if status.foreign_vnics.is_empty() {
                    problems.push((
                        Health::Degraded,
                        format!(
                            "no endpoint of the store is placed on node '{node}': nothing \
                             here is protected; is --node-name (default: the hostname) or \
                             the tenancy right?"
                        ),
                    ));
                } else {
                    problems.push((
                        Health::NotEnforcing,
                        format!(
                            "no endpoint of the store is placed on node '{node}', but \
                             interfaces here carry the names of other nodes' vNICs ({}): \
                             workloads here are likely unprotected; is --node-name (default: \
                             the hostname) right?",
                            status.foreign_vnics.join("; ")
                        ),
                    ));
                }
            }
            if let Some(error) = &status.last_error {
                problems.push((
                    Health::Degraded,
                    format!(
                        "the last reload failed {}: generation {} (older inputs) stays in force",
                        ago(error.at),
                        status.generation
                    ),
                ));
            }
        }
        (Some(pid), None) => problems.push((
            Health::Degraded,
            format!(
                "the agent (pid {pid}) has no status file in {}",
                observed.run_dir.display()
            ),
        )),
    }
    for what in observed.unreadable {
        problems.push((Health::Degraded, what.clone()));
    }
    if let Some(table) = observed.conntrack.map(|conntrack| &conntrack.established)
        && table.live as u64 * 10 >= table.capacity as u64 * 9
    {
        problems.push((
            Health::Degraded,
            format!(
                "{} live established flows fill {} of the established table's {} entries: \
                 more will evict the least recently used (raise --conntrack-entries)",
                table.live, table.live, table.capacity
            ),
        ));
    }
    problems.sort_by_key(|(health, _)| std::cmp::Reverse(*health));
    let health = problems
        .iter()
        .map(|(health, _)| *health)
        .max()
        .unwrap_or(Health::Protected);
    (
        health,
        problems.into_iter().map(|(_, problem)| problem).collect(),
    )
}

/// How long ago a unix time was, for people.
pub fn ago(then: u64) -> String {
    let seconds = unix_now().saturating_sub(then);
    match seconds {
        0..120 => format!("{seconds}s ago"),
        120..7200 => format!("{}m ago", seconds / 60),
        _ => format!("{}h ago", seconds / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(attached: bool) -> (Health, Vec<String>) {
        let status = Status::default();
        let quarantined = [QuarantineState {
            vnic: QuarantinedVnic {
                interface: "vnet7".to_owned(),
                ifindex: 7,
            },
            attached,
        }];
        assess(&Observed {
            agent_pid: Some(1),
            agent: Some(&status),
            run_dir: Path::new("/run/zpr"),
            live_generation: 1,
            endpoints: &[],
            quarantined: &quarantined,
            conntrack: None,
            unreadable: &[],
        })
    }

    #[test]
    fn a_quarantined_vnic_is_closed_not_unprotected_unless_its_programs_are_gone() {
        assert_eq!(judged(true), (Health::Protected, Vec::new()));
        let (health, problems) = judged(false);
        assert_eq!(health, Health::NotEnforcing);
        assert!(problems[0].contains("vnet7: quarantined"), "{problems:?}");
        assert!(problems[0].contains("it passes everything"), "{problems:?}");
    }
}
