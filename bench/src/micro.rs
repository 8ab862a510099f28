//! BPF_PROG_TEST_RUN measurements of every path, on zpr's programs and on
//! the reference programs, at every size. Rounds are outermost, so every
//! round holds one sample of every figure and ratios pair within a round.

use std::collections::BTreeMap;

use anyhow::{Context as _, ensure};

use crate::{
    cpu::{self, Pinned},
    generated::{self, Generated},
    interrupt,
    paths::{self, Frames, Path},
    reference::{Program, Reference},
    stats::Summary,
    subject::{Subject, Zpr},
};

pub struct Settings {
    /// Statement counts, smallest first.
    pub sizes: Vec<usize>,
    pub rounds: usize,
    /// Repetitions of the warm frame per sample.
    pub repeat: u32,
    /// Distinct flows per spread sample.
    pub spread: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// One frame repeated: every lookup hits a warm cache.
    Warm,
    /// Many distinct flows, each run once: lookups spread over the maps.
    Spread,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Warm => "warm",
            Mode::Spread => "spread",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Who {
    Zpr,
    Minimal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Figure {
    pub statements: usize,
    pub path: Path,
    pub who: Who,
    pub mode: Mode,
}

/// ns per packet, one sample per round.
pub struct Samples {
    figures: BTreeMap<Figure, Vec<f64>>,
    /// The no-op program: BPF_PROG_TEST_RUN's own cost.
    pub harness: Vec<f64>,
}

impl Samples {
    pub fn get(&self, figure: Figure) -> &[f64] {
        self.figures
            .get(&figure)
            .unwrap_or_else(|| panic!("{figure:?} was not measured"))
    }
}

/// One generated policy set loaded into zpr and into the reference.
struct Site {
    generated: Generated,
    zpr: Zpr,
    reference: Reference,
    frames: BTreeMap<Path, Frames>,
}

impl Site {
    fn new(statements: usize, spread: usize) -> anyhow::Result<Site> {
        let generated = generated::generate(statements)?;
        let zpr = Zpr::load(&generated)
            .with_context(|| format!("loading zpr with {statements} statements"))?;
        let mut reference = Reference::load()?;
        reference.fill(&generated.plan)?;
        let frames = Path::ALL
            .iter()
            .map(|&path| (path, paths::frames(&generated, path, spread)))
            .collect();
        Ok(Site {
            generated,
            zpr,
            reference,
            frames,
        })
    }
}

pub fn measure(settings: &Settings) -> anyhow::Result<Samples> {
    let mut sites = Vec::new();
    for &statements in &settings.sizes {
        eprintln!("micro: generating, compiling and loading {statements} statements");
        sites.push(Site::new(statements, settings.spread)?);
    }
    let _pinned = Pinned::to(cpu::last())?;
    let mut samples = Samples {
        figures: BTreeMap::new(),
        harness: Vec::new(),
    };
    for round in 1..=settings.rounds {
        for site in &mut sites {
            let Site {
                generated,
                zpr,
                reference,
                frames,
            } = site;
            interrupt::checkpoint()?;
            let statements = generated.statements;
            eprintln!(
                "micro: round {round}/{}, {statements} statements",
                settings.rounds
            );
            let established = &frames[&Path::ConntrackHit];
            for subject in [zpr as &mut dyn Subject, reference] {
                subject.flush_flows()?;
                for frame in std::iter::once(&established.warm).chain(&established.spread) {
                    subject.track(frame)?;
                }
            }
            if statements == settings.sizes[0] {
                let result = reference.run(Program::Noop, &established.warm, settings.repeat)?;
                samples.harness.push(result.duration.as_nanos() as f64);
            }
            for path in Path::ALL {
                let frames = &frames[&path];
                for mode in [Mode::Warm, Mode::Spread] {
                    for (who, subject) in [
                        (Who::Zpr, zpr as &mut dyn Subject),
                        (Who::Minimal, reference),
                    ] {
                        let ns = match mode {
                            Mode::Warm => warm(subject, path, &frames.warm, settings.repeat),
                            Mode::Spread => spread(subject, path, &frames.spread),
                        }
                        .with_context(|| {
                            format!(
                                "{who:?}, {}, {}, {statements} statements",
                                path.name(),
                                mode.name()
                            )
                        })?;
                        let figure = Figure {
                            statements,
                            path,
                            who,
                            mode,
                        };
                        samples.figures.entry(figure).or_default().push(ns);
                    }
                }
            }
        }
    }
    Ok(samples)
}

/// The kernel's average ns per run of `frame` repeated.
fn warm(subject: &mut dyn Subject, path: Path, frame: &[u8], repeat: u32) -> anyhow::Result<f64> {
    let before = subject.counted(path)?;
    let result = subject.run(path, frame, repeat)?;
    ensure!(result.passed == path.passes(), "wrong verdict");
    check_counted(subject, path, before, u64::from(repeat))?;
    Ok(result.duration.as_nanos() as f64)
}

/// The median ns of one run of each frame.
fn spread(subject: &mut dyn Subject, path: Path, frames: &[Vec<u8>]) -> anyhow::Result<f64> {
    let before = subject.counted(path)?;
    let mut ns = Vec::with_capacity(frames.len());
    for frame in frames {
        let result = subject.run(path, frame, 1)?;
        ensure!(result.passed == path.passes(), "wrong verdict");
        ns.push(result.duration.as_nanos() as f64);
    }
    check_counted(subject, path, before, frames.len() as u64)?;
    Ok(Summary::of(&ns).median)
}

/// Every run took the path measured: its counter grew by the runs made.
fn check_counted(
    subject: &dyn Subject,
    path: Path,
    before: Option<u64>,
    runs: u64,
) -> anyhow::Result<()> {
    if let (Some(before), Some(after)) = (before, subject.counted(path)?) {
        ensure!(
            after - before == runs,
            "{} of {runs} runs were counted as {}",
            after - before,
            path.reason().name()
        );
    }
    Ok(())
}
