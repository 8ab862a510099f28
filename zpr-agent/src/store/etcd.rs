//! A fleet's store: one tenancy under a versioned prefix of an etcd (v3)
//! cluster, one key per resource.
//!
//! ```text
//! /zpr/v1/<tenancy>/state/<record>        the tenancy (policies/<id>, endpoints/<name>, ...)
//! /zpr/v1/<tenancy>/commit                written by every commit: what a commit compares
//! /zpr/v1/<tenancy>/work-requests/<id>    the API's work requests
//! /zpr/v1/<tenancy>/nodes/<node>          each agent's report, under its lease
//! ```
//!
//! A commit is one transaction: it holds only if `commit` has not been
//! written since the revision the change was based on, so two API servers
//! changing the tenancy at once never lose an update (one gets a
//! [`Conflict`]). etcd's limits (128 operations per transaction, 1.5 MiB
//! per request) are checked first, with an error that names them: a change
//! is never half applied.

use std::time::Duration;

use anyhow::Context as _;
use std::path::PathBuf;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, PutOptions,
    TlsOptions, Txn, TxnOp, TxnResponse,
};

use super::{
    Conflict, RefusalKind, Snapshot, Unavailable, WorkRequest,
    records::{self, RawRecords, TenancyRecords, Writes},
    refuse,
};
use crate::inputs::open::{FileStamps, Symlinks, file_stamps};
use crate::inputs::text::read_bytes;

/// etcd refuses transactions of more operations (`--max-txn-ops`).
pub const MAX_TRANSACTION_OPERATIONS: usize = 128;
/// etcd refuses larger requests (`--max-request-bytes`, 1.5 MiB); kept
/// below it for the request's own framing.
pub const MAX_REQUEST_BYTES: usize = 1_400_000;
/// A request not answered in this time counts as the store being down.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings while a watch waits: a frozen or black-holed etcd is
/// noticed within the interval plus the timeout (the connection is
/// dropped, every stream on it fails). etcd closes connections that ping
/// more often than every 5 s (`--grpc-keepalive-min-time`).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(6);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a fleet's tenancy lives: `etcd://host:port[,host:port]/TENANCY`,
/// and how zpr reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdLocation {
    /// `HOST:PORT` each (the scheme follows from [`EtcdAccess`]).
    pub hosts: Vec<String>,
    pub tenancy: String,
    pub access: EtcdAccess,
}

/// How zpr reaches etcd: TLS (etcd's `--trusted-ca-file`, and a client
/// certificate when etcd has `--client-cert-auth`: its CN is the etcd
/// user), or a user and password, and whether plaintext to an etcd off
/// loopback is accepted. Files are read at every connection, so renewed
/// certificates are taken without a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdAccess {
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub user: Option<String>,
    /// The password's file (never a flag: argv is world-readable).
    pub password_file: Option<PathBuf>,
    /// Plaintext to an etcd that is not on loopback, knowingly.
    pub insecure: bool,
}

impl EtcdLocation {
    /// Parses `etcd://HOST:PORT[,...]/TENANCY` to be reached with
    /// `access`, which must secure any host off loopback.
    pub fn parse_with(text: &str, access: EtcdAccess) -> anyhow::Result<EtcdLocation> {
        let usage = "expected etcd://HOST:PORT[,HOST:PORT...]/TENANCY, e.g. \
                     etcd://127.0.0.1:2379/prod";
        let rest = text
            .strip_prefix("etcd://")
            .with_context(|| format!("'{}': {usage}", redacted(text)))?;
        let (hosts, tenancy) = rest
            .split_once('/')
            .with_context(|| format!("'{}' names no tenancy: {usage}", redacted(text)))?;
        if hosts.contains('@') {
            anyhow::bail!(
                "'{}': credentials in the store's address are refused (argv and logs would \
                 show them): give --etcd-user NAME and --etcd-password-file FILE, or a client \
                 certificate (--etcd-cert, --etcd-key)",
                redacted(text)
            );
        }
        let hosts: Vec<String> = hosts
            .split(',')
            .filter(|host| !host.is_empty())
            .map(str::to_owned)
            .collect();
        let valid_tenancy = !tenancy.is_empty()
            && tenancy
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if hosts.is_empty() || !valid_tenancy {
            anyhow::bail!("'{text}': {usage} (a tenancy is 1 or more of A-Z a-z 0-9 - _ .)");
        }
        access.check(&hosts)?;
        Ok(EtcdLocation {
            hosts,
            tenancy: tenancy.to_owned(),
            access,
        })
    }

