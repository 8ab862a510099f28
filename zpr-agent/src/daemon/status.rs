//! The agent's status file (`<run-dir>/status.json`): what `zpr status`
//! shows beside the pinned maps, and the names `zpr monitor` puts on
//! kernel events (endpoints by ifindex, statements by rule, identities).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize, ser::SerializeMap as _};
use serde_json::value::{RawValue, to_raw_value};

use crate::{
    clock::unix_now,
    compile::{Identity, Plan},
};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    /// Unix seconds.
    pub started_at: u64,
    pub bpffs: PathBuf,
    pub inventory: PathBuf,
    pub policies: Vec<PathBuf>,
    /// The store the agent's inputs come from (then `inventory` is empty).
    #[serde(default)]
    pub store: Option<String>,
    /// The store's revision the live policy was compiled from: set only
    /// once that revision's Plan is live in the kernel.
    #[serde(default)]
    pub revision: Option<u64>,
    /// The tenancy id and etcd cluster of the store state that is live: a
    /// store that answers with others was reset or restored.
    #[serde(default)]
    pub tenancy_id: Option<String>,
    #[serde(default)]
    pub store_cluster: Option<u64>,
    /// A later revision the agent has read but does not enforce (held
    /// back, failed, or unreadable); `held_back`, `last_error` or
    /// `store_refused` says why.
    #[serde(default)]
    pub pending_revision: Option<u64>,
    /// The store's state holds a record that cannot be read (the live
    /// policy stays until it is fixed or removed): which, and why.
    #[serde(default)]
    pub store_refused: Option<Notice>,
    /// This host's node name in a fleet.
    #[serde(default)]
    pub node: Option<String>,
    /// With a fleet's store: how many endpoints (with a vNIC) the store
    /// places on this node.
    #[serde(default)]
    pub placed_endpoints: Option<usize>,
    /// When no endpoint is placed on this node: interfaces here named as
    /// other nodes' endpoints' vNICs (a mistyped node name leaves them
    /// unprotected), each with the endpoints that name it.
    #[serde(default)]
    pub foreign_vnics: Vec<String>,
    /// The node name is claimed by two live agents: by whom.
    #[serde(default)]
    pub node_conflict: Option<Notice>,
    /// Since when the store could not be reached (the live policy stays
    /// in force meanwhile, with no time limit), and why.
    #[serde(default)]
    pub store_unreachable: Option<Notice>,
    /// The last time the store answered (unix seconds).
    #[serde(default)]
    pub store_heard_at: Option<u64>,
    pub hook: String,
    /// What the agent found pinned when it started.
    pub adoption: String,
    pub generation: u32,
    pub applied_at: Option<u64>,
    /// From the input change to the new generation being live.
    pub reload_ms: Option<f64>,
    pub statements: usize,
    pub content_hash: String,
    pub endpoints: Vec<AttachedEndpoint>,
    /// The last reload's failure (the live policy stayed); None after a
    /// reload that succeeded.
    pub last_error: Option<Notice>,
    /// Inputs the unprotect guard holds back until the operator confirms
    /// them (the live policy stays meanwhile).
    #[serde(default)]
    pub held_back: Option<Notice>,
    /// Reloads attempted since the agent started, whatever their outcome.
    #[serde(default)]
    pub reloads: u64,
    /// Conditions the agent runs under that put enforcement at risk.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// How often the agent found enforcement undone behind its back
    /// (pins removed, programs detached, maps written by another
    /// process) and mended it.
    #[serde(default)]
    pub repairs: u64,
    #[serde(default)]
    pub last_repair: Option<Notice>,
    /// What names the live Plan's numbers in events. Shared: a status
    /// written or published again copies a reference, not the names (tens
    /// of MB at 100,000 statements).
    #[serde(flatten)]
    pub names: Arc<PlanNames>,
    /// `--quarantine`'s interface-name globs; empty when it is off (an
    /// unregistered vNIC is then left alone: it passes everything).
    #[serde(default)]
    pub quarantine: Vec<String>,
    /// `--quarantine-allow-dhcp`.
    #[serde(default)]
    pub quarantine_allows_dhcp: bool,
    /// The vNICs under quarantine now: matched, present, and no endpoint
    /// registered for them here. Fail-closed, so not unprotected.
    #[serde(default)]
    pub quarantined: Vec<QuarantinedVnic>,
}

