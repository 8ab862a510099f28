//! The incremental compile is the whole compile: random edit sequences of
//! a generated policy set and inventory (statements added, removed and
//! edited, endpoints tagged, untagged and moved, attribute values changed,
//! addresses added), each state compiled both ways.

use proptest::prelude::*;

use super::Compiler;
use crate::compile::edits::{Texts, edit};
use crate::compile::{Plan, Tables, compile, compile_whole};
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
        // Read as the agent reads: unchanged statements are the same
        // bodies, which the compilers' memos hold.
        let mut cache = StatementCache::default();
        let whole = compile(&synthetic.policies, &synthetic.inventory);
        prop_assert_eq!(compiler.compile(&synthetic.policies, &synthetic.inventory), whole.clone());
        let whole_local = local.compile(&synthetic.policies, &synthetic.inventory);
        prop_assert!(!whole_local.policy.is_empty(), "the generated set has local tables");
        prop_assert_eq!(whole_local, local_part(&whole));
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