    /// As [`EtcdLocation::parse_with`], in plaintext (loopback only).
    pub fn parse(text: &str) -> anyhow::Result<EtcdLocation> {
        EtcdLocation::parse_with(text, EtcdAccess::default())
    }

    /// The gRPC endpoints: `https://` with TLS, `http://` without (the
    /// client would otherwise pick plaintext for a scheme-less one).
    pub fn endpoints(&self) -> Vec<String> {
        let scheme = if self.access.tls() { "https" } else { "http" };
        self.hosts
            .iter()
            .map(|host| format!("{scheme}://{host}"))
            .collect()
    }

    /// Plaintext to a host off loopback, accepted with --etcd-insecure: a
    /// warning for the log and `zpr status`.
    pub fn insecure_warning(&self) -> Option<String> {
        let remote: Vec<&str> = self
            .hosts
            .iter()
            .map(String::as_str)
            .filter(|host| !on_loopback(host))
            .collect();
        (!self.access.tls() && !remote.is_empty()).then(|| {
            format!(
                "--etcd-insecure: the store is reached in plaintext at {} (not on loopback): \
                 anyone on the path can read and change what every host enforces",
                remote.join(", ")
            )
        })
    }

    pub fn prefix(&self) -> String {
        format!("/zpr/v1/{}/", self.tenancy)
    }

    pub fn state_prefix(&self) -> String {
        format!("{}state/", self.prefix())
    }

    pub fn nodes_prefix(&self) -> String {
        format!("{}nodes/", self.prefix())
    }

    /// Agents refused a node name another agent holds.
    pub fn contenders_prefix(&self) -> String {
        format!("{}contenders/", self.prefix())
    }

    pub fn commit_key(&self) -> String {
        format!("{}commit", self.prefix())
    }

    /// The etcd key of a record (work requests beside the state).
    fn key_of(&self, record: &str) -> String {
        if records::beside_tenancy(record) {
            format!("{}{record}", self.prefix())
        } else {
            format!("{}{record}", self.state_prefix())
        }
    }
}

impl std::fmt::Display for EtcdLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd://{}/{}", self.hosts.join(","), self.tenancy)
    }
}

/// The store's address as it may be shown: credentials written into it
/// (`user:password@`) are cut out.
fn redacted(text: &str) -> String {
    let (scheme, rest) = text.split_once("://").unwrap_or(("", text));
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    let hosts: Vec<String> = hosts
        .split(',')
        .map(|host| match host.rsplit_once('@') {
            Some((_, host)) => format!("…@{host}"),
            None => host.to_owned(),
        })
        .collect();
    format!("{scheme}://{}/{path}", hosts.join(","))
}

