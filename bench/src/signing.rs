//! Signed store states: what signing a state costs an API server and
//! verifying it costs an agent, by tenancy size (the digest covers the
//! whole state, so both grow with it).

use std::time::Instant;

use zpr_agent::{
    store::{
        Store, Tenancy,
        signing::{self, Signer, TrustedKeys},
    },
    synthetic,
};

use crate::{
    generated::endpoints_for,
    interrupt,
    report::{Bound, Figure, Section, Target, Unit},
    scratch::Scratch,
};

const LIMIT_MS: f64 = 20.0;
const TARGET_STATEMENTS: usize = 100_000;

pub struct Settings {
    pub sizes: Vec<usize>,
    pub rounds: usize,
}

pub fn measure(settings: &Settings) -> anyhow::Result<(Section, Vec<Target>)> {
    let scratch = Scratch::new("signing")?;
    let prefix = scratch.path().join("api");
    signing::generate(&prefix)?;
    let signer = Signer::read(&prefix.with_extension("key"))?;
    let trusted = TrustedKeys::read(&prefix.with_extension("pub"))?;
    let mut figures = Vec::new();
    let mut targets = Vec::new();
    for &statements in &settings.sizes {
        let base = tenancy(&scratch, statements)?;
        let mut sign_ms = Vec::new();
        let mut verify_ms = Vec::new();
        for round in 1..=settings.rounds {
            interrupt::checkpoint()?;
            eprintln!(
                "signing: {statements} statements, round {round}/{}",
                settings.rounds
            );
            let mut after = base.clone();
            let started = Instant::now();
            signer.sign(&base, &mut after)?;
            sign_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            let started = Instant::now();
            let refused = trusted.refuse(&after, base.signature.as_ref());
            verify_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(refused.is_none(), "a signed state was refused: {refused:?}");
        }
        for (what, samples) in [("sign", sign_ms), ("verify", verify_ms)] {
            let figure = Figure::new(
                format!("{what} a state of {statements} statements"),
                Unit::Milliseconds,
                samples,
            );
            if statements == TARGET_STATEMENTS {
                targets.push(Target::check(
                    format!("{what} a state of {statements} statements < {LIMIT_MS} ms"),
                    Bound::AtMost(LIMIT_MS),
                    figure.summary.median,
                ));
            }
            figures.push(figure);
        }
    }
    Ok((
        Section {
            title: "Signed store states".to_owned(),
            method: vec![
                "A generated tenancy (the inventory seeded into a SQLite store, the \
                 statements in policies of 1,000) is signed as an API server signs a commit \
                 (the SHA-256 of every record, then Ed25519), and verified as an agent with \
                 trusted keys verifies it (the signature, then the digest of the records it \
                 read). In process, no store round trip."
                    .to_owned(),
            ],
            figures,
        },
        targets,
    ))
}

/// A tenancy of `statements` statements over its generated inventory.
fn tenancy(scratch: &Scratch, statements: usize) -> anyhow::Result<Tenancy> {
    let generated = synthetic::generate(statements, endpoints_for(statements), 1);
    let inventory = scratch.write(
        &format!("inventory-{statements}.yaml"),
        &generated.inventory_yaml,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let mut store = Store::open_sqlite(&scratch.path().join(format!("store-{statements}.db")))?;
    runtime.block_on(store.seed(&inventory))?;
    let mut tenancy = runtime.block_on(store.read())?.tenancy;
    let lines: Vec<String> = generated
        .policy_text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    for (index, chunk) in lines.chunks(1_000).enumerate() {
        tenancy.create_policy(&format!("generated-{index}"), "", chunk)?;
    }
    Ok(tenancy)
}
