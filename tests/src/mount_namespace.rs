//! A private mount namespace in which `/sys/fs/bpf` is the bare sysfs
//! directory, as on a freshly booted host, kept alive by a process of its
//! own (so pins made in it outlive the agent, as the host's would); and a
//! bpffs of a test's own.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
};

use anyhow::{Context as _, ensure};

pub struct FreshMountNamespace {
    keeper: Child,
}

impl FreshMountNamespace {
    pub fn new() -> anyhow::Result<FreshMountNamespace> {
        let mut keeper = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                "while umount -l /sys/fs/bpf 2>/dev/null; do :; done; \
                 stat -f -c %T /sys/fs/bpf; exec sleep 100000",
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting unshare")?;
        let mut line = String::new();
        let stdout = keeper.stdout.take().context("the keeper's stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        let namespace = FreshMountNamespace { keeper };
        ensure!(
            line.trim() == "sysfs",
            "/sys/fs/bpf in the new mount namespace is {line:?}, not bare sysfs"
        );
        Ok(namespace)
    }

    /// The process keeping the namespace (for `nsenter --mount=/proc/PID/ns/mnt`).
    pub fn pid(&self) -> u32 {
        self.keeper.id()
    }

    /// The file system type at `path`, as seen inside the namespace.
    pub fn filesystem_of(&self, path: &str) -> anyhow::Result<String> {
        let output = crate::run(
            "nsenter",
            &[
                &format!("--mount=/proc/{}/ns/mnt", self.pid()),
                "stat",
                "-f",
                "-c",
                "%T",
                path,
            ],
        )?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

impl Drop for FreshMountNamespace {
    fn drop(&mut self) {
        let _ = self.keeper.kill();
        let _ = self.keeper.wait();
    }
}

/// A bpffs of the test's own (a new instance, so its pins meet no other
/// test's), mounted shared as systemd mounts the host's (so a service's
/// sandbox holds a slave copy of it); unmounted on drop.
pub struct SharedBpffs {
    dir: std::path::PathBuf,
}

impl SharedBpffs {
    /// Mounts it on a new directory in `parent`.
    pub fn mount_in(parent: &std::path::Path) -> anyhow::Result<SharedBpffs> {
        let dir = parent.join(crate::unique_name("zps"));
        std::fs::create_dir_all(&dir)?;
        let shared = SharedBpffs { dir };
        let dir = shared.dir.to_str().unwrap();
        crate::run("mount", &["-t", "bpf", "bpf", dir])?;
        crate::run("mount", &["--make-shared", dir])?;
        Ok(shared)
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for SharedBpffs {
    fn drop(&mut self) {
        let _ = crate::run("umount", &["-l", self.dir.to_str().unwrap()]);
        let _ = std::fs::remove_dir(&self.dir);
    }
}
