//! Which connections a server keeps. Every connection holds a descriptor,
//! and anyone who can connect can hold many, so a server caps them: in
//! total (below the descriptor limit, leaving the agent descriptors for
//! its own work), per peer (a local user, or an address), with a reserve
//! only root may use. A connection that has not yet sent its whole request
//! is idle: when the server (or the peer's share) is full, the oldest idle
//! one (of that peer) is closed for the newcomer, so clients that hold
//! connections open without asking anything (a slowloris) cannot keep out
//! one that asks at once, even from their own address. Every connection
//! also has a deadline for its whole request, not per read.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::oneshot, time::Instant};

use super::message::Response;

/// Who is on the other end, as far as caps go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A Unix socket peer's uid.
    User(u32),
    Address(IpAddr),
}

impl Peer {
    /// Root may use the reserve and is not capped per peer: it can stop the
    /// service anyway, and must be able to repair it during a flood.
    fn privileged(self) -> bool {
        self == Peer::User(0)
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::User(uid) => write!(f, "uid {uid}"),
            Peer::Address(address) => write!(f, "{address}"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub total: usize,
    pub per_peer: usize,
    /// Of `total`, how many only root may use.
    pub privileged_reserve: usize,
    /// From accepting a connection to having read its whole request.
    pub request_deadline: Duration,
}

/// Why a connection was not admitted.
#[derive(Debug)]
pub enum Refusal {
    PeerAtLimit { peer: Peer, limit: usize },
    Full { limit: usize },
}

impl Refusal {
    /// What a plain-text peer is told before the connection closes.
    pub fn response(&self) -> Response {
        let message = match self {
            Refusal::PeerAtLimit { peer, limit } => format!(
                "{peer} already holds {limit} connections to this server: close some and retry"
            ),
            Refusal::Full { limit } => {
                format!("this server is serving {limit} requests already: retry shortly")
            }
        };
        Response::json(
            503,
            &serde_json::json!({ "code": "TooManyConnections", "message": message }),
        )
    }
}

#[derive(Clone)]
pub struct Admission {
    limits: Limits,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    open: usize,
    by_peer: HashMap<Peer, usize>,
    /// Connections still reading their request, oldest first, each with
    /// its peer and the means to close it.
    idle: BTreeMap<u64, (Peer, oneshot::Sender<()>)>,
    next_id: u64,
}

impl Admission {
    pub fn new(limits: Limits) -> Admission {
        Admission {
            limits,
            state: Arc::default(),
        }
    }

    /// Admits a new connection from `peer`, closing the oldest idle one
    /// when the server is full.
    pub fn admit(&self, peer: Peer) -> Result<Ticket, Refusal> {
        let limits = self.limits;
        let mut state = self.lock();
        let held = state.by_peer.get(&peer).copied().unwrap_or(0);
        // The newcomer takes the place of one of its peer's own idle
        // connections, if it must: then the total does not grow either.
        let replaced = !peer.privileged() && held >= limits.per_peer;
        if replaced && !state.evict(Some(peer)) {
            return Err(Refusal::PeerAtLimit {
                peer,
                limit: limits.per_peer,
            });
        }
        let limit = if peer.privileged() {
            limits.total
        } else {
            limits.total.saturating_sub(limits.privileged_reserve)
        };
        if !replaced && state.open >= limit && !state.evict(None) {
            return Err(Refusal::Full { limit });
        }
        state.open += 1;
        *state.by_peer.entry(peer).or_default() += 1;
        let id = state.next_id;
        state.next_id += 1;
        let (close, closed) = oneshot::channel();
        state.idle.insert(id, (peer, close));
        Ok(Ticket {
            admission: self.clone(),
            peer,
            id,
            deadline: Instant::now() + limits.request_deadline,
            closed: Some(closed),
        })
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().open
    }
}

impl State {
    /// Closes the oldest idle connection (of `peer`, when given); whether
    /// there was one. Its ticket is dropped as soon as its task sees the
    /// signal, and counts until then.
    fn evict(&mut self, peer: Option<Peer>) -> bool {
        let oldest = self
            .idle
            .iter()
            .find(|(_, (owner, _))| peer.is_none_or(|peer| *owner == peer))
            .map(|(&id, _)| id);
        let Some((_, close)) = oldest.and_then(|id| self.idle.remove(&id)) else {
            return false;
        };
        close.send(()).is_ok()
    }
}

/// An admitted connection's place; dropping it frees the place.
pub struct Ticket {
    admission: Admission,
    peer: Peer,
    id: u64,
    deadline: Instant,
    /// Fires when a newcomer takes this idle connection's place.
    closed: Option<oneshot::Receiver<()>>,
}

#[derive(Debug)]
pub enum Cut {
    /// The whole request did not arrive in time.
    Deadline,
    /// The server was full and this connection was the oldest idle one.
    Evicted,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cut::Deadline => "timed out reading the request",
            Cut::Evicted => "closed to admit a newer connection while this one sent nothing",
        })
    }
}

