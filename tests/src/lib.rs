//! Test hosts for kernel tests: network namespaces and veth pairs that clean
//! up after themselves (also when a test fails), with names unique per
//! process so tests run in parallel.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail};

pub mod agent;
pub mod container;
pub mod etcd;
pub mod fleet;
pub mod flood;
pub mod frames;
pub mod http;
pub mod loopback_bridge;
pub mod mount_namespace;
pub mod os_users;
pub mod pki;
pub mod ports;
pub mod prometheus;
pub mod served_agent;
pub mod site;
pub mod three_tier;
pub mod topology;
pub mod traffic;

/// Runs a command to completion; fails with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<Output> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("spawning {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

/// A short name unique to this process and call: `<tag><pid><n>`, at most
/// 15 bytes so it also fits an interface name.
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{tag}{}x{n}", std::process::id());
    assert!(name.len() <= 15, "name {name} is longer than IFNAMSIZ-1");
    name
}

/// A network namespace, deleted (with every interface in it) on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn new() -> anyhow::Result<Netns> {
        let name = unique_name("zt");
        run("ip", &["netns", "add", &name])?;
        let netns = Netns { name };
        // Tests count packets exactly: IPv6 autoconfiguration would add its own.
        netns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
        netns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])?;
        netns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace; fails when it fails.
    pub fn exec(&self, command: &[&str]) -> anyhow::Result<Output> {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(command);
        run("ip", &args)
    }

    /// Runs a command inside the namespace and returns its output, success or not.
    pub fn try_exec(&self, command: &[&str]) -> anyhow::Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(command)
            .output()
            .with_context(|| format!("spawning {command:?} in {}", self.name))
    }

    /// The index of `interface` in this namespace.
    pub fn ifindex(&self, interface: &str) -> anyhow::Result<u32> {
        let name = std::ffi::CString::new(interface)?;
        // SAFETY: a valid C string; if_nametoindex only reads it.
        let index = self.enter(|| unsafe { libc::if_nametoindex(name.as_ptr()) })?;
        anyhow::ensure!(index != 0, "no interface {interface} in {}", self.name);
        Ok(index)
    }

    /// Runs `f` on a thread that has entered this namespace, so interface
    /// names and indexes resolve here.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> anyhow::Result<R> {
        let handle = File::open(format!("/run/netns/{}", self.name))
            .with_context(|| format!("opening netns {}", self.name))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns on this thread only; the fd is valid.
                    if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        bail!("setns {}: {}", self.name, std::io::Error::last_os_error());
                    }
                    Ok(f())
                })
                .join()
                .map_err(|panic| anyhow::anyhow!("thread in netns panicked: {panic:?}"))?
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(err) = run("ip", &["netns", "del", &self.name]) {
            eprintln!("cleanup: {err:#}");
        }
    }
}

/// Joins two namespaces with a veth pair, each end up and addressed.
/// Returns the interface names (in `a`, in `b`).
pub fn veth_pair(
    a: &Netns,
    a_addr: &str,
    b: &Netns,
    b_addr: &str,
) -> anyhow::Result<(String, String)> {
    let (a_if, b_if) = (unique_name("va"), unique_name("vb"));
    run(
        "ip",
        &[
            "link",
            "add",
            &a_if,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            &b_if,
            "netns",
            b.name(),
        ],
    )?;
    for (netns, interface, addr) in [(a, &a_if, a_addr), (b, &b_if, b_addr)] {
        netns.exec(&["ip", "addr", "add", addr, "dev", interface])?;
        netns.exec(&["ip", "link", "set", interface, "up"])?;
    }
    Ok((a_if, b_if))
}