/// The names of what the kernel reports by number, for one Plan. Made
/// once per Plan and not changed after: its JSON is kept from the first
/// time it is written (at 10,000 endpoints it was most of every status
/// write, and the status is written several times per change).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PlanNames {
    /// The Plan's statements, in its order (by id): each policy's lines.
    /// Statement `i` of the Plan is line `i - k` of the policy whose
    /// lines start at `k`. (Named apart from the status's own
    /// `statements`, the count, which it is flattened beside.)
    #[serde(default)]
    pub statement_lines: Vec<PolicyLines>,
    /// Policy entry index (the kernel's `rule`) -> its statements, as
    /// their indexes in the Plan, for the entries of this host's endpoints
    /// (the only ones its kernel holds). A key of its own: a status an
    /// older agent wrote (`local_rules`, a map of names) still reads, its
    /// rules unnamed, while the new agent starts.
    #[serde(default)]
    pub rules: Vec<Vec<u32>>,
    /// The Plan's identities (`identities[i].uid == i + 1`), for naming
    /// the addresses of events.
    #[serde(default)]
    pub identities: Vec<Identity>,
    /// Each tagged endpoint's security attributes (`namespace.key:value`),
    /// by endpoint name, for the flow log.
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<String>>,
    #[serde(skip)]
    pub(crate) written: WrittenOnce,
}

/// The JSON of each of a [`PlanNames`]' fields, kept once written. A clone
/// (as `Arc::make_mut` makes to change one) starts without it.
#[derive(Default)]
pub(crate) struct WrittenOnce(OnceLock<Result<Vec<(&'static str, Box<RawValue>)>, String>>);

impl Clone for WrittenOnce {
    fn clone(&self) -> WrittenOnce {
        WrittenOnce::default()
    }
}

impl std::fmt::Debug for WrittenOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WrittenOnce")
    }
}

impl Serialize for PlanNames {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = self
            .written
            .0
            .get_or_init(|| self.fields().map_err(|error| error.to_string()))
            .as_ref()
            .map_err(serde::ser::Error::custom)?;
        let mut map = serializer.serialize_map(Some(fields.len()))?;
        for (name, value) in fields {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// One policy's statements: the lines they stand on.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyLines {
    pub policy: String,
    pub lines: Vec<u32>,
}

impl PlanNames {
    /// Each field's name and JSON, as a derived `Serialize` would write them.
    fn fields(&self) -> serde_json::Result<Vec<(&'static str, Box<RawValue>)>> {
        let PlanNames {
            statement_lines,
            rules,
            identities,
            attributes,
            written: _,
        } = self;
        Ok(vec![
            ("statement_lines", to_raw_value(statement_lines)?),
            ("rules", to_raw_value(rules)?),
            ("identities", to_raw_value(identities)?),
            ("attributes", to_raw_value(attributes)?),
        ])
    }

    /// The names of `plan`'s numbers.
    pub fn of(plan: &Plan) -> PlanNames {
        let mut statement_lines: Vec<PolicyLines> = Vec::new();
        for statement in &plan.statements {
            let id = &statement.id;
            match statement_lines.last_mut() {
                Some(last) if *last.policy == *id.policy => last.lines.push(id.line),
                _ => statement_lines.push(PolicyLines {
                    policy: id.policy.to_string(),
                    lines: vec![id.line],
                }),
            }
        }
        PlanNames {
            statement_lines,
            rules: plan
                .policy
                .iter()
                .map(|entry| entry.value.statements.clone())
                .collect(),
            identities: plan.identities.clone(),
            attributes: plan
                .endpoints
                .iter()
                .filter(|endpoint| !endpoint.attributes.is_empty())
                .map(|endpoint| (endpoint.name.clone(), endpoint.attributes.clone()))
                .collect(),
            written: WrittenOnce::default(),
        }
    }

    /// The statements of policy entry `rule` (`policy:line`); none when
    /// it is not one.
    pub fn rule_statements(&self, rule: u32) -> Vec<String> {
        let statements = usize::try_from(rule)
            .ok()
            .and_then(|rule| self.rules.get(rule));
        statements
            .into_iter()
            .flatten()
            .filter_map(|&index| self.statement(index as usize))
            .collect()
    }

    /// Statement `index` of the Plan, `policy:line`.
    fn statement(&self, mut index: usize) -> Option<String> {
        for policy in &self.statement_lines {
            match policy.lines.get(index) {
                Some(line) => return Some(format!("{}:{line}", policy.policy)),
                None => index -= policy.lines.len(),
            }
        }
        None
    }
}

/// A vNIC that passes only ARP and neighbour discovery (and DHCP when
/// allowed) until an endpoint is registered for it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct QuarantinedVnic {
    pub interface: String,
    pub ifindex: u32,
}

/// A local endpoint (one with an `interface` in the inventory).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttachedEndpoint {
    pub name: String,
    pub interface: String,
    /// Present when the interface exists on this host (then zpr is attached).
    pub ifindex: Option<u32>,
    pub mode: String,
    pub protected: bool,
    /// Its row of the counters map (`ZPR_COUNTERS`); none when the host
    /// has more local endpoints than rows (it counts in row 0 then).
    #[serde(default)]
    pub counter_row: Option<u32>,
}

/// Something that happened, and when (unix seconds).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Notice {
    pub at: u64,
    pub message: String,
}

/// The most lines of a message a notice keeps: the first diagnostics say
/// what is wrong; thousands of them would make every `zpr status` huge.
const NOTICE_LINES: usize = 80;

