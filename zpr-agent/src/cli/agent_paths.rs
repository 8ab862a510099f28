//! Where the agent keeps its state: shared by `run`, `status`, `monitor`
//! and `down` so they always look in the same places.

use std::path::PathBuf;

use crate::datapath::PinLayout;

#[derive(clap::Args, Debug, Clone)]
pub struct AgentPaths {
    /// bpffs mount point; zpr pins its maps and links under `<BPFFS>/zpr`.
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/bpf")]
    pub bpffs: PathBuf,
    /// The agent's lock and status file.
    #[arg(long, value_name = "DIR", default_value = "/run/zpr")]
    pub run_dir: PathBuf,
}

impl AgentPaths {
    pub fn pins(&self) -> PinLayout {
        PinLayout::new(&self.bpffs)
    }
}
