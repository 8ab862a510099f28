//! What `status`, `monitor` and `down` see of the agent behind a pin root,
//! and, when they see no pins, why and what to run instead.

use std::path::PathBuf;

use zpr_common::maps;

use super::agent_paths::AgentPaths;
use crate::{
    daemon::{Status, lock_holder},
    datapath::{PinLayout, PinOwner, current_netns_name, pin_owner, shares_mount_namespace},
};

pub struct AgentView {
    pub pins: PinLayout,
    /// The agent that owns the pin root, if one does.
    pub owner: Option<PinOwner>,
    /// Where the agent's status file is: the owner's run directory (which
    /// it records in the pin root), else the one given.
    pub run_dir: PathBuf,
    /// The agent holding the given run directory, if one does (it may pin
    /// elsewhere, or in a mount namespace this process does not see).
    pub run_dir_holder: Option<u32>,
}

impl AgentView {
    pub fn of(paths: &AgentPaths) -> AgentView {
        let pins = paths.pins();
        let owner = pin_owner(&pins);
        let run_dir = owner
            .as_ref()
            .and_then(|owner| owner.run_dir.clone())
            .unwrap_or_else(|| paths.run_dir.clone());
        AgentView {
            pins,
            owner,
            run_dir,
            run_dir_holder: lock_holder(&paths.run_dir),
        }
    }

    /// True when the maps are pinned where this process looks.
    pub fn pins_visible(&self) -> bool {
        self.pins.map(maps::CONFIG).exists()
    }

    /// The running agent's pid: the pin root's owner, else the run
    /// directory's.
    pub fn agent_pid(&self) -> Option<u32> {
        self.owner
            .as_ref()
            .and_then(|owner| owner.pid)
            .or(self.run_dir_holder)
    }

    /// Why nothing is pinned where this process looks, and what to do.
    pub fn why_no_pins(&self) -> String {
        let root = self.pins.root().display();
        if let Some(owner) = &self.owner {
            return format!(
                "the agent owning {root} ({}) is running, but its map pins are missing: \
                 someone removed them; the agent puts them back within a second",
                owner.describe()
            );
        }
        let Some(pid) = self.run_dir_holder else {
            return format!("zpr is not running on this host: nothing is pinned under {root}");
        };
        if !shares_mount_namespace(pid) {
            let rerun = match current_netns_name() {
                Some(netns) => format!("`nsenter --net=/run/netns/{netns} zpr ...`"),
                None => "this command outside `ip netns exec`".to_owned(),
            };
            let warnings: String = Status::read(&self.run_dir)
                .map(|status| {
                    status
                        .warnings
                        .iter()
                        .map(|warning| format!("\nthe agent warns: {warning}"))
                        .collect()
                })
                .unwrap_or_default();
            return format!(
                "an agent is running (pid {pid}, run directory {}), but its pins are not \
                 visible from this mount namespace: this command runs in another mount \
                 namespace than the agent (`ip netns exec` gives every command a private \
                 /sys, and with it a private /sys/fs/bpf). Run {rerun} instead{warnings}",
                self.run_dir.display()
            );
        }
        match Status::read(&self.run_dir) {
            Ok(status) if status.bpffs != self.pins.bpffs() => format!(
                "an agent is running (pid {pid}), but it pins under {}, not under {root}: \
                 pass --bpffs {}",
                status.bpffs.join("zpr").display(),
                status.bpffs.display()
            ),
            _ => format!(
                "an agent is running (pid {pid}, run directory {}), but nothing is pinned \
                 under {root} and it does not own that pin root",
                self.run_dir.display()
            ),
        }
    }
}