impl Notice {
    pub fn now(message: String) -> Notice {
        Notice {
            at: unix_now(),
            message: summarised(message),
        }
    }
}

/// `message`, cut to its first [`NOTICE_LINES`] lines.
pub fn summarised(message: String) -> String {
    let lines = message.lines().count();
    if lines <= NOTICE_LINES {
        return message;
    }
    let mut kept: String = message
        .lines()
        .take(NOTICE_LINES)
        .map(|line| format!("{line}\n"))
        .collect();
    kept += &format!(
        "… {} more lines (`zpr check --inventory FILE POLICY...` prints them all)",
        lines - NOTICE_LINES
    );
    kept
}

impl Status {
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join("status.json")
    }

    pub fn read(run_dir: &Path) -> anyhow::Result<Status> {
        let path = Status::path(run_dir);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (is `zpr run` running?)", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Replaces the file atomically (readers never see half of it).
    /// Compact: with a large Plan's names, indentation would be most of
    /// it (`zpr status --output json` is the readable form).
    pub fn write(&self, run_dir: &Path) -> anyhow::Result<()> {
        let path = Status::path(run_dir);
        crate::private_file::replace(&path, &serde_json::to_vec(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn endpoint_by_ifindex(&self, ifindex: u32) -> Option<&AttachedEndpoint> {
        self.endpoints.iter().find(|e| e.ifindex == Some(ifindex))
    }

    pub fn quarantined_by_ifindex(&self, ifindex: u32) -> Option<&QuarantinedVnic> {
        self.quarantined.iter().find(|vnic| vnic.ifindex == ifindex)
    }

    pub fn identity(&self, uid: u32) -> Option<&Identity> {
        let index = usize::try_from(uid).ok()?.checked_sub(1)?;
        self.names
            .identities
            .get(index)
            .filter(|identity| identity.uid == uid)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{PlanNames, PolicyLines, Status};

    /// The names are flattened into the status: none of their keys may
    /// be one of the status's own, or the file would not read back.
    #[test]
    fn a_status_with_names_reads_back() {
        let status = Status {
            statements: 3,
            names: Arc::new(PlanNames {
                statement_lines: vec![
                    PolicyLines {
                        policy: "a".to_owned(),
                        lines: vec![1, 4],
                    },
                    PolicyLines {
                        policy: "b".to_owned(),
                        lines: vec![2],
                    },
                ],
                rules: vec![vec![0, 2], vec![1]],
                ..PlanNames::default()
            }),
            ..Status::default()
        };
        let read: Status = serde_json::from_slice(&serde_json::to_vec(&status).unwrap()).unwrap();
        assert_eq!(read.statements, 3);
        assert_eq!(read.names.rule_statements(0), ["a:1", "b:2"]);
        assert_eq!(read.names.rule_statements(1), ["a:4"]);
        assert!(read.names.rule_statements(2).is_empty());
    }

    /// The names' JSON, kept from the first write, is what they hold; a
    /// copy changed through `Arc::make_mut` writes what it holds then.
    #[test]
    fn names_are_written_as_they_are_each_time() {
        let mut status = Status {
            names: Arc::new(PlanNames {
                statement_lines: vec![PolicyLines {
                    policy: "a".to_owned(),
                    lines: vec![1],
                }],
                rules: vec![vec![0]],
                ..PlanNames::default()
            }),
            ..Status::default()
        };
        let first = serde_json::to_value(&status).unwrap();
        assert_eq!(
            first["statement_lines"],
            serde_json::json!([{ "policy": "a", "lines": [1] }])
        );
        assert_eq!(first["rules"], serde_json::json!([[0]]));
        assert_eq!(first["identities"], serde_json::json!([]));
        assert_eq!(serde_json::to_value(&status).unwrap(), first);
        let _shared = Arc::clone(&status.names);
        Arc::make_mut(&mut status.names).statement_lines[0].lines = vec![3];
        let changed = serde_json::to_value(&status).unwrap();
        assert_eq!(
            changed["statement_lines"],
            serde_json::json!([{ "policy": "a", "lines": [3] }])
        );
    }

    /// `zpr status` and `zpr monitor` of a new binary read the status an
    /// older agent wrote (names per rule as strings) until it restarts.
    #[test]
    fn a_status_an_older_agent_wrote_reads() {
        let older = r#"{"pid":7,"started_at":1,"bpffs":"/sys/fs/bpf","inventory":"i.yaml",
            "policies":[],"hook":"tcx","adoption":"fresh","generation":4,"applied_at":2,
            "reload_ms":1.0,"statements":3,"content_hash":"0","endpoints":[],
            "last_error":null,"held_back":null,"reloads":1,"local_rules":{"0":["p:1"]},
            "identities":[],"attributes":{}}"#;
        let read: Status = serde_json::from_str(older).unwrap();
        assert_eq!((read.pid, read.generation), (7, 4));
        assert!(read.names.rule_statements(0).is_empty());
    }
}
