//! The kernel's link notifications (rtnetlink, RTMGRP_LINK): a vNIC
//! created, deleted or changed. A local endpoint's vNIC gets zpr's
//! programs as it appears, before an orchestrator has finished bringing
//! it up, rather than at the next periodic rescan.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use anyhow::{Context as _, bail};
use tokio::io::unix::AsyncFd;

/// rtnetlink's multicast group of link messages (RTMGRP_LINK).
const RTMGRP_LINK: u32 = 1;

pub struct LinkEvents {
    socket: AsyncFd<OwnedFd>,
}

impl LinkEvents {
    /// Subscribes to link messages in this network namespace.
    pub fn open() -> anyhow::Result<LinkEvents> {
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            bail!(
                "opening an rtnetlink socket: {}",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: a new descriptor nobody else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a zeroed sockaddr_nl with the family and groups set.
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::AF_NETLINK as u16;
        address.nl_groups = RTMGRP_LINK;
        // SAFETY: bind(2) with the address and its size.
        let bound = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&raw const address).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if bound != 0 {
            bail!(
                "subscribing to link notifications: {}",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: the socket lives inside the AsyncFd, which deregisters
        // it before dropping it.
        let socket = unsafe { AsyncFd::register(socket) }
            .map_err(|err| anyhow::anyhow!("watching link notifications: {err}"))?;
        Ok(LinkEvents { socket })
    }

    /// Waits for link messages and reads all that are queued. What they
    /// say is not needed: the agent compares the interfaces with the live
    /// Plan. A lost message (the queue overflowed) counts as one.
    pub async fn next(&mut self) -> anyhow::Result<()> {
        let mut guard = self.socket.readable_mut().await?;
        let mut buffer = [0u8; 16 * 1024];
        loop {
            // SAFETY: recv(2) into a buffer we own, with its length.
            let read = unsafe {
                libc::recv(
                    guard.get_inner().as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if read >= 0 {
                continue;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) => {
                    guard.clear_ready();
                    return Ok(());
                }
                Some(libc::ENOBUFS | libc::EINTR) => continue,
                _ => {
                    return Err(std::io::Error::last_os_error())
                        .context("reading link notifications");
                }
            }
        }
    }
}
