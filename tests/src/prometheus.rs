//! A real Prometheus (Debian's `prometheus` package) scraping a zpr agent
//! inside a test network's namespace, queried through its HTTP API. It
//! runs on a free port with a storage directory of its own, and is killed
//! and removed on drop, also when a test fails.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{
    Netns,
    http::{free_port, http_get},
    unique_name,
};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";

pub struct Prometheus {
    pub address: SocketAddr,
    dir: PathBuf,
    child: Child,
}

impl Prometheus {
    /// Starts Prometheus in `netns`, scraping `target`'s `/metrics` every
    /// second as job `zpr`.
    pub fn start(netns: &Netns, target: SocketAddr) -> anyhow::Result<Prometheus> {
        anyhow::ensure!(
            std::path::Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: install Debian's prometheus package (`cargo xtask setup`)"
        );
        let dir = std::env::temp_dir().join(unique_name("zpm"));
        fs::create_dir_all(dir.join("data"))?;
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: zpr\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(netns)?));
        let log = fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", netns.name()))
            .arg(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus")?;
        Ok(Prometheus {
            address,
            dir,
            child,
        })
    }

    /// The instant value of a PromQL expression that yields one series;
    /// None while it yields none.
    pub fn query(&self, netns: &Netns, expression: &str) -> anyhow::Result<Option<f64>> {
        let path = format!("/api/v1/query?query={}", url_encoded(expression));
        let (status, body) = http_get(netns, self.address, &path)?;
        anyhow::ensure!(status == 200, "{expression}: HTTP {status}: {body}");
        let answer: Value = serde_json::from_str(&body)?;
        let result = answer["data"]["result"]
            .as_array()
            .with_context(|| format!("{expression}: no result in {body}"))?;
        match result.as_slice() {
            [] => Ok(None),
            [series] => {
                let value = series["value"][1]
                    .as_str()
                    .with_context(|| format!("{expression}: no value in {body}"))?;
                Ok(Some(value.parse()?))
            }
            _ => bail!("{expression} yields {} series: {body}", result.len()),
        }
    }

    /// Waits until `expression` has a value that satisfies `ready`.
    pub fn wait_for(
        &self,
        netns: &Netns,
        expression: &str,
        ready: impl Fn(f64) -> bool,
    ) -> anyhow::Result<f64> {
        let started = Instant::now();
        let mut last = None;
        loop {
            // Prometheus may still be starting: its port refuses.
            if let Ok(Some(value)) = self.query(netns, expression) {
                if ready(value) {
                    return Ok(value);
                }
                last = Some(value);
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "timed out waiting for {expression} (last value {last:?})\nprometheus log:\n{}",
                    fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
