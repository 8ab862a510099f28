//! The API socket: accepts connections, reads each request and who sent it
//! (SO_PEERCRED), and hands both to the agent's loop, which owns the store
//! and the datapath and answers one request at a time, so changes never
//! interleave.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};
use tracing::{debug, warn};

use super::http::{self, Request, Response};
use crate::iam::Principal;

/// A request waiting for the agent's loop.
pub struct Call {
    pub principal: Principal,
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// A client gets this long to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ApiSocket {
    path: PathBuf,
    calls: mpsc::Receiver<Call>,
}

impl ApiSocket {
    /// Listens on `path` (replacing a stale socket). Anyone may connect:
    /// IAM, not file permissions, decides what a caller may do.
    pub fn bind(path: &Path) -> anyhow::Result<ApiSocket> {
        if let Some(directory) = path.parent() {
            std::fs::create_dir_all(directory)
                .with_context(|| format!("creating {}", directory.display()))?;
        }
        // The agent lock is held, so a socket left here is a dead agent's.
        let _ = std::fs::remove_file(path);
        let listener =
            UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        let (sender, calls) = mpsc::channel(64);
        tokio::spawn(accept(listener, sender));
        Ok(ApiSocket {
            path: path.to_owned(),
            calls,
        })
    }

    pub async fn next(&mut self) -> Option<Call> {
        self.calls.recv().await
    }
}

impl Drop for ApiSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn accept(listener: UnixListener, calls: mpsc::Sender<Call>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, calls.clone()));
            }
            Err(error) => warn!("API socket: accept: {error}"),
        }
    }
}

async fn serve_connection(mut stream: UnixStream, calls: mpsc::Sender<Call>) {
    let response = match answer(&mut stream, &calls).await {
        Ok(response) => response,
        Err(error) => {
            let status = error
                .downcast_ref::<http::Refused>()
                .map_or(400, |r| r.status);
            let code = match status {
                411 => "LengthRequired",
                _ => "InvalidParameter",
            };
            Response::json(
                status,
                &serde_json::json!({ "code": code, "message": format!("{error:#}") }),
            )
        }
    };
    if let Err(error) = http::write_response(&mut stream, &response).await {
        debug!("API socket: writing a response: {error:#}");
    }
}

async fn answer(stream: &mut UnixStream, calls: &mpsc::Sender<Call>) -> anyhow::Result<Response> {
    let credentials = stream.peer_cred()?;
    let request = tokio::time::timeout(READ_TIMEOUT, http::read_request(stream))
        .await
        .context("timed out reading the request")??;
    let principal = Principal::from_ids(credentials.uid(), credentials.gid());
    let (reply, response) = oneshot::channel();
    calls
        .send(Call {
            principal,
            request,
            reply,
        })
        .await
        .context("the agent is stopping")?;
    response.await.context("the agent dropped the request")
}
