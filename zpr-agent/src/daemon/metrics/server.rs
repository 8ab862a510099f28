//! The metrics endpoint: plain HTTP/1.1 on a thread of its own (with its
//! own small runtime), so a scrape's cost never lands on the agent's
//! thread, which reloads and keeps enforcing. Connections are served side
//! by side under a cap, each with a deadline for its whole request, and an
//! idle one gives way to a newcomer when the cap is reached: clients that
//! connect and send nothing (a slowloris) cannot delay a scrape.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use prometheus_client::registry::Registry;
use tokio::net::TcpStream;
use tracing::debug;

use crate::http::{
    admission::{Admission, Limits, Refusal, Ticket},
    listener::{accept_loop, connection_budget},
    message::{self, Response},
};

/// A scrape request is a line and a few headers: all of it within this.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Scrapers are few (Prometheus, a curl): more connections are a flood.
const CONNECTIONS: usize = 64;
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Listens on `address` and answers on a new thread; returns the address
/// bound (port 0 picks one).
pub(super) fn serve(address: SocketAddr, registry: Registry) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let admission = Admission::new(Limits {
        total: CONNECTIONS.min(connection_budget()),
        // Every local scraper has the same address: the cap is in total.
        per_peer: CONNECTIONS,
        privileged_reserve: 0,
        request_deadline: REQUEST_DEADLINE,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let registry = Arc::new(registry);
    std::thread::Builder::new()
        .name("zpr-metrics".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                accept_loop("metrics", listener, admission, |stream, admitted| {
                    answer(stream, admitted, registry.clone())
                })
                .await;
            });
        })?;
    Ok(bound)
}

async fn answer(mut stream: TcpStream, admitted: Result<Ticket, Refusal>, registry: Arc<Registry>) {
    let response = match admitted {
        Ok(mut ticket) => match ticket.within(message::read_request(&mut stream)).await {
            Ok(Ok(request)) => respond(&request, &registry),
            Ok(Err(_)) => text(400, "bad request\n"),
            Err(cut) => return debug!("metrics: {cut}"),
        },
        Err(refusal) => refusal.response(),
    };
    let written = tokio::time::timeout(
        REQUEST_DEADLINE,
        message::write_response(&mut stream, &response),
    );
    if !matches!(written.await, Ok(Ok(()))) {
        debug!("metrics: a response went unread");
    }
}

fn respond(request: &message::Request, registry: &Registry) -> Response {
    if request.method != "GET" {
        return text(405, "GET only\n");
    }
    if request.path != "/metrics" {
        return text(404, "zpr serves its Prometheus metrics at /metrics\n");
    }
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => Response::text(200, OPENMETRICS, body),
        Err(_) => text(500, "encoding the metrics failed\n"),
    }
}

fn text(status: u16, body: &str) -> Response {
    Response::text(status, "text/plain", body)
}
