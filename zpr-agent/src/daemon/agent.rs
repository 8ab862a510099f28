//! The agent's state and its one job: turn the current inputs into the
//! enforced Plan, or leave the live Plan in place and say why not.

use std::{collections::BTreeSet, ffi::CString, path::PathBuf, sync::Arc, time::Instant};

use anyhow::{Context as _, bail};
use tracing::{error, info, warn};
use zpr_common::config::LAYOUT_VERSION;

use super::{
    AgentConfig, InputSource,
    metrics::{AgentMetrics, ReloadOutcome},
    statement_usage::{PolicyIds, UsageReport, UsageTracker},
    status::{AttachedEndpoint, Notice, PlanNames, QuarantinedVnic, Status, summarised},
};
use crate::{
    clock::unix_now,
    compile::{Plan, Tables},
    datapath::{
        Adoption, ConntrackSize, Datapath, FromWorkloadHook, InterfaceIndexes, KernelAttachments,
        KernelLog, LinkEnd, PinLayout, PinOwnership, PinVisibility, ProgramSet, QuarantineDhcp,
        VnicPrograms, current_netns_name, ensure_bpffs, kernel_attachments, live_plan_intact,
        next_slot, pinned_config, pinned_interfaces, prime_idle_slot, protected_endpoints,
        remove_all, write_plan,
    },
    inputs::Checker,
    inventory::Mode,
    lang::Policy,
    side_by_side,
    store::{Snapshot, SnapshotChecker},
};

pub struct Agent {
    config: AgentConfig,
    /// The latest snapshot handed over, when the inputs come from a store.
    snapshot: Option<Snapshot>,
    /// The live snapshot, kept while a later one is held whatever it does
    /// ([`Guard::Held`]): what a store that was reset is compared with.
    live_snapshot: Option<Snapshot>,
    pins: PinLayout,
    ownership: PinOwnership,
    datapath: Datapath,
    status: Status,
    /// The live Plan and the vNICs it was written for.
    live: Option<(Plan, InterfaceIndexes)>,
    /// The vNICs under quarantine (`--quarantine`): matched, present, and
    /// no endpoint registered for them here.
    quarantined: InterfaceIndexes,
    /// Kernel checks since the live Plan's maps were last read back.
    checks_since_audit: u32,
    /// The local vNICs the last kernel check left without zpr (it
    /// attached the rest again); `None` until a check has read the kernel.
    unattached: Option<Vec<String>>,
    metrics: AgentMetrics,
    /// What the last reload read, so the next one parses and compiles only
    /// what changed.
    checker: SnapshotChecker,
    /// How much each statement is used (`zpr usage`).
    usage: UsageTracker,
}