impl std::error::Error for Cut {}

impl Ticket {
    /// Runs `work` (a handshake, reading the request) before the
    /// connection's deadline, and unless it is evicted meanwhile.
    pub async fn within<T>(&mut self, work: impl Future<Output = T>) -> Result<T, Cut> {
        let closed = async {
            let evicted = match self.closed.as_mut() {
                Some(closed) => closed.await.is_ok(),
                None => false,
            };
            if !evicted {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            done = tokio::time::timeout_at(self.deadline, work) => done.map_err(|_| Cut::Deadline),
            () = closed => Err(Cut::Evicted),
        }
    }

    /// The request is read: from now on the connection is working, and no
    /// newcomer takes its place.
    pub fn request_read(&mut self) {
        self.closed = None;
        let mut state = self.admission.lock();
        state.idle.remove(&self.id);
    }
}

impl Admission {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        state.open -= 1;
        state.idle.remove(&self.id);
        if let Some(held) = state.by_peer.get_mut(&self.peer) {
            *held -= 1;
            if *held == 0 {
                state.by_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            total: 4,
            per_peer: 2,
            privileged_reserve: 1,
            request_deadline: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_peer_is_capped_and_root_is_not() {
        let admission = Admission::new(limits());
        let user = Peer::User(1000);
        let mut held: Vec<Ticket> = (0..2).map(|_| admission.admit(user).unwrap()).collect();
        held.iter_mut().for_each(Ticket::request_read);
        assert!(matches!(
            admission.admit(user),
            Err(Refusal::PeerAtLimit { limit: 2, .. })
        ));
        let root: Vec<Ticket> = (0..2)
            .map(|_| admission.admit(Peer::User(0)).unwrap())
            .collect();
        assert_eq!(admission.open(), 4);
        drop(held);
        drop(root);
        assert_eq!(admission.open(), 0);
        assert!(admission.admit(user).is_ok());
    }

    #[tokio::test]
    async fn when_full_the_oldest_idle_connection_makes_room() {
        let admission = Admission::new(limits());
        let mut oldest = admission.admit(Peer::User(1)).unwrap();
        let mut working = admission.admit(Peer::User(2)).unwrap();
        working.request_read();
        let _third = admission.admit(Peer::User(3)).unwrap();
        // Full for everyone but root (one place is reserved): the oldest
        // idle connection, not the working one, gives way.
        let _newcomer = admission.admit(Peer::User(4)).unwrap();
        assert!(matches!(
            oldest.within(std::future::pending::<()>()).await,
            Err(Cut::Evicted)
        ));
        let still = tokio::time::timeout(Duration::from_millis(50), working.within(async {})).await;
        assert!(matches!(still, Ok(Ok(()))));
    }

    #[tokio::test]
    async fn a_peer_at_its_cap_makes_room_with_its_own_oldest_idle_connection() {
        let admission = Admission::new(limits());
        let mut other = admission.admit(Peer::User(7)).unwrap();
        let mut first = admission.admit(Peer::User(1000)).unwrap();
        let _second = admission.admit(Peer::User(1000)).unwrap();
        let _third = admission.admit(Peer::User(1000)).unwrap();
        assert!(matches!(
            first.within(std::future::pending::<()>()).await,
            Err(Cut::Evicted)
        ));
        let untouched = tokio::time::timeout(Duration::from_millis(50), other.within(async {}));
        assert!(matches!(untouched.await, Ok(Ok(()))));
    }

    #[test]
    fn full_of_working_connections_refuses() {
        let admission = Admission::new(limits());
        let mut working: Vec<Ticket> = (1..=3)
            .map(|uid| admission.admit(Peer::User(uid)).unwrap())
            .collect();
        working.iter_mut().for_each(Ticket::request_read);
        assert!(matches!(
            admission.admit(Peer::User(9)),
            Err(Refusal::Full { limit: 3 })
        ));
        assert!(
            admission.admit(Peer::User(0)).is_ok(),
            "root uses the reserve"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_covers_the_whole_request() {
        let admission = Admission::new(limits());
        let mut ticket = admission.admit(Peer::User(5)).unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        // Six seconds spent already: a read that takes five more misses it.
        let read = ticket.within(tokio::time::sleep(Duration::from_secs(5)));
        assert!(matches!(read.await, Err(Cut::Deadline)));
    }
}
