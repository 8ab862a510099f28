//! The service manager's notify protocol (sd_notify(3), spoken directly:
//! one datagram per message to `$NOTIFY_SOCKET`): READY once every local
//! vNIC is enforced, STATUS lines, watchdog pings from the main loop, and
//! STOPPING. Without `$NOTIFY_SOCKET` (not under systemd) it does nothing.

use std::{
    os::{
        linux::net::SocketAddrExt as _,
        unix::net::{SocketAddr, UnixDatagram},
    },
    time::Duration,
};

use tracing::warn;

pub struct ServiceManager {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    ready: bool,
    last_status: String,
}

impl ServiceManager {
    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (meant for this process
    /// when `$WATCHDOG_PID` is unset or names it).
    pub fn from_environment() -> ServiceManager {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let address = match path.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
                None => SocketAddr::from_pathname(&path),
            };
            match (UnixDatagram::unbound(), address) {
                (Ok(socket), Ok(address)) => Some((socket, address)),
                (Err(err), _) | (_, Err(err)) => {
                    warn!("NOTIFY_SOCKET={path} is unusable: {err}; no readiness is reported");
                    None
                }
            }
        });
        let for_us =
            std::env::var("WATCHDOG_PID").map_or(true, |pid| pid == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.parse().ok())
            .filter(|_| for_us)
            .map(Duration::from_micros);
        ServiceManager {
            socket,
            watchdog,
            ready: false,
            last_status: String::new(),
        }
    }

    /// Says the agent is up, once: the first generation is live and every
    /// local vNIC runs zpr in the kernel.
    pub fn ready(&mut self, status: &str) {
        if !self.ready {
            self.ready = true;
            self.last_status = status.to_owned();
            self.send(&format!("READY=1\nSTATUS={status}"));
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// A one-line status for `systemctl status`, sent when it changed.
    pub fn status(&mut self, status: &str) {
        if status != self.last_status {
            self.last_status = status.to_owned();
            self.send(&format!("STATUS={status}"));
        }
    }

    /// Called from the main loop: the watchdog sees the loop turn.
    pub fn alive(&self) {
        if self.watchdog.is_some() {
            self.send("WATCHDOG=1");
        }
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping; enforcement stays in place (pinned)");
    }

    fn send(&self, message: &str) {
        if let Some((socket, address)) = &self.socket
            && let Err(err) = socket.send_to_addr(message.as_bytes(), address)
        {
            warn!("telling the service manager {message:?} failed: {err}");
        }
    }
}