/// `HOST:PORT` on this machine's loopback (127.0.0.0/8, ::1, localhost).
fn on_loopback(host: &str) -> bool {
    let name = host
        .rsplit_once(':')
        .map_or(host, |(name, _)| name)
        .trim_start_matches('[')
        .trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

impl EtcdAccess {
    fn tls(&self) -> bool {
        self.cacert.is_some()
    }

    /// Refuses what cannot work, or is plaintext off loopback unasked.
    fn check(&self, hosts: &[String]) -> anyhow::Result<()> {
        if self.cert.is_some() != self.key.is_some() {
            anyhow::bail!(
                "a client certificate needs both --etcd-cert and --etcd-key (one was given)"
            );
        }
        if self.cert.is_some() && !self.tls() {
            anyhow::bail!(
                "--etcd-cert and --etcd-key need --etcd-cacert: the CA that signed etcd's \
                 server certificate (etcd's --trusted-ca-file)"
            );
        }
        if self.user.is_some() != self.password_file.is_some() {
            anyhow::bail!("--etcd-user needs --etcd-password-file, and the other way round");
        }
        if self.tls() && self.insecure {
            anyhow::bail!("--etcd-insecure and --etcd-cacert contradict each other: give one");
        }
        let remote: Vec<&str> = hosts
            .iter()
            .map(String::as_str)
            .filter(|host| !on_loopback(host))
            .collect();
        if !self.tls() && !self.insecure && !remote.is_empty() {
            anyhow::bail!(
                "refusing plaintext to etcd at {} (not on loopback): anyone on the path could \
                 read and change what every host enforces. Give --etcd-cacert FILE (and \
                 --etcd-cert/--etcd-key when etcd checks client certificates), or \
                 --etcd-insecure to accept plaintext",
                remote.join(", ")
            );
        }
        Ok(())
    }

    /// The client's options: TLS and credentials, read from their files now.
    fn options(&self) -> anyhow::Result<ConnectOptions> {
        let read = |path: &PathBuf, what: &str| read_bytes(path, what, Symlinks::Followed);
        let mut options = ConnectOptions::new();
        if let Some(cacert) = &self.cacert {
            let mut tls = TlsOptions::new()
                .ca_certificate(Certificate::from_pem(read(cacert, "the etcd CA")?));
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                tls = tls.identity(Identity::from_pem(
                    read(cert, "the etcd client certificate")?,
                    read(key, "the etcd client key")?,
                ));
            }
            options = options.with_tls(tls);
        }
        if let (Some(user), Some(file)) = (&self.user, &self.password_file) {
            let password = String::from_utf8(read(file, "the etcd password")?)
                .with_context(|| format!("{} is not UTF-8", file.display()))?;
            options = options.with_user(user, password.trim_end_matches(['\n', '\r']));
        }
        Ok(options)
    }
}

/// The credential files as they were when last read: when they change (a
/// renewed certificate), a connection is made again with them, as etcd
/// itself re-reads its own, so rotating them needs no restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CredentialStamp(FileStamps);

/// How often a long-lived connection checks its credential files.
pub const CREDENTIALS_CHECK: Duration = Duration::from_secs(5);

impl EtcdAccess {
    /// The credential files' modification times, sizes and inodes now.
    pub fn stamp(&self) -> CredentialStamp {
        CredentialStamp(file_stamps(
            [&self.cacert, &self.cert, &self.key, &self.password_file]
                .into_iter()
                .flatten()
                .map(PathBuf::as_path),
        ))
    }
}

/// Returns once the credential files differ from `stamp`.
pub async fn credentials_rotated(access: EtcdAccess, stamp: CredentialStamp) {
    loop {
        tokio::time::sleep(CREDENTIALS_CHECK).await;
        if access.stamp() != stamp {
            tracing::info!("the etcd credential files changed: connecting again with them");
            return;
        }
    }
}

/// A client with zpr's timeouts and keepalive. Connecting does not wait
/// for etcd: requests fail with [`Unavailable`] while it is down.
pub async fn connect(location: &EtcdLocation) -> anyhow::Result<Client> {
    // No per-call timeout here: it would also end the long-lived watch
    // and lease streams; unary requests get theirs from [`request`].
    let options = location
        .access
        .options()?
        .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
        .with_keep_alive_while_idle(true)
        .with_connect_timeout(REQUEST_TIMEOUT);
    // With credentials the client authenticates while connecting: a
    // refusal (a wrong password) is told as such, not as an outage.
    Client::connect(location.endpoints(), Some(options))
        .await
        .map_err(|error| unavailable(location, cause(&error)))
}

pub fn unavailable(location: &EtcdLocation, error: impl std::fmt::Display) -> anyhow::Error {
    Unavailable(format!("{location}: {error}")).into()
}

/// An etcd client error as one line that says what went wrong: etcd's own
/// message, or the innermost cause of a transport failure (tonic's errors
/// otherwise print their whole chain, metadata and all).
pub fn cause(error: &etcd_client::Error) -> String {
    use std::error::Error as _;
    let innermost = |mut source: Option<&(dyn std::error::Error + 'static)>| {
        let mut last = None;
        while let Some(error) = source {
            last = Some(error.to_string());
            source = error.source();
        }
        last
    };
    let line = match error {
        etcd_client::Error::GRpcStatus(status) => {
            let message = if status.message().is_empty() {
                format!("{:?}", status.code())
            } else {
                status.message().to_owned()
            };
            match innermost(status.source()) {
                Some(root) if !message.contains(&root) => format!("{message}: {root}"),
                _ => message,
            }
        }
        etcd_client::Error::TransportError(transport) => match innermost(transport.source()) {
            Some(root) => format!("cannot connect: {root}"),
            None => format!("cannot connect: {transport}"),
        },
        other => other.to_string(),
    };
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs one etcd request with zpr's deadline.
pub async fn request<T>(
    location: &EtcdLocation,
    future: impl Future<Output = Result<T, etcd_client::Error>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, future).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(unavailable(location, cause(&error))),
        Err(_) => Err(unavailable(
            location,
            format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()),
        )),
    }
}

