//! `zpr monitor` under a flood of denied packets tells what it does not
//! show: events rate-limited by the kernel (in a record of their own,
//! agreeing with the kernel's counters), and events from before it started
//! (the agent's backlog: skipped, not replayed). An internet source is
//! named by the prefix it fell in, not by the jump host sharing its
//! identity. A monitor that reads too slowly (stopped) is told how many
//! events the agent dropped for it, and costs another monitor nothing.
//! With no agent running, the monitor reads the pinned ring buffer itself.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    process::{Child, Stdio},
    time::Duration,
};

use serde_json::Value;
use zpr_tests::{
    Netns,
    agent::AgentProcess,
    http::{free_port, http_get},
    site::Inputs,
    site::Site,
    three_tier::{HOSTS, Network},
};

/// The agent's event budget per CPU: far below the flood's rate.
const EVENTS_PER_SECOND: &str = "10";
/// Denied datagrams sent before the monitor starts, to this port.
const BEFORE_PORT: u16 = 7001;
const BEFORE: usize = 5;
/// The flood, after the monitor started, to this port.
const FLOOD_PORT: u16 = 7002;
const FLOOD: usize = 20_000;
/// An untagged endpoint outside the VCNs: it matches only the policy's
/// `'0.0.0.0/0'`, so it shares the internet's identity.
const JUMP: &str = "192.0.2.7";

/// Sends `count` denied UDP datagrams from the internet host to app-1.
fn send_denied(network: &Network, port: u16, count: usize) -> anyhow::Result<()> {
    let internet: &Netns = network.netns("internet");
    let target = (network.address("app-1"), port);
    internet.enter(|| -> anyhow::Result<()> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        for _ in 0..count {
            // A full socket buffer is no failure here: the next one goes.
            let _ = socket.send_to(b"denied", target);
        }
        Ok(())
    })?
}

/// The example inventory with a jump host in a management VCN of its own.
fn add_jump_host(inputs: &Inputs) -> anyhow::Result<()> {
    let inventory = fs::read_to_string(inputs.inventory())?;
    anyhow::ensure!(inventory.contains("\nendpoints:\n"));
    let inventory = inventory.replace(
        "\nendpoints:\n",
        "  - name: mgmt-vcn\n    cidrs: [192.0.2.0/24]\n\nendpoints:\n",
    ) + &format!("  - name: jump\n    vcn: mgmt-vcn\n    addresses: [{JUMP}]\n");
    fs::write(inputs.inventory(), inventory)?;
    Ok(())
}

