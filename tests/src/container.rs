//! A minimal Debian system booted by a real systemd in a container
//! (`systemd-nspawn --boot`), inside a test's network namespace, so a
//! service in it sees that namespace's vNICs as a host's services do.
//!
//! The Debian root is made once by debootstrap and cached; every container
//! boots an overlay of it, so tests neither pay for debootstrap again nor
//! change the cached root, and several can run at once.

use std::{
    fs,
    io::Write as _,
    os::fd::AsRawFd as _,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{Netns, mount_namespace::SharedBpffs, run, unique_name};

/// What the cached root is made of; its directory is named after this, so
/// a change here makes a new root rather than reusing a stale one.
const SUITE: &str = "bookworm";
const PACKAGES: &str = "systemd,systemd-sysv,dbus";
const CACHE: &str = "/var/cache/zpr-tests";

/// The capabilities the container may hand to its services: the unit's
/// four (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN) besides
/// nspawn's default set, which has neither CAP_BPF nor CAP_PERFMON.
const CAPABILITIES: &str = "CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN,CAP_SYS_ADMIN";

/// Why a container cannot boot on this machine, if it cannot: nspawn is
/// run once on the cached root (read-only: it stays as debootstrap made
/// it) to find out.
pub fn cannot_boot_here(root: &Path) -> anyhow::Result<Option<String>> {
    let output = Command::new("systemd-nspawn")
        .arg("--directory")
        .arg(root)
        .args([
            "--register=no",
            "--keep-unit",
            "--read-only",
            "--quiet",
            "--pipe",
            "/bin/true",
        ])
        .stdin(Stdio::null())
        .output()
        .context("running systemd-nspawn (`cargo xtask setup` installs systemd-container)")?;
    Ok((!output.status.success()).then(|| {
        format!(
            "systemd-nspawn cannot run here ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
    }))
}

/// The cached Debian root (`debootstrap --variant=minbase` with systemd
/// as init), made on first use. Concurrent callers wait for one maker.
pub fn debian_root() -> anyhow::Result<PathBuf> {
    let root = Path::new(CACHE).join(format!("{SUITE}-minbase+{}", PACKAGES.replace(',', "+")));
    fs::create_dir_all(CACHE)?;
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(Path::new(CACHE).join("lock"))?;
    // SAFETY: flock on a descriptor we own; released when `lock` closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!("locking {CACHE}/lock: {}", std::io::Error::last_os_error());
    }
    if root.exists() {
        return Ok(root);
    }
    // Made aside and renamed, so an interrupted debootstrap leaves no root
    // that looks complete.
    let partial = root.with_extension("partial");
    if partial.exists() {
        fs::remove_dir_all(&partial)?;
    }
    eprintln!(
        "debootstrap: making {} (about a minute, once)",
        root.display()
    );
    run(
        "debootstrap",
        &[
            "--variant=minbase",
            &format!("--include={PACKAGES}"),
            SUITE,
            partial.to_str().unwrap(),
        ],
    )?;
    fs::rename(&partial, &root)?;
    Ok(root)
}

/// A writable overlay of a root directory, in a scratch directory of its
/// own; unmounted and removed on drop.
struct Overlay {
    /// Holds `upper`, `work`, nspawn's log and the merged root.
    scratch: PathBuf,
    root: PathBuf,
    /// nspawn's directory for mounts into the machine, and its lock on the
    /// root directory: left behind where /run is not a tmpfs.
    propagation: PathBuf,
    lock: PathBuf,
}

impl Overlay {
    fn mount(lower: &Path) -> anyhow::Result<Overlay> {
        let scratch = std::env::temp_dir().join(unique_name("zpc"));
        // The root's directory name is the machine's name: unique, so
        // nspawn's per-machine state never collides with another test's.
        let machine = unique_name("zpm");
        let root = scratch.join(&machine);
        let mut overlay = Overlay {
            propagation: Path::new("/run/systemd/nspawn/propagate").join(machine),
            lock: PathBuf::new(),
            scratch,
            root,
        };
        let (upper, work) = (overlay.scratch.join("upper"), overlay.scratch.join("work"));
        for dir in [&overlay.root, &upper, &work] {
            fs::create_dir_all(dir)?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        run(
            "mount",
            &[
                "-t",
                "overlay",
                "overlay",
                "-o",
                &options,
                overlay.root.to_str().unwrap(),
            ],
        )?;
        let mounted = fs::metadata(&overlay.root)?;
        overlay.lock = PathBuf::from(format!(
            "/run/systemd/nspawn/locks/inode-{}:{}",
            mounted.dev(),
            mounted.ino()
        ));
        Ok(overlay)
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if let Err(err) = run("umount", &[self.root.to_str().unwrap()]) {
            eprintln!("cleanup: {err:#}");
        }
        if let Err(err) = fs::remove_dir_all(&self.scratch) {
            eprintln!("cleanup: removing {}: {err}", self.scratch.display());
        }
        let _ = fs::remove_dir(&self.propagation);
        let _ = fs::remove_file(&self.lock);
    }
}

/// Whether the container has bpffs at /sys/fs/bpf when it boots.
pub enum Bpffs {
    /// As on a host, where systemd mounts it early in the boot (in a
    /// container it does not): a bpffs of the container's own.
    MountedAtBoot,
    /// As in a container: none until a service mounts one.
    Absent,
}

/// A booted container, stopped and its overlay removed on drop.
pub struct Container {
    nspawn: Child,
    /// The container's PID 1, seen from the host.
    leader: u32,
    /// What nspawn itself printed.
    log: PathBuf,
    /// The bpffs bound at the container's /sys/fs/bpf, if any: unmounted
    /// (its pins gone) once the container is, before the overlay's
    /// scratch directory that holds its mount point is removed.
    _bpffs: Option<SharedBpffs>,
    overlay: Overlay,
}

impl Container {
    /// Boots an overlay of `image` with systemd as PID 1, in `netns`, and
    /// waits until the boot is finished.
    pub fn boot(image: &Path, netns: &Netns, bpffs: Bpffs) -> anyhow::Result<Container> {
        let overlay = Overlay::mount(image)?;
        let bpffs = match bpffs {
            Bpffs::MountedAtBoot => Some(SharedBpffs::mount_in(&overlay.scratch)?),
            Bpffs::Absent => None,
        };
        let log = overlay.scratch.join("nspawn.log");
        let output = fs::File::create(&log)?;
        let mut nspawn = Command::new("systemd-nspawn");
        nspawn
            .arg("--directory")
            .arg(&overlay.root)
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--console=passive",
            ])
            .arg(format!("--capability={CAPABILITIES}"))
            // nspawn's own system-call filter refuses bpf(2) otherwise.
            .arg("--system-call-filter=bpf")
            .arg(format!(
                "--network-namespace-path=/run/netns/{}",
                netns.name()
            ));
        if let Some(bpffs) = &bpffs {
            nspawn.arg(format!("--bind={}:/sys/fs/bpf", bpffs.dir().display()));
        }
        let nspawn = nspawn
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .context("starting systemd-nspawn")?;
        let mut container = Container {
            nspawn,
            leader: 0,
            log,
            _bpffs: bpffs,
            overlay,
        };
        container.leader = container.wait_for_leader()?;
        container.wait_for_boot()?;
        Ok(container)
    }

    /// The container's PID 1, as the host numbers it: the child of nspawn
    /// that is pid 1 in a pid namespace of its own (nspawn forks a helper
    /// first, which exits once it has forked PID 1).
    fn wait_for_leader(&mut self) -> anyhow::Result<u32> {
        let started = Instant::now();
        let children = format!("/proc/{0}/task/{0}/children", self.nspawn.id());
        loop {
            let listed = fs::read_to_string(&children).unwrap_or_default();
            let leader = listed.split_whitespace().find(|pid| {
                let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                status.lines().any(|line| {
                    line.strip_prefix("NSpid:")
                        .is_some_and(|pids| pids.split_whitespace().eq([*pid, "1"]))
                })
            });
            if let Some(pid) = leader {
                return Ok(pid.parse()?);
            }
            if let Some(status) = self.nspawn.try_wait()? {
                bail!("systemd-nspawn exited {status}:\n{}", self.nspawn_log());
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!(
                    "systemd-nspawn started no container:\n{}",
                    self.nspawn_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (a minute at most) until systemd finished booting. A boot
    /// that ended "degraded" is shown, not failed: zpr is not installed
    /// yet, so what failed is the image's own housekeeping (a utmp record
    /// under load, seen in CI), which the tests do not depend on.
    fn wait_for_boot(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            // Nothing until the container's namespaces are made (nsenter
            // fails), "offline" until PID 1 listens; then `--wait` returns
            // once the boot is over, whatever its outcome.
            let asked =
                self.try_exec(&["timeout", "60", "systemctl", "is-system-running", "--wait"])?;
            let state = String::from_utf8_lossy(&asked.stdout).trim().to_owned();
            if state == "running" {
                return Ok(());
            }
            let booting = state.is_empty() || state == "offline";
            if !booting || started.elapsed() > Duration::from_secs(60) {
                let failed = self.try_exec(&["systemctl", "--failed", "--no-pager"])?;
                if state == "degraded" {
                    eprintln!(
                        "the container's boot ended degraded:\n{}",
                        String::from_utf8_lossy(&failed.stdout)
                    );
                    return Ok(());
                }
                bail!(
                    "the container's boot ended {state:?}: {}\n{}\nnspawn:\n{}",
                    String::from_utf8_lossy(&asked.stderr).trim(),
                    String::from_utf8_lossy(&failed.stdout),
                    self.nspawn_log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a command inside the container (its namespaces, as a shell
    /// there would); fails when it fails.
    pub fn exec(&self, command: &[&str]) -> anyhow::Result<Output> {
        let output = self.try_exec(command)?;
        if !output.status.success() {
            bail!(
                "{} in the container failed ({}): {}{}",
                command.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(output)
    }

    /// Runs a command inside the container; its output, success or not.
    pub fn try_exec(&self, command: &[&str]) -> anyhow::Result<Output> {
        Command::new("nsenter")
            .arg(format!("--target={}", self.leader))
            .args(["--all", "--"])
            .args(command)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {command:?} in the container"))
    }

    /// Writes `text` to `path` (absolute, in the container) with `mode`.
    pub fn write(&self, path: &str, text: &[u8], mode: u32) -> anyhow::Result<()> {
        let target = self.overlay.root.join(path.trim_start_matches('/'));
        fs::create_dir_all(target.parent().unwrap())?;
        fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(mode)
            .open(&target)
            .and_then(|mut file| file.write_all(text))
            .with_context(|| format!("writing {path} in the container"))
    }

    fn nspawn_log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM makes nspawn ask systemd to power off; killed if it will
        // not within the time systemd's shutdown usually takes.
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.nspawn.id() as libc::pid_t, libc::SIGTERM) };
        let started = Instant::now();
        while matches!(self.nspawn.try_wait(), Ok(None)) {
            if started.elapsed() > Duration::from_secs(15) {
                eprintln!("cleanup: the container did not power off; killing it");
                // Its PID 1 first, which ends every process in the container
                // (nspawn's child: its pid is not reused while nspawn lives).
                // 0 until the leader is known; kill(0) would signal our
                // own process group.
                if self.leader != 0 {
                    // SAFETY: kill(2) on a positive pid.
                    unsafe { libc::kill(self.leader as libc::pid_t, libc::SIGKILL) };
                }
                let _ = self.nspawn.kill();
                let _ = self.nspawn.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
