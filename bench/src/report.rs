//! The run's results: figures by section, targets, the machine; written
//! as JSON and as markdown (the latter also as BENCHMARKS.md).

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    machine::Machine,
    stats::{Summary, paired_ratios},
};

/// Where the generated report ends and the analysis written by whoever
/// ran it begins; a new run replaces what is above only.
const ANALYSIS: &str =
    "<!-- Everything below is written by hand and kept by `cargo xtask bench`. -->\n";
const ANALYSIS_PLACEHOLDER: &str = "\n## Analysis\n\nNot written yet for this run.\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Unit {
    #[serde(rename = "ns/packet")]
    NanosPerPacket,
    #[serde(rename = "Mbit/s")]
    MegabitsPerSecond,
    #[serde(rename = "packets/s")]
    PacketsPerSecond,
    #[serde(rename = "ms")]
    Milliseconds,
    #[serde(rename = "MiB")]
    Mebibytes,
    #[serde(rename = "KiB")]
    Kibibytes,
    #[serde(rename = "requests/s")]
    RequestsPerSecond,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::NanosPerPacket => "ns/packet",
            Unit::MegabitsPerSecond => "Mbit/s",
            Unit::PacketsPerSecond => "packets/s",
            Unit::Milliseconds => "ms",
            Unit::Mebibytes => "MiB",
            Unit::Kibibytes => "KiB",
            Unit::RequestsPerSecond => "requests/s",
        }
    }

    fn format(self, value: f64) -> String {
        match self {
            Unit::NanosPerPacket | Unit::MegabitsPerSecond | Unit::PacketsPerSecond => {
                thousands(value.round() as u64)
            }
            Unit::Milliseconds => format!("{value:.1}"),
            Unit::Mebibytes => format!("{value:.0}"),
            Unit::Kibibytes => format!("{value:.1}"),
            Unit::RequestsPerSecond => format!("{value:.2}"),
        }
    }
}

/// One measured quantity: a sample per round, and optionally its ratio to
/// another quantity of the same rounds.
#[derive(Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: Unit,
    pub samples: Vec<f64>,
    pub summary: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<Ratio>,
}

#[derive(Debug, Serialize)]
pub struct Ratio {
    /// What the figure is divided by, e.g. "minimal" or "no filter".
    pub to: String,
    pub samples: Vec<f64>,
    pub summary: Summary,
}

impl Figure {
    pub fn new(name: impl Into<String>, unit: Unit, samples: Vec<f64>) -> Figure {
        Figure {
            name: name.into(),
            unit,
            summary: Summary::of(&samples),
            samples,
            ratio: None,
        }
    }

    /// This figure over `denominator`, paired round by round.
    pub fn over(self, to: impl Into<String>, denominator: &[f64]) -> Figure {
        let samples = paired_ratios(&self.samples, denominator);
        self.with_ratio(to, samples)
    }

    /// This figure with ratios its measurement paired itself.
    pub fn with_ratio(mut self, to: impl Into<String>, samples: Vec<f64>) -> Figure {
        self.ratio = Some(Ratio {
            to: to.into(),
            summary: Summary::of(&samples),
            samples,
        });
        self
    }

    pub fn ratio_median(&self) -> f64 {
        self.ratio
            .as_ref()
            .map_or(f64::NAN, |ratio| ratio.summary.median)
    }
}

#[derive(Debug, Serialize)]
pub struct Section {
    pub title: String,
    /// How the figures were measured, one paragraph each.
    pub method: Vec<String>,
    pub figures: Vec<Figure>,
}

#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

/// A goal from the design, checked against this run's median.
#[derive(Debug, Serialize)]
pub struct Target {
    pub goal: String,
    pub bound: Bound,
    pub measured: f64,
    pub met: bool,
    /// Why nothing could be measured on this host (then it is not met).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_measured: Option<String>,
}

impl Target {
    pub fn check(goal: impl Into<String>, bound: Bound, measured: f64) -> Target {
        let met = match bound {
            Bound::AtMost(limit) => measured <= limit,
            Bound::AtLeast(limit) => measured >= limit,
        };
        Target {
            goal: goal.into(),
            bound,
            measured,
            met,
            not_measured: None,
        }
    }

    /// A target this host cannot measure, and why: reported, never met.
    pub fn not_measured(goal: impl Into<String>, bound: Bound, why: impl Into<String>) -> Target {
        Target {
            goal: goal.into(),
            bound,
            measured: f64::NAN,
            met: false,
            not_measured: Some(why.into()),
        }
    }