impl Agent {
    /// Takes the pin root (one agent per pin root), loads the programs
    /// over the pinned maps (adopting what an earlier agent left), then
    /// applies the inputs. Refuses to start, and changes nothing, when the
    /// pins would not outlive it, or when the inputs are invalid and no
    /// earlier policy is in force to keep.
    /// With a store, `snapshot` is what it holds now (see [`Agent::offer`]).
    pub fn start(config: AgentConfig, snapshot: Option<Snapshot>) -> anyhow::Result<Agent> {
        let since = Instant::now();
        if let Some(mount_point) = ensure_bpffs(&config.bpffs)? {
            info!(at = %mount_point.display(), "mounted bpffs: nothing was mounted there");
        }
        let mut warnings = Vec::new();
        match PinVisibility::of(&config.bpffs)? {
            PinVisibility::Host => {}
            PinVisibility::KeptBy { pid, command } => warnings.push(format!(
                "the pins are on a bpffs that only a private mount namespace sees; they \
                 outlive this agent only while pid {pid} ({command}) keeps that namespace"
            )),
            PinVisibility::ThisProcessOnly if config.allow_private_bpffs => warnings.push(
                "--allow-private-bpffs: the pins are on a bpffs that only this process sees; \
                 when it ends, every program detaches and nothing is protected"
                    .to_owned(),
            ),
            PinVisibility::ThisProcessOnly => bail!("{}", private_bpffs_refusal(&config)),
        }
        for warning in &warnings {
            warn!("{warning}");
        }
        let pins = PinLayout::new(&config.bpffs);
        let was_pinned = pins.map(zpr_common::maps::CONFIG).exists();
        let ownership = PinOwnership::acquire(&pins, &config.run_dir)?;
        let mut checker = SnapshotChecker::new(Checker::remembering(Tables::Local));
        let live = pinned_config(&pins).ok();
        let enforced =
            live.is_some_and(|live| live.layout == LAYOUT_VERSION && live.generation > 0);
        let open = || {
            Datapath::open_pinned_with(
                &pins,
                ConntrackSize {
                    established: config.conntrack_entries,
                },
                config.quarantine_dhcp,
                ProgramSet::AttachedWith(config.hook),
            )
        };
        // Loading the programs (the verifier: about a second) and checking
        // the inputs go side by side, unless what the check finds decides
        // whether pins of another layout may be replaced: those are left
        // untouched when the inputs are invalid.
        let check_while_opening =
            !was_pinned || live.is_some_and(|live| live.layout == LAYOUT_VERSION);
        let (first, opened) = if check_while_opening {
            // The check on this thread: what it allocates is then in the
            // main arena, which every later reload allocates from too. A
            // helper thread's arena would keep the first reading's memory
            // resident for good (about 60 MB at 100,000 statements).
            let (first, opened) = side_by_side::join(
                || load_plan(&config.inputs, snapshot.as_ref(), &mut checker),
                open,
            );
            (first, Some(opened))
        } else {
            (
                load_plan(&config.inputs, snapshot.as_ref(), &mut checker),
                None,
            )
        };
        if let Err(err) = &first
            && !enforced
        {
            // Nothing was in force: what opening pinned (maps of generation
            // 0, no link) goes too.
            drop(opened);
            if !was_pinned {
                remove_all(&pins)?;
            }
            bail!(
                "refusing to start: the inputs are invalid and no earlier policy is in \
                 force here to keep, so nothing would be protected; fix them and start \
                 again:\n{err:#}"
            );
        }
        let (mut datapath, adoption) = match opened {
            Some(opened) => opened?,
            None => open()?,
        };
        datapath.set_events_per_second(config.events_per_second);
        let adoption = match adoption {
            Adoption::Fresh => "fresh: nothing was pinned".to_owned(),
            Adoption::Adopted { generation } => {
                format!("adopted pinned maps at generation {generation}")
            }
            Adoption::Replaced { why } => format!("replaced incompatible pinned state: {why}"),
        };
        info!(pins = %pins.root().display(), "{adoption}");
        let (inventory, policies, store) = match &config.inputs {
            InputSource::Files {
                inventory,
                policies,
            } => (inventory.clone(), policies.clone(), None),
            InputSource::Store { location, .. } => {
                (PathBuf::new(), Vec::new(), Some(location.clone()))
            }
        };
        let node = match &config.inputs {
            InputSource::Store { node, .. } => node.clone(),
            InputSource::Files { .. } => None,
        };
        let usage = UsageTracker::resume(&config.run_dir, node.clone());
        let status = Status {
            pid: std::process::id(),
            started_at: unix_now(),
            bpffs: config.bpffs.clone(),
            inventory,
            policies,
            store,
            node,
            hook: format!("{:?}", config.hook),
            adoption,
            warnings,
            quarantine: config.quarantine.globs(),
            quarantine_allows_dhcp: config.quarantine_dhcp == QuarantineDhcp::Allowed,
            ..Status::default()
        };
        let mut agent = Agent {
            config,
            snapshot,
            live_snapshot: None,
            pins,
            ownership,
            datapath,
            status,
            live: None,
            quarantined: InterfaceIndexes::new(),
            checks_since_audit: 0,
            unattached: None,
            metrics: AgentMetrics::default(),
            checker,
            usage,
        };
        let applied = first.and_then(|loaded| agent.settle(loaded, since, &Guard::Unprotect));
        agent.note_enforced_revision(&applied);
        agent.record("start", applied);
        agent.check_node_identity();
        Ok(agent)
    }

    /// Reads what the kernel counted per statement since the last read and
    /// keeps the sums: at most every ten seconds while they change, or now
    /// (`finally`, as the agent stops).
    /// Returns whether the sums were written (they changed).
    pub fn follow_usage(&mut self, finally: bool) -> bool {
        if let Err(err) = self.usage.harvest(&self.datapath) {
            warn!("cannot read the statement usage: {err:#}");
        }
        let written = self.usage.persist(finally);
        let changed = written.is_some();
        if let Some(written) = written {
            self.metrics.publish_usage(written);
        }
        changed
    }

    /// Each statement's use, as last written.
    pub fn usage(&self) -> &UsageReport {
        self.usage.report()
    }

    /// What the last reload did (generation, error), as `zpr status` shows it.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The store state the agent was last handed (applied or not).
    pub fn store_snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// The store state whose Plan is live, when the agent holds it.
    pub fn live_store_snapshot(&self) -> Option<&Snapshot> {
        self.live_snapshot.as_ref().or(self
            .snapshot
            .as_ref()
            .filter(|snapshot| self.status.revision == Some(snapshot.revision)))
    }

    /// What the agent records for its metrics.
    pub fn metrics(&self) -> &AgentMetrics {
        &self.metrics
    }

    pub fn pins(&self) -> &PinLayout {
        &self.pins
    }

    pub fn run_dir(&self) -> &std::path::Path {
        &self.config.run_dir
    }

    /// A condition found after the start that puts something at risk,
    /// kept for `zpr status` beside the start's warnings (the caller logs it).
    pub fn add_warning(&mut self, warning: String) {
        self.status.warnings.push(warning);
        self.write_status();
    }

    pub fn kernel_log(&mut self) -> anyhow::Result<KernelLog> {
        self.datapath.kernel_log()
    }

    /// Compiles the inputs and, when they are valid, makes them the live
    /// Plan. When they are not, the live Plan stays and the error is kept
    /// for `zpr status`.
    pub fn reload(&mut self, cause: &str, since: Instant, guard: Guard) {
        let applied = load_plan(
            &self.config.inputs,
            self.snapshot.as_ref(),
            &mut self.checker,
        )
        .and_then(|loaded| self.settle(loaded, since, &guard));
        self.note_enforced_revision(&applied);
        self.record(cause, applied);
        self.check_node_identity();
    }

