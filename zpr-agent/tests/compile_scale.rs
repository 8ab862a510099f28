//! Compiling at size. The timed run is ignored by default; run it with
//! `cargo test --release -p zpr-agent --test compile_scale -- --ignored --nocapture`.

use std::time::Instant;

use zpr_agent::compile::{
    Decision, Direction, PacketFacts, PlanLookup, Tables, compile, decide, diff,
};
use zpr_agent::inputs::{Checker, InputText, check};
use zpr_agent::lang::{Endpoint as LangEndpoint, Protocol};
use zpr_agent::synthetic::generate;

#[test]
#[ignore = "timing run: use --release --ignored --nocapture"]
fn hundred_thousand_statements_over_ten_thousand_endpoints() {
    let synthetic = generate(100_000, 10_000, 1);
    let started = Instant::now();
    let plan = compile(&synthetic.policies, &synthetic.inventory);
    let elapsed = started.elapsed();
    let started = Instant::now();
    let again = compile(&synthetic.policies, &synthetic.inventory);
    let second = started.elapsed();
    assert_eq!(plan.content_hash, again.content_hash);
    println!("compile: {elapsed:?} (again: {second:?})");
    println!("{:#?}", plan.sizes);
    assert_eq!(plan.sizes.statements, 100_000);
    assert_eq!(plan.sizes.hosts_v4 + plan.sizes.hosts_v6, 20_000);
}

/// `zpr diff` of a one-statement change at that size: the diff itself
/// (both Plans compiled), and compiling the new Plan with it.
#[test]
#[ignore = "timing run: use --release --ignored --nocapture"]
fn one_statement_change_at_a_hundred_thousand_statements_diffs_fast() {
    let synthetic = generate(100_000, 10_000, 1);
    let old = compile(&synthetic.policies, &synthetic.inventory);
    let mut changed = synthetic.policies.clone();
    let removed = changed[0].statements.remove(50_000);
    let started = Instant::now();
    let new = compile(&changed, &synthetic.inventory);
    let compiled = started.elapsed();
    let started = Instant::now();
    let difference = diff(&old, &new);
    let diffed = started.elapsed();
    println!(
        "one statement ({}) removed: compile {compiled:?}, diff {diffed:?}, {} path changes",
        removed.id,
        difference.paths.len()
    );
    assert!(
        difference
            .paths
            .iter()
            .all(|path| path.statements == [removed.id.clone()])
    );
    let started = Instant::now();
    assert!(diff(&old, &old).is_empty());
    println!("no change: diff {:?}", started.elapsed());
}

/// A mid-sized generated set: the Plan agrees with the reference on paths
/// its statements name (allowed) and on the port next to them (mostly not).
#[test]
fn generated_policy_set_compiles_to_an_agreeing_plan() {
    let synthetic = generate(1_500, 300, 11);
    let plan = compile(&synthetic.policies, &synthetic.inventory);
    let lookup = PlanLookup::new(&plan);
    let inventory = &synthetic.inventory;
    let carrying = |side: &LangEndpoint| match side {
        LangEndpoint::Attribute(attribute) => {
            inventory.endpoints().iter().find(|e| e.carries(attribute))
        }
        _ => None,
    };
    let (mut allowed, mut denied) = (0, 0);
    for statement in synthetic.policies[0].statements.iter().step_by(5) {
        let (Some(from), Some(to), Some(Protocol::Tcp { ports })) = (
            carrying(&statement.source.node),
            carrying(&statement.destination.node),
            statement.protocol(),
        ) else {
            continue;
        };
        for port in [ports[0].low, ports[0].high + 1] {
            for family in 0..2 {
                let facts = PacketFacts::tcp(from.addresses[family], to.addresses[family], port);
                for (endpoint, direction) in [(from, Direction::Egress), (to, Direction::Ingress)] {
                    let reference = decide(
                        inventory,
                        &synthetic.policies,
                        &facts,
                        direction,
                        &endpoint.name,
                    )
                    .unwrap();
                    let planned = lookup.decide(&facts, direction, &endpoint.name).unwrap();
                    assert_eq!(
                        reference, planned,
                        "{facts:?} {direction} at {}",
                        endpoint.name
                    );
                    match reference.decision {
                        Decision::Allow { .. } => allowed += 1,
                        _ => denied += 1,
                    }
                }
            }
        }
    }
    // The sample reaches statements and default deny alike.
    assert!(
        allowed > 100 && denied > 100,
        "{allowed} allowed, {denied} denied"
    );
}

/// `zpr check` at size, and where its time goes: the texts checked as the
/// agent and `zpr check` check them.
#[test]
#[ignore = "timing run: use --release --ignored --nocapture"]
fn checking_a_hundred_thousand_statements() {
    let synthetic = generate(100_000, 10_000, 1);
    let inventory = InputText::inventory("inventory.yaml".to_owned(), synthetic.inventory_yaml);
    let policy = InputText::policy(
        "synthetic.zpr".to_owned(),
        "synthetic".to_owned(),
        synthetic.policy_text,
    );
    println!(
        "inputs: {} bytes of policy, {} bytes of inventory",
        policy.text.len(),
        inventory.text.len()
    );
    for round in 1..=3 {
        let started = Instant::now();
        let loaded = check(Some(&inventory), std::slice::from_ref(&policy));
        println!("check, round {round}: {:?}", started.elapsed());
        assert_eq!(loaded.errors, 0, "{}", loaded.report);
        assert_eq!(loaded.inputs.unwrap().plan.sizes.statements, 100_000);
    }

    // The agent's reloads: one checker, one statement's port changed and
    // changed back.
    let mut changed = policy.text.lines().map(str::to_owned).collect::<Vec<_>>();
    let line = changed
        .iter()
        .skip(50_000)
        .position(|line| line.contains("protocol='tcp/"))
        .unwrap()
        + 50_000;
    changed[line] = changed[line].replacen("protocol='tcp/", "protocol='tcp/7,", 1);
    let changed = InputText::policy(
        policy.file.clone(),
        policy.name.clone(),
        changed.join("\n") + "\n",
    );
    let mut checker = Checker::remembering(Tables::Every);
    let started = Instant::now();
    checker.check(Some(&inventory), std::slice::from_ref(&policy));
    println!("first check of a checker: {:?}", started.elapsed());
    for round in 1..=3 {
        for text in [&changed, &policy] {
            let started = Instant::now();
            let loaded = checker.check(Some(&inventory), std::slice::from_ref(text));
            println!(
                "one statement changed, round {round}: {:?}",
                started.elapsed()
            );
            let whole = check(Some(&inventory), std::slice::from_ref(text));
            assert_eq!(loaded.inputs.unwrap().plan, whole.inputs.unwrap().plan);
        }
    }

    // As the agent checks: its own endpoints' tables only. The median of
    // 20 changes and 20 changes back (the bench's "agent's checker").
    let mut agent = Checker::remembering(Tables::Local);
    agent.check(Some(&inventory), std::slice::from_ref(&policy));
    let mut times: Vec<_> = (0..40)
        .map(|round| {
            let text = if round % 2 == 0 { &changed } else { &policy };
            let started = Instant::now();
            let loaded = agent.check(Some(&inventory), std::slice::from_ref(text));
            let elapsed = started.elapsed();
            assert_eq!(loaded.errors, 0, "{}", loaded.report);
            elapsed
        })
        .collect();
    times.sort();
    println!(
        "the agent's check of one statement changed: median {:?}, min {:?}",
        times[times.len() / 2],
        times[0]
    );
}