/// What a list of one prefix found: the records under it as stored
/// (the prefix taken off their keys; nothing decoded, so that what a
/// watch and a list read is judged by one function, [`records::from_records`]),
/// the revision they were read at and the cluster that answered.
pub struct Listed {
    pub records: RawRecords,
    pub revision: u64,
    pub cluster: u64,
}

/// How a list is read: a tenancy of any size in answers etcd and the
/// client can carry, every page at the first page's revision, so the
/// pages make one consistent state.
#[derive(Clone, Copy, Debug)]
pub struct Paging {
    /// Records asked for per page.
    pub records: i64,
    /// The largest answer the client takes; a page that is larger is asked
    /// for again in halves.
    pub answer_bytes: usize,
}

impl Paging {
    /// gRPC's default answer limit, 4 MiB, is less than a large tenancy.
    pub const DEFAULT: Paging = Paging {
        records: 1_000,
        answer_bytes: ANSWER_BYTES_MAX,
    };
}

/// The largest answer (a page, a watch message) a client takes.
pub const ANSWER_BYTES_MAX: usize = 64 << 20;

pub async fn list(
    client: &mut Client,
    location: &EtcdLocation,
    prefix: &str,
) -> anyhow::Result<Listed> {
    list_in_pages(client, location, prefix, Paging::DEFAULT).await
}

pub async fn list_in_pages(
    client: &mut Client,
    location: &EtcdLocation,
    prefix: &str,
    paging: Paging,
) -> anyhow::Result<Listed> {
    let mut kv = client
        .kv_client()
        .max_decoding_message_size(paging.answer_bytes);
    let end = prefix_end(prefix.as_bytes());
    let mut from = prefix.as_bytes().to_vec();
    let mut page = paging.records;
    // Taken from the first page: later pages are read at its revision.
    let mut at: Option<(u64, u64)> = None;
    let mut records = RawRecords::new();
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(page);
        if let Some((revision, _)) = at {
            options = options.with_revision(revision as i64);
        }
        let answer = request(location, async {
            match kv.get(from.clone(), Some(options)).await {
                Err(error) if cause(&error).contains("message length too large") => Ok(None),
                answer => answer.map(Some),
            }
        })
        .await?;
        let Some(answer) = answer else {
            anyhow::ensure!(
                page > 1,
                unavailable(
                    location,
                    format!(
                        "a record under {prefix} is larger than the {} bytes an answer may carry",
                        paging.answer_bytes
                    )
                )
            );
            page /= 2;
            continue;
        };
        if at.is_none() {
            // Without the first page's revision, later pages could be read
            // at another: a state that never was.
            let header = answer
                .header()
                .filter(|header| header.revision() > 0)
                .ok_or_else(|| unavailable(location, "an answer without its revision"))?;
            at = Some((header.revision() as u64, header.cluster_id()));
        }
        for kv in answer.kvs() {
            if let Some(key) = kv.key().strip_prefix(prefix.as_bytes()) {
                records.insert(key.to_vec(), kv.value().to_vec());
            }
        }
        match answer.kvs().last() {
            Some(last) if answer.more() => from = [last.key(), &[0]].concat(),
            _ => break,
        }
    }
    let (revision, cluster) = at.unwrap_or_default();
    Ok(Listed {
        records,
        revision,
        cluster,
    })
}

/// The first key after every key that starts with `prefix` (etcd's range
/// end for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: to the end of the keyspace.
    vec![0]
}

