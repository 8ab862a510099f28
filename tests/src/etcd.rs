//! A real etcd (Debian's `etcd-server`, 3.4) on 127.0.0.1 with free ports
//! and a data directory of its own; it can be killed, frozen (SIGSTOP),
//! restarted on the same data and compacted, as a fleet test needs. It is
//! killed and its directory removed on drop, also when a test fails.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    pki::{Credentials, Pki},
    ports::listen_port,
    unique_name,
};

pub const ETCD: &str = "/usr/bin/etcd";
pub const ETCDCTL: &str = "/usr/bin/etcdctl";

pub struct Etcd {
    pub client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// With TLS: client certificates required, auth enabled.
    secure: Option<Secure>,
}

/// What one start of etcd came to.
enum Started {
    Answering,
    Exited(std::process::ExitStatus),
}

/// A secure etcd: its CA, server certificate and root's client
/// certificate, and the etcdctl commands that made its users and roles
/// (made again when its data is lost).
struct Secure {
    pki: Pki,
    server: Credentials,
    root: Credentials,
    authorisations: std::sync::Mutex<Vec<Vec<String>>>,
}

impl Etcd {
    /// etcd over mutual TLS (`--client-cert-auth`: a client's CN is its
    /// user) with auth enabled; root (`--etcd-cert` of [`Etcd::client`]
    /// "root") may do anything, other users what [`Etcd::authorise`]
    /// grants them.
    pub fn start_secure() -> anyhow::Result<Etcd> {
        let mut etcd = Etcd::prepare()?;
        let pki = Pki::new(&etcd.dir.join("pki"))?;
        let server = pki.issue("etcd", &["127.0.0.1"])?;
        let root = pki.issue("root", &[])?;
        etcd.secure = Some(Secure {
            pki,
            server,
            root,
            authorisations: Default::default(),
        });
        etcd.spawn()?;
        etcd.enable_auth()?;
        Ok(etcd)
    }

    pub fn start() -> anyhow::Result<Etcd> {
        let mut etcd = Etcd::prepare()?;
        etcd.spawn()?;
        Ok(etcd)
    }

    fn prepare() -> anyhow::Result<Etcd> {
        anyhow::ensure!(
            std::path::Path::new(ETCD).exists(),
            "{ETCD} is missing: install Debian's etcd-server package (`cargo xtask setup`)"
        );
        anyhow::ensure!(
            std::path::Path::new(ETCDCTL).exists(),
            "{ETCDCTL} is missing: install Debian's etcd-client package (`cargo xtask setup`)"
        );
        let dir = std::env::temp_dir().join(unique_name("zet"));
        fs::create_dir_all(&dir)?;
        Ok(Etcd {
            client_port: listen_port()?,
            peer_port: listen_port()?,
            dir,
            child: None,
            secure: None,
        })
    }

    /// Root's user and role, the authorisations made so far, then `auth
    /// enable` (a fresh data directory has none of them).
    fn enable_auth(&self) -> anyhow::Result<()> {
        let Some(secure) = &self.secure else {
            return Ok(());
        };
        let root = [
            vec!["user", "add", "root", "--no-password=true"],
            vec!["user", "grant-role", "root", "root"],
        ];
        let made = secure
            .authorisations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let mut commands = root
            .iter()
            .map(|words| words.iter().map(|w| w.to_string()).collect::<Vec<_>>())
            .chain(made)
            .chain([vec!["auth".to_owned(), "enable".to_owned()]]);
        commands.try_for_each(|command| self.etcdctl_succeeds(&command))
    }

