//! Real TCP and UDP traffic between test hosts: echo servers and clients,
//! each socket created inside its host's namespace.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context as _;

use crate::Netns;

/// How long a client waits before it calls a path blocked.
pub const TIMEOUT: Duration = Duration::from_millis(800);

/// An echo server on one port (TCP and UDP), stopped and joined on drop.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(netns: &Netns, port: u16) -> anyhow::Result<EchoServer> {
        let (tcp, udp) = netns.enter(|| -> anyhow::Result<(TcpListener, UdpSocket)> {
            let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
            let tcp = TcpListener::bind(any).with_context(|| format!("tcp listen :{port}"))?;
            let udp = UdpSocket::bind(any).with_context(|| format!("udp bind :{port}"))?;
            Ok((tcp, udp))
        })??;
        tcp.set_nonblocking(true)?;
        udp.set_read_timeout(Some(Duration::from_millis(50)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let tcp_stop = stop.clone();
        let tcp_thread = std::thread::spawn(move || {
            while !tcp_stop.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((stream, _)) => {
                        let stop = tcp_stop.clone();
                        std::thread::spawn(move || echo_tcp(stream, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        let udp_stop = stop.clone();
        let udp_thread = std::thread::spawn(move || {
            let mut buffer = [0; 1500];
            while !udp_stop.load(Ordering::Relaxed) {
                if let Ok((len, peer)) = udp.recv_from(&mut buffer) {
                    let _ = udp.send_to(&buffer[..len], peer);
                }
            }
        });
        Ok(EchoServer {
            stop,
            threads: vec![tcp_thread, udp_thread],
        })
    }
}

fn echo_tcp(mut stream: TcpStream, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buffer = [0; 1500];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(len) => {
                if stream.write_all(&buffer[..len]).is_err() {
                    return;
                }
            }
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A TCP connection opened from inside `netns` (optionally from `source`).
pub fn connect(
    netns: &Netns,
    source: Option<Ipv4Addr>,
    to: Ipv4Addr,
    port: u16,
) -> anyhow::Result<TcpStream> {
    netns.enter(|| -> anyhow::Result<TcpStream> {
        let target = SocketAddr::from((to, port));
        let stream = match source {
            None => TcpStream::connect_timeout(&target, TIMEOUT)?,
            Some(source) => connect_from(source, target)?,
        };
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        Ok(stream)
    })?
}

/// Sends a message on `stream` and checks it comes back.
pub fn echo(stream: &mut TcpStream, message: &[u8]) -> anyhow::Result<()> {
    stream.write_all(message)?;
    let mut back = vec![0; message.len()];
    stream.read_exact(&mut back).context("reading the echo")?;
    anyhow::ensure!(back == message, "the echo differs");
    Ok(())
}

/// One TCP connection and one echoed message: Ok when the path works.
pub fn tcp_exchange(netns: &Netns, to: Ipv4Addr, port: u16) -> anyhow::Result<()> {
    let mut stream = connect(netns, None, to, port)?;
    echo(&mut stream, b"zpr says hello")
}

/// One UDP datagram and its echo: Ok when both directions work.
pub fn udp_exchange(netns: &Netns, to: Ipv4Addr, port: u16) -> anyhow::Result<()> {
    netns.enter(|| -> anyhow::Result<()> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.set_read_timeout(Some(TIMEOUT))?;
        socket.send_to(b"zpr datagram", (to, port))?;
        let mut buffer = [0; 64];
        let (len, _) = socket.recv_from(&mut buffer).context("no UDP echo")?;
        anyhow::ensure!(&buffer[..len] == b"zpr datagram", "the echo differs");
        Ok(())
    })?
}

/// A connection whose source address is chosen (it must be configured on
/// an interface of the namespace, or the kernel refuses the bind).
fn connect_from(source: Ipv4Addr, target: SocketAddr) -> anyhow::Result<TcpStream> {
    // std has no bind-before-connect; a nonblocking connect via libc keeps
    // the test free of extra crates.
    use std::os::fd::FromRawFd as _;
    // SAFETY: plain socket syscalls on a fresh fd we own.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(SocketAddr::from((source, 0)));
        let size = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        anyhow::ensure!(
            libc::bind(fd, (&raw const local).cast(), size) == 0,
            "bind {source}: {}",
            std::io::Error::last_os_error()
        );
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: TIMEOUT.as_micros() as libc::suseconds_t,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&raw const timeout).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        );
        let remote = sockaddr(target);
        anyhow::ensure!(
            libc::connect(fd, (&raw const remote).cast(), size) == 0,
            "connect {target} from {source}: {}",
            std::io::Error::last_os_error()
        );
        Ok(stream)
    }
}

fn sockaddr(address: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(v4) = address else {
        panic!("IPv4 only")
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}
