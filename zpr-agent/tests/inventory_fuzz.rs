//! The inventory reader fuzzed with generated YAML: schema keys and
//! others, block and flow collections, anchors, aliases, merge keys and
//! tags, checked by the fuzz target's own properties (`fuzz/`, target
//! `inventory`), and aliases shown to expand at most linearly.

use proptest::prelude::*;
use zpr_agent::inventory::Inventory;

#[path = "../fuzz/inventory_properties.rs"]
mod inventory_properties;

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("namespaces"),
        Just("vcns"),
        Just("endpoints"),
        Just("osn-services"),
        Just("name"),
        Just("attributes"),
        Just("key"),
        Just("type"),
        Just("values"),
        Just("cidrs"),
        Just("security-attribute"),
        Just("security-attributes"),
        Just("vcn"),
        Just("addresses"),
        Just("interface"),
        Just("node"),
        Just("mode"),
        Just("<<"),
        Just("bogus"),
    ]
    .prop_map(str::to_owned)
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9:.=-]{0,8}",
        Just("'10.0.0.1'".to_owned()),
        Just("10.0.0.0/16".to_owned()),
        Just("list".to_owned()),
        Just("freeform".to_owned()),
        Just("audit".to_owned()),
        Just("42".to_owned()),
        Just("~".to_owned()),
        Just("\"a \\\" b\"".to_owned()),
        Just("!tagged x".to_owned()),
        "\\*[abc]",
    ]
}

/// A node in flow style, anchored or not.
fn flow() -> impl Strategy<Value = String> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            prop::collection::vec((key(), inner.clone()), 0..5).prop_map(|entries| {
                let entries: Vec<String> = entries
                    .into_iter()
                    .map(|(key, value)| format!("{key}: {value}"))
                    .collect();
                format!("{{{}}}", entries.join(", "))
            }),
            ("[abc]", inner).prop_map(|(anchor, node)| format!("&{anchor} {node}")),
        ]
    })
}

/// One line of a block-style document.
fn line() -> impl Strategy<Value = String> {
    let indent = (0usize..4).prop_map(|depth| " ".repeat(depth * 2));
    prop_oneof![
        (indent.clone(), key(), flow()).prop_map(|(i, k, v)| format!("{i}{k}: {v}")),
        (indent.clone(), key()).prop_map(|(i, k)| format!("{i}{k}:")),
        (indent.clone(), flow()).prop_map(|(i, v)| format!("{i}- {v}")),
        (indent.clone(), key(), flow()).prop_map(|(i, k, v)| format!("{i}- {k}: {v}")),
        (indent, "[abc]", key()).prop_map(|(i, a, k)| format!("{i}{k}: &{a}")),
        Just("# a comment".to_owned()),
    ]
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::vec(line(), 0..24).prop_map(|lines| lines.join("\n") + "\n")
}

/// Values any document may expand to, and per byte beyond that
/// (`inventory::aliases`).
const MIN_NODES: usize = 100_000;
const NODES_PER_BYTE: usize = 2;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_documents_read_without_panics(text in document()) {
        inventory_properties::check(&text);
    }
}

proptest! {
    // Each case reads up to 100,000 values, unoptimised: a few suffice.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn aliases_expand_at_most_linearly(items in 1usize..3_000, references in 1usize..3_000) {
        let text = format!(
            "namespaces: []\nanchor: &a [{}]\nrepeated: [{}]\n",
            vec!["1"; items].join(","),
            vec!["*a"; references].join(",")
        );
        let errors = Inventory::from_yaml_str(&text).expect_err("unknown keys");
        let refused = errors.0.iter().any(|error| error.message.contains("YAML aliases"));
        let budget = MIN_NODES.max(NODES_PER_BYTE * text.len());
        // The lists' values, and a few more nodes: the mapping, its keys.
        let expanded = (references + 1) * (items + 1);
        if expanded > budget {
            prop_assert!(refused, "{expanded} values read, {budget} allowed");
        }
        if expanded + 8 <= budget {
            prop_assert!(!refused, "{expanded} values refused, {budget} allowed");
        }
    }
}
