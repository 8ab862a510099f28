//! The client side, blocking (the CLI makes one call and exits): sends a
//! request to the API's Unix socket, or over mutual TLS to a remote
//! `zpr serve --listen`, and reads the whole response.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use rustls::{ClientConfig, pki_types::ServerName};

use super::message::{MAX_HEADERS, Response};

/// Where the API is.
pub enum Endpoint {
    Socket(PathBuf),
    Https {
        /// `HOST:PORT`, as given.
        authority: String,
        server_name: ServerName<'static>,
        tls: Arc<ClientConfig>,
    },
}

impl Endpoint {
    /// `https://HOST:PORT` with the CA that signed the server's certificate
    /// and this client's own certificate and key.
    pub fn https(url: &str, tls: ClientConfig) -> anyhow::Result<Endpoint> {
        let authority = url
            .strip_prefix("https://")
            .with_context(|| {
                format!("--api {url}: give https://HOST:PORT (the API is served over TLS only)")
            })?
            .trim_end_matches('/');
        if authority.contains(['/', '@', '?']) {
            bail!("--api {url}: give https://HOST:PORT, without a path or user");
        }
        let (host, port) = authority
            .rsplit_once(':')
            .with_context(|| format!("--api {url}: the port is missing (https://HOST:PORT)"))?;
        port.parse::<u16>()
            .with_context(|| format!("--api {url}: '{port}' is not a port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_owned())
            .with_context(|| format!("--api {url}: '{host}' is not a host name or address"))?;
        Ok(Endpoint::Https {
            authority: authority.to_owned(),
            server_name,
            tls: Arc::new(tls),
        })
    }

    /// Sends `METHOD PATH` (with `If-Match: ETAG` when given) and reads the
    /// answer; a server that neither answers nor closes within `timeout`
    /// (per read or write) is given up.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        if_match: Option<&str>,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> anyhow::Result<Response> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()?
            .unwrap_or_default();
        let if_match = if_match.map_or(String::new(), |etag| format!("If-Match: {etag}\r\n"));
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: zpr\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n{if_match}Connection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        let received = match self {
            Endpoint::Socket(socket) => {
                let stream =
                    std::os::unix::net::UnixStream::connect(socket).with_context(|| {
                        format!(
                            "connecting to the zpr API at {} (is `zpr serve` running? --socket \
                         names another)",
                            socket.display()
                        )
                    })?;
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                exchange(stream, &request)
                    .with_context(|| format!("talking to the zpr API at {}", socket.display()))?
            }
            Endpoint::Https {
                authority,
                server_name,
                tls,
            } => {
                let tcp = TcpStream::connect(authority.as_str()).with_context(|| {
                    format!("connecting to the zpr API at {authority} (is `zpr serve --listen` running there?)")
                })?;
                tcp.set_read_timeout(Some(timeout))?;
                tcp.set_write_timeout(Some(timeout))?;
                let connection = rustls::ClientConnection::new(tls.clone(), server_name.clone())?;
                exchange(rustls::StreamOwned::new(connection, tcp), &request).map_err(|error| {
                    anyhow::anyhow!(
                        "talking TLS to the zpr API at {authority}: {error}{}",
                        tls_hint(&error)
                    )
                })?
            }
        };
        parse_response(&received)
    }
}

/// What to do about a failed handshake, when its cause says.
fn tls_hint(error: &std::io::Error) -> &'static str {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::AlertReceived(_)) => {
            ". The server refused this client's certificate (--cert): it must be signed by the \
             CA the server trusts (`zpr serve --client-ca`) and be valid now"
        }
        Some(rustls::Error::InvalidCertificate(_)) => {
            ". The server's certificate is not one --cacert vouches for: give the CA that \
             signed it (`zpr serve --tls-cert`), and a host name or address it names"
        }
        _ => "",
    }
}

fn exchange(mut stream: impl Read + Write, request: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(request)?;
    stream.flush()?;
    let mut received = Vec::new();
    stream.read_to_end(&mut received)?;
    Ok(received)
}

fn parse_response(received: &[u8]) -> anyhow::Result<Response> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_length) = response.parse(received)? else {
        bail!("the API closed the connection inside the response head");
    };
    Ok(Response {
        status: response.code.unwrap_or_default(),
        headers: response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: received[head_length..].to_vec(),
    })
}
