//! What must hold for any input to the policy reader; shared by the fuzz
//! target and the test that replays the fuzz corpus.

use zpr_agent::lang::{SourceFile, bounded, format_source, parse};

/// Reading never panics, every diagnostic renders with its message, and `fmt` output reads
/// back to itself.
pub fn check(text: &str) {
    let diagnostics = match parse("fuzz", text) {
        Ok(parsed) => parsed.warnings,
        Err(diagnostics) => diagnostics,
    };
    let file = SourceFile::new("fuzz.zpr", text);
    for diagnostic in &diagnostics {
        // Long messages are cut (diagnostics stay small whatever the input).
        assert!(
            file.render(diagnostic)
                .contains(&bounded(&diagnostic.message))
        );
        let json = file.to_json(diagnostic);
        assert!((json.line, json.col) <= (json.end_line, json.end_col));
    }
    if let Ok(formatted) = format_source("fuzz", text) {
        let again = format_source("fuzz", &formatted)
            .unwrap_or_else(|errors| panic!("fmt output {formatted:?} fails: {errors:?}"));
        assert_eq!(again, formatted, "fmt is not idempotent");
    }
}