    /// The operator confirms what is held back (SIGHUP). When `zpr fleet
    /// confirm REVISION` left the revision it confirms, only that one is
    /// applied: a state that changed since was not the one reviewed.
    pub fn confirm(&mut self, cause: &str, since: Instant) {
        let file = self.config.run_dir.join(CONFIRMED_REVISION);
        let named = std::fs::read_to_string(&file).ok();
        let _ = std::fs::remove_file(&file);
        let held = self.snapshot.as_ref().map(|snapshot| snapshot.revision);
        if let Some(named) = named {
            let named = named.trim();
            if held.map(|revision| revision.to_string()).as_deref() != Some(named) {
                let why = format!(
                    "not applied: revision {named} was confirmed, but the state held back \
                     is now revision {}; check it and confirm that one",
                    held.map_or_else(|| "(none)".to_owned(), |r| r.to_string())
                );
                self.record(cause, Err(anyhow::anyhow!(why)));
                return;
            }
        }
        self.reload(cause, since, Guard::Confirmed);
    }

    /// A store's revision is reported as enforced only once its Plan is
    /// live; a revision read but not applied is reported as pending.
    fn note_enforced_revision(&mut self, applied: &anyhow::Result<Outcome>) {
        let Some(snapshot) = &self.snapshot else {
            return;
        };
        if let Ok(Outcome::Applied(_)) = applied {
            self.live_snapshot = None;
            self.status.revision = Some(snapshot.revision);
            self.status.tenancy_id = snapshot.tenancy.tenancy_id.clone();
            self.status.store_cluster = snapshot.cluster;
            self.status.pending_revision = None;
        } else if self.status.revision != Some(snapshot.revision) {
            self.status.pending_revision = Some(snapshot.revision);
        }
    }

    /// Records that the store's state at `revision` holds a record that
    /// cannot be read (`None`: its state reads again). The live policy
    /// stays; the condition lasts until a readable state arrives.
    pub fn store_refused(&mut self, invalid: Option<(u64, String)>) {
        match invalid {
            Some((revision, why)) => {
                let known = self
                    .status
                    .store_refused
                    .as_ref()
                    .is_some_and(|notice| notice.message == why);
                if !known {
                    error!(revision, "{why}");
                    self.metrics.store_state_refused();
                    self.status.store_refused = Some(Notice::now(why));
                }
                if self.status.revision != Some(revision) {
                    self.status.pending_revision = Some(revision);
                }
            }
            None => {
                if self.status.store_refused.take().is_some() {
                    info!("the store's state reads again");
                }
            }
        }
        self.write_status();
    }

    /// Records whether another live agent claims this node's name
    /// (`Some`: who and what it means).
    pub fn node_conflict(&mut self, conflict: Option<String>) {
        let same = self.status.node_conflict.as_ref().map(|n| &n.message) == conflict.as_ref();
        if same {
            return;
        }
        match conflict {
            Some(why) => {
                error!("{why}");
                self.status.node_conflict = Some(Notice::now(why));
            }
            None => self.status.node_conflict = None,
        }
        self.write_status();
    }

    /// With a fleet's store: when no endpoint is placed on this node, the
    /// interfaces here that the store names as other nodes' vNICs (a
    /// mistyped or missing node name leaves them unprotected).
    fn check_node_identity(&mut self) {
        let placed = match (&self.status.node, &self.snapshot) {
            (Some(node), Some(snapshot)) => Some(
                snapshot
                    .tenancy
                    .endpoints
                    .values()
                    .filter(|e| e.interface.is_some() && e.node.as_deref() == Some(node))
                    .count(),
            ),
            _ => None,
        };
        let foreign = match (&self.status.node, &self.snapshot) {
            (Some(node), Some(snapshot)) if placed == Some(0) => {
                foreign_vnics(&snapshot.tenancy, node, &all_interface_names())
            }
            _ => Vec::new(),
        };
        if placed != self.status.placed_endpoints {
            self.status.placed_endpoints = placed;
            self.write_status();
        }
        if foreign != self.status.foreign_vnics {
            if !foreign.is_empty() {
                error!(
                    "no endpoint is placed on this node, but interfaces here carry other \
                     nodes' vNIC names: {}",
                    foreign.join("; ")
                );
            }
            self.status.foreign_vnics = foreign;
            self.write_status();
        }
    }

    /// Records whether the store answered (`Err`: why not); an outage is
    /// dated from its first failure.
    pub fn store_contact(&mut self, contact: Result<(), String>) {
        match contact {
            Ok(()) => {
                if let Some(outage) = self.status.store_unreachable.take() {
                    info!(since = outage.at, "the store answers again");
                }
                self.status.store_heard_at = Some(unix_now());
            }
            Err(why) => {
                if self.status.store_unreachable.is_none() {
                    warn!("the store is unreachable; enforcement goes on unchanged: {why}");
                    self.status.store_unreachable = Some(Notice::now(why));
                }
            }
        }
        self.write_status();
    }

