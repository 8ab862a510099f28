//! Replays the fuzz corpus (`fuzz/corpus/parse/`) through the policy reader
//! with the fuzz target's own checks, so what fuzzing found stays fixed.

use std::path::Path;

#[path = "../fuzz/properties.rs"]
mod properties;

#[test]
fn fuzz_corpus_replays_without_panics() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&directory).expect("the fuzz corpus exists") {
        let path = entry.expect("readable corpus").path();
        let bytes = std::fs::read(&path).expect("readable corpus file");
        if let Ok(text) = std::str::from_utf8(&bytes) {
            properties::check(text);
            replayed += 1;
        }
    }
    assert!(replayed >= 68, "only {replayed} corpus inputs replayed");
}