pub struct EtcdStore {
    location: EtcdLocation,
    /// Made again after the store stopped answering: a channel to an etcd
    /// that restarted (or renewed its certificate) is not trusted to
    /// recover by itself.
    client: std::sync::Mutex<Option<(Client, CredentialStamp)>>,
    /// The lease work requests and audit records are written under.
    kept_for: Option<(i64, std::time::Instant)>,
    /// The records of the last read: a read lists them all, and reads
    /// again only those that changed since.
    last_read: std::sync::Mutex<TenancyRecords>,
}

/// How long a fleet's store keeps work requests and audit records (each
/// API server's own audit log keeps them for ever): VMs that come and go
/// all day leave a week of history in etcd, not all of it.
pub const KEPT_BESIDE_TENANCY: Duration = Duration::from_secs(7 * 24 * 3600);
/// A new lease for them this often: each record lives a week to a week
/// and an hour, and the API grants one lease an hour.
const NEW_LEASE_EVERY: Duration = Duration::from_secs(3600);

impl EtcdStore {
    pub async fn open(location: EtcdLocation) -> anyhow::Result<EtcdStore> {
        let stamp = location.access.stamp();
        let client = connect(&location).await?;
        Ok(EtcdStore {
            location,
            client: std::sync::Mutex::new(Some((client, stamp))),
            kept_for: None,
            last_read: std::sync::Mutex::new(TenancyRecords::default()),
        })
    }

    fn held_client(&self) -> std::sync::MutexGuard<'_, Option<(Client, CredentialStamp)>> {
        self.client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The client; a new one when there is none or the credential files
    /// changed since it was made.
    async fn client(&self) -> anyhow::Result<Client> {
        let stamp = self.location.access.stamp();
        if let Some((client, made_with)) = self.held_client().clone()
            && made_with == stamp
        {
            return Ok(client);
        }
        let client = connect(&self.location).await?;
        *self.held_client() = Some((client.clone(), stamp));
        Ok(client)
    }

    /// `outcome`, after dropping the client when the store did not answer.
    fn settled<T>(&self, outcome: anyhow::Result<T>) -> anyhow::Result<T> {
        if outcome
            .as_ref()
            .is_err_and(|error| error.downcast_ref::<Unavailable>().is_some())
        {
            *self.held_client() = None;
        }
        outcome
    }

    pub fn location(&self) -> &EtcdLocation {
        &self.location
    }

    /// The tenancy now. Tried again once on a new connection when the
    /// store did not answer (a read changes nothing): every API call
    /// starts with it, so a channel left broken by an etcd restart is
    /// replaced before a change is committed over it.
    pub async fn read(&self) -> anyhow::Result<Snapshot> {
        let prefix = self.location.state_prefix();
        let mut client = self.client().await?;
        let listed = list(&mut client, &self.location, &prefix).await;
        let listed = match self.settled(listed) {
            Ok(listed) => listed,
            Err(_) => {
                let mut client = self.client().await?;
                let listed = list(&mut client, &self.location, &prefix).await;
                self.settled(listed)?
            }
        };
        // After a read that panicked, the records held may be half
        // updated: read them all again.
        let mut last_read = self.last_read.lock().unwrap_or_else(|poisoned| {
            let mut held = poisoned.into_inner();
            *held = TenancyRecords::default();
            self.last_read.clear_poison();
            held
        });
        last_read.relist(&listed.records);
        Ok(Snapshot {
            tenancy: last_read.tenancy()?,
            revision: listed.revision,
            cluster: Some(listed.cluster),
        })
    }

    /// Applies `writes` if no commit happened after `base_revision`;
    /// returns the revision of the commit.
    pub async fn commit(&mut self, base_revision: u64, writes: &Writes) -> anyhow::Result<u64> {
        check_limits(writes, 1)?;
        let commit_key = self.location.commit_key();
        let answer = self
            .transact(writes, |mut operations| {
                operations.push(TxnOp::put(commit_key.clone(), "", None));
                Txn::new()
                    .when([Compare::mod_revision(
                        commit_key.clone(),
                        CompareOp::Less,
                        base_revision as i64 + 1,
                    )])
                    .and_then(operations)
            })
            .await?;
        let revision = answer.header().map_or(0, |header| header.revision()) as u64;
        if !answer.succeeded() {
            return Err(Conflict {
                base_revision,
                current_revision: revision,
            }
            .into());
        }
        Ok(revision)
    }

