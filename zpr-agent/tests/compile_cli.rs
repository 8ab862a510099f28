//! `zpr compile` and `zpr explain` as a user runs them: output, exit codes,
//! and how bad input is reported.

use std::path::PathBuf;
use std::process::{Command, Output};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/three-tier");

fn zpr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zpr"))
        .args(args)
        .output()
        .unwrap()
}

fn inventory() -> String {
    format!("{EXAMPLE}/inventory.yaml")
}

fn policy() -> String {
    format!("{EXAMPLE}/three-tier.zpr")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A file of this test's own, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!("zpr-compile-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn compile_prints_the_plan() {
    let output = zpr(&["compile", "--inventory", &inventory(), &policy()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "3 statements",
        "4 endpoints (4 local)",
        "matched by ocvtc002.lb:frontend in ocvtc002.networks:front-end VCN, '0.0.0.0/0'",
        "endpoints: lb 10.0.1.10",
        "lb on zpr-lb, protected, enforce: 10.0.1.10 (uid ",
        "0.0.0.0/0 -> uid ",
        "ingress from any\n    tcp/80: three-tier:1",
        "tcp/1521: three-tier:3",
    ] {
        assert!(text.contains(expected), "expected {expected:?} in\n{text}");
    }
}

#[test]
fn compile_prints_json() {
    let output = zpr(&[
        "compile",
        "--inventory",
        &inventory(),
        &policy(),
        "--output",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(plan["sizes"]["statements"], 3);
    assert_eq!(plan["statements"][0]["id"], "three-tier:1");
    assert_eq!(plan["prefixes"][0]["prefix"], "0.0.0.0/0");
    assert_eq!(plan["content_hash"].as_str().unwrap().len(), 16);
    let entry = &plan["policy"][0];
    assert!(entry["key"]["l4"]["len"].is_u64() && entry["value"]["statements"].is_array());
}

#[test]
fn policy_errors_print_the_parsers_diagnostics() {
    let broken = TempFile::new(
        "broken.zpr",
        "in ocvtc002.networks:front-end VCN permit '0.0.0.0/0' to connect to ocvtc002.lb:frontend\n",
    );
    let output = zpr(&["compile", "--inventory", &inventory(), broken.path()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("error:") && text.contains("broken.zpr:1:"),
        "{text}"
    );
    assert!(stdout(&output).is_empty());
}

#[test]
fn inventory_errors_name_the_file_and_path() {
    let broken = TempFile::new(
        "inventory.yaml",
        "namespaces: [ { name: ns, attributes: [ { key: app, type: freeform } ] } ]\n\
         vcns: [ { name: v, cidrs: [10.0.0.0/16] } ]\n\
         endpoints:\n  - { name: a, vcn: v, addresses: [10.9.0.1], security-attributes: [ns.ap:x] }\n",
    );
    let output = zpr(&["compile", "--inventory", broken.path(), &policy()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("endpoints[0].addresses[0]: address 10.9.0.1 is outside VCN 'v'"),
        "{text}"
    );
    assert!(
        text.contains("endpoints[0].security-attributes[0]: unknown key 'ap' in namespace 'ns'"),
        "{text}"
    );
}

#[test]
fn explain_exit_codes() {
    let explain = |from: &str, to: &str, extra: &[&str]| {
        let (inventory, policy) = (inventory(), policy());
        let mut args = vec![
            "explain",
            "--inventory",
            &inventory,
            &policy,
            "--from",
            from,
            "--to",
            to,
        ];
        args.extend_from_slice(extra);
        zpr(&args)
    };
    let allowed = explain("198.51.100.10", "10.0.1.10", &["--port", "80"]);
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
    assert!(stdout(&allowed).starts_with("198.51.100.10 -> 10.0.1.10 tcp/80: allowed"));
    let denied = explain("10.0.2.10", "10.1.1.10", &["--port", "22"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(stdout(&denied).contains("matches these endpoints but allows tcp/1521, not tcp/22"));
    let no_port = explain("10.0.2.10", "10.1.1.10", &[]);
    assert_eq!(no_port.status.code(), Some(2));
    assert!(stderr(&no_port).contains("--port is required"));
    let mixed = explain("10.0.2.10", "fd00:0:2::10", &["--port", "1521"]);
    assert_eq!(mixed.status.code(), Some(2));
    let json = explain(
        "10.0.2.10",
        "10.1.1.10",
        &["--port", "1521", "--output", "json"],
    );
    assert_eq!(json.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(report["destination"]["verdict"]["decision"], "allow");
    assert_eq!(
        report["destination"]["verdict"]["statements"][0],
        "three-tier:3"
    );
    let ping = explain("10.0.1.10", "10.0.2.10", &["--protocol", "icmp"]);
    assert_eq!(ping.status.code(), Some(1));
    assert!(
        stdout(&ping).contains("icmp type 8 code 0: denied"),
        "{}",
        stdout(&ping)
    );
}
