//! Per-packet cost (BPF_PROG_TEST_RUN): zpr's program on each path, over
//! the minimal program for that path, in the same round.

use crate::{
    micro::{Figure as Key, Mode, Samples, Who},
    paths::Path,
    report::{Bound, Figure, Section, Target, Unit},
};

/// The policy size the per-packet comparison is made at (scaling covers
/// the others).
pub const STATEMENTS: usize = 1_000;
const LIMIT: f64 = 1.3;

pub fn section(samples: &Samples, repeat: u32, rounds: usize) -> (Section, Vec<Target>) {
    let mut figures = vec![Figure::new(
        "harness alone (no-op program)",
        Unit::NanosPerPacket,
        samples.harness.clone(),
    )];
    let mut targets = Vec::new();
    for mode in [Mode::Warm, Mode::Spread] {
        for path in Path::ALL {
            let key = |who| Key {
                statements: STATEMENTS,
                path,
                who,
                mode,
            };
            let zpr = samples.get(key(Who::Zpr));
            let minimal = samples.get(key(Who::Minimal));
            let zpr_figure = Figure::new(
                format!("zpr, {}, {}", path.name(), mode.name()),
                Unit::NanosPerPacket,
                zpr.to_vec(),
            )
            .over("minimal", minimal);
            if mode == Mode::Warm {
                targets.push(Target::check(
                    format!("zpr / minimal ≤ {LIMIT}, {}", path.name()),
                    Bound::AtMost(LIMIT),
                    zpr_figure.ratio_median(),
                ));
            }
            figures.push(zpr_figure);
            figures.push(
                Figure::new(
                    format!("minimal, {}, {}", path.name(), mode.name()),
                    Unit::NanosPerPacket,
                    minimal.to_vec(),
                )
                .over("harness", &samples.harness),
            );
        }
    }
    let method = vec![
        format!(
            "zpr's XDP program (from the workload) and the reference programs the bench \
             builds (bench/ebpf) run crafted IPv4 TCP frames through BPF_PROG_TEST_RUN, at a \
             generated policy set of {STATEMENTS} statements loaded into both. Warm: one frame \
             repeated {repeat} times, the kernel's average per run. Spread: distinct flows \
             (one run each), the median per run. {rounds} rounds; in each, every figure once, \
             zpr and minimal back to back; ratios are paired by round."
        ),
        "The minimal programs (bench/ebpf) do only what each path cannot avoid, with zpr's \
         key layouts and map sizes, their own maps filled from the same Plan: untagged \
         pass-through = parse; conntrack hit = parse + one LRU lookup (and the idle \
         timestamp, from the coarse clock as zpr's, written in place); new flow = parse + one LRU lookup + two LPM lookups \
         (identities of both addresses, hosts as /32 in one trie) + one exact policy hash \
         lookup + one LRU insert; denied = the same without the insert. The conntrack lookup \
         before the identities is in both: a stateful filter cannot skip it (the packet may \
         belong to a flow opened from the other side); it is also in the calibration's \
         'LRU insert' (lookup + update)."
            .to_owned(),
        "New allowed flow, warm: a repeated frame would hit the conntrack entry its first run \
         made, so the frame is a SYN that also carries FIN. zpr treats it as re-opening the \
         closing flow its previous run left, so every repetition walks the whole new-flow \
         path, ending in the LRU update that replaces the entry (in the kernel the same work \
         as inserting a new key: a free node taken and linked, the old one freed); each run \
         is checked to count as new-flow. The minimal program inserts on every run. Spread: \
         plain SYNs of distinct flows into an emptied conntrack (a real insert of a new key \
         each). Every run's verdict and zpr's per-reason counters are checked."
            .to_owned(),
    ];
    let section = Section {
        title: "Per-packet cost (BPF_PROG_TEST_RUN)".to_owned(),
        method,
        figures,
    };
    (section, targets)
}
