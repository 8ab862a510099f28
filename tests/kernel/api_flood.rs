//! The API socket is open to every local user (IAM decides what each may
//! do), so any of them can flood it. Here an unprivileged user holds a
//! thousand connections to a `zpr serve` started with systemd's default
//! soft descriptor limit (1,024): the server raises its limit, keeps only
//! the user's share of connections open, does not spin or fill its log,
//! and root (and the flooding user's own next request) is answered.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use zpr_tests::{Netns, os_users::TestUser, served_agent::ServedAgent, three_tier::example};

/// Connections one local user may hold (the server's per-peer cap).
const PER_USER: usize = 32;

/// The process's user and system CPU time so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The soft and hard "Max open files" of a process.
fn descriptor_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let values: Vec<&str> = line.split_whitespace().collect();
    (values[3].to_owned(), values[4].to_owned())
}

#[test]
fn a_local_user_holding_a_thousand_connections_neither_stalls_root_nor_the_server() {
    let netns = Netns::new().unwrap();
    let launcher = ["prlimit", "--nofile=1024:"].map(str::to_owned);
    let agent = ServedAgent::start_with(
        &netns,
        &example("inventory.yaml"),
        "",
        "root",
        &[],
        &launcher,
    )
    .unwrap();
    let pid = agent.pid().unwrap();
    let (soft, hard) = descriptor_limits(pid);
    assert_eq!(soft, hard, "the soft descriptor limit is raised at start");

    let flooder = TestUser::create("zfl").unwrap();
    let mut hold = Command::new("setpriv")
        .arg(format!("--reuid={}", flooder.name))
        .arg(format!("--regid={}", flooder.name))
        .arg("--init-groups")
        .arg(env!("CARGO_BIN_EXE_hold_connections"))
        .arg(&agent.socket)
        .arg("1000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut report = BufReader::new(hold.stdout.take().unwrap()).lines();
    let mut number = |prefix: &str| -> usize {
        let line = report.next().unwrap().unwrap();
        line.strip_prefix(prefix)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("expected '{prefix}N', read '{line}'"))
    };
    let connected = number("connected ");
    let open = number("open ");
    assert!(connected >= 500, "only {connected} connections were made");
    assert!(
        open <= PER_USER,
        "the server keeps {open} of one user's {connected} connections open"
    );

    let cpu_before = cpu_ticks(pid);
    let asked = Instant::now();
    let listed = agent.cli(None, &["policy", "list"]).unwrap();
    assert!(listed.status.success(), "{listed:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "root waited {:?} for `zpr policy list` during the flood",
        asked.elapsed()
    );
    // The flooding user's own next request gets an answer (IAM denies
    // it), not a closed connection: its oldest idle one gave way.
    let own = agent.cli(Some(&flooder.name), &["policy", "list"]).unwrap();
    let stderr = String::from_utf8_lossy(&own.stderr);
    assert!(stderr.contains("(403)"), "{stderr}");

    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: sysconf only reads a constant.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let busy = cpu_ticks(pid) - cpu_before;
    assert!(
        busy < ticks_per_second,
        "the server used {busy} ticks of CPU in about 2 s of flood: it spins"
    );
    let log = agent.log();
    assert!(
        log.lines().count() < 100,
        "the server's log grew to {} lines during the flood:\n{}",
        log.lines().count(),
        &log[..log.len().min(2000)]
    );
    drop(hold.stdin.take());
    let _ = hold.kill();
    let _ = hold.wait();
}