    /// Makes a store's `snapshot` the inputs and reloads them. A revision
    /// no newer than the one held is ignored (a resync hands over what
    /// was already seen; the API's own commit arrives before its echo).
    /// A [`Guard::Held`] snapshot replaces the one held whatever its
    /// revision (a store that was reset starts again from a low one).
    pub fn offer(&mut self, snapshot: Snapshot, cause: &str, since: Instant, guard: Guard) {
        if let Some(held) = &mut self.snapshot
            && !matches!(guard, Guard::Held(_))
        {
            if held.revision >= snapshot.revision {
                return;
            }
            // A resync, or writes beside the tenancy (work requests, node
            // reports), move the revision on without changing anything.
            if held.tenancy == snapshot.tenancy {
                let enforced_held = self.status.revision == Some(held.revision);
                held.revision = snapshot.revision;
                if enforced_held {
                    self.status.revision = Some(snapshot.revision);
                    self.write_status();
                }
                return;
            }
        }
        if matches!(guard, Guard::Held(_)) && self.live_snapshot.is_none() {
            self.live_snapshot = self
                .snapshot
                .take()
                .filter(|held| self.status.revision == Some(held.revision));
        }
        self.snapshot = Some(snapshot);
        self.reload(cause, since, guard);
    }

    /// Applies a loaded Plan, unless the unprotect guard holds it back.
    fn settle(
        &mut self,
        loaded: LoadedPlan,
        since: Instant,
        guard: &Guard,
    ) -> anyhow::Result<Outcome> {
        match guard {
            Guard::Held(why) => return Ok(Outcome::HeldBack(why.clone())),
            Guard::Unprotect if !self.config.allow_unprotect => {
                let protected = protected_endpoints(&self.datapath)?;
                if let Some(why) = self.would_unprotect(&loaded.plan, &protected) {
                    return Ok(Outcome::HeldBack(why));
                }
            }
            Guard::Unprotect | Guard::Confirmed => {}
        }
        self.apply(loaded, since).map(Outcome::Applied)
    }

    /// Why `plan` must wait for the operator: it would stop protecting
    /// more than half of the endpoints protected here now (whose vNICs are
    /// still here), as an emptied or truncated inventory would.
    fn would_unprotect(&self, plan: &Plan, protected_now: &BTreeSet<u32>) -> Option<String> {
        let interfaces = present_interfaces(plan);
        let still: BTreeSet<u32> = plan
            .endpoints
            .iter()
            .filter(|endpoint| endpoint.protected && endpoint.mode == Mode::Enforce)
            .filter_map(|endpoint| interfaces.get(endpoint.interface.as_deref()?).copied())
            .collect();
        let present: BTreeSet<u32> = all_interface_indexes();
        let now: Vec<u32> = protected_now
            .iter()
            .copied()
            .filter(|ifindex| present.contains(ifindex))
            .collect();
        let lost: Vec<u32> = now
            .iter()
            .copied()
            .filter(|ifindex| !still.contains(ifindex))
            .collect();
        if lost.is_empty() || lost.len() * 2 <= now.len() {
            return None;
        }
        let names: Vec<String> = lost
            .iter()
            .map(|&ifindex| match self.status.endpoint_by_ifindex(ifindex) {
                Some(endpoint) => format!("{} ({})", endpoint.name, endpoint.interface),
                None => format!("ifindex {ifindex}"),
            })
            .collect();
        Some(format!(
            "held back: the new inputs would stop protecting {} of the {} endpoints protected \
             here ({}), as an emptied or truncated inventory does. The live policy stays. If \
             this is meant, confirm it with {}; else fix the inputs",
            lost.len(),
            now.len(),
            names.join(", "),
            self.how_to_confirm()
        ))
    }

    /// How the operator confirms what is held back here.
    pub fn how_to_confirm(&self) -> String {
        match (&self.config.inputs, &self.snapshot) {
            (InputSource::Store { .. }, Some(snapshot)) => format!(
                "`zpr fleet confirm {}` on this host (or SIGHUP: `kill -HUP {}`), or by \
                 making the change through the API with --allow-unprotect",
                snapshot.revision,
                std::process::id()
            ),
            _ => format!("SIGHUP (`kill -HUP {}`)", std::process::id()),
        }
    }

    /// Logs a reload's outcome and keeps it in the status file.
    fn record(&mut self, cause: &str, applied: anyhow::Result<Outcome>) {
        self.status.reloads += 1;
        match applied {
            Ok(Outcome::HeldBack(why)) => {
                self.metrics.reloaded(ReloadOutcome::HeldBack);
                error!(cause, generation = self.status.generation, "{why}");
                self.status.last_error = None;
                self.status.held_back = Some(Notice::now(why));
            }
            Ok(Outcome::Applied(stages)) => {
                self.metrics.reloaded(ReloadOutcome::Applied);
                // The status's reload_ms: from the change seen to generation live.
                let seconds = self.status.reload_ms.unwrap_or_default() / 1000.0;
                self.metrics.applied_in(seconds);
                self.status.last_error = None;
                self.status.held_back = None;
                info!(
                    cause,
                    generation = self.status.generation,
                    settle_ms = stages.settle_ms(),
                    check_ms = stages.check_ms(),
                    write_ms = stages.write_ms(),
                    statements = self.status.statements,
                    attached = self
                        .status
                        .endpoints
                        .iter()
                        .filter(|e| e.ifindex.is_some())
                        .count(),
                    reload_ms = format!("{:.1}", self.status.reload_ms.unwrap_or_default()),
                    "policy applied"
                );
            }
            Err(err) => {
                self.metrics.reloaded(ReloadOutcome::Failed);
                let message = summarised(format!("{err:#}"));
                error!(
                    cause,
                    generation = self.status.generation,
                    "reload failed, the live policy stays:\n{message}"
                );
                self.status.last_error = Some(Notice::now(message));
            }
        }
        self.write_status();
    }

