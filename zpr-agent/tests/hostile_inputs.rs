//! Input files as a hostile pull request or a local attacker writes them,
//! given to `zpr check` and `zpr diff` (the CI gate): a YAML alias bomb, a
//! FIFO where a file should be, a symlink out of the tree, and base
//! revisions whose names git would quote. Each is refused (or read right)
//! quickly, in little memory, and never quotes a file outside the tree.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The address space `zpr` gets: the alias bomb needs gigabytes.
const MEMORY_LIMIT: libc::rlim_t = 1 << 30;
/// Longer than any of these commands takes, far shorter than for ever.
const TIMEOUT: Duration = Duration::from_secs(30);
/// A line of a file outside the tree: no part of it may be printed.
const SECRET: &str = "aws_secret_access_key = do-not-print-me";

mod policy_repository;
use policy_repository::{INVENTORY, POLICY, Scratch, example, three_tier};

/// `zpr ARGUMENTS` run in `directory` within [`MEMORY_LIMIT`], killed
/// (and the test failed) after [`TIMEOUT`].
fn zpr(directory: &Path, arguments: &[&str], environment: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zpr"));
    command
        .current_dir(directory)
        .args(arguments)
        .envs(environment.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; it only limits the child.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: MEMORY_LIMIT,
                rlim_max: MEMORY_LIMIT,
            };
            match libc::setrlimit(libc::RLIMIT_AS, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let mut child = command.spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > TIMEOUT {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("zpr {arguments:?} still runs after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that `output` is a refusal (exit `code`) that names `naming`
/// and quotes nothing of [`SECRET`].
fn assert_refused(output: &Output, code: i32, naming: &str) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{message}");
    assert!(message.contains(naming), "{message}");
    for part in SECRET.split(' ').filter(|part| part.len() > 1) {
        assert!(!message.contains(part), "{message}");
    }
}

#[test]
fn an_alias_bomb_is_refused_by_check_and_diff_in_little_memory() {
    let scratch = Scratch::new();
    scratch.repository("old", &three_tier());
    let new = scratch.repository("new", &three_tier());
    let bomb = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/alias-bomb.yaml");
    assert!(std::fs::metadata(&bomb).unwrap().len() < 32 << 10);
    std::fs::copy(bomb, new.join(INVENTORY)).unwrap();

    let check = zpr(&new, &["check", "--inventory", INVENTORY, POLICY], &[]);
    let message = stderr(&check);
    assert_eq!(check.status.code(), Some(1), "{message}");
    assert!(
        message.contains("inventory.yaml: 5:") && message.contains("YAML aliases"),
        "{message}"
    );

    let diff = zpr(&scratch.0, &["diff", "old", "new"], &[]);
    assert_eq!(diff.status.code(), Some(1), "{}", stderr(&diff));
    assert!(stderr(&diff).contains("YAML aliases"), "{}", stderr(&diff));
}

fn mkfifo(path: &Path) {
    let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `name` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
}

#[test]
fn a_fifo_in_place_of_an_input_is_refused_at_once() {
    let scratch = Scratch::new();
    scratch.repository("old", &three_tier());
    let new = scratch.repository("new", &three_tier());
    std::fs::remove_file(new.join(INVENTORY)).unwrap();
    mkfifo(&new.join(INVENTORY));
    mkfifo(&new.join("x.zpr"));

    let check = zpr(&new, &["check", "--inventory", INVENTORY, POLICY], &[]);
    assert_eq!(check.status.code(), Some(2), "{}", stderr(&check));
    assert!(
        stderr(&check)
            .contains("inventory inventory.yaml is a FIFO (named pipe), not a regular file"),
        "{}",
        stderr(&check)
    );
    let check = zpr(&new, &["check", "x.zpr"], &[]);
    assert!(
        stderr(&check).contains("policy x.zpr is a FIFO"),
        "{}",
        stderr(&check)
    );

    let diff = zpr(&scratch.0, &["diff", "old", "new"], &[]);
    assert_eq!(diff.status.code(), Some(1), "{}", stderr(&diff));
    assert!(stderr(&diff).contains("is a FIFO"), "{}", stderr(&diff));
}

#[test]
fn a_symlink_out_of_the_tree_is_named_and_its_target_never_quoted() {
    let scratch = Scratch::new();
    scratch.repository("old", &three_tier());
    let new = scratch.repository("new", &three_tier());
    let outside = scratch.0.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("credentials"), format!("{SECRET}\n")).unwrap();
    std::os::unix::fs::symlink("../outside/credentials", new.join("leak.zpr")).unwrap();

    let diff = zpr(&scratch.0, &["diff", "old", "new"], &[]);
    let naming = "policy new/leak.zpr is a symlink that leads outside new";
    assert_refused(&diff, 1, naming);
    let check = zpr(
        &scratch.0,
        &["check", "--inventory", "new/inventory.yaml", "new/leak.zpr"],
        &[],
    );
    assert_refused(&check, 2, naming);

    // A valid policy behind such a link is not used without a word either.
    std::fs::remove_file(new.join("leak.zpr")).unwrap();
    std::fs::rename(new.join(POLICY), outside.join(POLICY)).unwrap();
    std::os::unix::fs::symlink(format!("../outside/{POLICY}"), new.join(POLICY)).unwrap();
    let diff = zpr(&scratch.0, &["diff", "old", "new"], &[]);
    assert_eq!(diff.status.code(), Some(1), "{}", stderr(&diff));

    // A symlink within the tree is read.
    std::fs::remove_file(new.join(POLICY)).unwrap();
    std::fs::create_dir_all(new.join("shared")).unwrap();
    std::fs::write(new.join("shared").join(POLICY), example(POLICY)).unwrap();
    std::os::unix::fs::symlink(format!("./shared/{POLICY}"), new.join(POLICY)).unwrap();
    let diff = zpr(&scratch.0, &["diff", "old", "new"], &[]);
    assert_eq!(diff.status.code(), Some(0), "{}", stderr(&diff));
}

/// Commits everything in `repository` (made a git repository first if
/// it is not one), as a merged change would be.
fn commit_all(repository: &Path, message: &str) {
    for arguments in [
        &["init", "-q"][..],
        &["add", "."],
        &["commit", "-qm", message],
    ] {
        let status = Command::new("git")
            .current_dir(repository)
            .args(["-c", "user.name=zpr", "-c", "user.email=zpr@example.com"])
            .args(arguments)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "git {arguments:?}");
    }
}

#[test]
fn base_is_read_from_git_objects_and_nothing_is_written() {
    let scratch = Scratch::new();
    let repository = scratch.repository("policies", &three_tier());
    commit_all(&repository, "three-tier");
    // A temporary directory that cannot hold anything: nothing may be
    // written there (nor anywhere) to read the base revision.
    let no_directory = scratch.0.join("not-a-directory");
    std::fs::write(&no_directory, "").unwrap();
    let diff_base = || {
        zpr(
            &repository,
            &["diff", "--base", "HEAD"],
            &[("TMPDIR", &no_directory)],
        )
    };
    let unchanged = diff_base();
    assert_eq!(unchanged.status.code(), Some(0), "{}", stderr(&unchanged));
    assert_eq!(
        String::from_utf8_lossy(&unchanged.stdout),
        "no change in what may connect\n"
    );
    assert_eq!(std::fs::read(&no_directory).unwrap(), b"");

    let widened = example(POLICY).replacen("tcp/1521'", "tcp/1521,22'", 1);
    std::fs::write(repository.join(POLICY), widened).unwrap();
    let changed = diff_base();
    assert_eq!(changed.status.code(), Some(2), "{}", stderr(&changed));
    assert!(
        String::from_utf8_lossy(&changed.stdout).contains("opens: newly allowed by three-tier:3")
    );
}

#[test]
fn base_reads_names_git_would_quote() {
    let scratch = Scratch::new();
    let repository = scratch.repository("policies", &three_tier());
    // One statement a file, each under a name `git ls-tree` quotes or
    // splits without -z.
    let policy = example(POLICY);
    let statements: Vec<&str> = policy.lines().take(3).collect();
    let names = ["café.zpr", "with space.zpr", "new\nline.zpr"];
    std::fs::remove_file(repository.join(POLICY)).unwrap();
    for (name, statement) in names.iter().zip(&statements) {
        std::fs::write(repository.join(name), format!("{statement}\n")).unwrap();
    }
    commit_all(&repository, "three-tier, one statement a file");

    let unchanged = zpr(&repository, &["diff", "--base", "HEAD"], &[]);
    assert_eq!(
        (
            unchanged.status.code(),
            String::from_utf8_lossy(&unchanged.stdout).as_ref()
        ),
        (Some(0), "no change in what may connect\n"),
        "{}",
        stderr(&unchanged)
    );

    std::fs::remove_file(repository.join("café.zpr")).unwrap();
    let closed = zpr(&repository, &["diff", "--base", "HEAD"], &[]);
    assert_eq!(closed.status.code(), Some(2), "{}", stderr(&closed));
    assert!(
        String::from_utf8_lossy(&closed.stdout).contains("no longer allowed by café:1"),
        "{}",
        String::from_utf8_lossy(&closed.stdout)
    );
}

#[test]
fn base_follows_a_symlink_only_to_a_file_beside_it() {
    let scratch = Scratch::new();
    let repository = scratch.repository("policies", &three_tier());
    std::fs::rename(repository.join(INVENTORY), repository.join("hosts.yaml")).unwrap();
    std::os::unix::fs::symlink("./hosts.yaml", repository.join(INVENTORY)).unwrap();
    commit_all(&repository, "inventory behind a symlink");
    let unchanged = zpr(&repository, &["diff", "--base", "HEAD"], &[]);
    assert_eq!(unchanged.status.code(), Some(0), "{}", stderr(&unchanged));

    std::fs::write(scratch.0.join("credentials"), format!("{SECRET}\n")).unwrap();
    std::os::unix::fs::symlink("../credentials", repository.join("leak.zpr")).unwrap();
    commit_all(&repository, "a symlink out of the tree");
    let leaking = zpr(&repository, &["diff", "--base", "HEAD"], &[]);
    let naming = "HEAD:./leak.zpr: not a file, nor a symlink to a file beside it";
    assert_refused(&leaking, 1, naming);
}
