//! The agent's state and its one job: turn the current inputs into the
//! enforced Plan, or leave the live Plan in place and say why not.

use std::{collections::BTreeMap, ffi::CString, path::PathBuf, time::Instant};

use anyhow::Context as _;
use tracing::{error, info, warn};

use super::{
    AgentConfig, InputSource, StoreConfig,
    status::{AttachedEndpoint, ReloadError, Status, unix_now},
};
use crate::{
    compile::{Plan, compile},
    datapath::{
        Adoption, Datapath, InterfaceIndexes, KernelLog, PinLayout, detach_pinned, ensure_bpffs,
        pinned_interfaces, write_plan,
    },
    inputs,
    inventory::Mode,
    store::Store,
};

pub struct Agent {
    config: AgentConfig,
    /// Open when the inputs come from a store.
    store: Option<Store>,
    pins: PinLayout,
    datapath: Datapath,
    status: Status,
    /// The live Plan and the vNICs it was written for.
    live: Option<(Plan, InterfaceIndexes)>,
}

impl Agent {
    /// Loads the programs over the pinned maps (adopting what an earlier
    /// agent left), then applies the inputs.
    pub fn start(config: AgentConfig) -> anyhow::Result<Agent> {
        ensure_bpffs(&config.bpffs)?;
        let pins = PinLayout::new(&config.bpffs);
        let (datapath, adoption) = Datapath::open_pinned(&pins)?;
        let adoption = match adoption {
            Adoption::Fresh => "fresh: nothing was pinned".to_owned(),
            Adoption::Adopted { generation } => {
                format!("adopted pinned maps at generation {generation}")
            }
            Adoption::Replaced { why } => format!("replaced incompatible pinned state: {why}"),
        };
        info!(pins = %pins.root().display(), "{adoption}");
        let store = match &config.inputs {
            InputSource::Files { .. } => None,
            InputSource::Store(store_config) => Some(open_store(store_config)?),
        };
        let (inventory, policies, store_path) = match &config.inputs {
            InputSource::Files {
                inventory,
                policies,
            } => (inventory.clone(), policies.clone(), None),
            InputSource::Store(store) => (PathBuf::new(), Vec::new(), Some(store.path.clone())),
        };
        let status = Status {
            pid: std::process::id(),
            started_at: unix_now(),
            bpffs: config.bpffs.clone(),
            inventory,
            policies,
            store: store_path,
            hook: format!("{:?}", config.hook),
            adoption,
            ..Status::default()
        };
        let mut agent = Agent {
            config,
            store,
            pins,
            datapath,
            status,
            live: None,
        };
        agent.reload("start", Instant::now());
        Ok(agent)
    }

    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    pub fn store_mut(&mut self) -> Option<&mut Store> {
        self.store.as_mut()
    }

    /// What the last reload did (generation, error), as `zpr status` shows it.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Where the management API listens (agents serving a store only).
    pub fn api_socket(&self) -> anyhow::Result<PathBuf> {
        match &self.config.inputs {
            InputSource::Store(store) => Ok(store.socket.clone()),
            InputSource::Files { .. } => anyhow::bail!("an agent reading files serves no API"),
        }
    }

    pub fn kernel_log(&mut self) -> anyhow::Result<KernelLog> {
        self.datapath.kernel_log()
    }

