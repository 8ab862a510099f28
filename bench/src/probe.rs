//! A UDP probe from a workload's namespace: a numbered datagram every
//! PERIOD to an echo server, and which of them came back. A verdict change
//! shows as the first datagram sent after a moment that came back (the path
//! opened) or from which on none did (it closed).

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::bail;
use zpr_tests::Netns;

use crate::interrupt;

/// Between datagrams: the probe's resolution.
const PERIOD: Duration = Duration::from_micros(100);
/// Longer than any echo takes here: a datagram older than this that has
/// not come back never will.
const GRACE: Duration = Duration::from_millis(20);
/// Unanswered datagrams in a row that make a closed path.
const QUIET: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Log {
    sent: Vec<Instant>,
    replied: Vec<bool>,
}

pub struct Probe {
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Probe {
    pub fn start(netns: &Netns, to: SocketAddr) -> anyhow::Result<Probe> {
        Probe::every(PERIOD, netns, to)
    }

    /// A probe sending every `period` (many probes at once share the CPU
    /// with what they measure).
    pub fn every(period: Duration, netns: &Netns, to: SocketAddr) -> anyhow::Result<Probe> {
        let socket = netns.enter(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))??;
        socket.connect(to)?;
        socket.set_nonblocking(true)?;
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || probe(&socket, period, &log, &stop))
        };
        Ok(Probe {
            log,
            stop,
            thread: Some(thread),
        })
    }

    /// How long after `since` the first datagram sent then that came back
    /// was sent.
    pub fn opened_after(&self, since: Instant) -> anyhow::Result<Duration> {
        self.wait(since, |log, first| {
            (first..log.sent.len())
                .find(|&seq| log.replied[seq])
                .map(|seq| log.sent[seq] - since)
        })
    }

    /// How long after `since` the first datagram of a run of unanswered
    /// ones lasting to now was sent.
    pub fn closed_after(&self, since: Instant) -> anyhow::Result<Duration> {
        self.wait(since, |log, first| {
            let settled = log.sent.partition_point(|&at| at.elapsed() > GRACE);
            let closing = (first..settled)
                .rev()
                .find(|&seq| log.replied[seq])
                .map_or(first, |seq| seq + 1);
            (settled >= closing + QUIET).then(|| log.sent[closing] - since)
        })
    }

    fn wait(
        &self,
        since: Instant,
        found: impl Fn(&Log, usize) -> Option<Duration>,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            {
                let log = self.log.lock().expect("the probe thread never panics");
                let first = log.sent.partition_point(|&at| at < since);
                if let Some(after) = found(&log, first) {
                    return Ok(after);
                }
            }
            interrupt::checkpoint()?;
            if started.elapsed() > TIMEOUT {
                bail!("the probe saw no change within {TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn probe(socket: &UdpSocket, period: Duration, log: &Mutex<Log>, stop: &AtomicBool) {
    let mut buffer = [0u8; 8];
    while !stop.load(Ordering::Relaxed) {
        {
            let mut log = log.lock().expect("readers never panic holding it");
            let seq = log.sent.len() as u64;
            if socket.send(&seq.to_be_bytes()).is_ok() {
                log.sent.push(Instant::now());
                log.replied.push(false);
            }
            while let Ok(8) = socket.recv(&mut buffer) {
                let seq = u64::from_be_bytes(buffer) as usize;
                if let Some(replied) = log.replied.get_mut(seq) {
                    *replied = true;
                }
            }
        }
        std::thread::sleep(period);
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
