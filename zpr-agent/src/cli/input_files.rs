//! The inputs every compiling command names: one inventory, the policy set.

use std::io::Write as _;
use std::path::PathBuf;

use crate::inputs::{Checker, Inputs, Loaded};

#[derive(clap::Args, Debug, Clone)]
pub struct InputFiles {
    /// The inventory: namespaces, VCNs and endpoints (YAML).
    #[arg(long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// Policy files (`*.zpr`); together they form the policy set.
    #[arg(required = true, value_name = "POLICY")]
    pub policies: Vec<PathBuf>,
}

impl InputFiles {
    /// Reads the inputs; their problems (and warnings) go to stderr, and a
    /// problem gives `None`. Unreadable files are errors (exit 2).
    pub fn load(&self) -> anyhow::Result<Option<Inputs>> {
        self.load_with(&mut Checker::once())
    }

    /// [`InputFiles::load`] with a checker that has read other inputs like
    /// these (the other side of a diff): what they share is read once.
    pub fn load_with(&self, checker: &mut Checker) -> anyhow::Result<Option<Inputs>> {
        reported(checker.read(Some(&self.inventory), &self.policies)?)
    }
}

/// The inputs checked, their problems (and warnings) written to stderr.
pub fn reported(loaded: Loaded) -> anyhow::Result<Option<Inputs>> {
    std::io::stderr()
        .lock()
        .write_all(loaded.report.as_bytes())?;
    Ok(loaded.inputs)
}