    fn write_status(&self) {
        self.metrics.publish(&self.status);
        if let Err(err) = self.status.write(&self.config.run_dir) {
            warn!("cannot write the status file: {err:#}");
        }
    }

    /// Writes a loaded Plan into the maps and attaches it where it applies.
    fn apply(&mut self, loaded: LoadedPlan, since: Instant) -> anyhow::Result<ReloadStages> {
        let LoadedPlan {
            plan,
            policies,
            started,
            checked,
        } = loaded;
        let interfaces = present_interfaces(&plan);
        let registered = registered_interfaces(&plan);
        // Usage is counted beside enforcement: failing to read it costs
        // the counts of that slot, never the write.
        let counted_from = next_slot(&self.datapath).and_then(|slot| {
            let baseline = self.usage.before_write(&self.datapath, slot, &plan)?;
            Ok((slot, baseline))
        });
        let written = write_plan(&mut self.datapath, &plan, &interfaces)?;
        if written.outside_change {
            self.note_repair(
                "the idle Plan slot did not hold what this agent wrote there: another process \
                 changed zpr's maps; the slot was rewritten whole",
            );
        }
        let stages = ReloadStages {
            since,
            started,
            checked,
            written: Instant::now(),
        };
        // A vNIC leaving quarantine for its endpoint's policy is switched
        // here, on its same links, once the Plan that names it is live.
        for interface in interfaces.keys() {
            self.datapath
                .attach_pinned(
                    &self.pins,
                    interface,
                    self.config.hook,
                    VnicPrograms::Policy,
                )
                .with_context(|| format!("attaching to {interface}"))?;
        }
        self.follow_quarantine(&registered);
        for interface in pinned_interfaces(&self.pins) {
            if !interfaces.contains_key(&interface) && !self.quarantined.contains_key(&interface) {
                self.datapath.detach(&self.pins, &interface)?;
                info!(interface, "detached: no longer a local endpoint");
            }
        }
        // After the attachments: what follows costs no packet its verdict.
        match counted_from {
            Ok((slot, baseline)) => self.usage.written(
                slot,
                written.generation,
                &plan,
                policies
                    .as_ref()
                    .map(|(policies, ids)| (policies.as_slice(), ids)),
                baseline,
            ),
            Err(err) => warn!("statement usage not counted for this generation: {err:#}"),
        }
        self.status.generation = written.generation;
        self.status.applied_at = Some(unix_now());
        self.status.reload_ms = Some(since.elapsed().as_secs_f64() * 1000.0);
        self.status.statements = plan.statements.len();
        self.status.content_hash = format!("{:016x}", plan.content_hash);
        self.status.endpoints = local_endpoints(&plan, &interfaces, &self.datapath);
        // The agent's Plans hold its own endpoints' tables only
        // (`Tables::Local`): every entry is one its kernel may name.
        self.status.names = Arc::new(PlanNames::of(&plan));
        self.live = Some((plan, interfaces));
        Ok(stages)
    }

    /// Holds the kernel to the live Plan: puts back pins someone removed
    /// and attaches again where the kernel no longer runs zpr on a local
    /// endpoint's vNIC. What it finds is logged and counted in the status.
    pub fn keep_enforcing(&mut self) {
        self.unattached = None;
        match self.ownership.keep(&self.pins) {
            Ok(false) => {}
            Ok(true) => self.note_repair(&format!(
                "{} was removed: made it again and owned it",
                self.pins.root().display()
            )),
            Err(err) => self.note_repair(&format!(
                "{} was removed, and owning it again failed: {err:#}",
                self.pins.root().display()
            )),
        }
        match self.datapath.restore_pins(&self.pins) {
            Ok(restored) => {
                for path in restored {
                    self.note_repair(&format!("restored the pin {}", path.display()));
                }
            }
            Err(err) => self.note_repair(&format!("cannot restore zpr's pins: {err:#}")),
        }
        if self.live.is_none() && self.quarantined.is_empty() {
            return;
        }
        if self.live.is_some() {
            self.checks_since_audit += 1;
            if self.checks_since_audit >= AUDIT_EVERY {
                self.checks_since_audit = 0;
                self.audit_live_plan();
            }
            // Off the path of the next change: after the first apply, that
            // change would otherwise write every entry of the idle slot.
            // Not within a second of a switch: a packet that read the old
            // generation may still be reading the slot it left.
            let settled = self
                .status
                .applied_at
                .is_some_and(|applied| unix_now() >= applied + 2);
            if settled && let Err(err) = prime_idle_slot(&mut self.datapath) {
                warn!("cannot prepare the idle slot for the next reload: {err:#}");
            }
        }
        let attached = match kernel_attachments(&self.pins) {
            Ok(attached) => attached,
            Err(err) => {
                self.note_repair(&format!("cannot list the kernel's attachments: {err:#}"));
                return;
            }
        };
        let hook = self.config.hook;
        let policy = self.live.iter().flat_map(|(_, interfaces)| {
            unattached(interfaces, &attached, hook)
                .into_iter()
                .map(|interface| (interface, VnicPrograms::Policy))
        });
        let quarantine = unattached(&self.quarantined, &attached, hook)
            .into_iter()
            .map(|interface| (interface, VnicPrograms::Quarantine));
        let missing: Vec<(String, VnicPrograms)> = policy.chain(quarantine).collect();
        let mut still = Vec::new();
        for (interface, programs) in missing {
            let result = self
                .datapath
                .attach_pinned(&self.pins, &interface, hook, programs);
            match result {
                Ok(()) => self.note_repair(&format!(
                    "zpr was no longer attached to {interface} in the kernel: attached again"
                )),
                Err(err) => {
                    self.note_repair(&format!(
                        "zpr is not attached to {interface} and attaching again failed: {err:#}"
                    ));
                    still.push(interface);
                }
            }
        }
        self.unattached = Some(still);
    }

