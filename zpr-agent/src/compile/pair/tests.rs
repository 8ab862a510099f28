//! The pair's diff is the whole Plans' diff, for every change the random
//! edits make: one edit at a time, and all of them at once.

use proptest::prelude::*;

use super::compile_pair;
use crate::compile::edits::{Texts, edit};
use crate::compile::{compile, diff};
use crate::inventory::Inventory;
use crate::lang::Policy;
use crate::synthetic::generate;

fn assert_diffs_alike(
    before: (&[Policy], &Inventory),
    after: (&[Policy], &Inventory),
) -> Result<(), TestCaseError> {
    let [old, new] = compile_pair(before, after);
    let whole = diff(&compile(before.0, before.1), &compile(after.0, after.1));
    prop_assert_eq!(diff(&old, &new), whole);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn the_pair_diffs_as_the_whole_plans(
        seed in 1u64..1000,
        edits in proptest::collection::vec(edit(), 1..12),
    ) {
        let synthetic = generate(200, 60, seed);
        let mut texts = Texts::of(&synthetic);
        let first = (synthetic.policies.clone(), synthetic.inventory.clone());
        let mut last = first.clone();
        for edit in &edits {
            let before = texts.clone();
            texts.apply(edit);
            let Some(next) = texts.parsed() else {
                texts = before;
                continue;
            };
            assert_diffs_alike((&last.0, &last.1), (&next.0, &next.1))?;
            last = next;
        }
        assert_diffs_alike((&first.0, &first.1), (&last.0, &last.1))?;
    }
}

/// A statement changed builds the tables of its own identities only.
#[test]
fn a_statement_change_builds_few_tables() {
    let synthetic = generate(2_000, 200, 3);
    let mut texts = Texts::of(&synthetic);
    let line = texts
        .policy
        .iter()
        .position(|line| line.contains("protocol='tcp/") && !line.contains("all-endpoints"))
        .unwrap();
    texts.policy[line] = texts.policy[line].replacen("protocol='tcp/", "protocol='tcp/7,", 1);
    let (policies, inventory) = texts.parsed().unwrap();
    let before = (synthetic.policies.as_slice(), &synthetic.inventory);
    let [old, new] = compile_pair(before, (&policies, &inventory));
    let whole = compile(&policies, &inventory);
    assert!(!new.policy.is_empty());
    assert!(
        new.policy.len() * 10 < whole.policy.len(),
        "{} entries of {}",
        new.policy.len(),
        whole.policy.len()
    );
    assert_ne!(diff(&old, &new), Default::default());
}