    /// By how much a missed target was missed, relative to its limit.
    fn shortfall(&self) -> String {
        if self.met {
            return String::new();
        }
        let (limit, over) = match self.bound {
            Bound::AtMost(limit) => (limit, self.measured / limit - 1.0),
            Bound::AtLeast(limit) => (limit, 1.0 - self.measured / limit),
        };
        let precise = |value: f64| {
            if value.abs() < 10.0 {
                format!("{value:.3}")
            } else {
                plain(value)
            }
        };
        format!(
            "missed by {:.1}% ({} against {})",
            over * 100.0,
            precise(self.measured),
            precise(limit)
        )
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub profile: &'static str,
    pub machine: Machine,
    pub targets: Vec<Target>,
    pub sections: Vec<Section>,
}

impl Report {
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = dir.join("bench.json");
        std::fs::write(&json, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", json.display()))?;
        let markdown = dir.join("bench.md");
        std::fs::write(&markdown, self.markdown())
            .with_context(|| format!("writing {}", markdown.display()))?;
        eprintln!("report: {} and {}", markdown.display(), json.display());
        Ok(())
    }

    /// Writes the markdown report to `path` (BENCHMARKS.md), keeping the
    /// hand-written analysis that follows [`ANALYSIS`] in the file there.
    pub fn record(&self, path: &Path) -> anyhow::Result<()> {
        let existing = std::fs::read_to_string(path).unwrap_or_default();
        let analysis = existing
            .split_once(ANALYSIS)
            .map_or(ANALYSIS_PLACEHOLDER, |(_, analysis)| analysis);
        let text = format!("{}\n{ANALYSIS}{analysis}", self.markdown());
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report: recorded in {}", path.display());
        Ok(())
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# zpr benchmarks\n\nThe latest `cargo xtask bench` run ({} profile). Every ratio is \
             taken between figures measured side by side in the same round of this run; \
             absolute times are only comparable within it.\n",
            self.profile
        );
        out += &self.machine.markdown();
        out += "\n## Targets\n\n| target | measured | met |\n|---|---|---|\n";
        for target in &self.targets {
            let (measured, verdict) = match (&target.not_measured, target.met) {
                (Some(why), _) => ("—".to_owned(), format!("**not measured**: {why}")),
                (None, true) => (plain(target.measured), "yes".to_owned()),
                (None, false) => (
                    plain(target.measured),
                    format!("**no**: {} (see Analysis)", target.shortfall()),
                ),
            };
            let _ = writeln!(out, "| {} | {measured} | {verdict} |", target.goal);
        }
        for section in &self.sections {
            let _ = writeln!(out, "\n## {}\n", section.title);
            for paragraph in &section.method {
                let _ = writeln!(out, "{paragraph}\n");
            }
            out += "| figure | unit | median | min | max | ratio | ratio median | ratio min–max |\n\
                    |---|---|---:|---:|---:|---|---:|---|\n";
            for figure in &section.figures {
                let unit = figure.unit;
                let s = figure.summary;
                let _ = write!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    figure.name,
                    unit.name(),
                    unit.format(s.median),
                    unit.format(s.min),
                    unit.format(s.max)
                );
                match &figure.ratio {
                    Some(ratio) => {
                        let r = ratio.summary;
                        let _ = writeln!(
                            out,
                            " ÷ {} | {:.2} | {:.2}–{:.2} |",
                            ratio.to, r.median, r.min, r.max
                        );
                    }
                    None => out += " | | |\n",
                }
            }
        }
        out
    }
}

/// 1234567 -> "1,234,567".
fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A number as targets show it: two decimals below 10, whole above.
fn plain(value: f64) -> String {
    if value.abs() < 10.0 {
        format!("{value:.2}")
    } else {
        thousands(value.round() as u64)
    }
}

/// Sizes as a method sentence names them: `10000 and 100000`.
pub fn listed(sizes: &[usize]) -> String {
    sizes
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn a_target_not_measured_says_why_and_is_not_met() {
        let target = Target::not_measured("x", Bound::AtLeast(2.5), "refused here");
        assert!(!target.met);
        assert_eq!(target.not_measured.as_deref(), Some("refused here"));
        let json = serde_json::to_value(&target).unwrap();
        assert_eq!(json["not_measured"], "refused here");
        assert!(
            Target::check("y", Bound::AtLeast(2.5), 3.0)
                .not_measured
                .is_none()
        );
    }

    #[test]
    fn shortfall_is_relative_to_the_limit() {
        let missed = Target::check("x", Bound::AtMost(1.3), 1.43);
        assert!(!missed.met);
        assert_eq!(missed.shortfall(), "missed by 10.0% (1.430 against 1.300)");
        let short = Target::check("y", Bound::AtLeast(0.9), 0.81);
        assert_eq!(short.shortfall(), "missed by 10.0% (0.810 against 0.900)");
        let barely = Target::check("w", Bound::AtMost(1.2), 1.204);
        assert_eq!(barely.shortfall(), "missed by 0.3% (1.204 against 1.200)");
        assert!(Target::check("z", Bound::AtLeast(0.9), 0.95).met);
    }
}
