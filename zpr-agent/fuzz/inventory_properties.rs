//! What must hold for any input to the inventory reader; shared by the
//! fuzz target and the property test that runs in `cargo xtask test`.

use zpr_agent::inventory::Inventory;

/// Reading never panics, and every problem is a message at a place that
/// is in the text.
pub fn check(text: &str) {
    let Err(errors) = Inventory::from_yaml_str(text) else {
        return;
    };
    assert!(!errors.0.is_empty(), "an error without a problem");
    let lines = text.lines().count().max(1);
    for error in &errors.0 {
        assert!(!error.message.is_empty(), "{error:?}");
        if let Some(location) = error.location {
            assert!(location.line >= 1, "{error:?}");
            assert!(location.line <= lines + 1, "{error:?} in {lines} lines");
        }
    }
}