    /// Writes records outside the tenancy (work requests) as they are.
    pub async fn put_unconditionally(&mut self, writes: &Writes) -> anyhow::Result<()> {
        check_limits(writes, 0)?;
        self.transact(writes, |operations| Txn::new().and_then(operations))
            .await?;
        Ok(())
    }

    /// Runs the transaction `shape` makes of the writes. When the store no
    /// longer knows the lease history is kept under (it was reset or
    /// restored), a new one is taken and the transaction made again, once.
    async fn transact(
        &mut self,
        writes: &Writes,
        shape: impl Fn(Vec<TxnOp>) -> Txn,
    ) -> anyhow::Result<TxnResponse> {
        let mut retried = false;
        loop {
            let transaction = shape(self.operations(writes).await?);
            let mut client = self.client().await?;
            match request(&self.location, client.txn(transaction)).await {
                Err(error)
                    if !retried
                        && self.kept_for.is_some()
                        && format!("{error:#}").contains("lease not found") =>
                {
                    self.kept_for = None;
                    retried = true;
                }
                answer => return self.settled(answer),
            }
        }
    }

    /// The writes as transaction operations; records beside the tenancy
    /// go under the lease that expires them.
    async fn operations(&mut self, writes: &Writes) -> anyhow::Result<Vec<TxnOp>> {
        let lease = if writes
            .puts
            .iter()
            .any(|(key, _)| records::beside_tenancy(key))
        {
            Some(self.lease_for_history().await?)
        } else {
            None
        };
        let puts = writes.puts.iter().map(|(key, value)| {
            let options = lease
                .filter(|_| records::beside_tenancy(key))
                .map(|id| PutOptions::new().with_lease(id));
            TxnOp::put(self.location.key_of(key), value.as_str(), options)
        });
        let deletes = writes
            .deletes
            .iter()
            .map(|key| TxnOp::delete(self.location.key_of(key), None));
        Ok(puts.chain(deletes).collect())
    }

    /// This hour's lease for work requests and audit records (a change
    /// costs no lease request but once an hour).
    async fn lease_for_history(&mut self) -> anyhow::Result<i64> {
        if let Some((id, granted)) = self.kept_for
            && granted.elapsed() < NEW_LEASE_EVERY
        {
            return Ok(id);
        }
        let ttl = (KEPT_BESIDE_TENANCY + NEW_LEASE_EVERY).as_secs() as i64;
        let mut client = self.client().await?;
        let granted = request(&self.location, client.lease_grant(ttl, None)).await;
        let id = self.settled(granted)?.id();
        self.kept_for = Some((id, std::time::Instant::now()));
        Ok(id)
    }