/// `zpr monitor --output json` for `agent`'s pins, for `seconds` at most,
/// its output piped.
fn spawn_monitor(agent: &AgentProcess, seconds: &str) -> std::io::Result<Child> {
    agent
        .zpr(&["monitor", "--output", "json", "--duration", seconds])
        .args(agent.paths())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

fn rate_limited_by_kernel(status: &Value) -> u64 {
    status["events"]["rate_limited"]
        .as_u64()
        .expect("zpr status reports rate-limited events")
}

#[test]
fn a_flood_is_reported_as_rate_limited_and_old_events_are_not_replayed() -> anyhow::Result<()> {
    assert!(HOSTS.iter().all(|(_, _, address)| *address != JUMP));
    let network = Network::start()?;
    let inputs = Inputs::new()?;
    add_jump_host(&inputs)?;
    let mut agent = inputs.prepare_agent(&network, &inputs.dir);
    agent.arguments.extend([
        "--events-per-second".to_owned(),
        EVENTS_PER_SECOND.to_owned(),
    ]);
    agent.spawn()?;
    agent.wait_for_generation(1)?;

    // Within the budget: these wait in the ring buffer, older than the monitor.
    send_denied(&network, BEFORE_PORT, BEFORE)?;
    std::thread::sleep(Duration::from_millis(200));
    let kernel_before = rate_limited_by_kernel(&agent.status_report()?.1);

    let monitor = spawn_monitor(&agent, "5")?;
    std::thread::sleep(Duration::from_millis(1000));
    send_denied(&network, FLOOD_PORT, FLOOD)?;
    let output = monitor.wait_with_output()?;
    let kernel_after = rate_limited_by_kernel(&agent.status_report()?.1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "zpr monitor failed: {stderr}");

    let stream = String::from_utf8(output.stdout)?;
    let records: Vec<Value> = stream
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let of_type =
        |kind: &str| -> Vec<&Value> { records.iter().filter(|r| r["type"] == kind).collect() };
    let events = of_type("event");
    let suppressed = of_type("suppressed");
    let skipped = of_type("skipped");
    let summary = of_type("summary");

    // Nothing from before the monitor is shown; it is counted instead.
    assert!(
        events.iter().all(|e| e["dst_port"] != BEFORE_PORT),
        "an event buffered before the monitor was shown:\n{stream}"
    );
    assert!(events.iter().all(|e| e["stale"] == false), "{stream}");
    let skipped_total: u64 = skipped
        .iter()
        .map(|r| r["buffered"].as_u64().unwrap())
        .sum();
    assert!(
        skipped_total >= BEFORE as u64,
        "the {BEFORE} buffered events are counted as skipped:\n{stream}"
    );

    // The flood: a few events within the budget, the rest reported as
    // rate-limited, as many as the kernel counted meanwhile.
    let flood: Vec<&&Value> = events
        .iter()
        .filter(|e| e["dst_port"] == FLOOD_PORT)
        .collect();
    assert!(!flood.is_empty(), "{stream}");
    assert!(
        flood.len() < FLOOD / 10,
        "{} flood events shown at {EVENTS_PER_SECOND} a second",
        flood.len()
    );
    assert!(!suppressed.is_empty(), "no suppressed record:\n{stream}");
    let reported: u64 = suppressed
        .iter()
        .map(|r| r["rate_limited"].as_u64().unwrap())
        .sum();
    assert!(reported > 0, "{stream}");
    let kernel = kernel_after - kernel_before;
    assert!(
        reported <= kernel && kernel - reported <= 10,
        "the monitor reported {reported} rate-limited events; the kernel counted {kernel}"
    );
    assert!(
        reported as usize + flood.len() >= FLOOD / 2,
        "most of the {FLOOD} datagrams are accounted for: {reported} reported, {} shown",
        flood.len()
    );
    assert_eq!(summary.len(), 1, "{stream}");
    assert_eq!(summary[0]["rate_limited"], reported, "{stream}");
    assert_eq!(summary[0]["skipped_buffered"], skipped_total, "{stream}");
    assert_eq!(summary[0]["shown"], events.len(), "{stream}");

    // The internet source is named by the prefix it fell in.
    for event in &flood {
        assert_eq!(event["local"], "app-1", "{event}");
        assert_eq!(event["remote"], "0.0.0.0/0 (jump)", "{event}");
    }
    Ok(())
}

/// Denied datagrams sent once the agent has stopped, to this port.
const AFTER_AGENT_PORT: u16 = 7004;

#[test]
fn without_an_agent_the_monitor_reads_the_pinned_ring_buffer() -> anyhow::Result<()> {
    let network = Network::start()?;
    let inputs = Inputs::new()?;
    let mut agent = inputs.start_agent(&network)?;
    agent.wait_for_generation(1)?;
    // A monitor reading through the agent ends, with its summary, when
    // the agent stops.
    let through_agent = spawn_monitor(&agent, "20")?;
    std::thread::sleep(Duration::from_millis(500));
    // Enforcement (and the ring buffer) stays pinned; nobody drains it.
    agent.terminate()?;
    let ended = through_agent.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&ended.stderr);
    assert!(ended.status.success(), "{stderr}");
    assert!(
        stderr.contains("the agent stopped serving events"),
        "{stderr}"
    );
    assert!(
        String::from_utf8(ended.stdout)?.contains("\"type\":\"summary\""),
        "{stderr}"
    );
    send_denied(&network, AFTER_AGENT_PORT, 3)?;
    std::thread::sleep(Duration::from_millis(200));

    let monitor = |extra: &[&str]| -> anyhow::Result<Vec<Value>> {
        let output = agent
            .zpr(&["monitor", "--output", "json", "--duration", "1"])
            .args(extra)
            .args(agent.paths())
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        anyhow::ensure!(output.status.success(), "zpr monitor failed: {stderr}");
        Ok(String::from_utf8(output.stdout)?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?)
    };
    // What waited in the ring buffer is older than the monitor: shown
    // stale on request, and named from the stopped agent's status file.
    let records = monitor(&["--include-buffered"])?;
    let events: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "event" && r["dst_port"] == AFTER_AGENT_PORT)
        .collect();
    assert_eq!(events.len(), 3, "{records:?}");
    for event in events {
        assert_eq!(event["stale"], true, "{event}");
        assert_eq!(event["local"], "app-1", "{event}");
        assert_eq!(event["reason"], "no-policy", "{event}");
    }
    // Read once, they are gone: this monitor was the ring buffer's reader.
    let again = monitor(&["--include-buffered"])?;
    assert!(again.iter().all(|r| r["type"] != "event"), "{again:?}");
    Ok(())
}

