//! The incremental compile is the whole compile: random edit sequences of
//! a generated policy set and inventory (statements added, removed and
//! edited, endpoints tagged, untagged and moved, attribute values changed,
//! addresses added), each state compiled both ways.

use proptest::prelude::*;

use super::{CapacityCounter, Compiler};
use crate::compile::edits::{Texts, edit};
use crate::compile::{Capacity, Plan, Tables, capacity, compile, compile_whole};
use crate::inventory::Inventory;
use crate::lang::StatementCache;
use crate::synthetic::generate;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_plan_is_the_whole_compile(
        seed in 1u64..1000,
        edits in proptest::collection::vec(edit(), 1..16),
    ) {
        let synthetic = generate(200, 60, seed);
        let mut texts = Texts::of(&synthetic);
        let mut compiler = Compiler::default();
        let mut local = Compiler::of(Tables::Local);
        let mut counter = CapacityCounter::default();
        // Read as the agent reads: unchanged statements are the same
        // bodies, which the compilers' memos hold.
        let mut cache = StatementCache::default();
        let whole = compile(&synthetic.policies, &synthetic.inventory);
        prop_assert_eq!(compiler.compile(&synthetic.policies, &synthetic.inventory), whole.clone());
        let whole_local = local.compile(&synthetic.policies, &synthetic.inventory);
        prop_assert!(!whole_local.policy.is_empty(), "the generated set has local tables");
        prop_assert_eq!(whole_local, local_part(&whole));
        prop_assert_eq!(counter.count(&synthetic.policies, &synthetic.inventory), Capacity::from(&whole.sizes));
        for edit in &edits {
            let before = texts.clone();
            texts.apply(edit);
            let Some((policies, inventory)) = texts.parsed_with(&mut cache) else {
                // An edit the generated shape does not allow: undone.
                texts = before;
                continue;
            };
            let whole = compile(&policies, &inventory);
            let incremental = compiler.compile(&policies, &inventory);
            prop_assert!(incremental == whole, "after {:?}", edit);
            let whole_local = compile_whole(&policies, &inventory, Tables::Local, &mut Default::default()).0;
            prop_assert!(whole_local == local_part(&whole), "after {:?}", edit);
            let incremental_local = local.compile(&policies, &inventory);
            prop_assert!(incremental_local == whole_local, "local, after {:?}", edit);
            let counted = counter.count(&policies, &inventory);
            prop_assert!(counted == Capacity::from(&whole.sizes), "counted, after {:?}: {:?}", edit, counted);
            prop_assert_eq!(counted, capacity(&policies, &inventory));
        }
    }
}

/// `plan` with only the policy tables of its endpoints with an interface.
fn local_part(plan: &Plan) -> Plan {
    let local_uids: std::collections::HashSet<_> = plan
        .endpoints
        .iter()
        .filter(|endpoint| endpoint.interface.is_some())
        .flat_map(|endpoint| endpoint.addresses.iter().map(|address| address.uid))
        .collect();
    Plan::assemble(
        plan.statements.clone(),
        plan.identities.clone(),
        plan.hosts.clone(),
        plan.prefixes.clone(),
        plan.endpoints.clone(),
        plan.policy
            .iter()
            .filter(|entry| local_uids.contains(&entry.key.local))
            .cloned()
            .collect(),
    )
}

/// Removing a statement whose selectors and attributes earlier statements
/// use too is compiled from the last Plan, not whole.
#[test]
fn a_statement_change_is_not_compiled_whole() {
    let synthetic = generate(2_000, 200, 7);
    let mut compiler = Compiler::default();
    compiler.compile(&synthetic.policies, &synthetic.inventory);
    let statements = &synthetic.policies[0].statements;
    let removed = statements
        .iter()
        .enumerate()
        .position(|(index, statement)| {
            let alike = statements[..index]
                .iter()
                .filter(|other| {
                    other.source == statement.source
                        && other.destination == statement.destination
                        && other.scope == statement.scope
                })
                .count();
            alike > 0 && statement.source.node != crate::lang::Endpoint::AllEndpoints
        })
        .unwrap();
    let mut policies = synthetic.policies.clone();
    policies[0].statements.remove(removed);
    let last = compiler.last.take().unwrap();
    let plan = last.changed(
        &policies,
        &synthetic.inventory,
        &mut compiler.memo,
        &mut compiler.last,
    );
    assert_eq!(plan, Some(compile(&policies, &synthetic.inventory)));
    assert!(compiler.last.is_some(), "what it worked out is kept");
}

/// A host with one local identity, whose tables a change of a statement
/// naming it all touches (a fleet host running a few VMs of a large
/// tenancy), merges that change from the last Plan too: compiled whole,
/// it would work out every identity of the tenancy again.
#[test]
fn a_change_touching_every_local_table_is_not_compiled_whole() {
    let synthetic = generate(2_000, 200, 7);
    let mut document: serde_yaml::Value = serde_yaml::from_str(&synthetic.inventory_yaml).unwrap();
    let endpoints = document["endpoints"].as_sequence_mut().unwrap();
    let local = endpoints
        .iter()
        .position(|endpoint| endpoint.get("interface").is_some())
        .unwrap();
    for (index, endpoint) in endpoints.iter_mut().enumerate() {
        if index != local {
            endpoint.as_mapping_mut().unwrap().remove("interface");
        }
    }
    let inventory = Inventory::from_yaml_str(&serde_yaml::to_string(&document).unwrap()).unwrap();
    let local = &inventory.endpoints()[local];
    let mut compiler = Compiler::of(Tables::Local);
    let before = compiler.compile(&synthetic.policies, &inventory);
    // A statement naming an attribute the local endpoint carries, added
    // again: it brings no new selector, and its index lands in the local
    // endpoint's tables (at least one of its two).
    let names_local = |endpoint: &crate::lang::Endpoint| matches!(endpoint, crate::lang::Endpoint::Attribute(a) if local.carries(a));
    let policies = synthetic.policies[0]
        .statements
        .iter()
        .filter(|s| names_local(&s.source.node) || names_local(&s.destination.node))
        .map(|statement| {
            let mut policies = synthetic.policies.clone();
            policies[0].statements.push(statement.clone());
            policies
        })
        .find(|policies| {
            let claims = |plan: &Plan| -> usize {
                plan.policy
                    .iter()
                    .map(|entry| entry.value.statements.len())
                    .sum()
            };
            let whole = compile_whole(policies, &inventory, Tables::Local, &mut Default::default());
            claims(&whole.0) > claims(&before)
        })
        .expect("a statement naming the local endpoint claims its tables");
    let last = compiler.last.take().unwrap();
    let plan = last.changed(
        &policies,
        &inventory,
        &mut compiler.memo,
        &mut compiler.last,
    );
    let whole = compile_whole(
        &policies,
        &inventory,
        Tables::Local,
        &mut Default::default(),
    )
    .0;
    assert!(
        plan.is_some(),
        "merged from the last Plan, not compiled whole"
    );
    assert!(
        plan == Some(whole),
        "the merged Plan is the whole compile's"
    );
}