    /// A line for the service manager: what is enforced, or why not.
    /// `ready` when a generation is live and the last kernel check found
    /// zpr on every local endpoint's vNIC that exists.
    pub fn service_state(&self) -> (bool, String) {
        let Some((_, interfaces)) = &self.live else {
            return (false, "no policy in force yet".to_owned());
        };
        // From the last kernel check (once a second), not a second listing.
        let Some(missing) = &self.unattached else {
            return (
                false,
                "the kernel's attachments are not checked yet".to_owned(),
            );
        };
        if !missing.is_empty() {
            return (false, format!("not attached to {}", missing.join(", ")));
        }
        let mut line = format!(
            "enforcing generation {} on {} vNICs",
            self.status.generation,
            interfaces.len()
        );
        if !self.quarantined.is_empty() {
            line.push_str(&format!("; {} quarantined", self.quarantined.len()));
        }
        if let Some(held) = &self.status.held_back {
            line.push_str(&format!("; input changes {}", held.message));
        } else if self.status.last_error.is_some() {
            line.push_str("; the last reload failed (see zpr status)");
        }
        (true, line)
    }

    /// A local endpoint's vNIC came or went: the live Plan is written
    /// again for the vNICs there are now. Only the live Plan: inputs held
    /// back stay held back until confirmed. Without one, unregistered
    /// vNICs are still quarantined.
    pub fn follow_interfaces(&mut self, cause: &str) {
        let Some((plan, _)) = &self.live else {
            info!(cause, "following the vNICs without a live policy");
            let registered = self.registered_without_plan();
            self.follow_quarantine(&registered);
            self.write_status();
            return;
        };
        let now = Instant::now();
        let applied = self
            .apply(LoadedPlan::again(plan.clone(), now), now)
            .map(Outcome::Applied);
        let held_back = self.status.held_back.take();
        let last_error = self.status.last_error.take();
        let failed = applied.is_err();
        self.record(cause, applied);
        // What was held back or failed before still is.
        self.status.held_back = held_back;
        if !failed {
            self.status.last_error = last_error;
        }
        self.check_node_identity();
        self.write_status();
    }

    /// Reads the live Plan's maps back: when another process switched the
    /// generation or changed the live entries, the live Plan (not the
    /// inputs: a change held back stays held back) is written again and
    /// made live. The changed slot is rewritten whole at the next reload,
    /// as `write_plan` finds it changed.
    fn audit_live_plan(&mut self) {
        match live_plan_intact(&self.datapath, self.status.generation) {
            Ok(true) => {}
            Ok(false) => {
                self.note_repair(
                    "the live policy in the kernel is not what this agent wrote (another \
                     process switched the generation or changed its entries): writing it again",
                );
                let Some((plan, interfaces)) = self.live.take() else {
                    return;
                };
                let now = Instant::now();
                match self.apply(LoadedPlan::again(plan.clone(), now), now) {
                    Ok(_) => info!(
                        generation = self.status.generation,
                        "the live policy is written again"
                    ),
                    Err(err) => {
                        // Still the Plan to hold the kernel to: the next
                        // read-back tries again.
                        self.live = Some((plan, interfaces));
                        self.note_repair(&format!("writing the live policy again failed: {err:#}"))
                    }
                }
                self.write_status();
            }
            Err(err) => self.note_repair(&format!("cannot read the live policy back: {err:#}")),
        }
    }

    /// Something outside the agent undid part of enforcement, and the
    /// agent mended it (or could not): logged loudly and counted.
    fn note_repair(&mut self, what: &str) {
        warn!("{what}");
        self.status.repairs += 1;
        self.status.last_repair = Some(Notice::now(what.to_owned()));
        self.write_status();
    }

    /// True when a local endpoint's vNIC appeared, vanished or was created
    /// again (new ifindex) since the live Plan was written, or a vNIC
    /// entered or left quarantine.
    pub fn interfaces_changed(&self) -> bool {
        let endpoints_moved = self
            .live
            .as_ref()
            .is_some_and(|(plan, written)| present_interfaces(plan) != *written);
        // Asked on every link event and once a second: nothing more is
        // read when quarantine is off.
        let quarantine_moved = self.config.quarantine.is_on() && {
            let registered = match &self.live {
                Some((plan, _)) => registered_interfaces(plan),
                None => self.registered_without_plan(),
            };
            self.unregistered_vnics(&registered) != self.quarantined
        };
        endpoints_moved || quarantine_moved
    }

    /// The vNICs to quarantine now: those `--quarantine` matches, present
    /// here, that are not `registered`.
    fn unregistered_vnics(&self, registered: &BTreeSet<String>) -> InterfaceIndexes {
        if !self.config.quarantine.is_on() {
            return InterfaceIndexes::new();
        }
        self.config
            .quarantine
            .unregistered(&all_interfaces(), registered)
    }