    /// Compiles the inputs and, when they are valid, makes them the live
    /// Plan. When they are not, the live Plan stays and the error is kept
    /// for `zpr status`.
    pub fn reload(&mut self, cause: &str, since: Instant) {
        match self.try_reload(since) {
            Ok(stages) => {
                self.status.last_error = None;
                info!(
                    cause,
                    generation = self.status.generation,
                    settle_ms = stages.settle_ms(),
                    check_ms = stages.check_ms(),
                    compile_ms = stages.compile_ms(),
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
                let message = format!("{err:#}");
                error!(
                    cause,
                    generation = self.status.generation,
                    "reload failed, the live policy stays:\n{message}"
                );
                self.status.last_error = Some(ReloadError {
                    at: unix_now(),
                    message,
                });
            }
        }
        if let Err(err) = self.status.write(&self.config.run_dir) {
            warn!("cannot write the status file: {err:#}");
        }
    }

    fn try_reload(&mut self, since: Instant) -> anyhow::Result<ReloadStages> {
        let started = Instant::now();
        let loaded = match (&self.config.inputs, &self.store) {
            (
                InputSource::Files {
                    inventory,
                    policies,
                },
                _,
            ) => inputs::read(inventory, policies)?,
            (InputSource::Store(_), Some(store)) => store.load()?,
            (InputSource::Store(config), None) => {
                anyhow::bail!("the store {} is not open", config.path.display())
            }
        };
        let Some(inputs) = loaded.inputs else {
            anyhow::bail!("{}", loaded.report.trim_end());
        };
        if !loaded.report.is_empty() {
            warn!("{}", loaded.report.trim_end());
        }
        let checked = Instant::now();
        let plan = compile(&inputs.policies, &inputs.inventory);
        let compiled = Instant::now();
        let interfaces = present_interfaces(&plan);
        let generation = write_plan(&mut self.datapath, &plan, &interfaces)?;
        let stages = ReloadStages {
            since,
            started,
            checked,
            compiled,
            written: Instant::now(),
        };
        for interface in interfaces.keys() {
            self.datapath
                .attach_pinned(&self.pins, interface, self.config.hook)
                .with_context(|| format!("attaching to {interface}"))?;
        }
        for interface in pinned_interfaces(&self.pins) {
            if !interfaces.contains_key(&interface) {
                detach_pinned(&self.pins, &interface)?;
                info!(interface, "detached: no longer a local endpoint");
            }
        }
        self.status.generation = generation;
        self.status.applied_at = Some(unix_now());
        self.status.reload_ms = Some(since.elapsed().as_secs_f64() * 1000.0);
        self.status.statements = plan.statements.len();
        self.status.content_hash = format!("{:016x}", plan.content_hash);
        self.status.endpoints = local_endpoints(&plan, &interfaces);
        self.status.rules = plan
            .policy
            .iter()
            .map(|entry| {
                entry
                    .value
                    .statements
                    .iter()
                    .map(|&index| plan.statements[index as usize].id.to_string())
                    .collect()
            })
            .collect();
        self.status.identities = identity_names(&plan);
        self.live = Some((plan, interfaces));
        Ok(stages)
    }

    /// True when a local endpoint's vNIC appeared, vanished or was created
    /// again (new ifindex) since the live Plan was written.
    pub fn interfaces_changed(&self) -> bool {
        self.live
            .as_ref()
            .is_some_and(|(plan, written)| present_interfaces(plan) != *written)
    }
}

/// Where a reload's time went, for the log: waiting for file events to
/// settle, reading and checking the inputs, compiling, writing the maps
/// (the last write switches the generation).
struct ReloadStages {
    since: Instant,
    started: Instant,
    checked: Instant,
    compiled: Instant,
    written: Instant,
}

impl ReloadStages {
    fn settle_ms(&self) -> String {
        milliseconds(self.started - self.since)
    }
    fn check_ms(&self) -> String {
        milliseconds(self.checked - self.started)
    }
    fn compile_ms(&self) -> String {
        milliseconds(self.compiled - self.checked)
    }
    fn write_ms(&self) -> String {
        milliseconds(self.written - self.compiled)
    }
}

fn milliseconds(duration: std::time::Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

/// Opens the store, importing the seed inventory into an empty one.
fn open_store(config: &StoreConfig) -> anyhow::Result<Store> {
    let mut store = Store::open(&config.path)?;
    if let Some(seed) = &config.seed_inventory {
        if store.seed(seed)? {
            info!(inventory = %seed.display(), "imported into the empty store");
        } else {
            info!(
                inventory = %seed.display(),
                "the store already holds endpoints: the seed inventory is not imported again"
            );
        }
    }
    Ok(store)
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

fn local_endpoints(plan: &Plan, interfaces: &InterfaceIndexes) -> Vec<AttachedEndpoint> {
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
            })
        })
        .collect()
}

/// UID -> the endpoints (or prefixes) it stands for.
fn identity_names(plan: &Plan) -> BTreeMap<u32, String> {
    plan.identities
        .iter()
        .map(|identity| {
            let mut endpoints: Vec<&str> = identity
                .members
                .iter()
                .map(|m| m.endpoint.as_str())
                .collect();
            endpoints.dedup();
            let name = if endpoints.is_empty() {
                identity
                    .prefixes
                    .iter()
                    .map(crate::lang::address::format_prefix)
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                endpoints.join(",")
            };
            (identity.uid, name)
        })
        .collect()
}
