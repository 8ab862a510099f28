//! Whether zpr's pins outlive the agent. A pin lives as long as its bpffs
//! is mounted somewhere; a bpffs mounted only in the agent's own mount
//! namespace goes with the agent's process, and every program with it.
//! `ip netns exec` is the usual way to get there: it gives the command a
//! private mount namespace with a fresh `/sys`, so `/sys/fs/bpf` there is
//! a bpffs nobody else sees.

use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

/// Who else sees the bpffs holding a pin root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinVisibility {
    /// The host's mount namespace (PID 1's): the pins last until reboot.
    Host,
    /// Only a private mount namespace that another process keeps alive:
    /// the pins last as long as that process does.
    KeptBy { pid: u32, command: String },
    /// Nobody but this process: the pins go when it ends.
    ThisProcessOnly,
}

impl PinVisibility {
    /// Finds who sees the bpffs that `root` is on (after mounting it).
    pub fn of(root: &Path) -> anyhow::Result<PinVisibility> {
        let device = fs::metadata(root)
            .with_context(|| format!("reading {}", root.display()))?
            .dev();
        let ours = mount_namespace(Path::new("/proc/self"))?;
        // Each mount namespace's table is read once, whoever is in it.
        let mut looked_at = std::collections::BTreeSet::new();
        let mut sees = |process: &Path| -> bool {
            match mount_namespace(process) {
                Ok(theirs) if theirs == ours => true,
                Ok(theirs) => looked_at.insert(theirs) && mounts_device(process, device),
                Err(_) => false,
            }
        };
        if sees(Path::new("/proc/1")) {
            return Ok(PinVisibility::Host);
        }
        // A sandboxed service (systemd's, with a few capabilities and no
        // CAP_SYS_PTRACE) may not read other processes' namespaces. Its
        // mount table still says where the bpffs comes from: a copy of (or
        // a peer of) a mount in another namespace outlives this process.
        if mount_namespace(Path::new("/proc/1")).is_err() && propagated(device) {
            return Ok(PinVisibility::Host);
        }
        let me = std::process::id();
        for (pid, process) in processes() {
            if pid != me && pid != 1 && sees(&process) {
                return Ok(seen_by(pid, &process));
            }
        }
        Ok(PinVisibility::ThisProcessOnly)
    }
}

/// Who keeps the bpffs that process `pid` (not PID 1) sees. Kernel threads
/// (kthreadd, pid 2 where /proc/1's namespace may not be read) all live in
/// the initial mount namespace: what they see is the host's.
fn seen_by(pid: u32, process: &Path) -> PinVisibility {
    let stat = fs::read_to_string(process.join("stat")).unwrap_or_default();
    if is_kernel_thread(&stat) {
        return PinVisibility::Host;
    }
    let command = fs::read_to_string(process.join("comm")).unwrap_or_default();
    PinVisibility::KeptBy {
        pid,
        command: command.trim().to_owned(),
    }
}

/// True when a `/proc/PID/stat` line is a kernel thread's (`PF_KTHREAD` in
/// its flags, the 9th field; the command before them, in parentheses,
/// may hold spaces and parentheses of its own).
fn is_kernel_thread(stat: &str) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let Some((_, fields)) = stat.rsplit_once(')') else {
        return false;
    };
    // After the command: state, ppid, pgrp, session, tty_nr, tpgid, flags.
    fields
        .split_whitespace()
        .nth(6)
        .and_then(|flags| flags.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_KTHREAD != 0)
}

/// True when process `pid` runs in this process's mount namespace (it
/// sees the same mounts, bpffs included).
pub fn shares_mount_namespace(pid: u32) -> bool {
    let theirs = mount_namespace(&Path::new("/proc").join(pid.to_string()));
    matches!(
        (theirs, mount_namespace(Path::new("/proc/self"))),
        (Ok(theirs), Ok(ours)) if theirs == ours
    )
}

/// The mount namespace's inode number (equal for processes sharing it).
fn mount_namespace(process: &Path) -> anyhow::Result<u64> {
    let path = process.join("ns/mnt");
    Ok(fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .ino())
}

/// True when the process's mount table holds a bpffs with this device
/// number (bind mounts and namespace copies of one bpffs share it).
fn mounts_device(process: &Path, device: u64) -> bool {
    !bpffs_mounts(process, device).is_empty()
}

/// True when this process's mount of the bpffs is a slave or a peer of a
/// mount elsewhere (`master:N` or `shared:N` in its optional fields).
fn propagated(device: u64) -> bool {
    bpffs_mounts(Path::new("/proc/self"), device)
        .iter()
        .any(|line| {
            let before_separator = line.split(" - ").next().unwrap_or_default();
            before_separator
                .split(' ')
                .skip(6)
                .any(|field| field.starts_with("master:") || field.starts_with("shared:"))
        })
}

/// The lines of the process's mount table that mount a bpffs with this
/// device number.
fn bpffs_mounts(process: &Path, device: u64) -> Vec<String> {
    let wanted = format!("{}:{}", libc::major(device), libc::minor(device));
    let table = fs::read_to_string(process.join("mountinfo")).unwrap_or_default();
    table
        .lines()
        .filter(|line| {
            let device = line.split(' ').nth(2);
            let filesystem = line
                .split(" - ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next());
            device == Some(wanted.as_str()) && filesystem == Some("bpf")
        })
        .map(str::to_owned)
        .collect()
}

/// Every process, as (pid, /proc/PID).
fn processes() -> impl Iterator<Item = (u32, PathBuf)> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid = entry.file_name().to_str()?.parse().ok()?;
            Some((pid, entry.path()))
        })
}

/// The name (under /run/netns) of this process's network namespace, if
/// it has one: for messages that tell the operator what to type.
pub fn current_netns_name() -> Option<String> {
    let ours = fs::metadata("/proc/self/ns/net").ok()?;
    fs::read_dir("/run/netns")
        .ok()?
        .filter_map(Result::ok)
        .find(|entry| {
            fs::metadata(entry.path())
                .is_ok_and(|theirs| theirs.dev() == ours.dev() && theirs.ino() == ours.ino())
        })
        .and_then(|entry| entry.file_name().into_string().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_threads_are_told_from_processes_by_their_flags() {
        let kthreadd = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 4 0 0 20 0 1 0 3 0 0";
        assert!(is_kernel_thread(kthreadd));
        let odd_name = "4321 (a) S 1 2 (b) S 1 4321 4321 0 -1 4194560 300 0 0 0 0 0 0 0 20 0";
        assert!(!is_kernel_thread(odd_name));
        assert!(!is_kernel_thread(""));
        let own = fs::read_to_string("/proc/self/stat").unwrap();
        assert!(!is_kernel_thread(&own));
    }

    #[test]
    fn a_bpffs_kthreadd_sees_is_the_hosts_not_one_kthreadd_keeps() {
        let kthreadd = Path::new("/proc/2");
        let command = fs::read_to_string(kthreadd.join("comm")).unwrap_or_default();
        if command.trim() != "kthreadd" {
            eprintln!("skipped: pid 2 is not kthreadd here (a PID namespace)");
            return;
        }
        assert_eq!(seen_by(2, kthreadd), PinVisibility::Host);
        let own = Path::new("/proc/self");
        assert!(matches!(
            seen_by(7, own),
            PinVisibility::KeptBy { pid: 7, .. }
        ));
    }
}
