//! The end-to-end site: a workload namespace joined by a veth pair to a
//! host namespace, where the host-side vNIC is and where the filter under
//! test runs. Fresh per measurement; deleting the namespaces removes every
//! interface, rule and attachment in them.

use std::net::Ipv4Addr;

use anyhow::{Context as _, bail};
use zpr_tests::{Netns, veth_pair};

pub const WORKLOAD: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

pub struct VethSite {
    /// The workload's own namespace (the iperf3 client, the flood sender).
    pub workload: Netns,
    /// Where the vNIC lives (the iperf3 server, the filters).
    pub host: Netns,
    /// The workload's end of the pair.
    pub workload_interface: String,
    /// The host-side vNIC.
    pub vnic: String,
}

impl VethSite {
    pub fn new() -> anyhow::Result<VethSite> {
        let workload = Netns::new()?;
        let host = Netns::new()?;
        let (workload_interface, vnic) = veth_pair(
            &workload,
            &format!("{WORKLOAD}/24"),
            &host,
            &format!("{HOST}/24"),
        )?;
        Ok(VethSite {
            workload,
            host,
            workload_interface,
            vnic,
        })
    }

    /// The MAC address of `interface` in `netns`.
    pub fn mac(netns: &Netns, interface: &str) -> anyhow::Result<[u8; 6]> {
        let output = netns.exec(&["cat", &format!("/sys/class/net/{interface}/address")])?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut mac = [0u8; 6];
        let mut octets = text.trim().split(':');
        for byte in &mut mac {
            *byte = u8::from_str_radix(octets.next().unwrap_or_default(), 16)?;
        }
        Ok(mac)
    }

    /// Turns GRO on at the vNIC. A veth takes frames its peer transmits
    /// with XDP (live frames) only when it runs NAPI, which it does with
    /// GRO on or an XDP program attached.
    pub fn enable_gro(&self) -> anyhow::Result<()> {
        /// The legacy ethtool command setting GRO (`ethtool -K dev gro on`).
        const ETHTOOL_SGRO: u32 = 0x2c;
        const SIOCETHTOOL: libc::c_ulong = 0x8946;
        #[repr(C)]
        struct EthtoolValue {
            cmd: u32,
            data: u32,
        }
        let name = std::ffi::CString::new(self.vnic.as_str())?;
        self.host
            .enter(|| {
                let mut value = EthtoolValue {
                    cmd: ETHTOOL_SGRO,
                    data: 1,
                };
                // SAFETY: ifreq is plain data; the name fits (IFNAMSIZ was
                // checked when the veth was made); the ioctl reads `value`.
                unsafe {
                    let mut request: libc::ifreq = std::mem::zeroed();
                    for (to, from) in request.ifr_name.iter_mut().zip(name.as_bytes()) {
                        *to = *from as libc::c_char;
                    }
                    request.ifr_ifru.ifru_data = (&raw mut value).cast();
                    let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                    if socket < 0 {
                        bail!("socket: {}", std::io::Error::last_os_error());
                    }
                    let result = libc::ioctl(socket, SIOCETHTOOL, &raw mut request);
                    let error = std::io::Error::last_os_error();
                    libc::close(socket);
                    if result != 0 {
                        bail!("enabling GRO on the vNIC: {error}");
                    }
                }
                Ok(())
            })?
            .context("in the host namespace")
    }
}
