//! The agent as systemd runs it: the notify protocol, spoken to a socket
//! of the test's own (as `Type=notify` with `WatchdogSec=`): READY only
//! once the host is protected, STATUS lines, watchdog pings from the main
//! loop, and STOPPING on SIGTERM; and the unit's sandbox (its capabilities
//! only, a mount namespace of its own that is a slave of the host's).

use std::{
    os::unix::net::UnixDatagram,
    time::{Duration, Instant},
};

use zpr_tests::{mount_namespace::SharedBpffs, site::Inputs, three_tier::Network, unique_name};

/// The test's notify socket, removed on drop.
struct NotifySocket {
    socket: UnixDatagram,
    path: std::path::PathBuf,
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The messages received until `until` holds for one of them.
fn receive_until(
    socket: &UnixDatagram,
    timeout: Duration,
    until: impl Fn(&str) -> bool,
) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    let mut messages = Vec::new();
    let mut buffer = [0; 4096];
    while started.elapsed() < timeout {
        let Ok(len) = socket.recv(&mut buffer) else {
            continue;
        };
        let message = String::from_utf8_lossy(&buffer[..len]).into_owned();
        let done = until(&message);
        messages.push(message);
        if done {
            return Ok(messages);
        }
    }
    anyhow::bail!("timed out after {timeout:?}; received {messages:?}")
}

#[test]
fn ready_only_when_protected_then_watchdog_and_stopping() -> anyhow::Result<()> {
    let network = Network::start()?;
    let inputs = Inputs::new()?;
    let path = std::env::temp_dir().join(unique_name("zpn"));
    let notify = NotifySocket {
        socket: UnixDatagram::bind(&path)?,
        path: path.clone(),
    };
    let socket = &notify.socket;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut agent = inputs.prepare_agent(&network, &inputs.dir);
    agent.environment = vec![
        ("NOTIFY_SOCKET".to_owned(), path.display().to_string()),
        ("WATCHDOG_USEC".to_owned(), "3000000".to_owned()),
    ];
    agent.spawn()?;

    let before_ready = receive_until(socket, Duration::from_secs(20), |m| m.contains("READY=1"))?;
    let (code, report) = agent.status_report()?;
    assert_eq!(
        code, 0,
        "READY came before the host was protected: {report:#}"
    );
    let ready = before_ready.last().unwrap();
    assert!(
        ready.contains("STATUS=enforcing generation 1 on 4 vNICs"),
        "{ready:?}"
    );
    assert!(
        before_ready[..before_ready.len() - 1]
            .iter()
            .all(|m| m == "WATCHDOG=1"),
        "nothing but watchdog pings before READY: {before_ready:?}"
    );

    let started = Instant::now();
    let pings = receive_until(socket, Duration::from_secs(5), |m| m == "WATCHDOG=1")?;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the watchdog is pinged every second: {pings:?} took {:?}",
        started.elapsed()
    );

    agent.terminate()?;
    receive_until(socket, Duration::from_secs(5), |m| m.contains("STOPPING=1"))?;
    Ok(())
}

/// The capabilities `examples/zpr.service` grants.
const UNIT_CAPABILITIES: &str = "-all,+bpf,+perfmon,+net_admin,+sys_admin";

#[test]
fn enforces_with_only_the_units_capabilities_in_a_sandboxed_mount_namespace() -> anyhow::Result<()>
{
    let bpffs = SharedBpffs::mount_in(std::path::Path::new("/sys/fs/bpf"))?;
    let network = Network::start()?;
    let inputs = Inputs::new()?;
    let mut agent = inputs.prepare_agent(&network, &inputs.dir);
    agent.bpffs = bpffs.dir().to_owned();
    agent.wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "slave",
        "setpriv",
        "--bounding-set",
        UNIT_CAPABILITIES,
        "--inh-caps",
        UNIT_CAPABILITIES,
        "--ambient-caps",
        UNIT_CAPABILITIES,
    ]
    .map(str::to_owned)
    .to_vec();
    agent.spawn()?;
    agent.wait_for_generation(1)?;
    let (code, report) = agent.status_report()?;
    assert_eq!(code, 0, "{report:#}\n{}", agent.log());
    assert!(
        !agent.log().contains("private mount namespace"),
        "the pins were judged invisible: {}",
        agent.log()
    );
    let site = zpr_tests::site::Site {
        network,
        inputs,
        agent,
    };
    site.assert_paths_as_in_example();
    Ok(())
}
