//! The API's listeners: the Unix socket (the caller is who SO_PEERCRED
//! says) and, when asked, HTTPS with mutual TLS (the caller is who its
//! verified client certificate says). Each request and its principal go
//! to the agent's loop, which owns the store and the datapath and answers
//! one request at a time, so changes never interleave. Both listeners share
//! one [`Admission`]: caps, a reserve for root, and a deadline per request.

use std::{
    net::SocketAddr,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};
use tracing::debug;

use crate::{
    http::{
        admission::{Admission, Limits, Refusal, Ticket},
        listener::{accept_loop, connection_budget},
        message::{self, Request, Response},
        tls::{ServerFiles, ServerTls},
    },
    iam::Principal,
    private_file,
};

/// A request waiting for the agent's loop.
pub struct Call {
    pub principal: Principal,
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// A client gets this long to connect (and shake hands) and send its
/// whole request, and as long again to read the answer.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Connections one local user or one address may hold at once.
const PER_PEER: usize = 32;
/// Places only root may take, so it can repair a flooded host.
const ROOT_RESERVE: usize = 16;

/// The API over the network: where to listen and the TLS files.
#[derive(Clone, Debug)]
pub struct RemoteListener {
    pub address: SocketAddr,
    pub tls: ServerFiles,
}

pub struct ApiServer {
    path: PathBuf,
    calls: mpsc::Receiver<Call>,
    /// Where the network listener is bound (port 0 picks one).
    pub remote_address: Option<SocketAddr>,
}

impl ApiServer {
    /// Listens on the socket `path` (replacing a stale socket) and, when
    /// given, on `remote`. Anyone may connect to the socket: IAM, not file
    /// permissions, decides what a caller may do.
    pub fn bind(path: &Path, remote: Option<&RemoteListener>) -> anyhow::Result<ApiServer> {
        // Read before anything listens: a server that cannot serve TLS as
        // asked must not start half-way.
        let tls = remote
            .map(|remote| ServerTls::load(remote.tls.clone()))
            .transpose()?;
        if let Some(directory) = path.parent() {
            std::fs::create_dir_all(directory)
                .with_context(|| format!("creating {}", directory.display()))?;
            private_file::reachable_by_name(directory)?;
        }
        // The agent lock is held, so a socket left here is a dead agent's.
        let _ = std::fs::remove_file(path);
        let socket =
            UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        let admission = Admission::new(Limits {
            total: connection_budget(),
            per_peer: PER_PEER,
            privileged_reserve: ROOT_RESERVE,
            request_deadline: REQUEST_DEADLINE,
        });
        let (sender, calls) = mpsc::channel(64);
        let mut remote_address = None;
        if let (Some(remote), Some(tls)) = (remote, tls) {
            let listener = std::net::TcpListener::bind(remote.address)
                .with_context(|| format!("listening on {}", remote.address))?;
            listener.set_nonblocking(true)?;
            remote_address = Some(listener.local_addr()?);
            let listener = TcpListener::from_std(listener)?;
            let tls = Arc::new(Mutex::new(tls));
            let calls = sender.clone();
            tokio::spawn(accept_loop(
                "API over TLS",
                listener,
                admission.clone(),
                move |stream, admitted| serve_tls(stream, admitted, tls.clone(), calls.clone()),
            ));
        }
        tokio::spawn(accept_loop(
            "API socket",
            socket,
            admission,
            move |stream, admitted| serve_socket(stream, admitted, sender.clone()),
        ));
        Ok(ApiServer {
            path: path.to_owned(),
            calls,
            remote_address,
        })
    }

    pub async fn next(&mut self) -> Option<Call> {
        self.calls.recv().await
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_socket(
    mut stream: UnixStream,
    admitted: Result<Ticket, Refusal>,
    calls: mpsc::Sender<Call>,
) {
    let ticket = match admitted {
        Ok(ticket) => ticket,
        Err(refusal) => return reply(&mut stream, &refusal.response()).await,
    };
    let Ok(credentials) = stream.peer_cred() else {
        return;
    };
    let principal = Principal::from_ids(credentials.uid(), credentials.gid());
    serve(stream, ticket, principal, &calls).await;
}

async fn serve_tls(
    stream: TcpStream,
    admitted: Result<Ticket, Refusal>,
    tls: Arc<Mutex<ServerTls>>,
    calls: mpsc::Sender<Call>,
) {
    // Refused before the handshake: nothing can be said to a peer that
    // has not proved who it is, so the connection just closes.
    let Ok(mut ticket) = admitted else {
        return;
    };
    let config = tls.lock().unwrap_or_else(|p| p.into_inner()).current();
    let handshake = ticket.within(tokio_rustls::TlsAcceptor::from(config).accept(stream));
    let mut stream = match handshake.await {
        Ok(Ok(stream)) => stream,
        // A client without a certificate from the client CA, or with an
        // expired one, ends here: rustls has sent it the TLS alert.
        Ok(Err(error)) => return debug!("API over TLS: handshake refused: {error}"),
        Err(cut) => return debug!("API over TLS: {cut}"),
    };
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first());
    let principal = match certificate.map(|der| Principal::from_certificate(der)) {
        Some(Ok(principal)) => principal,
        Some(Err(error)) => return reply(&mut stream, &refused(403, &error)).await,
        None => return,
    };
    serve(stream, ticket, principal, &calls).await;
}

/// Reads the request within the ticket's deadline, hands it to the agent's
/// loop and writes the answer.
async fn serve(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    mut ticket: Ticket,
    principal: Principal,
    calls: &mpsc::Sender<Call>,
) {
    let response = match ticket.within(message::read_request(&mut stream)).await {
        Ok(Ok(request)) => {
            ticket.request_read();
            answer(principal, request, calls).await
        }
        Ok(Err(error)) => {
            let status = error
                .downcast_ref::<message::Refused>()
                .map_or(400, |r| r.status);
            refused(status, &error)
        }
        Err(cut) => refused(408, &anyhow::Error::new(cut)),
    };
    reply(&mut stream, &response).await;
}

async fn answer(principal: Principal, request: Request, calls: &mpsc::Sender<Call>) -> Response {
    let (reply, response) = oneshot::channel();
    let call = Call {
        principal,
        request,
        reply,
    };
    if calls.send(call).await.is_err() {
        return refused(503, &anyhow::anyhow!("the agent is stopping"));
    }
    response
        .await
        .unwrap_or_else(|_| refused(503, &anyhow::anyhow!("the agent dropped the request")))
}

fn refused(status: u16, error: &anyhow::Error) -> Response {
    let code = match status {
        403 => "NotAuthenticated",
        408 => "RequestTimeout",
        411 => "LengthRequired",
        503 => "ServiceUnavailable",
        _ => "InvalidParameter",
    };
    Response::json(
        status,
        &serde_json::json!({ "code": code, "message": format!("{error:#}") }),
    )
}

/// Writes `response`, giving a client that does not read it the same
/// deadline as for sending its request.
async fn reply(stream: &mut (impl AsyncWrite + Unpin), response: &Response) {
    match tokio::time::timeout(REQUEST_DEADLINE, message::write_response(stream, response)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => debug!("API: writing a response: {error:#}"),
        Err(_) => debug!("API: the client did not read its response in time"),
    }
}
