//! The agent's flow log on the three-tier site, with real TCP on every
//! path of the example: each allowed new flow names the statement of
//! examples/three-tier/three-tier.zpr that allowed it, with both
//! endpoints' names and attributes; a denied flow is a no-policy drop
//! naming none. A `zpr monitor` running at the same time (through the
//! agent, the ring buffer's one reader) sees the same events. The log
//! rotates by size, counts the events the kernel rate-limited, and a log
//! that cannot be written (/dev/full) costs records, not enforcement.

use std::{
    collections::BTreeSet,
    fs,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use zpr_tests::{
    http::{free_port, http_get},
    site::Site,
    three_tier::{PATHS, example},
};

/// The flow log's records, in the order written: the rotated files
/// (oldest first), then the file itself.
fn records(path: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = (1..=5)
        .rev()
        .map(|index| PathBuf::from(format!("{}.{index}", path.display())))
        .collect();
    files.push(path.to_owned());
    files
        .iter()
        .filter_map(|file| fs::read_to_string(file).ok())
        .flat_map(|text| {
            text.lines()
                .map(|line| serde_json::from_str(line).expect("a JSON line"))
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// Waits (the writer is a thread of the agent's) until `done` holds.
fn wait_for_records(path: &Path, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let records = records(path);
        if done(&records) || started.elapsed() > Duration::from_secs(10) {
            return records;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The line of the example policy holding the statement that contains
/// `text`: its statement id is `three-tier:LINE`.
fn example_line(text: &str) -> u64 {
    let policy = fs::read_to_string(example("three-tier.zpr")).unwrap();
    let lines: Vec<usize> = policy
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.starts_with('#') && line.contains(text))
        .map(|(index, _)| index + 1)
        .collect();
    assert_eq!(lines.len(), 1, "one statement of the example holds {text}");
    lines[0] as u64
}

/// The statement of the example allowing `from -> to`.
fn allowing_line(from: &str, to: &str) -> u64 {
    match (from, to) {
        ("internet", "lb") => example_line("'0.0.0.0/0' to connect to ocvtc002.lb:frontend"),
        ("lb", _) => example_line("ocvtc002.lb:frontend endpoints to connect to ocvtc002.apps"),
        (_, "db") => example_line("to connect to ocvtc002.db:customer-db"),
        _ => unreachable!("{from} -> {to} is not allowed by the example"),
    }
}

fn attributes_of(host: &str) -> Value {
    match host {
        "lb" => serde_json::json!(["ocvtc002.lb:frontend"]),
        "app-1" | "app-2" => serde_json::json!(["ocvtc002.apps:server"]),
        "db" => serde_json::json!(["ocvtc002.db:customer-db"]),
        _ => serde_json::json!([]),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A `zpr monitor` child, interrupted (or killed) when dropped.
struct MonitorProcess(Option<Child>);

impl MonitorProcess {
    /// Interrupts it as Ctrl-C does; returns what it printed.
    fn stop(mut self) -> anyhow::Result<String> {
        let mut child = self.0.take().unwrap();
        // SAFETY: kill(2) on our own child.
        let interrupted = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) } == 0;
        if !interrupted {
            let _ = child.kill();
        }
        let output = child.wait_with_output()?;
        anyhow::ensure!(interrupted, "zpr monitor could not be interrupted");
        anyhow::ensure!(
            output.status.success(),
            "zpr monitor failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    }
}

impl Drop for MonitorProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What identifies one event in both streams: the packet and the vNIC.
fn event_key(src: &Value, src_port: &Value, dst: &Value, dst_port: &Value, vnic: &Value) -> String {
    format!("{src}:{src_port} -> {dst}:{dst_port} at {vnic}")
}

#[test]
fn every_allowed_flow_names_its_statement_and_a_monitor_sees_the_same() -> anyhow::Result<()> {
    let mut flow_log = PathBuf::new();
    let site = Site::start_with(|_, agent| {
        flow_log = agent.run_dir.with_file_name("flows.json");
        agent.arguments.push("--flow-log".to_owned());
        agent.arguments.push(flow_log.display().to_string());
        Ok(())
    })?;
    let generation = site.agent.generation();
    let monitor = MonitorProcess(Some(
        site.agent
            .zpr(&["monitor", "--output", "json", "--verdict", "all"])
            .args(site.agent.paths())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?,
    ));
    // Connected before the traffic (what came before would be skipped).
    std::thread::sleep(Duration::from_millis(1000));
    let before_ms = unix_ms();
    site.assert_paths_as_in_example();
    let after_ms = unix_ms();
    let denied = ("internet", "app-1", 80);
    let address = |host: &str| site.network.address(host).to_string();
    let records = wait_for_records(&flow_log, |records| {
        records.iter().any(|r| {
            r["verdict"] == "DROPPED"
                && r["sourceAddress"] == address(denied.0)
                && r["destinationAddress"] == address(denied.1)
        })
    });
    let stream = monitor.stop()?;
    let log = records
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let flows: Vec<&Value> = records.iter().filter(|r| r["type"] == "flow").collect();
    assert!(!flows.is_empty(), "{log}");
    assert!(
        records.iter().all(|r| r["type"] == "flow"),
        "nothing went missing:\n{log}"
    );

    for record in &flows {
        let start = record["startTime"].as_u64().unwrap();
        assert!(
            start + 1000 >= before_ms && start <= after_ms + 1000,
            "startTime {start} is within the traffic's {before_ms}..{after_ms}: {record}"
        );
        assert_eq!(record["generation"], generation, "{record}");
        assert_eq!(record["version"], "zpr-1", "{record}");
        assert_eq!(record["protocol"], 6, "{record}");
        assert_eq!(record["protocolName"], "TCP", "{record}");
        match record["verdict"].as_str().unwrap() {
            "ALLOWED" => {
                assert_eq!(record["action"], "ACCEPT", "{record}");
                // Every allowed new flow names a statement of the example.
                let statements = record["statements"].as_array().unwrap();
                assert_eq!(statements.len(), 1, "{record}");
                assert_eq!(statements[0]["policy"], "three-tier", "{record}");
            }
            "DROPPED" => {
                assert_eq!(record["action"], "REJECT", "{record}");
                assert_eq!(record["reason"], "no-policy", "{record}");
                assert_eq!(record["statements"], serde_json::json!([]), "{record}");
            }
            other => panic!("a verdict {other} on the example (no endpoint audits): {record}"),
        }
    }

    // Each allowed path: a new flow where it leaves its source's vNIC
    // (when the source is an endpoint) and where it reaches its
    // destination's, each naming the statement that allowed it.
    for (from, to, port, allowed) in PATHS.into_iter().filter(|path| path.3) {
        assert!(allowed);
        let on_path: Vec<&&Value> = flows
            .iter()
            .filter(|r| {
                r["sourceAddress"] == address(from)
                    && r["destinationAddress"] == address(to)
                    && r["destinationPort"] == port
                    && r["reason"] == "new-flow"
            })
            .collect();
        let vnics: BTreeSet<&str> = on_path
            .iter()
            .map(|r| r["vnic"].as_str().unwrap())
            .collect();
        let topology = &site.network.topology;
        let mut expected = BTreeSet::from([topology.host(to).vnic.as_str()]);
        if from != "internet" {
            expected.insert(topology.host(from).vnic.as_str());
        }
        assert_eq!(vnics, expected, "{from} -> {to}:{port}:\n{log}");
        for record in on_path {
            assert_eq!(record["verdict"], "ALLOWED", "{record}");
            assert_eq!(
                record["statements"],
                serde_json::json!([{"policy": "three-tier", "line": allowing_line(from, to)}]),
                "{from} -> {to}:{port}: {record}"
            );
            let expected_source = if from == "internet" {
                "0.0.0.0/0".to_owned()
            } else {
                from.to_owned()
            };
            assert_eq!(record["sourceName"], expected_source, "{record}");
            assert_eq!(record["destinationName"], to, "{record}");
            assert_eq!(record["sourceAttributes"], attributes_of(from), "{record}");
            assert_eq!(
                record["destinationAttributes"],
                attributes_of(to),
                "{record}"
            );
            let at_destination = record["vnic"] == topology.host(to).vnic.as_str();
            assert_eq!(
                record["direction"],
                if at_destination {
                    "to-workload"
                } else {
                    "from-workload"
                },
                "{record}"
            );
            assert_eq!(
                record["endpoint"],
                if at_destination { to } else { from },
                "{record}"
            );
        }
    }

    // The denied path: dropped where it reaches app-1, by no statement.
    let drop = flows
        .iter()
        .find(|r| {
            r["sourceAddress"] == address(denied.0)
                && r["destinationAddress"] == address(denied.1)
                && r["destinationPort"] == denied.2
        })
        .unwrap_or_else(|| panic!("no record of the denied path:\n{log}"));
    assert_eq!(drop["verdict"], "DROPPED", "{drop}");
    assert_eq!(drop["reason"], "no-policy", "{drop}");
    assert_eq!(drop["statements"], serde_json::json!([]), "{drop}");
    assert_eq!(drop["vnic"], "zpr-app1", "{drop}");
    assert_eq!(drop["direction"], "to-workload", "{drop}");
    assert_eq!(
        drop["destinationAttributes"],
        attributes_of("app-1"),
        "{drop}"
    );

    // The monitor, reading at the same time, saw the very same events.
    let monitored: Vec<Value> = stream
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let seen: BTreeSet<String> = monitored
        .iter()
        .filter(|r| r["type"] == "event")
        .map(|r| {
            event_key(
                &r["src"],
                &r["src_port"],
                &r["dst"],
                &r["dst_port"],
                &r["interface"],
            )
        })
        .collect();
    let logged: BTreeSet<String> = flows
        .iter()
        .map(|r| {
            event_key(
                &r["sourceAddress"],
                &r["sourcePort"],
                &r["destinationAddress"],
                &r["destinationPort"],
                &r["vnic"],
            )
        })
        .collect();
    assert_eq!(seen, logged, "monitor:\n{stream}\nflow log:\n{log}");
    let summary = monitored
        .iter()
        .find(|r| r["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary:\n{stream}"));
    assert_eq!(summary["read_too_slowly"], 0, "{summary}");
    assert_eq!(summary["skipped_buffered"], 0, "{summary}");
    Ok(())
}

/// The agent's event budget per CPU: far below the flood's rate.
const EVENTS_PER_SECOND: &str = "10";
const FLOOD: usize = 20_000;
const FLOOD_PORT: u16 = 7003;
const MAX_BYTES: u64 = 2000;

#[test]
fn the_log_rotates_and_counts_what_the_kernel_rate_limited() -> anyhow::Result<()> {
    let mut flow_log = PathBuf::new();
    let mut metrics = None;
    let site = Site::start_with(|network, agent| {
        flow_log = agent.run_dir.with_file_name("flows.json");
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(network.router())?));
        metrics = Some(address);
        agent.arguments.extend(
            [
                "--flow-log",
                &flow_log.display().to_string(),
                "--flow-log-max-bytes",
                &MAX_BYTES.to_string(),
                "--events-per-second",
                EVENTS_PER_SECOND,
                "--metrics-address",
                &address.to_string(),
            ]
            .map(str::to_owned),
        );
        Ok(())
    })?;
    let metrics = metrics.unwrap();
    let kernel_before = site.agent.status_report()?.1["events"]["rate_limited"]
        .as_u64()
        .unwrap();
    let target = (site.network.address("app-1"), FLOOD_PORT);
    site.network
        .netns("internet")
        .enter(|| -> anyhow::Result<()> {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            for _ in 0..FLOOD {
                // A full socket buffer is no failure here: the next one goes.
                let _ = socket.send_to(b"denied", target);
            }
            Ok(())
        })??;
    let rate_limited = |records: &[Value]| -> u64 {
        records
            .iter()
            .filter(|r| r["type"] == "suppressed")
            .map(|r| r["rateLimited"].as_u64().unwrap())
            .sum()
    };
    let records = wait_for_records(&flow_log, |records| {
        rate_limited(records) as usize >= FLOOD / 2
    });
    let kernel = site.agent.status_report()?.1["events"]["rate_limited"]
        .as_u64()
        .unwrap()
        - kernel_before;
    let log = records
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");

    // Counted in the log: what the kernel rate-limited, no more.
    let counted = rate_limited(&records);
    assert!(counted as usize >= FLOOD / 2, "{counted} counted:\n{log}");
    assert!(
        counted <= kernel,
        "{counted} counted, the kernel says {kernel}"
    );
    let flood: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "flow" && r["destinationPort"] == FLOOD_PORT)
        .collect();
    assert!(!flood.is_empty(), "{log}");
    assert!(
        flood
            .iter()
            .all(|r| r["verdict"] == "DROPPED" && r["protocolName"] == "UDP")
    );

    // Rotated: no file beyond its limit, five kept, the oldest gone.
    let rotated = |index: u32| PathBuf::from(format!("{}.{index}", flow_log.display()));
    assert!(rotated(1).exists(), "{log}");
    assert!(!rotated(6).exists());
    for file in (1..=5).map(rotated).chain([flow_log.clone()]) {
        if let Ok(metadata) = fs::metadata(&file) {
            assert!(
                metadata.len() <= MAX_BYTES,
                "{} is {} bytes",
                file.display(),
                metadata.len()
            );
        }
    }

    // And in the metrics: the records written, no consumer fell behind.
    let (status, body) = http_get(site.network.router(), metrics, "/metrics")?;
    assert_eq!(status, 200, "{body}");
    let value = |series: &str| -> u64 {
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no series {series} in:\n{body}"))
            .parse()
            .unwrap()
    };
    assert!(value("zpr_flow_log_records_total") >= flood.len() as u64);
    assert_eq!(value("zpr_flow_log_write_failures_total"), 0);
    assert_eq!(value("zpr_events_dropped_total{consumer=\"flow-log\"}"), 0);
    assert_eq!(value("zpr_events_dropped_total{consumer=\"monitor\"}"), 0);
    Ok(())
}

#[test]
fn a_log_that_cannot_be_written_costs_records_not_enforcement() -> anyhow::Result<()> {
    let site = Site::start_with(|_, agent| {
        // Never written: a device, which others may write, is refused as
        // a log file (every record fails, as on a full disk).
        agent
            .arguments
            .extend(["--flow-log", "/dev/full"].map(str::to_owned));
        Ok(())
    })?;
    site.assert_paths_as_in_example();
    let status = site
        .agent
        .wait_for("the flow log's failure in the status", |status| {
            status["warnings"].to_string().contains("cannot be written")
        })?;
    let warnings = status["warnings"].as_array().unwrap();
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.as_str().unwrap().contains("flow log"))
            .count(),
        1,
        "warned once, not per record: {warnings:?}"
    );
    let log = site.agent.log();
    assert!(
        log.contains("the flow log (/dev/full) cannot be written"),
        "{log}"
    );
    // Still enforcing, as the example says.
    site.assert_paths_as_in_example();
    let (code, _) = site.agent.status_report()?;
    assert_ne!(code, 1, "zpr status says the host is enforcing");
    Ok(())
}
