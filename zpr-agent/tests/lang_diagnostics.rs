//! Snapshot tests of the diagnostics for common mistakes: every
//! `tests/diagnostics/NAME.zpr` must render exactly as `NAME.txt`.
//! `ZPR_BLESS=1 cargo test --test lang_diagnostics` rewrites the `.txt` files.

use std::path::{Path, PathBuf};

use zpr_agent::lang::{SourceFile, parse};

fn render(name: &str, source: &str) -> String {
    let diagnostics = match parse(name.trim_end_matches(".zpr"), source) {
        Ok(parsed) => parsed.warnings,
        Err(diagnostics) => diagnostics,
    };
    let file = SourceFile::new(name, source);
    diagnostics
        .iter()
        .map(|diagnostic| file.render(diagnostic))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn diagnostics_match_their_snapshots() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics");
    let bless = std::env::var_os("ZPR_BLESS").is_some_and(|value| value == "1");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&directory)
        .expect("tests/diagnostics exists")
        .map(|entry| entry.expect("readable directory").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "zpr"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 10, "only {} snapshot inputs", inputs.len());

    let mut mismatches = Vec::new();
    for input in &inputs {
        let name = input
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 file name");
        let source = std::fs::read_to_string(input).expect("readable input");
        let actual = render(name, &source);
        assert!(
            !actual.is_empty(),
            "{name} produces no diagnostics; it tests nothing"
        );
        let expected_path = input.with_extension("txt");
        if bless {
            std::fs::write(&expected_path, &actual).expect("writable snapshot");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run with ZPR_BLESS=1 to create it",
                expected_path.display()
            )
        });
        if actual != expected {
            mismatches.push(format!(
                "--- {name}: expected\n{expected}\n--- actual\n{actual}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "snapshots differ (ZPR_BLESS=1 rewrites them after review):\n{}",
        mismatches.join("\n")
    );
}