    /// `etcdctl COMMAND` as root, which must succeed.
    pub fn etcdctl_succeeds(&self, command: &[String]) -> anyhow::Result<()> {
        let words: Vec<&str> = command.iter().map(String::as_str).collect();
        let output = self.etcdctl(&words)?;
        anyhow::ensure!(
            output.status.success(),
            "etcdctl {}: {}",
            command.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    /// Runs etcdctl `commands` as root (users and roles, as `zpr fleet
    /// etcd-roles` prints them), and again whenever the data is lost.
    pub fn authorise(&self, commands: Vec<Vec<String>>) -> anyhow::Result<()> {
        for command in &commands {
            self.etcdctl_succeeds(command)?;
        }
        let secure = self.secure.as_ref().context("etcd is not secure")?;
        secure
            .authorisations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(commands);
        Ok(())
    }

    /// A client certificate for etcd user `user` (`None`: plaintext etcd).
    pub fn client(&self, user: &str) -> anyhow::Result<Option<Credentials>> {
        self.secure
            .as_ref()
            .map(|secure| secure.pki.issue(user, &[]))
            .transpose()
    }

    /// zpr's flags to reach this etcd as `user` (none for plaintext).
    pub fn zpr_flags(&self, user: &str) -> anyhow::Result<Vec<String>> {
        let (Some(secure), Some(client)) = (&self.secure, self.client(user)?) else {
            return Ok(Vec::new());
        };
        Ok([
            "--etcd-cacert",
            &secure.pki.ca().display().to_string(),
            "--etcd-cert",
            &client.cert.display().to_string(),
            "--etcd-key",
            &client.key.display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec())
    }

    /// The CA that signed etcd's certificate (`None`: plaintext etcd).
    pub fn ca(&self) -> Option<PathBuf> {
        self.secure.as_ref().map(|secure| secure.pki.ca())
    }

    /// etcdctl's flags to reach this etcd as root.
    fn etcdctl_flags(&self) -> Vec<String> {
        let scheme = if self.secure.is_some() {
            "https"
        } else {
            "http"
        };
        let mut flags = vec![format!(
            "--endpoints={scheme}://127.0.0.1:{}",
            self.client_port
        )];
        if let Some(secure) = &self.secure {
            flags.push(format!("--cacert={}", secure.pki.ca().display()));
            flags.push(format!("--cert={}", secure.root.cert.display()));
            flags.push(format!("--key={}", secure.root.key.display()));
        }
        flags
    }

    /// `etcd://127.0.0.1:PORT/TENANCY`.
    pub fn url(&self, tenancy: &str) -> String {
        format!("etcd://127.0.0.1:{}/{tenancy}", self.client_port)
    }

    /// Starts etcd (again, on the same data and ports) and waits until it
    /// answers. An etcd that exits because one of its ports is briefly
    /// taken (a connection's source port) is started again.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            // The log is appended to: only what this start wrote says why it ended.
            let logged_before = self.log().len();
            match self.spawn_once()? {
                Started::Answering => return Ok(()),
                Started::Exited(status) => {
                    let log = self.log().split_off(logged_before);
                    if !log.contains("address already in use")
                        || started.elapsed() > Duration::from_secs(20)
                    {
                        bail!("etcd exited ({status}) before it answered:\n{log}");
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    fn spawn_once(&mut self) -> anyhow::Result<Started> {
        let scheme = if self.secure.is_some() {
            "https"
        } else {
            "http"
        };
        let client = format!("{scheme}://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))?;
        let child = Command::new(ETCD)
            .args(["--name", "zpr-test"])
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=zpr-test={peer}"))
            .args(self.secure.iter().flat_map(|secure| {
                [
                    format!("--cert-file={}", secure.server.cert.display()),
                    format!("--key-file={}", secure.server.key.display()),
                    format!("--trusted-ca-file={}", secure.pki.ca().display()),
                    "--client-cert-auth".to_owned(),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting etcd")?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Ok(Started::Exited(status));
            }
            let health = self.etcdctl(&["endpoint", "health"]);
            if health.is_ok_and(|output| output.status.success()) {
                return Ok(Started::Answering);
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("etcd did not come up:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills etcd and starts it again on an empty data directory (same
    /// ports): a store lost and brought back empty, as a new cluster.
    pub fn start_empty(&mut self) -> anyhow::Result<()> {
        self.kill();
        fs::remove_dir_all(self.dir.join("data")).context("removing etcd's data")?;
        self.spawn()?;
        self.enable_auth()
    }

    /// `etcdctl put KEY VALUE` with a value of any bytes; the revision it
    /// made.
    pub fn put_bytes(&self, key: &str, value: &[u8]) -> anyhow::Result<u64> {
        use std::io::Write as _;
        // The value on standard input: an argument is at most 128 KiB.
        let mut etcdctl = Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .args(self.etcdctl_flags())
            .args(["--command-timeout=3s", "--write-out=json", "put", key])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        etcdctl
            .stdin
            .take()
            .context("etcdctl's standard input")?
            .write_all(value)?;
        let output = etcdctl.wait_with_output()?;
        anyhow::ensure!(
            output.status.success(),
            "etcdctl put {key}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        answer["header"]["revision"]
            .as_u64()
            .context("no revision in etcdctl's answer")
    }

    /// The value of `key` as stored.
    pub fn get_bytes(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        let output = self.etcdctl(&["get", key, "--print-value-only"])?;
        anyhow::ensure!(output.status.success(), "etcdctl get {key} failed");
        let mut value = output.stdout;
        if value.last() == Some(&b'\n') {
            value.pop();
        }
        Ok(value)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("etcd is not running")?;
        // SAFETY: kill(2) on our own child's pid.
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        anyhow::ensure!(sent == 0, "kill: {}", std::io::Error::last_os_error());
        Ok(())
    }

    /// SIGSTOP: connections stay open, nothing answers.
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGSTOP)
    }

    pub fn thaw(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// `etcdctl ARGS` against this etcd (API v3), success or not.
    pub fn etcdctl(&self, arguments: &[&str]) -> anyhow::Result<Output> {
        Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .args(self.etcdctl_flags())
            .args(["--command-timeout=3s"])
            .args(arguments)
            .output()
            .context("running etcdctl")
    }

    /// `etcdctl ARGS` as etcd user `user` (its client certificate).
    pub fn etcdctl_as(&self, user: &str, arguments: &[&str]) -> anyhow::Result<Output> {
        let secure = self.secure.as_ref().context("etcd is not secure")?;
        let client = secure.pki.issue(user, &[])?;
        Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .arg(format!(
                "--endpoints=https://127.0.0.1:{}",
                self.client_port
            ))
            .arg(format!("--cacert={}", secure.pki.ca().display()))
            .arg(format!("--cert={}", client.cert.display()))
            .arg(format!("--key={}", client.key.display()))
            .args(["--command-timeout=3s"])
            .args(arguments)
            .output()
            .context("running etcdctl")
    }

    /// The store's current revision.
    pub fn revision(&self) -> anyhow::Result<u64> {
        let output = self.etcdctl(&["endpoint", "status", "--write-out=json"])?;
        anyhow::ensure!(output.status.success(), "etcdctl endpoint status failed");
        let status: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        status[0]["Status"]["header"]["revision"]
            .as_u64()
            .context("no revision in etcdctl's answer")
    }

    /// Compacts the history up to the current revision: a watch from an
    /// older revision is cancelled.
    pub fn compact(&self) -> anyhow::Result<()> {
        let revision = self.revision()?.to_string();
        let output = self.etcdctl(&["compact", &revision, "--physical"])?;
        anyhow::ensure!(
            output.status.success(),
            "etcdctl compact: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.thaw();
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
