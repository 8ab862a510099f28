//! Accepting connections without letting a flood take the process down:
//! each one is admitted or refused (see [`super::admission`]) and served on
//! a task of its own; when accept(2) fails (out of descriptors) the loop
//! backs off instead of spinning, and says so once in a while rather than
//! thousands of times a second.

use std::{
    io,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    time::Instant,
};
use tracing::warn;

use super::admission::{Admission, Peer, Refusal, Ticket};

/// A listener whose connections come with the peer they are capped by.
pub trait Accept: Send + 'static {
    type Stream: Send + 'static;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, Peer)>>;
}

impl Accept for UnixListener {
    type Stream = UnixStream;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(UnixStream, Peer)>> {
        UnixListener::poll_accept(self, cx).map(|accepted| {
            let (stream, _) = accepted?;
            let uid = stream.peer_cred()?.uid();
            Ok((stream, Peer::User(uid)))
        })
    }
}

impl Accept for TcpListener {
    type Stream = TcpStream;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, Peer)>> {
        TcpListener::poll_accept(self, cx)
            .map(|accepted| accepted.map(|(stream, address)| (stream, Peer::Address(address.ip()))))
    }
}

/// The longest pause after a failed accept.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one warning about failed accepts this often.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Accepts connections for ever, each served by `serve` on its own task
/// with its admission (a refused one is passed too, to be told why).
pub async fn accept_loop<L, F>(
    name: &'static str,
    listener: L,
    admission: Admission,
    serve: impl Fn(L::Stream, Result<Ticket, Refusal>) -> F,
) where
    L: Accept,
    F: Future<Output = ()> + Send + 'static,
{
    let mut failures = AcceptFailures::default();
    loop {
        match std::future::poll_fn(|cx| listener.poll_accept(cx)).await {
            Ok((stream, peer)) => {
                failures.recovered();
                tokio::spawn(serve(stream, admission.admit(peer)));
            }
            Err(error) => tokio::time::sleep(failures.failed(name, &error)).await,
        }
    }
}

#[derive(Default)]
struct AcceptFailures {
    backoff: Duration,
    last_warning: Option<Instant>,
    unreported: u64,
}

impl AcceptFailures {
    /// Records a failure; how long to wait before accepting again.
    fn failed(&mut self, name: &str, error: &io::Error) -> Duration {
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(5), MAX_BACKOFF);
        self.unreported += 1;
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|last| now - last >= WARNING_INTERVAL)
        {
            warn!(
                "{name}: accepting a connection failed {} time(s) since the last warning, \
                 last with: {error}; backing off up to {MAX_BACKOFF:?}",
                self.unreported
            );
            self.last_warning = Some(now);
            self.unreported = 0;
        }
        self.backoff
    }

    fn recovered(&mut self) {
        self.backoff = Duration::ZERO;
    }
}

/// Descriptors kept for the agent's own work (maps, pins, netlink, the
/// store) whatever connections hold.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the soft descriptor limit to the hard one (systemd's default soft
/// limit is 1,024, its hard one far higher), and returns how many
/// connections servers may hold in all: half of what the agent does not
/// keep for itself, at most 1,024.
pub fn connection_budget() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to fill and then read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                ..limit
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    let spare = limit.rlim_cur.saturating_sub(RESERVED_DESCRIPTORS) / 2;
    usize::try_from(spare.clamp(16, 1024)).unwrap_or(1024)
}
