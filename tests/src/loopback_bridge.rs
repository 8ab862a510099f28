//! A service of the test's own network namespace (etcd on 127.0.0.1)
//! made reachable at the same 127.0.0.1 port inside another namespace (a
//! simulated host), as each host of a fleet reaches its store. The
//! listener is made inside the namespace; each connection to it is
//! carried to a new connection made from the test's namespace.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{Ipv4Addr, Shutdown, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::Netns;

pub struct LoopbackBridge {
    stop: Arc<AtomicBool>,
    /// While set, the host is cut off: connections are refused and those
    /// carried are closed.
    cut: Arc<AtomicBool>,
    carried: Arc<Mutex<Vec<TcpStream>>>,
    /// Bytes the service sent into the namespace, over every connection.
    received: Arc<AtomicU64>,
    accepting: Option<JoinHandle<()>>,
}

impl LoopbackBridge {
    pub fn new(netns: &Netns, port: u16) -> anyhow::Result<LoopbackBridge> {
        let listener = netns.enter(|| TcpListener::bind((Ipv4Addr::LOCALHOST, port)))??;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let carried = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(AtomicU64::new(0));
        let (stopping, cutting, carrying) = (stop.clone(), cut.clone(), carried.clone());
        let counting = received.clone();
        let accepting = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inside, _)) if cutting.load(Ordering::Relaxed) => drop(inside),
                    Ok((inside, _)) => {
                        if let Ok(clone) = inside.try_clone() {
                            carrying.lock().expect("not poisoned").push(clone);
                        }
                        let counting = counting.clone();
                        std::thread::spawn(move || carry(inside, port, &counting));
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(LoopbackBridge {
            stop,
            cut,
            carried,
            received,
            accepting: Some(accepting),
        })
    }

    /// Cuts the host off from the service (`true`) or joins it again.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::Relaxed);
        if cut {
            for stream in self.carried.lock().expect("not poisoned").drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Bytes the service has sent into the namespace so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// Copies both ways until either side closes; a refused connection (the
/// service is down) closes the inside one at once.
fn carry(inside: TcpStream, port: u16, received: &AtomicU64) {
    let _ = inside.set_nonblocking(false);
    let Ok(outside) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return;
    };
    let (Ok(inside_reader), Ok(outside_writer)) = (inside.try_clone(), outside.try_clone()) else {
        return;
    };
    let forward = std::thread::spawn(move || {
        copy(inside_reader, outside_writer, &AtomicU64::new(0));
    });
    copy(outside, inside, received);
    let _ = forward.join();
}

fn copy(mut from: TcpStream, mut to: TcpStream, counted: &AtomicU64) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match from.read(&mut buffer) {
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Ok(0) | Err(_) => break,
            Ok(read) => {
                if to.write_all(&buffer[..read]).is_err() {
                    break;
                }
                counted.fetch_add(read as u64, Ordering::Relaxed);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

impl Drop for LoopbackBridge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accepting) = self.accepting.take() {
            let _ = accepting.join();
        }
    }
}