/// Denied datagrams sent while a monitor is stopped, to this port.
const WHILE_STOPPED_PORT: u16 = 7005;
/// More events than a stopped monitor's queue and socket buffer hold, at
/// a rate a monitor that reads (a debug build printing JSON) keeps up with.
const WHILE_STOPPED: usize = 10_000;

#[test]
fn a_monitor_that_reads_too_slowly_is_told_what_it_missed() -> anyhow::Result<()> {
    let mut metrics = None;
    let site = Site::start_with(|network, agent| {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(network.router())?));
        metrics = Some(address);
        agent.arguments.extend(
            [
                // Every event of the flood is sent, for the agent to fan out.
                "--events-per-second",
                "1000000",
                "--metrics-address",
                &address.to_string(),
            ]
            .map(str::to_owned),
        );
        Ok(())
    })?;
    let (agent, network) = (&site.agent, &site.network);
    let (slow, on_time) = (spawn_monitor(agent, "30")?, spawn_monitor(agent, "30")?);
    let (slow_pid, on_time_pid) = (slow.id() as libc::pid_t, on_time.id() as libc::pid_t);
    // Their output is read as they print it: a full pipe would make a slow
    // reader of either.
    let slow = std::thread::spawn(move || slow.wait_with_output());
    let on_time = std::thread::spawn(move || on_time.wait_with_output());
    // SAFETY: kill(2) on our own children.
    let signal = |pid, signal| unsafe { libc::kill(pid, signal) } == 0;
    std::thread::sleep(Duration::from_millis(1000));
    let stopped = signal(slow_pid, libc::SIGSTOP);
    if stopped {
        // About 2,000 a second, in rounds.
        for _ in 0..WHILE_STOPPED / 100 {
            send_denied(network, WHILE_STOPPED_PORT, 100)?;
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    signal(slow_pid, libc::SIGCONT);
    // A few more events after it resumed: the agent tells it what it
    // missed before the next one.
    std::thread::sleep(Duration::from_millis(500));
    send_denied(network, WHILE_STOPPED_PORT, 3)?;
    std::thread::sleep(Duration::from_millis(1000));
    signal(slow_pid, libc::SIGINT);
    signal(on_time_pid, libc::SIGINT);
    let slow = slow.join().expect("the slow monitor's waiter")?;
    let on_time = on_time.join().expect("the other monitor's waiter")?;
    assert!(stopped, "the monitor could not be stopped");
    let summary = |output: &std::process::Output| -> anyhow::Result<Value> {
        let stream = String::from_utf8(output.stdout.clone())?;
        anyhow::ensure!(output.status.success(), "{stream}");
        stream
            .lines()
            .map(serde_json::from_str::<Value>)
            .filter_map(Result::ok)
            .find(|record| record["type"] == "summary")
            .ok_or_else(|| anyhow::anyhow!("no summary:\n{stream}"))
    };
    let (slow, on_time) = (summary(&slow)?, summary(&on_time)?);
    let missed = slow["read_too_slowly"].as_u64().unwrap();
    assert!(missed > 0, "{slow}");
    // The other monitor kept up, whatever the slow one did, and each
    // accounts for every event: shown, or missed and told.
    assert_eq!(on_time["read_too_slowly"], 0, "{on_time}");
    let on_time_shown = on_time["shown"].as_u64().unwrap();
    assert!(on_time_shown > WHILE_STOPPED as u64, "{on_time}");
    assert_eq!(
        slow["shown"].as_u64().unwrap() + missed,
        on_time_shown,
        "{slow} {on_time}"
    );
    // The agent counted exactly what it told the slow monitor.
    let (status, body) = http_get(network.router(), metrics.unwrap(), "/metrics")?;
    assert_eq!(status, 200, "{body}");
    let dropped = body
        .lines()
        .find_map(|line| line.strip_prefix("zpr_events_dropped_total{consumer=\"monitor\"} "))
        .unwrap_or_else(|| panic!("no monitor drops in:\n{body}"));
    assert_eq!(dropped, missed.to_string(), "{slow}");
    Ok(())
}
