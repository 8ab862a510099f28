//! Snapshot tests of `zpr diff` on Oracle's three-tier walkthrough: each
//! scripted change to examples/three-tier must print exactly
//! `tests/diff/NAME.txt` (and `NAME.json` with `--output json`) and exit 2;
//! no change exits 0, invalid inputs 1.
//! `ZPR_BLESS=1 cargo test --test diff_three_tier` rewrites the snapshots.

use std::path::Path;
use std::process::Command;

mod policy_repository;
use policy_repository::{POLICY, Scratch, three_tier};

/// A jump host in the front-end VCN, untagged: not enforced.
const JUMP: &str = "  - name: jump
    vcn: frontend-vcn
    addresses: [10.0.3.10]
    interface: zpr-jump
";

fn edited(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in\n{text}");
    text.replacen(from, to, 1)
}

/// (policy, inventory) before and after a scripted change.
struct Scenario {
    name: &'static str,
    old: (String, String),
    new: (String, String),
}

fn scenarios() -> Vec<Scenario> {
    let (policy, inventory) = three_tier();
    let with_jump = inventory.clone() + JUMP;
    vec![
        Scenario {
            name: "add-port",
            old: (policy.clone(), inventory.clone()),
            new: (
                edited(&policy, "protocol='tcp/1521'", "protocol='tcp/1521,22'"),
                inventory.clone(),
            ),
        },
        Scenario {
            name: "remove-cross-vcn",
            old: (policy.clone(), inventory.clone()),
            new: (
                policy.lines().take(2).collect::<Vec<_>>().join("\n") + "\n",
                inventory.clone(),
            ),
        },
        Scenario {
            name: "tag-jump-host",
            old: (policy.clone(), with_jump.clone()),
            new: (
                policy.clone(),
                edited(
                    &with_jump,
                    "    interface: zpr-jump\n",
                    "    interface: zpr-jump\n    security-attributes: [ocvtc002.apps:server]\n",
                ),
            ),
        },
        Scenario {
            name: "stateless-database",
            old: (policy.clone(), inventory.clone()),
            new: (
                edited(
                    &policy,
                    "protocol='tcp/1521'",
                    "protocol='tcp/1521', connection-state='stateless'",
                ),
                inventory.clone(),
            ),
        },
        Scenario {
            name: "untag-database",
            old: (policy.clone(), inventory.clone()),
            new: (
                policy.clone(),
                edited(
                    &inventory,
                    "    interface: zpr-db\n    security-attributes: [ocvtc002.db:customer-db]\n",
                    "    interface: zpr-db\n",
                ),
            ),
        },
    ]
}

/// (exit code, stdout, stderr) of `zpr diff` run in `root`.
fn zpr_diff(root: &Path, extra: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_zpr"))
        .current_dir(root)
        .arg("diff")
        .args(extra)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn scripted_changes_match_their_snapshots() {
    let snapshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diff");
    let bless = std::env::var_os("ZPR_BLESS").is_some_and(|value| value == "1");
    let mut mismatches = Vec::new();
    for scenario in scenarios() {
        let scratch = Scratch::new();
        let root = &scratch.0;
        scratch.repository("old", &scenario.old);
        scratch.repository("new", &scenario.new);
        for (extension, extra) in [("txt", &[][..]), ("json", &["--output", "json"][..])] {
            let mut arguments = vec!["old", "new"];
            arguments.extend_from_slice(extra);
            let (code, actual, stderr) = zpr_diff(root, &arguments);
            assert_eq!(code, 2, "{}: {stderr}", scenario.name);
            let path = snapshots.join(format!("{}.{extension}", scenario.name));
            if bless {
                std::fs::create_dir_all(&snapshots).unwrap();
                std::fs::write(&path, &actual).unwrap();
                continue;
            }
            let expected = std::fs::read_to_string(&path)
                .unwrap_or_else(|_| panic!("{} is missing: run with ZPR_BLESS=1", path.display()));
            if actual != expected {
                mismatches.push(format!(
                    "--- {}: expected\n{expected}\n--- actual\n{actual}",
                    path.display()
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "snapshots differ (ZPR_BLESS=1 rewrites them after review):\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn no_change_exits_0_and_invalid_inputs_exit_1_with_diagnostics() {
    let scratch = Scratch::new();
    let root = &scratch.0;
    let inputs = three_tier();
    scratch.repository("old", &inputs);
    let comment_only = (format!("{}# reviewed\n", inputs.0), inputs.1.clone());
    scratch.repository("same", &comment_only);
    let (code, stdout, _) = zpr_diff(root, &["old", "same"]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, "no change in what may connect\n")
    );

    let typo = (edited(&inputs.0, "tcp/80'", "tcp/80"), inputs.1);
    scratch.repository("broken", &typo);
    let (code, stdout, stderr) = zpr_diff(root, &["old", "broken"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("broken/three-tier.zpr:1:"), "{stderr}");
    let (code, _, stderr) = zpr_diff(root, &["old", "same", "--no-such-flag"]);
    assert_eq!(code, 1, "usage errors are not changes: {stderr}");
}

#[test]
fn base_compares_the_working_tree_with_a_git_revision() {
    let scratch = Scratch::new();
    let root = &scratch.0;
    let inputs = three_tier();
    let repo = scratch.repository("policies", &inputs);
    let git = |arguments: &[&str]| {
        let status = Command::new("git")
            .current_dir(&repo)
            .args(["-c", "user.name=zpr", "-c", "user.email=zpr@example.com"])
            .args(arguments)
            .status()
            .unwrap();
        assert!(status.success(), "git {arguments:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "three-tier"]);
    std::fs::write(
        repo.join(POLICY),
        edited(&inputs.0, "protocol='tcp/1521'", "protocol='tcp/1521,22'"),
    )
    .unwrap();
    let (code, stdout, stderr) = zpr_diff(&repo, &["--base", "HEAD"]);
    assert_eq!(code, 2, "{stderr}");
    let expected = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diff/add-port.txt"),
    )
    .unwrap();
    assert_eq!(stdout, expected);
    let (code, _, stderr) = zpr_diff(root, &["--base", "HEAD", "policies"]);
    assert_eq!(code, 2, "{stderr}");
}
