//! Scaling: zpr's per-packet cost on each path as the policy set grows,
//! over its cost at the smallest set, in the same round.

use crate::{
    micro::{Figure as Key, Mode, Samples, Who},
    paths::Path,
    report::{Bound, Figure, Section, Target, Unit},
};

const LIMIT: f64 = 1.2;

pub fn section(samples: &Samples, sizes: &[usize]) -> (Section, Vec<Target>) {
    let (smallest, largest) = (sizes[0], sizes[sizes.len() - 1]);
    let mut figures = Vec::new();
    let mut targets = Vec::new();
    for (who, label) in [(Who::Zpr, "zpr"), (Who::Minimal, "minimal")] {
        for mode in [Mode::Warm, Mode::Spread] {
            for path in Path::ALL {
                let key = |statements| Key {
                    statements,
                    path,
                    who,
                    mode,
                };
                let base = samples.get(key(smallest));
                // The minimal programs' own growth is context: all sizes for
                // zpr, the largest for them.
                let shown: &[usize] = match who {
                    Who::Zpr => &sizes[1..],
                    Who::Minimal => &sizes[sizes.len() - 1..],
                };
                for &statements in shown {
                    let figure = Figure::new(
                        format!(
                            "{label}, {}, {}, {statements} statements",
                            path.name(),
                            mode.name()
                        ),
                        Unit::NanosPerPacket,
                        samples.get(key(statements)).to_vec(),
                    )
                    .over(format!("{smallest} statements"), base);
                    if who == Who::Zpr && mode == Mode::Warm && statements == largest {
                        targets.push(Target::check(
                            format!(
                                "cost at {largest} / cost at {smallest} statements ≤ {LIMIT} \
                                 (warm), {}",
                                path.name()
                            ),
                            Bound::AtMost(LIMIT),
                            figure.ratio_median(),
                        ));
                    }
                    figures.push(figure);
                }
            }
        }
    }
    let method = vec![format!(
        "The per-packet measurement above, at generated policy sets of {} statements \
         (inventories of statements / 10 endpoints, at least 100 and at most 10,000, from \
         zpr-agent's synthetic generator, seed 1). Every size is loaded at once and measured \
         in the same rounds, so the ratio to the smallest set pairs samples of one round. \
         Spread flows go to as many of the endpoint's allowed (or, denied, of all) remote \
         hosts as the policy names.",
        sizes
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )];
    let section = Section {
        title: "Scaling with the policy size".to_owned(),
        method,
        figures,
    };
    (section, targets)
}
