//! The machine a run measured: CPU, memory, kernel, load, tool versions.

use std::{fmt::Write as _, process::Command};

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// /proc/loadavg (1, 5, 15 minutes) when the run began and ended.
    pub load_at_start: String,
    pub load_at_end: String,
    pub started_utc: String,
    pub commit: String,
    pub tools: Vec<String>,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or("unknown".to_owned(), |(_, model)| model.trim().to_owned());
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let tools = [
            ("iperf3", "--version"),
            ("iptables", "--version"),
            ("nft", "--version"),
        ]
        .iter()
        .map(|(tool, flag)| first_line(tool, &[flag]))
        .collect();
        Machine {
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            memory_gib: memory_kib / (1024.0 * 1024.0),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_at_start: load(),
            load_at_end: String::new(),
            started_utc: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            commit: first_line("git", &["rev-parse", "--short", "HEAD"]),
            tools,
        }
    }

    pub fn finished(&mut self) {
        self.load_at_end = load();
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from("## Machine\n\n");
        let _ = writeln!(
            out,
            "- {} CPUs ({}), {:.1} GiB memory, Linux {}\n- load average (1/5/15 min) {} at the \
             start, {} at the end\n- run {}, commit {}\n- {}",
            self.cpus,
            self.cpu_model,
            self.memory_gib,
            self.kernel,
            self.load_at_start,
            self.load_at_end,
            self.started_utc,
            self.commit,
            self.tools.join("; ")
        );
        out
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn load() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("{program}: unavailable"))
}