    /// With no live Plan (it could not be read at the start: a store
    /// unreachable, inputs invalid), the vNICs pinned links guard under
    /// an earlier agent's Plan count as registered: they stay as they
    /// are, and only new vNICs are quarantined.
    fn registered_without_plan(&self) -> BTreeSet<String> {
        pinned_interfaces(&self.pins)
            .into_iter()
            .filter(|interface| !self.quarantined.contains_key(interface))
            .collect()
    }

    /// Puts every unregistered vNIC `--quarantine` matches under the
    /// deny-all programs (a vNIC whose endpoint went is switched on its
    /// same links), and takes them off a vNIC that left quarantine
    /// without being registered (renamed, or no longer matched). A vNIC
    /// the programs could not be attached to stays listed: the next
    /// kernel check attaches again, and `zpr status` says it is not.
    fn follow_quarantine(&mut self, registered: &BTreeSet<String>) {
        let quarantined = self.unregistered_vnics(registered);
        for interface in quarantined.keys() {
            let attached = self.datapath.attach_pinned(
                &self.pins,
                interface,
                self.config.hook,
                VnicPrograms::Quarantine,
            );
            match attached {
                Ok(()) if !self.quarantined.contains_key(interface) => {
                    info!(
                        interface,
                        "quarantined: no endpoint is registered for it here"
                    )
                }
                Ok(()) => {}
                Err(err) => error!(interface, "cannot quarantine: {err:#}"),
            }
        }
        let released: Vec<String> = self
            .quarantined
            .keys()
            .filter(|interface| {
                !quarantined.contains_key(*interface) && !registered.contains(*interface)
            })
            .cloned()
            .collect();
        for interface in released {
            match self.datapath.detach(&self.pins, &interface) {
                Ok(()) => info!(interface, "out of quarantine: no longer matched or present"),
                Err(err) => error!(interface, "cannot detach the quarantine: {err:#}"),
            }
        }
        self.status.quarantined = quarantined
            .iter()
            .map(|(interface, &ifindex)| QuarantinedVnic {
                interface: interface.clone(),
                ifindex,
            })
            .collect();
        self.quarantined = quarantined;
    }
}

/// The interfaces the Plan's endpoints are registered for on this node
/// (present here or not).
fn registered_interfaces(plan: &Plan) -> BTreeSet<String> {
    plan.endpoints
        .iter()
        .filter_map(|endpoint| endpoint.interface.clone())
        .collect()
}

/// The local vNICs where the kernel does not run both of zpr's programs.
fn unattached(
    interfaces: &InterfaceIndexes,
    attached: &KernelAttachments,
    hook: FromWorkloadHook,
) -> Vec<String> {
    let ends = LinkEnd::both(hook);
    interfaces
        .iter()
        .filter(|(_, ifindex)| {
            let here = attached.get(ifindex);
            !ends
                .iter()
                .all(|end| here.is_some_and(|set| set.contains(end)))
        })
        .map(|(interface, _)| interface.clone())
        .collect()
}

/// The file in the run directory where `zpr fleet confirm` names the
/// revision it confirms before it sends SIGHUP.
pub const CONFIRMED_REVISION: &str = "confirmed-revision";

/// Every how many kernel checks (one a second) the live Plan's maps are
/// read back whole: tampering is undone within ten seconds, at the cost of
/// one read of the live slot (about 20 ms at 10,000 statements).
const AUDIT_EVERY: u32 = 10;

/// Whether a reload may be held back for the operator to confirm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guard {
    /// Changes nobody confirmed (input files or the store changed, the
    /// agent started): held back when they would unprotect most of this
    /// host.
    Unprotect,
    /// The operator asked for exactly this (SIGHUP, `zpr fleet confirm`,
    /// a confirmed API change), or the Plan did not change (a vNIC came
    /// or went).
    Confirmed,
    /// Held back whatever it does, until confirmed: why (a store that was
    /// reset or restored).
    Held(String),
}

/// What a reload did.
enum Outcome {
    Applied(ReloadStages),
    /// The unprotect guard held it back; why.
    HeldBack(String),
}

/// Every interface in this network namespace, by index and name (asked
/// of the kernel: /sys/class/net shows the namespace sysfs was mounted in).
fn all_interfaces() -> Vec<(u32, String)> {
    let mut interfaces = Vec::new();
    // SAFETY: if_nameindex returns an array ending with a zero entry (or
    // null), freed below with if_freenameindex; each name is a C string.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return interfaces;
        }
        let mut entry = list;
        while (*entry).if_index != 0 {
            let name = std::ffi::CStr::from_ptr((*entry).if_name);
            interfaces.push(((*entry).if_index, name.to_string_lossy().into_owned()));
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
    }
    interfaces
}

fn all_interface_indexes() -> BTreeSet<u32> {
    all_interfaces()
        .into_iter()
        .map(|(index, _)| index)
        .collect()
}

fn all_interface_names() -> BTreeSet<String> {
    all_interfaces().into_iter().map(|(_, name)| name).collect()
}

