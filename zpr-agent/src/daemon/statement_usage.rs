//! How much each statement is used (`zpr usage`). The kernel counts the
//! flows each Plan entry allows, per Plan slot (`ZPR_RULE_USAGE`); the
//! agent reads that every second, turns what grew into flows of the
//! statements behind each entry (a flow counts for every statement its
//! entry carries, as the flow log names them all), and keeps the sums:
//! across reloads that keep a statement (found again by its text when its
//! line moved; an edited statement is a new one), and across restarts (in
//! the run directory's `statement-usage.json`, written when it changed, at
//! most every ten seconds, and when the agent stops). With policies from
//! a store, the report also names each policy's API id (OCID), once per
//! policy.

use std::{
    collections::{BTreeMap, HashMap},
    hash::Hasher as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tracing::warn;
use zpr_common::usage::{RULE_USAGE_PER_SLOT, RuleUsage};

use crate::{
    clock::unix_now,
    common_ends::CommonEnds,
    compile::{Fnv1a64, Plan},
    datapath::{Datapath, monotonic_now_ns, read_rule_usage},
    lang::{KeptByBody, Policy, Statement, StatementId, format_statement},
    private_file,
};

/// The file under the run directory.
pub const USAGE_FILE: &str = "statement-usage.json";

/// The API ids (OCIDs) of the live policies, by policy name: policies
/// from a store have them, policy files do not.
pub type PolicyIds = BTreeMap<String, String>;

/// How often the sums are written while they change.
const WRITE_EVERY: Duration = Duration::from_secs(10);

/// One statement's use on this host.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatementUsage {
    /// `policy:line`, where it is now.
    pub statement: String,
    /// Of its canonical text (`zpr fmt`): how it is found again when its
    /// line moves.
    pub fingerprint: u64,
    /// New flows it allowed (a stateless statement: packets).
    pub flows: u64,
    /// When it last allowed one (unix seconds).
    pub last_allowed_at: Option<u64>,
    /// The generation it has been in force since, and when that was
    /// (unix seconds).
    pub since_generation: u32,
    pub since: u64,
}

impl StatementUsage {
    /// The name of the policy it is in (`policy` of `policy:line`).
    pub fn policy(&self) -> &str {
        self.statement
            .rsplit_once(':')
            .map_or(self.statement.as_str(), |(policy, _)| policy)
    }
}

/// What one agent knows of its statements' use.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageReport {
    /// The node (in a fleet) whose agent counted.
    pub node: Option<String>,
    /// When the kernel's counts were last read (unix seconds).
    pub updated_at: u64,
    /// The live generation then.
    pub generation: u32,
    /// Local Plan entries beyond those the kernel counts: the flows they
    /// allowed are missing from these counts.
    pub uncounted_entries: usize,
    /// Every statement of the live policy, in policy and line order.
    pub statements: Vec<StatementUsage>,
    /// Each live policy's API id, when the policies come from a store
    /// (one entry per policy, not per statement).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub policy_ids: PolicyIds,
}