    pub async fn work_requests(&self) -> anyhow::Result<Vec<WorkRequest>> {
        let mut client = self.client().await?;
        let prefix = format!("{}{}", self.location.prefix(), records::WORK_REQUESTS);
        let listed = list(&mut client, &self.location, &prefix).await;
        let listed = self.settled(listed)?;
        let texts: Vec<(String, String)> = listed
            .records
            .iter()
            .map(|(key, value)| {
                (
                    format!("{}{}", records::WORK_REQUESTS, String::from_utf8_lossy(key)),
                    String::from_utf8_lossy(value).into_owned(),
                )
            })
            .collect();
        records::work_requests(texts.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    pub async fn work_request(&self, id: &str) -> anyhow::Result<Option<WorkRequest>> {
        let mut client = self.client().await?;
        let key = self
            .location
            .key_of(&format!("{}{id}", records::WORK_REQUESTS));
        let answer = request(&self.location, client.get(key, None)).await;
        let answer = self.settled(answer)?;
        answer
            .kvs()
            .first()
            .map(|kv| Ok(serde_json::from_slice(kv.value())?))
            .transpose()
    }
}

/// Refuses, before anything is sent, a change etcd would refuse.
fn check_limits(writes: &Writes, extra_operations: usize) -> anyhow::Result<()> {
    let operations = writes.len() + extra_operations;
    if operations > MAX_TRANSACTION_OPERATIONS {
        return refuse(
            RefusalKind::Invalid,
            format!(
                "the change writes {} records; etcd takes at most {} operations per \
                 transaction (--max-txn-ops): nothing changed; make it in smaller steps",
                writes.len(),
                MAX_TRANSACTION_OPERATIONS - extra_operations
            ),
        );
    }
    let bytes: usize = writes
        .puts
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .chain(writes.deletes.iter().map(String::len))
        .sum();
    if bytes > MAX_REQUEST_BYTES {
        return refuse(
            RefusalKind::Invalid,
            format!(
                "the change is {bytes} bytes; etcd takes requests of at most 1.5 MiB \
                 (--max-request-bytes): nothing changed; split the policy into smaller ones"
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_after_every_key_under_it() {
        assert_eq!(prefix_end(b"/zpr/v1/t/state/"), b"/zpr/v1/t/state0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn locations_parse_and_say_what_is_expected() {
        let insecure = EtcdAccess {
            insecure: true,
            ..EtcdAccess::default()
        };
        let location =
            EtcdLocation::parse_with("etcd://10.0.0.1:2379,10.0.0.2:2379/prod", insecure.clone())
                .unwrap();
        assert_eq!(
            location.endpoints(),
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert!(location.insecure_warning().unwrap().contains("plaintext"));
        assert_eq!(location.hosts, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(location.state_prefix(), "/zpr/v1/prod/state/");
        assert_eq!(
            location.to_string(),
            "etcd://10.0.0.1:2379,10.0.0.2:2379/prod"
        );
        for bad in [
            "etcd://127.0.0.1:2379",
            "http://x/prod",
            "etcd:///prod",
            "etcd://h:1/a/b",
        ] {
            let error = EtcdLocation::parse(bad).unwrap_err().to_string();
            assert!(error.contains("etcd://HOST:PORT"), "{bad}: {error}");
        }
    }

    #[test]
    fn plaintext_off_loopback_and_credentials_in_the_address_are_refused() {
        let error = EtcdLocation::parse("etcd://10.0.0.1:2379/prod")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--etcd-cacert") && error.contains("--etcd-insecure"),
            "{error}"
        );
        for local in [
            "127.0.0.1:2379",
            "localhost:2379",
            "[::1]:2379",
            "127.8.0.1:1",
        ] {
            let location = EtcdLocation::parse(&format!("etcd://{local}/prod")).unwrap();
            assert_eq!(location.insecure_warning(), None, "{local}");
        }
        let error = EtcdLocation::parse("etcd://root:hunter2@10.0.0.1:2379/prod")
            .unwrap_err()
            .to_string();
        assert!(
            !error.contains("hunter2"),
            "the password is echoed: {error}"
        );
        assert!(error.contains("--etcd-password-file"), "{error}");
        let tls = EtcdAccess {
            cacert: Some("ca.pem".into()),
            ..EtcdAccess::default()
        };
        let location = EtcdLocation::parse_with("etcd://10.0.0.1:2379/prod", tls).unwrap();
        assert_eq!(location.endpoints(), ["https://10.0.0.1:2379"]);
        let half = EtcdAccess {
            cacert: Some("ca.pem".into()),
            cert: Some("agent.pem".into()),
            ..EtcdAccess::default()
        };
        let error = EtcdLocation::parse_with("etcd://10.0.0.1:2379/prod", half).unwrap_err();
        assert!(error.to_string().contains("--etcd-key"), "{error}");
    }

    #[test]
    fn changes_over_etcds_limits_are_refused_before_anything_is_sent() {
        let many = Writes {
            puts: (0..128)
                .map(|n| (format!("policies/{n}"), "{}".into()))
                .collect(),
            deletes: Vec::new(),
        };
        let error = check_limits(&many, 1).unwrap_err().to_string();
        assert!(error.contains("at most 127"), "{error}");
        let large = Writes {
            puts: vec![("policies/big".into(), "x".repeat(1_500_000))],
            deletes: Vec::new(),
        };
        assert!(
            check_limits(&large, 1)
                .unwrap_err()
                .to_string()
                .contains("1.5 MiB")
        );
        let fits = Writes {
            puts: (0..127)
                .map(|n| (format!("policies/{n}"), "{}".into()))
                .collect(),
            deletes: Vec::new(),
        };
        check_limits(&fits, 1).unwrap();
    }
}
