//! `zpr serve`: the management API on a Unix socket (and, with `--listen`,
//! over mutual TLS), authorised by IAM statements, changing a store. With the SQLite store the agent of this
//! host runs in the same process and enforces each change before the API
//! answers; with etcd the server only changes the store (any number of
//! them, stateless), and each host's `zpr run --store` enforces.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use super::{
    agent_options::{AgentOptions, start_logging},
    diff_live::revoked_flows,
    etcd_access::EtcdArgs,
};
use crate::{
    api::{
        server::{ApiServer, RemoteListener},
        service::{Enforcer, NoLocalAgent, Service},
    },
    compile::RevokedFlow,
    daemon::{self, Agent, AgentLock, Companion, Guard, InputSource},
    http::tls::ServerFiles,
    inputs::Inputs,
    store::{EtcdLocation, Snapshot, Store, signing::Signer},
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The store: a SQLite file (created when missing), or a fleet's
    /// tenancy in etcd (`etcd://HOST:PORT[,HOST:PORT]/TENANCY`).
    #[arg(
        long,
        value_name = "FILE|etcd://...",
        default_value = "/var/lib/zpr/zpr.db"
    )]
    pub store: String,
    /// An inventory file to import when the store holds no endpoints yet
    /// (first start); later starts keep what the store holds.
    #[arg(long, value_name = "FILE")]
    pub seed_inventory: Option<PathBuf>,
    /// The API's Unix socket [default: <RUN_DIR>/api.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// IAM statements (`Allow group G to manage zpr-policy in tenancy`, ...).
    #[arg(long, value_name = "FILE")]
    pub iam: Option<PathBuf>,
    /// Grants GROUP `manage all-resources` (the first administrators).
    #[arg(long, value_name = "GROUP")]
    pub bootstrap_admin: Vec<String>,
    /// Sign every state committed with this key (`zpr key generate`; mode
    /// 0600), so agents with `--trusted-keys` apply only what an API
    /// server made.
    #[arg(long, value_name = "FILE", env = "ZPR_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    #[command(flatten)]
    pub agent: AgentOptions,
}

/// The API over the network, beside the socket.
#[derive(clap::Args, Debug)]
pub struct RemoteArgs {
    /// Also serve the API over HTTPS with mutual TLS at ADDR:PORT; needs
    /// --tls-cert, --tls-key and --client-ca. A client certificate's CN is
    /// the user and its O and OU are the groups IAM statements name.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// The server's certificate for --listen (PEM, chain after it).
    #[arg(long, value_name = "FILE", requires = "listen")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (mode 0600).
    #[arg(long, value_name = "FILE", requires = "listen")]
    pub tls_key: Option<PathBuf>,
    /// The CA whose client certificates are accepted: every certificate it
    /// signs is a principal, so give a CA kept for this API.
    #[arg(long, value_name = "FILE", requires = "listen")]
    pub client_ca: Option<PathBuf>,
}