impl UsageReport {
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join(USAGE_FILE)
    }

    pub fn read(run_dir: &Path) -> anyhow::Result<UsageReport> {
        let path = UsageReport::path(run_dir);
        // Opened as the agent's own private files are: a regular file,
        // written by root alone.
        let text = private_file::read_secret(&path, "the statement usage file")?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The API id of the policy `statement` is in, if it has one.
    pub fn policy_id(&self, statement: &StatementUsage) -> Option<&str> {
        self.policy_ids.get(statement.policy()).map(String::as_str)
    }

    fn write(&self, run_dir: &Path) -> anyhow::Result<()> {
        let path = UsageReport::path(run_dir);
        private_file::replace(&path, &serde_json::to_vec(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// Fingerprints by statement body. The checker's statement cache hands a
/// reload the very body (one allocation) of every line it read before,
/// moved or not, so only new or edited statements are printed and hashed:
/// printing all of them costs 150 ms at 100,000 statements.
#[derive(Default)]
struct Fingerprints {
    /// The last reading's statements' fingerprints, in its order (the
    /// policies by name, each in line order).
    last: KeptByBody<u64>,
}

impl Fingerprints {
    /// Each statement's fingerprint, in the Plan's statement order (its
    /// statements sorted by id: the policies by name, each in line order).
    fn of(&mut self, plan: &Plan, policies: &[Policy]) -> Vec<u64> {
        let mut sorted: Vec<&Policy> = policies.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let statements: Vec<&Statement> = sorted
            .iter()
            .flat_map(|policy| &policy.statements)
            .collect();
        self.last.follow(&statements, |statement| {
            let mut hasher = Fnv1a64::default();
            hasher.write(format_statement(statement).as_bytes());
            hasher.finish()
        });
        let fingerprints = self.last.values().copied();
        let aligned = statements.len() == plan.statements.len()
            && statements
                .iter()
                .zip(&plan.statements)
                .all(|(statement, planned)| statement.id == planned.id);
        if aligned {
            return fingerprints.collect();
        }
        let by_id: HashMap<_, _> = statements
            .iter()
            .map(|statement| &statement.id)
            .zip(fingerprints)
            .collect();
        plan.statements
            .iter()
            .map(|planned| by_id.get(&planned.id).copied().unwrap_or_default())
            .collect()
    }
}

/// Whether `record` (`policy:line`) names `id`, without printing `id`.
fn names(record: &str, id: &StatementId) -> bool {
    record
        .rsplit_once(':')
        .is_some_and(|(policy, line)| policy == &*id.policy && line.parse() == Ok(id.line))
}

/// A Plan statement without a usage record.
const NO_RECORD: u32 = u32::MAX;

/// The statements behind each Plan entry one slot holds, the record each
/// of those statements counts in, and what the kernel's counts of that
/// slot were when last read.
struct SlotRules {
    /// `entry_statements[offsets[r]..offsets[r + 1]]`: entry r's statements
    /// (indexes into the Plan's statements).
    offsets: Vec<u32>,
    entry_statements: Vec<u32>,
    /// By Plan statement: its record in `UsageReport::statements`
    /// ([`NO_RECORD`]: none), moved along as later Plans reorder them.
    records: Vec<u32>,
    last: Vec<RuleUsage>,
}

impl SlotRules {
    fn of(plan: &Plan, records: Vec<u32>, last: Vec<RuleUsage>) -> SlotRules {
        let mut offsets = Vec::with_capacity(plan.policy.len() + 1);
        let mut entry_statements = Vec::new();
        offsets.push(0);
        for entry in &plan.policy {
            entry_statements.extend(&entry.value.statements);
            offsets.push(entry_statements.len() as u32);
        }
        SlotRules {
            offsets,
            entry_statements,
            records,
            last,
        }
    }

    fn counted_entries(&self) -> usize {
        (self.offsets.len() - 1).min(RULE_USAGE_PER_SLOT as usize)
    }
}

/// The agent's side of the counts.
pub struct UsageTracker {
    run_dir: PathBuf,
    report: UsageReport,
    slots: [Option<SlotRules>; 2],
    fingerprints: Fingerprints,
    /// The statement each record of the report names, as the Plan gave
    /// it (empty when the records were read from the file): compared
    /// without parsing the record's name.
    named: Vec<StatementId>,
    changed: bool,
    written_at: Option<Instant>,
}

impl UsageTracker {
    /// Starts from what an earlier agent wrote under `run_dir`, if anything.
    pub fn resume(run_dir: &Path, node: Option<String>) -> UsageTracker {
        let mut report = match UsageReport::read(run_dir) {
            Ok(report) => report,
            Err(err) => {
                if UsageReport::path(run_dir).exists() {
                    warn!("statement usage starts from zero: {err:#}");
                }
                UsageReport::default()
            }
        };
        report.node = node;
        UsageTracker {
            run_dir: run_dir.to_owned(),
            report,
            slots: [None, None],
            fingerprints: Fingerprints::default(),
            named: Vec::new(),
            changed: false,
            written_at: None,
        }
    }

    /// Reads what every slot counted since the last read, and adds it to
    /// the statements behind each entry.
    pub fn harvest(&mut self, datapath: &Datapath) -> anyhow::Result<()> {
        let now_ns = monotonic_now_ns();
        let now = unix_now();
        for slot in 0..2u8 {
            let Some(rules) = &mut self.slots[usize::from(slot)] else {
                continue;
            };
            let read = read_rule_usage(datapath, slot, rules.counted_entries())?;
            for (rule, usage) in read.iter().enumerate() {
                let before = rules.last.get(rule).copied().unwrap_or_default();
                let grown = usage.flows.wrapping_sub(before.flows);
                if grown == 0 {
                    continue;
                }
                let at = now.saturating_sub(now_ns.saturating_sub(usage.last_ns) / 1_000_000_000);
                let (start, end) = (rules.offsets[rule], rules.offsets[rule + 1]);
                for &statement in &rules.entry_statements[start as usize..end as usize] {
                    let record = rules.records[statement as usize];
                    if let Some(record) = self.report.statements.get_mut(record as usize) {
                        record.flows += grown;
                        record.last_allowed_at = record.last_allowed_at.max(Some(at));
                        self.changed = true;
                    }
                }
            }
            rules.last = read;
        }
        self.report.updated_at = now;
        Ok(())
    }

    /// Before `plan` is written into `slot`: what that slot counted so far
    /// is read (and kept as the new Plan's starting point, the counts
    /// being the kernel's, never reset).
    pub fn before_write(
        &mut self,
        datapath: &Datapath,
        slot: u8,
        plan: &Plan,
    ) -> anyhow::Result<Vec<RuleUsage>> {
        self.harvest(datapath)?;
        read_rule_usage(datapath, slot, plan.policy.len())
    }

    /// `plan` (compiled from `policies`, with their API ids, when read
    /// anew) is live as `generation` in `slot`: its entries count from
    /// `baseline`, and its statements keep the counts of the same
    /// statements before (by line and text, else by text), the rest start
    /// at zero.
    pub fn written(
        &mut self,
        slot: u8,
        generation: u32,
        plan: &Plan,
        policies: Option<(&[Policy], &PolicyIds)>,
        baseline: Vec<RuleUsage>,
    ) {
        self.report.generation = generation;
        self.report.uncounted_entries = plan
            .policy
            .len()
            .saturating_sub(RULE_USAGE_PER_SLOT as usize);
        let statements = plan.statements.len();
        let records = match policies {
            Some((policies, ids)) => {
                self.report.policy_ids.clone_from(ids);
                let fingerprints = self.fingerprints.of(plan, policies);
                let moved = self.reconcile(plan, &fingerprints, generation);
                // The other slot's statements follow their records.
                for rules in self.slots.iter_mut().flatten() {
                    for record in &mut rules.records {
                        if *record != NO_RECORD {
                            *record = moved[*record as usize];
                        }
                    }
                }
                self.changed = true;
                (0..statements as u32).collect()
            }
            // The live Plan written again: its records are as they were.
            None if self.report.statements.len() == statements => (0..statements as u32).collect(),
            None => vec![NO_RECORD; statements],
        };
        self.slots[usize::from(slot)] = Some(SlotRules::of(plan, records, baseline));
    }

    /// Makes the records the Plan's statements', in its order: a record
    /// stays with its statement (same line and text, else the same text
    /// on another line). Returns where each record went ([`NO_RECORD`]:
    /// its statement is gone). A reload that keeps every line where it
    /// was matches them in order, without a lookup.
    fn reconcile(&mut self, plan: &Plan, fingerprints: &[u64], generation: u32) -> Vec<u32> {
        let mut old: Vec<Option<StatementUsage>> = std::mem::take(&mut self.report.statements)
            .into_iter()
            .map(Some)
            .collect();
        let named = Some(std::mem::take(&mut self.named))
            .filter(|named| named.len() == old.len())
            .unwrap_or_default();
        let mut moved = vec![NO_RECORD; old.len()];
        let ids = &plan.statements;
        // The same texts in the same order at both ends: there a record
        // follows its statement in order, renamed if its line moved.
        let ends = CommonEnds::by_index(old.len(), ids.len(), |from, index| {
            old[from]
                .as_ref()
                .is_some_and(|record| record.fingerprint == fingerprints[index])
        });
        let mut placed: Vec<Option<StatementUsage>> = (0..ids.len())
            .map(|index| {
                let from = ends.old_of(index)?;
                let mut record = old[from].take()?;
                moved[from] = index as u32;
                let id = &ids[index].id;
                let same_name = match named.get(from) {
                    Some(named) => named == id,
                    None => names(&record.statement, id),
                };
                if !same_name {
                    record.statement = id.to_string();
                }
                Some(record)
            })
            .collect();
        if placed.iter().any(Option::is_none) {
            let by_id: HashMap<&str, usize> = old
                .iter()
                .enumerate()
                .filter_map(|(index, record)| Some((record.as_ref()?.statement.as_str(), index)))
                .collect();
            let mut found: Vec<(usize, usize)> = Vec::new();
            for (index, slot) in placed.iter().enumerate() {
                if slot.is_none()
                    && let Some(&from) = by_id.get(ids[index].id.to_string().as_str())
                    && old[from]
                        .as_ref()
                        .is_some_and(|record| record.fingerprint == fingerprints[index])
                {
                    found.push((from, index));
                }
            }
            for (from, index) in found {
                moved[from] = index as u32;
                placed[index] = old[from].take();
            }
            // Moved to another line: found by text.
            let mut by_text: HashMap<u64, Vec<usize>> = HashMap::new();
            for (index, record) in old.iter().enumerate().rev() {
                if let Some(record) = record {
                    by_text.entry(record.fingerprint).or_default().push(index);
                }
            }
            for (index, slot) in placed.iter_mut().enumerate() {
                if slot.is_some() {
                    continue;
                }
                if let Some(from) = by_text.get_mut(&fingerprints[index]).and_then(Vec::pop) {
                    moved[from] = index as u32;
                    *slot = old[from].take().map(|record| StatementUsage {
                        statement: ids[index].id.to_string(),
                        ..record
                    });
                }
            }
        }
        let now = unix_now();
        self.report.statements = placed
            .into_iter()
            .zip(ids)
            .zip(fingerprints)
            .map(|((record, planned), &fingerprint)| {
                record.unwrap_or_else(|| StatementUsage {
                    statement: planned.id.to_string(),
                    fingerprint,
                    flows: 0,
                    last_allowed_at: None,
                    since_generation: generation,
                    since: now,
                })
            })
            .collect();
        self.named = ids.iter().map(|planned| planned.id.clone()).collect();
        moved
    }

    /// Writes the sums when they changed and the last write is ten seconds
    /// old (`now`: also when it is not); returns them when written.
    pub fn persist(&mut self, now: bool) -> Option<&UsageReport> {
        let due = self.written_at.is_none_or(|at| at.elapsed() >= WRITE_EVERY);
        if !self.changed || !(due || now) {
            return None;
        }
        if let Err(err) = self.report.write(&self.run_dir) {
            warn!("cannot keep the statement usage: {err:#}");
        }
        self.changed = false;
        self.written_at = Some(Instant::now());
        Some(&self.report)
    }

    pub fn report(&self) -> &UsageReport {
        &self.report
    }
}

#[cfg(test)]
mod tests {
    use super::{Fingerprints, PolicyIds, UsageReport};
    use crate::{
        compile::compile,
        inventory::Inventory,
        lang::{Policy, StatementCache, parse_cached},
    };

    const INVENTORY: &str = "namespaces: [{ name: t, attributes: [{ key: app, type: list, values: [web, db] }, { key: net, type: list, values: [a] }] }]\n\
         vcns: [{ name: a, cidrs: [10.0.0.0/16], security-attribute: 't.net:a' }]\n\
         endpoints: [{ name: web, vcn: a, addresses: [10.0.0.5], security-attributes: ['t.app:web'] }, { name: db, vcn: a, addresses: [10.0.0.6], security-attributes: ['t.app:db'] }]";
    const WEB: &str = "in t.net:a VCN allow t.app:web endpoints to connect to t.app:db endpoints with protocol='tcp/5432'";
    const ANY: &str = "in t.net:a VCN allow '0.0.0.0/0' to connect to t.app:web endpoints with protocol='tcp/443'";

    /// Fingerprints of `text` read through `cache`, with a fresh
    /// computation's beside them.
    fn read(
        text: &str,
        cache: &mut StatementCache,
        kept: &mut Fingerprints,
    ) -> (Vec<u64>, Vec<u64>) {
        let inventory = Inventory::from_yaml_str(INVENTORY).unwrap();
        let policy: Policy = parse_cached("p", text, cache).unwrap().policy;
        let policies = [policy];
        let plan = compile(&policies, &inventory);
        let fresh = Fingerprints::default().of(&plan, &policies);
        (kept.of(&plan, &policies), fresh)
    }

    fn planned(text: &str, cache: &mut StatementCache) -> (crate::compile::Plan, Vec<Policy>) {
        let inventory = Inventory::from_yaml_str(INVENTORY).unwrap();
        let policies = vec![parse_cached("p", text, cache).unwrap().policy];
        (compile(&policies, &inventory), policies)
    }

    fn flows(tracker: &super::UsageTracker) -> Vec<(String, u64, u32)> {
        tracker
            .report
            .statements
            .iter()
            .map(|record| {
                (
                    record.statement.clone(),
                    record.flows,
                    record.since_generation,
                )
            })
            .collect()
    }

    #[test]
    fn records_follow_their_statements_across_reloads() {
        let dir = std::env::temp_dir().join(format!("zpr-usage-records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut tracker = super::UsageTracker::resume(&dir, None);
        let mut cache = StatementCache::default();
        // Policy files: no API ids.
        let files = PolicyIds::new();
        let (plan, policies) = planned(&format!("{WEB}\n{ANY}\n"), &mut cache);
        tracker.written(0, 1, &plan, Some((&policies, &files)), Vec::new());
        tracker.report.statements[0].flows = 5;
        tracker.report.statements[1].flows = 7;
        // Both move a line down.
        let (plan, policies) = planned(&format!("# above\n{WEB}\n{ANY}\n"), &mut cache);
        tracker.written(1, 2, &plan, Some((&policies, &files)), Vec::new());
        assert_eq!(
            flows(&tracker),
            [("p:2".to_owned(), 5, 1), ("p:3".to_owned(), 7, 1)]
        );
        // The first slot's statements still find their records.
        let first = tracker.slots[0].as_ref().unwrap();
        assert_eq!(first.records, [0, 1]);
        // One added at the end (kept in order), the first edited (a new one).
        let edited = WEB.replace("5432", "5433");
        let (plan, policies) = planned(&format!("# above\n{edited}\n{ANY}\n{WEB}\n"), &mut cache);
        tracker.written(0, 3, &plan, Some((&policies, &files)), Vec::new());
        assert_eq!(
            flows(&tracker),
            [
                ("p:2".to_owned(), 0, 3),
                ("p:3".to_owned(), 7, 1),
                // WEB's text again, on another line: its counts went with it.
                ("p:4".to_owned(), 5, 1),
            ]
        );
        // The slot of generation 2 now finds them where they went.
        assert_eq!(tracker.slots[1].as_ref().unwrap().records, [2, 1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_store_policys_id_is_kept_once_for_all_its_statements() {
        const ID: &str = "ocid1.zprpolicy.zpr.7";
        let dir = std::env::temp_dir().join(format!("zpr-usage-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut tracker = super::UsageTracker::resume(&dir, None);
        let mut cache = StatementCache::default();
        let (plan, policies) = planned(&format!("{WEB}\n{ANY}\n"), &mut cache);
        let ids = PolicyIds::from([("p".to_owned(), ID.to_owned())]);
        tracker.written(0, 1, &plan, Some((&policies, &ids)), Vec::new());
        let ids_of = |report: &UsageReport| -> Vec<Option<String>> {
            report
                .statements
                .iter()
                .map(|record| report.policy_id(record).map(str::to_owned))
                .collect()
        };
        assert_eq!(
            ids_of(tracker.report()),
            [Some(ID.to_owned()), Some(ID.to_owned())]
        );
        // The file names it once, not per statement, and reads back.
        let json = serde_json::to_string(tracker.report()).unwrap();
        assert_eq!(json.matches(ID).count(), 1, "{json}");
        let read: UsageReport = serde_json::from_str(&json).unwrap();
        assert_eq!(&read, tracker.report());
        // The live Plan written again (nothing read): the ids stay.
        tracker.written(1, 2, &plan, None, Vec::new());
        assert_eq!(tracker.report().policy_ids, ids);
        // Policy files: no ids, none in the file.
        let files = PolicyIds::new();
        tracker.written(0, 3, &plan, Some((&policies, &files)), Vec::new());
        assert_eq!(ids_of(tracker.report()), [None, None]);
        let json = serde_json::to_string(tracker.report()).unwrap();
        assert!(!json.contains("policy_ids"), "{json}");
        // A file an agent wrote before there were ids reads.
        let read: UsageReport = serde_json::from_str(&json).unwrap();
        assert!(read.policy_ids.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_statement_keeps_its_fingerprint_when_its_line_moves_and_not_when_edited() {
        let (mut cache, mut kept) = (StatementCache::default(), Fingerprints::default());
        let (first, fresh) = read(&format!("{WEB}\n{ANY}\n"), &mut cache, &mut kept);
        assert_eq!(first, fresh);
        assert_ne!(first[0], first[1]);
        // A comment above: both move a line down, bodies shared by the cache.
        let (moved, fresh) = read(&format!("# above\n{WEB}\n{ANY}\n"), &mut cache, &mut kept);
        assert_eq!(moved, fresh, "a kept fingerprint differs from a fresh one");
        assert_eq!(moved, first);
        assert_eq!(kept.last.len(), 2);
        // The second edited: a new statement.
        let edited = ANY.replace("443", "8443");
        let (after, fresh) = read(
            &format!("# above\n{WEB}\n{edited}\n"),
            &mut cache,
            &mut kept,
        );
        assert_eq!(after, fresh);
        assert_eq!(after[0], first[0]);
        assert_ne!(after[1], first[1]);
        assert_eq!(
            kept.last.len(),
            2,
            "the edited statement's old body is let go"
        );
    }
}
