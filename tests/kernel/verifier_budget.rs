//! The decision code stays well inside the verifier's budget: a change
//! that makes a program nearly unverifiable fails here, with the figures,
//! before it fails on a user's kernel.

use zpr_agent::datapath::Datapath;

/// The kernel's limit on instructions walked per program.
const VERIFIER_LIMIT: u32 = 1_000_000;
/// Room kept for kernels whose verifier prunes less than this one.
const BUDGET: u32 = VERIFIER_LIMIT / 2;

#[test]
fn every_program_verifies_within_half_the_limit() -> anyhow::Result<()> {
    let datapath = Datapath::load()?;
    let counts = datapath.verified_instructions()?;
    for (name, count) in &counts {
        eprintln!("{name}: {count} instructions verified");
    }
    for (name, count) in counts {
        assert!(
            count <= BUDGET,
            "{name}: the verifier walked {count} instructions (budget {BUDGET}, limit {VERIFIER_LIMIT})"
        );
    }
    Ok(())
}
