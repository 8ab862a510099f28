//! What a BPF_PROG_TEST_RUN measurement runs frames through: zpr's own
//! programs or the reference programs, behind one interface.

use anyhow::ensure;
use zpr_agent::datapath::{Datapath, Hook, RunResult, flush_flows, read_counters, write_plan};
use zpr_common::Direction;

use crate::{
    generated::{Generated, test_interfaces},
    paths::{self, Path},
    reference::{Program, Reference},
};

pub trait Subject {
    /// Runs `frame` through this subject's program for `path`, `repeat` times.
    fn run(&mut self, path: Path, frame: &[u8], repeat: u32) -> anyhow::Result<RunResult>;
    /// Tracks the flow of `frame`, an allowed one, so its packets hit conntrack.
    fn track(&mut self, frame: &[u8]) -> anyhow::Result<()>;
    fn flush_flows(&mut self) -> anyhow::Result<()>;
    /// Packets counted under `path`'s reason so far; `None` when the subject
    /// keeps no counters.
    fn counted(&self, path: Path) -> anyhow::Result<Option<u64>>;
}

/// zpr's programs at the endpoint under test (XDP, from the workload). The
/// untagged path needs its own datapath: test runs all arrive on one
/// interface, and there it holds the untagged endpoint.
pub struct Zpr {
    enforcing: Datapath,
    untagged: Datapath,
}

impl Zpr {
    pub fn load(generated: &Generated) -> anyhow::Result<Zpr> {
        let mut enforcing = Datapath::load()?;
        write_plan(&mut enforcing, &generated.plan, &test_interfaces())?;
        let mut untagged = Datapath::load()?;
        write_plan(&mut untagged, &generated.untagged_plan, &test_interfaces())?;
        Ok(Zpr {
            enforcing,
            untagged,
        })
    }

    fn datapath(&self, path: Path) -> &Datapath {
        match path {
            Path::Untagged => &self.untagged,
            _ => &self.enforcing,
        }
    }
}

impl Subject for Zpr {
    fn run(&mut self, path: Path, frame: &[u8], repeat: u32) -> anyhow::Result<RunResult> {
        let datapath = match path {
            Path::Untagged => &mut self.untagged,
            _ => &mut self.enforcing,
        };
        datapath.test_run(Hook::FromWorkloadXdp, frame, repeat)
    }

    /// The packet, then the other side's answer: seen both ways, the flow
    /// is established (as a real one is after its first exchange).
    fn track(&mut self, frame: &[u8]) -> anyhow::Result<()> {
        let result = self.enforcing.test_run(Hook::FromWorkloadXdp, frame, 1)?;
        ensure!(
            result.passed,
            "zpr dropped the first packet of an allowed flow"
        );
        let answer = self
            .enforcing
            .test_run(Hook::ToWorkloadTc, &paths::reply(frame), 1)?;
        ensure!(answer.passed, "zpr dropped the answer of an allowed flow");
        Ok(())
    }

    fn flush_flows(&mut self) -> anyhow::Result<()> {
        flush_flows(&mut self.enforcing).map(drop)
    }

    fn counted(&self, path: Path) -> anyhow::Result<Option<u64>> {
        let counters = read_counters(self.datapath(path))?;
        Ok(Some(
            counters.get(Direction::FromWorkload, path.reason()).packets,
        ))
    }
}

impl Subject for Reference {
    fn run(&mut self, path: Path, frame: &[u8], repeat: u32) -> anyhow::Result<RunResult> {
        Reference::run(self, Program::for_path(path), frame, repeat)
    }

    fn track(&mut self, frame: &[u8]) -> anyhow::Result<()> {
        let result = Reference::run(self, Program::Policy, frame, 1)?;
        ensure!(result.passed, "the reference denied an allowed flow");
        Ok(())
    }

    fn flush_flows(&mut self) -> anyhow::Result<()> {
        Reference::flush_flows(self)
    }

    fn counted(&self, _path: Path) -> anyhow::Result<Option<u64>> {
        Ok(None)
    }
}
