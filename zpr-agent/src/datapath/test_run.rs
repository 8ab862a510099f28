//! Crafted frames through the loaded programs (BPF_PROG_TEST_RUN): for
//! differential tests against the Plan and for per-packet benchmarks.

use std::time::Duration;

use anyhow::Context as _;
use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions, Xdp};
use zpr_common::maps;

use super::{Datapath, object::program};

/// Which program a frame is run through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    FromWorkloadXdp,
    FromWorkloadTc,
    ToWorkloadTc,
}

/// What the program returned, as pass/drop, and how long a run took.
#[derive(Clone, Copy, Debug)]
pub struct RunResult {
    pub passed: bool,
    pub duration: Duration,
}

/// The kernel runs test frames as if they arrived on the loopback device:
/// configure the endpoint under test at this ifindex.
pub const TEST_RUN_IFINDEX: u32 = 1;

impl Datapath {
    /// Runs `frame` (Ethernet onward) through `hook`, `repeat` times.
    pub fn test_run(&mut self, hook: Hook, frame: &[u8], repeat: u32) -> anyhow::Result<RunResult> {
        let mut options = TestRunOptions::new();
        options.data_in = Some(frame);
        options.repeat = repeat;
        let name = match hook {
            Hook::FromWorkloadXdp => maps::PROG_FROM_WORKLOAD_XDP,
            Hook::FromWorkloadTc => maps::PROG_FROM_WORKLOAD_TC,
            Hook::ToWorkloadTc => maps::PROG_TO_WORKLOAD_TC,
        };
        let program = program(&mut self.ebpf, name)?;
        let result = match hook {
            Hook::FromWorkloadXdp => {
                let xdp: &mut Xdp = program.try_into()?;
                xdp.test_run(options)
            }
            Hook::FromWorkloadTc | Hook::ToWorkloadTc => {
                let tc: &mut SchedClassifier = program.try_into()?;
                tc.test_run(options)
            }
        }
        .with_context(|| format!("BPF_PROG_TEST_RUN of {name}"))?;
        let passed = match hook {
            Hook::FromWorkloadXdp => result.return_value == aya_xdp_pass(),
            _ => result.return_value == 0,
        };
        Ok(RunResult {
            passed,
            duration: result.duration,
        })
    }
}

/// XDP_PASS.
const fn aya_xdp_pass() -> u32 {
    2
}
