//! The metrics endpoint: plain HTTP/1.1 on a thread of its own, one
//! connection at a time, so a scrape's cost is bounded and never lands on
//! the agent's thread (which reloads and keeps enforcing).

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use prometheus_client::registry::Registry;
use tracing::debug;

/// A client that sends nothing, or reads nothing, is given up after this.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// A scrape request is a line and a few headers.
const REQUEST_LIMIT: usize = 16 * 1024;
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Listens on `address` and answers on a new thread; returns the address
/// bound (port 0 picks one).
pub(super) fn serve(address: SocketAddr, registry: Registry) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("zpr-metrics".to_owned())
        .spawn(move || {
            for stream in listener.incoming() {
                let answered = stream.and_then(|stream| answer(stream, &registry));
                if let Err(err) = answered {
                    debug!("metrics: a request went unanswered: {err}");
                }
            }
        })?;
    Ok(bound)
}

fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut request = Vec::new();
    let mut chunk = [0u8; 2048];
    let target = loop {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Ok(());
        }
        request.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&request) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    parsed.method.unwrap_or_default().to_owned(),
                    parsed.path.unwrap_or_default().to_owned(),
                );
            }
            Ok(httparse::Status::Partial) if request.len() < REQUEST_LIMIT => continue,
            _ => {
                return respond(
                    &mut stream,
                    "400 Bad Request",
                    "text/plain",
                    "bad request\n",
                );
            }
        }
    };
    match target {
        (method, path) if method == "GET" && path.split('?').next() == Some("/metrics") => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => respond(&mut stream, "200 OK", OPENMETRICS, &body),
                Err(_) => respond(
                    &mut stream,
                    "500 Internal Server Error",
                    "text/plain",
                    "encoding the metrics failed\n",
                ),
            }
        }
        (method, _) if method != "GET" => respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
        ),
        _ => respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            "zpr serves its Prometheus metrics at /metrics\n",
        ),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
