//! The little HTTP/1.1 zpr's servers need: one request per connection
//! (`Connection: close`), bodies framed by `Content-Length`, heads parsed by
//! `httparse`. The peers are zpr's own CLI, Prometheus and tools such as
//! `curl`, so no keep-alive or chunked bodies: hyper would bring a dozen
//! crates for features these servers never use. What it does not support
//! it refuses (a chunked body: 411; two Content-Length headers: 400),
//! rather than guess at a body it may read differently from the sender.

use anyhow::{Context as _, bail};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Heads larger than this are refused (a request head is a few hundred bytes).
const MAX_HEAD: usize = 16 * 1024;
pub(super) const MAX_HEADERS: usize = 32;
/// Policies are text: a megabyte is tens of thousands of statements.
const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Without the query string.
    pub path: String,
    /// The `if-match` header: the etag the caller read.
    pub if_match: Option<String>,
    /// `?dryRun=true`: say what the change would do, change nothing.
    pub dry_run: bool,
    /// `?allowUnprotect=true`: the caller confirms a change that stops
    /// protecting most of some host's endpoints (refused otherwise).
    pub allow_unprotect: bool,
    /// Every `name=value` of the query string, percent-decoded.
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A request refused before it reaches the service, with its status.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

fn refuse<T>(status: u16, message: impl Into<String>) -> anyhow::Result<T> {
    Err(Refused {
        status,
        message: message.into(),
    }
    .into())
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// `(name, value)` beside Content-Type and Content-Length.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: &serde_json::Value) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: serde_json::to_vec_pretty(body).unwrap_or_default(),
        }
    }

    /// A plain-text answer (what Prometheus and curl users read).
    pub fn text(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".to_owned(), content_type.to_owned())],
            body: body.into(),
        }
    }

    fn head(&self) -> String {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.body.len()
        );
        if !self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            head += "Content-Type: application/json\r\n";
        }
        for (name, value) in &self.headers {
            head += &format!("{name}: {value}\r\n");
        }
        head + "\r\n"
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// Reads one request from a connection.
pub async fn read_request(stream: &mut (impl AsyncRead + Unpin)) -> anyhow::Result<Request> {
    let mut buffer = Vec::with_capacity(1024);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head_length) = request.parse(&buffer)? {
            let method = request.method.unwrap_or_default().to_owned();
            let target = request.path.unwrap_or_default();
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let path = path.to_owned();
            let query = query_pairs(query);
            let flag = |name: &str| {
                query
                    .iter()
                    .any(|(key, value)| key == name && value == "true")
            };
            let (dry_run, allow_unprotect) = (flag("dryRun"), flag("allowUnprotect"));
            let length = content_length(request.headers)?;
            let if_match = single(request.headers, "if-match")?
                .map(|value| String::from_utf8_lossy(value).trim().to_owned());
            let mut body = buffer[head_length..].to_vec();
            while body.len() < length {
                let mut chunk = vec![0; (length - body.len()).min(64 * 1024)];
                let read = stream.read(&mut chunk).await?;
                if read == 0 {
                    bail!("the connection closed inside the request body");
                }
                body.extend_from_slice(&chunk[..read]);
            }
            body.truncate(length);
            return Ok(Request {
                method,
                path,
                if_match,
                dry_run,
                allow_unprotect,
                query,
                body,
            });
        }
        if buffer.len() > MAX_HEAD {
            bail!("request head longer than {MAX_HEAD} bytes");
        }
        let mut chunk = [0; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            bail!("the connection closed inside the request head");
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

impl Request {
    /// The query's value for `name`, if given.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decoded(name), percent_decoded(value))
        })
        .collect()
}

/// `%XX` as the byte it stands for (`+` as a space); what does not decode
/// stays as written.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| {
            bytes
                .get(at..at + 2)
                .and_then(|pair| std::str::from_utf8(pair).ok())
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        };
        match bytes[i] {
            b'%' if hex(i + 1).is_some() => {
                decoded.extend(hex(i + 1));
                i += 3;
            }
            b'+' => {
                decoded.push(b' ');
                i += 1;
            }
            byte => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The value of a header that may appear at most once.
fn single<'h>(headers: &[httparse::Header<'h>], name: &str) -> anyhow::Result<Option<&'h [u8]>> {
    let mut found = headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
    let first = found.next();
    if found.next().is_some() {
        return refuse(400, format!("the request has two {name} headers: send one"));
    }
    Ok(first.map(|header| header.value))
}

fn content_length(headers: &[httparse::Header]) -> anyhow::Result<usize> {
    if single(headers, "transfer-encoding")?.is_some() {
        return refuse(
            411,
            "Transfer-Encoding (a chunked body) is not supported: send the body with a \
             Content-Length",
        );
    }
    let Some(value) = single(headers, "content-length")? else {
        return Ok(0);
    };
    let length: usize = std::str::from_utf8(value)?
        .trim()
        .parse()
        .context("Content-Length is not a number")?;
    if length > MAX_BODY {
        bail!("request body of {length} bytes is over the limit of {MAX_BODY}");
    }
    Ok(length)
}

pub async fn write_response(
    stream: &mut (impl AsyncWrite + Unpin),
    response: &Response,
) -> anyhow::Result<()> {
    stream.write_all(response.head().as_bytes()).await?;
    stream.write_all(&response.body).await?;
    stream.shutdown().await?;
    Ok(())
}
