//! Flood sources: one frame sent over and over out of the workload's
//! interface, counting what was sent, until told to stop. Each runs in the
//! calling thread's network namespace.

use std::{
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use anyhow::bail;

use crate::reference::Reference;

/// Frames per sendmmsg.
const BATCH: usize = 64;
/// Frames per live-frames BPF_PROG_TEST_RUN call (tens of milliseconds).
const LIVE_FRAMES_CHUNK: u32 = 65_536;
/// Frame length without the FCS: a minimum-size Ethernet frame.
const FRAME_LENGTH: usize = 60;
const PACKET_QDISC_BYPASS: libc::c_int = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// BPF_PROG_TEST_RUN's live frames through an XDP_TX program on the
    /// workload's veth: frames reach the vNIC as xdp_frames, as a NIC
    /// driver hands them over, at little cost to the sender (the
    /// calibration's generator).
    LiveFrames,
    /// An AF_PACKET socket (qdisc bypassed, sendmmsg of 64): socket
    /// buffers, as a workload's own stack sends them.
    PacketSocket,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::LiveFrames => "live frames (XDP_TX)",
            Source::PacketSocket => "AF_PACKET socket",
        }
    }

    /// Sends `frame` out of the interface `ifindex` until `stop`, adding
    /// what was sent to `sent`.
    pub fn send(
        self,
        ifindex: u32,
        frame: &[u8],
        stop: &AtomicBool,
        sent: &AtomicU64,
    ) -> anyhow::Result<()> {
        match self {
            Source::LiveFrames => {
                let mut generator = Reference::load()?;
                while !stop.load(Ordering::Relaxed) {
                    generator.transmit(frame, ifindex, LIVE_FRAMES_CHUNK)?;
                    sent.fetch_add(u64::from(LIVE_FRAMES_CHUNK), Ordering::Relaxed);
                }
            }
            Source::PacketSocket => {
                let socket = packet_socket(ifindex)?;
                send_until(&socket, frame, stop, sent);
            }
        }
        Ok(())
    }
}

pub fn packet_socket(ifindex: u32) -> anyhow::Result<OwnedFd> {
    // SAFETY: plain socket syscalls on a fresh fd we own; the structs are
    // zeroed and filled as packet(7) describes.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        if fd < 0 {
            bail!("socket(AF_PACKET): {}", std::io::Error::last_os_error());
        }
        let socket = OwnedFd::from_raw_fd(fd);
        let mut address: libc::sockaddr_ll = std::mem::zeroed();
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = ifindex as i32;
        let size = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        if libc::bind(fd, (&raw const address).cast(), size) != 0 {
            bail!("bind(AF_PACKET): {}", std::io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_QDISC_BYPASS,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        Ok(socket)
    }
}

fn send_until(socket: &OwnedFd, frame: &[u8], stop: &AtomicBool, sent: &AtomicU64) {
    let mut iovec = libc::iovec {
        iov_base: frame.as_ptr() as *mut libc::c_void,
        iov_len: frame.len(),
    };
    // SAFETY: zeroed mmsghdr is valid; every entry points at the one iovec.
    let mut messages: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|_| {
            let mut message: libc::mmsghdr = unsafe { std::mem::zeroed() };
            message.msg_hdr.msg_iov = &raw mut iovec;
            message.msg_hdr.msg_iovlen = 1;
            message
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: the messages and the frame outlive the call.
        let count = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                messages.as_mut_ptr(),
                BATCH as libc::c_uint,
                0,
            )
        };
        if count > 0 {
            sent.fetch_add(count as u64, Ordering::Relaxed);
        }
    }
}

/// A minimum-size IPv4 UDP frame, checksummed so the stack accepts it.
pub fn udp_frame(
    (src_mac, dst_mac): ([u8; 6], [u8; 6]),
    (src, dst): (Ipv4Addr, Ipv4Addr),
    (src_port, dst_port): (u16, u16),
) -> Vec<u8> {
    let mut frame = vec![0u8; FRAME_LENGTH];
    frame[0..6].copy_from_slice(&dst_mac);
    frame[6..12].copy_from_slice(&src_mac);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_length = (FRAME_LENGTH - 14) as u16;
    let ip = &mut frame[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_length.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let checksum = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    let udp = &mut frame[34..42];
    udp[0..2].copy_from_slice(&src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_length - 20).to_be_bytes());
    frame
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_header() {
        // The example header from RFC 1071's companion tutorials (checksum 0xb861).
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&header), 0xb861);
        header[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(ipv4_checksum(&header), 0);
    }
}