/// Interfaces in `present` that `tenancy` names as vNICs of endpoints
/// placed on nodes other than `node`: `vnet0 (app-1 on host-b, ...)`.
fn foreign_vnics(
    tenancy: &crate::store::Tenancy,
    node: &str,
    present: &BTreeSet<String>,
) -> Vec<String> {
    let mut named: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for endpoint in tenancy.endpoints.values() {
        if let (Some(interface), Some(placed)) = (&endpoint.interface, &endpoint.node)
            && placed != node
            && present.contains(interface)
        {
            named
                .entry(interface)
                .or_default()
                .push(format!("{} on {placed}", endpoint.name));
        }
    }
    named
        .into_iter()
        .map(|(interface, endpoints)| format!("{interface} ({})", endpoints.join(", ")))
        .collect()
}

/// A Plan compiled from the inputs, with when each stage ended.
struct LoadedPlan {
    plan: Plan,
    /// The policies it was compiled from, when they were read anew (the
    /// statement usage finds moved statements by their text), with their
    /// API ids when they come from a store (`zpr usage` names them).
    policies: Option<(Vec<Policy>, PolicyIds)>,
    started: Instant,
    /// Read, checked and compiled (the check compiles: the Plan must fit).
    checked: Instant,
}

impl LoadedPlan {
    /// The live Plan, to be written again (nothing read or checked).
    fn again(plan: Plan, now: Instant) -> LoadedPlan {
        LoadedPlan {
            plan,
            policies: None,
            started: now,
            checked: now,
        }
    }
}

/// Reads, checks and compiles the inputs (files or a store's snapshot).
fn load_plan(
    inputs: &InputSource,
    snapshot: Option<&Snapshot>,
    checker: &mut SnapshotChecker,
) -> anyhow::Result<LoadedPlan> {
    let started = Instant::now();
    let (loaded, ids) = match (inputs, snapshot) {
        (
            InputSource::Files {
                inventory,
                policies,
            },
            _,
        ) => (
            checker.checker.read(Some(inventory), policies)?,
            PolicyIds::new(),
        ),
        (InputSource::Store { node, .. }, Some(snapshot)) => (
            checker.check(&snapshot.tenancy, node.as_deref())?,
            snapshot.tenancy.policy_ids(),
        ),
        (InputSource::Store { location, .. }, None) => {
            bail!("nothing has been read from the store {location} yet")
        }
    };
    let Some(checked_inputs) = loaded.inputs else {
        bail!("{}", loaded.report.trim_end());
    };
    if !loaded.report.is_empty() {
        warn!("{}", loaded.report.trim_end());
    }
    Ok(LoadedPlan {
        policies: Some((checked_inputs.policies, ids)),
        plan: checked_inputs.plan,
        started,
        checked: Instant::now(),
    })
}

/// Why the agent will not run on a bpffs only it sees, and what to do.
fn private_bpffs_refusal(config: &AgentConfig) -> String {
    let rerun = match current_netns_name() {
        Some(netns) => format!("`nsenter --net=/run/netns/{netns} zpr ...`"),
        None => "`nsenter --net=/run/netns/NAME zpr ...`".to_owned(),
    };
    format!(
        "refusing to start: the pins under {} would not outlive this agent. The bpffs there \
         is mounted only in this process's mount namespace (`ip netns exec` does this: it \
         gives the command a private /sys), so if the agent stopped or crashed, every \
         program would detach and everything tagged would be unprotected. Enter only the \
         network namespace instead: {rerun}; or pass --bpffs a directory on a bpffs the \
         host shares. --allow-private-bpffs runs anyway (throwaway set-ups only).",
        config.bpffs.join("zpr").display()
    )
}

/// Where a reload's time went, for the log: waiting for file events to
/// settle, reading, checking and compiling the inputs, writing the maps
/// (the last write switches the generation).
struct ReloadStages {
    since: Instant,
    started: Instant,
    checked: Instant,
    written: Instant,
}

impl ReloadStages {
    fn settle_ms(&self) -> String {
        milliseconds(self.started - self.since)
    }
    fn check_ms(&self) -> String {
        milliseconds(self.checked - self.started)
    }
    fn write_ms(&self) -> String {
        milliseconds(self.written - self.checked)
    }
}

fn milliseconds(duration: std::time::Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

/// Local endpoints whose interface exists on this host, by ifindex.
fn present_interfaces(plan: &Plan) -> InterfaceIndexes {
    plan.endpoints
        .iter()
        .filter_map(|endpoint| endpoint.interface.as_deref())
        .filter_map(|interface| Some((interface.to_owned(), interface_index(interface)?)))
        .collect()
}

fn interface_index(interface: &str) -> Option<u32> {
    let name = CString::new(interface).ok()?;
    // SAFETY: a valid C string; if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

fn local_endpoints(
    plan: &Plan,
    interfaces: &InterfaceIndexes,
    datapath: &Datapath,
) -> Vec<AttachedEndpoint> {
    plan.endpoints
        .iter()
        .filter_map(|endpoint| {
            let interface = endpoint.interface.clone()?;
            Some(AttachedEndpoint {
                name: endpoint.name.clone(),
                ifindex: interfaces.get(&interface).copied(),
                interface,
                mode: match endpoint.mode {
                    Mode::Enforce => "enforce",
                    Mode::Audit => "audit",
                }
                .to_owned(),
                protected: endpoint.protected,
                counter_row: datapath.counter_row(&endpoint.name),
            })
        })
        .collect()
}