impl RemoteArgs {
    fn listener(self) -> anyhow::Result<Option<RemoteListener>> {
        let Some(address) = self.listen else {
            return Ok(None);
        };
        let (Some(cert), Some(key), Some(client_ca)) =
            (self.tls_cert, self.tls_key, self.client_ca)
        else {
            anyhow::bail!(
                "--listen {address} needs --tls-cert and --tls-key (the server's identity) and \
                 --client-ca (the CA of the clients' certificates): the API is never served \
                 over the network without mutual TLS"
            );
        };
        Ok(Some(RemoteListener {
            address,
            tls: ServerFiles {
                cert,
                key,
                client_ca,
            },
        }))
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let run_dir = args.agent.paths.run_dir.clone();
    let socket = args.socket.unwrap_or_else(|| run_dir.join("api.sock"));
    let remote = args.remote.listener()?;
    if args.store.starts_with("etcd://") {
        start_logging(&args.agent.log_level)?;
        let service = Service::new(args.iam.as_deref(), &args.bootstrap_admin, &run_dir)?;
        let signer = args.signing_key.as_deref().map(Signer::read).transpose()?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(serve_store_only(
                args.etcd.location(&args.store)?,
                service,
                args.seed_inventory,
                signer,
                &socket,
                remote.as_ref(),
                &run_dir,
            ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut store = Store::open_sqlite(std::path::Path::new(&args.store))?;
    if let Some(key) = &args.signing_key {
        store.sign_with(Signer::read(key)?);
    }
    let companion = ApiBesideAgent {
        service: Service::new(args.iam.as_deref(), &args.bootstrap_admin, &run_dir)?,
        seed_inventory: args.seed_inventory,
        socket_path: socket,
        remote,
        server: None,
        location: store.describe(),
        store,
    };
    let config = args.agent.into_config(InputSource::Store {
        location: companion.location.clone(),
        node: None,
    })?;
    daemon::run(config, companion)?;
    Ok(ExitCode::SUCCESS)
}

/// The API sharing the agent's loop: one request at a time, each change
/// enforced here before the answer.
struct ApiBesideAgent {
    service: Service,
    store: Store,
    location: String,
    seed_inventory: Option<PathBuf>,
    socket_path: PathBuf,
    remote: Option<RemoteListener>,
    /// Bound once the agent runs (and holds the lock: a second `zpr serve`
    /// must not take the first one's socket).
    server: Option<ApiServer>,
}

impl Companion for ApiBesideAgent {
    async fn prepare(&mut self) -> anyhow::Result<Option<Snapshot>> {
        if let Some(seed) = &self.seed_inventory {
            self.store.seed(seed).await?;
        }
        Ok(Some(self.store.read().await?))
    }

    fn started(&mut self, _agent: &mut Agent) -> anyhow::Result<()> {
        let server = ApiServer::bind(&self.socket_path, self.remote.as_ref())?;
        announce(&server);
        self.server = Some(server);
        Ok(())
    }

    async fn next(&mut self, agent: &mut Agent) -> anyhow::Result<()> {
        let Some(server) = self.server.as_mut() else {
            return std::future::pending().await;
        };
        let Some(call) = server.next().await else {
            return std::future::pending().await;
        };
        let response = self
            .service
            .handle(
                &mut self.store,
                &mut LocalAgent(agent),
                &call.principal,
                &call.request,
            )
            .await;
        let _ = call.reply.send(response);
        Ok(())
    }
}

fn announce(server: &ApiServer) {
    if let Some(address) = server.remote_address {
        info!(%address, "serving the management API over HTTPS with mutual TLS");
    }
}

/// The agent of this process, enforcing what the API committed.
struct LocalAgent<'a>(&'a mut Agent);

impl Enforcer for LocalAgent<'_> {
    fn enforce(
        &mut self,
        snapshot: Snapshot,
        cause: &str,
        since: Instant,
    ) -> Option<Result<u32, String>> {
        self.0.offer(snapshot, cause, since, Guard::Confirmed);
        let status = self.0.status();
        Some(match &status.last_error {
            Some(error) => Err(error.message.clone()),
            None => Ok(status.generation),
        })
    }

    fn live_cuts(
        &self,
        before: &Inputs,
        after: &Inputs,
    ) -> Option<anyhow::Result<Vec<RevokedFlow>>> {
        Some(revoked_flows(
            self.0.pins(),
            self.0.run_dir(),
            before,
            after,
        ))
    }
}

/// The API alone: each change is committed to the store, whose agents
/// apply it on their hosts.
async fn serve_store_only(
    location: EtcdLocation,
    service: Service,
    seed_inventory: Option<PathBuf>,
    signer: Option<Signer>,
    socket: &std::path::Path,
    remote: Option<&RemoteListener>,
    run_dir: &std::path::Path,
) -> anyhow::Result<()> {
    // One server per run directory: a second must not take the socket.
    let _lock = AgentLock::acquire(run_dir)?;
    if let Some(warning) = location.insecure_warning() {
        tracing::warn!("{warning}");
    }
    let mut store = Store::open_etcd(location).await?;
    if let Some(signer) = signer {
        info!(key = signer.id(), "every state committed is signed");
        store.sign_with(signer);
    }
    if let Some(seed) = seed_inventory {
        store.seed(&seed).await?;
    }
    let mut socket = ApiServer::bind(socket, remote)?;
    announce(&socket);
    info!(store = %store.describe(), "serving the management API");
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            Some(call) = socket.next() => {
                let response = service
                    .handle(&mut store, &mut NoLocalAgent, &call.principal, &call.request)
                    .await;
                let _ = call.reply.send(response);
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    Ok(())
}
