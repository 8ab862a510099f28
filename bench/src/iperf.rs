//! iperf3 between the workload and the host namespace: a server kept for a
//! site's lifetime, TCP and small-packet UDP runs from the workload.

use std::{
    net::Ipv4Addr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use zpr_tests::Netns;

use crate::cpu;

/// UDP payload bytes per datagram.
const UDP_LENGTH: usize = 64;

/// `iperf3 -s` in a namespace, pinned to the last CPU (clients run on the
/// first), killed on drop.
pub struct Server {
    child: Child,
}

impl Server {
    pub fn start(netns: &Netns) -> anyhow::Result<Server> {
        let child = Command::new("ip")
            .args(["netns", "exec", netns.name(), "taskset", "-c"])
            .arg(cpu::last().to_string())
            .args(["iperf3", "-s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting iperf3 -s")?;
        // It listens within milliseconds; clients retry a refused connection anyway.
        std::thread::sleep(Duration::from_millis(200));
        Ok(Server { child })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TCP goodput from the workload to `to`, in Mbit/s.
pub fn tcp_mbits(workload: &Netns, to: Ipv4Addr, seconds: u32) -> anyhow::Result<f64> {
    let report = client(workload, to, seconds, &[])?;
    let bits = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 reported no received rate")?;
    Ok(bits / 1e6)
}

/// Datagrams of 64 payload bytes received per second (sent as fast as the
/// client can).
pub fn udp_pps(workload: &Netns, to: Ipv4Addr, seconds: u32) -> anyhow::Result<f64> {
    let length = UDP_LENGTH.to_string();
    let report = client(workload, to, seconds, &["-u", "-b", "0", "-l", &length])?;
    let received = &report["end"]["sum_received"];
    let (Some(bytes), Some(seconds)) = (received["bytes"].as_f64(), received["seconds"].as_f64())
    else {
        bail!("iperf3 reported no received datagrams");
    };
    Ok(bytes / UDP_LENGTH as f64 / seconds)
}

fn client(
    workload: &Netns,
    to: Ipv4Addr,
    seconds: u32,
    extra: &[&str],
) -> anyhow::Result<serde_json::Value> {
    const ATTEMPTS: usize = 5;
    let mut last_error = String::new();
    for _ in 0..ATTEMPTS {
        let output = Command::new("ip")
            .args(["netns", "exec", workload.name(), "taskset", "-c", "0"])
            .args([
                "iperf3",
                "-J",
                "-c",
                &to.to_string(),
                "-t",
                &seconds.to_string(),
            ])
            .args(extra)
            .output()
            .context("running iperf3 -c")?;
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).context("iperf3 -J printed no JSON")?;
        match report["error"].as_str() {
            None if output.status.success() => return Ok(report),
            error => last_error = error.unwrap_or("failed").to_owned(),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    bail!("iperf3 -c {to} {}: {last_error}", extra.join(" "))
}
