//! A service of the test's own network namespace (etcd on 127.0.0.1)
//! made reachable at the same 127.0.0.1 port inside another namespace (a
//! simulated host), as each host of a fleet reaches its store. The
//! listener is made inside the namespace; each connection to it is
//! carried to a new connection made from the test's namespace.

use std::{
    io::ErrorKind,
    net::{Ipv4Addr, Shutdown, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
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
    accepting: Option<JoinHandle<()>>,
}

impl LoopbackBridge {
    pub fn new(netns: &Netns, port: u16) -> anyhow::Result<LoopbackBridge> {
        let listener = netns.enter(|| TcpListener::bind((Ipv4Addr::LOCALHOST, port)))??;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let carried = Arc::new(Mutex::new(Vec::new()));
        let (stopping, cutting, carrying) = (stop.clone(), cut.clone(), carried.clone());
        let accepting = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inside, _)) if cutting.load(Ordering::Relaxed) => drop(inside),
                    Ok((inside, _)) => {
                        if let Ok(clone) = inside.try_clone() {
                            carrying.lock().expect("not poisoned").push(clone);
                        }
                        std::thread::spawn(move || carry(inside, port));
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
}

/// Copies both ways until either side closes; a refused connection (the
/// service is down) closes the inside one at once.
fn carry(inside: TcpStream, port: u16) {
    let _ = inside.set_nonblocking(false);
    let Ok(outside) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return;
    };
    let (Ok(inside_reader), Ok(outside_writer)) = (inside.try_clone(), outside.try_clone()) else {
        return;
    };
    let forward = std::thread::spawn(move || copy(inside_reader, outside_writer));
    copy(outside, inside);
    let _ = forward.join();
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
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
