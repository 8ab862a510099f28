//! `zpr check` and `zpr fmt` as users run them: exit codes, text and JSON
//! output, `fmt --check`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VALID: &str =
    "# web to db\nin net:a VCN allow app:web endpoints to connect to app:db endpoints\n";
const WARNS: &str = "in net:a VCN allow '10.0.0.1/8' to connect to app:db endpoints\n";
const BROKEN: &str = "in net:a VCN deny app:web endpoints to connect to app:db endpoints\n\
                      in net:a VCN allow app:web endpoints to access app:db endpoints\n";
const MESSY: &str = "IN net:a VCN ALLOW app:web to connect to app:db\n";

/// A scratch directory unique to one test.
fn scratch(test: &str, files: &[(&str, &str)]) -> PathBuf {
    let directory =
        std::env::temp_dir().join(format!("zpr-lang-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).expect("temp dir");
    for (name, text) in files {
        std::fs::write(directory.join(name), text).expect("write");
    }
    directory
}

fn zpr(directory: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zpr"))
        .current_dir(directory)
        .args(args)
        .output()
        .expect("zpr runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_exit_codes_and_text_output() {
    let dir = scratch(
        "check",
        &[
            ("ok.zpr", VALID),
            ("warns.zpr", WARNS),
            ("broken.zpr", BROKEN),
        ],
    );

    let ok = zpr(&dir, &["check", "ok.zpr", "warns.zpr"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let stderr = text(&ok.stderr);
    assert!(
        stderr.contains("warning: host bits are set in '10.0.0.1/8'"),
        "{stderr}"
    );
    assert!(stderr.contains(" --> warns.zpr:1:20"), "{stderr}");
    assert!(
        stderr.contains("checked 2 files: 2 statements, 1 warning"),
        "{stderr}"
    );

    let broken = zpr(&dir, &["check", "ok.zpr", "broken.zpr"]);
    assert_eq!(broken.status.code(), Some(1));
    let stderr = text(&broken.stderr);
    assert!(stderr.contains(" --> broken.zpr:1:14"), "{stderr}");
    assert!(stderr.contains(" --> broken.zpr:2:41"), "{stderr}");
    assert!(
        stderr.contains("= help: the verb is 'to connect to': did you mean 'connect to'?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: 2 errors found in 2 files"),
        "{stderr}"
    );

    let missing = zpr(&dir, &["check", "absent.zpr"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("absent.zpr"));

    let usage = zpr(&dir, &["check"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn check_json_output() {
    let dir = scratch("json", &[("broken.zpr", BROKEN)]);
    let output = zpr(&dir, &["check", "--output", "json", "broken.zpr"]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(report["errors"], 2);
    assert_eq!(report["warnings"], 0);
    let first = &report["diagnostics"][0];
    assert_eq!(first["file"], "broken.zpr");
    assert_eq!(
        (first["line"].as_u64(), first["col"].as_u64()),
        (Some(1), Some(14))
    );
    assert_eq!(
        (first["end_line"].as_u64(), first["end_col"].as_u64()),
        (Some(1), Some(18))
    );
    assert_eq!(first["severity"], "error");
    assert!(
        first["message"]
            .as_str()
            .is_some_and(|m| m.contains("no 'deny'"))
    );
}

#[test]
fn check_with_an_inventory_makes_unknown_attributes_errors() {
    let inventory = "namespaces:\n  - name: net\n    attributes:\n      - { key: a, type: list, values: [x] }\n";
    let dir = scratch(
        "inventory",
        &[
            (
                "p.zpr",
                "in net.a:y VCN allow all-endpoints to connect to net.a:x endpoints\n",
            ),
            ("inventory.yaml", inventory),
        ],
    );
    let without = zpr(&dir, &["check", "p.zpr"]);
    assert_eq!(without.status.code(), Some(0), "{}", text(&without.stderr));
    let with = zpr(&dir, &["check", "--inventory", "inventory.yaml", "p.zpr"]);
    assert_eq!(with.status.code(), Some(1));
    let stderr = text(&with.stderr);
    assert!(
        stderr.contains("error: 'y' is not one of the values of 'net.a'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: no VCN or endpoint in the inventory carries 'net.a:x'"),
        "{stderr}"
    );
}

#[test]
fn fmt_prints_checks_and_writes() {
    let dir = scratch(
        "fmt",
        &[
            ("ok.zpr", VALID),
            ("messy.zpr", MESSY),
            ("broken.zpr", BROKEN),
        ],
    );

    let printed = zpr(&dir, &["fmt", "messy.zpr"]);
    assert_eq!(printed.status.code(), Some(0));
    assert_eq!(
        text(&printed.stdout),
        "in net:a VCN allow app:web endpoints to connect to app:db endpoints\n"
    );

    let check = zpr(&dir, &["fmt", "--check", "ok.zpr", "messy.zpr"]);
    assert_eq!(check.status.code(), Some(1));
    assert_eq!(text(&check.stdout), "messy.zpr\n");
    assert_eq!(
        zpr(&dir, &["fmt", "--check", "ok.zpr"]).status.code(),
        Some(0)
    );

    let broken = zpr(&dir, &["fmt", "broken.zpr"]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(text(&broken.stderr).contains("broken.zpr has errors; not formatted"));

    assert_eq!(
        zpr(&dir, &["fmt", "--write", "messy.zpr"]).status.code(),
        Some(0)
    );
    assert_eq!(
        zpr(&dir, &["fmt", "--check", "messy.zpr"]).status.code(),
        Some(0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
