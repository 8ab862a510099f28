//! The least parsing any L4 policy needs: Ethernet, the fixed IPv4 or IPv6
//! header, TCP/UDP ports. No options walk, no fragments, no ICMP.

use aya_ebpf::programs::XdpContext;
use zpr_common::{Address, FAMILY_IPV4, FAMILY_IPV6, conntrack::FlowKey};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

pub struct Flow {
    pub family: u8,
    pub protocol: u8,
    pub src: Address,
    pub dst: Address,
    pub src_port: u16,
    pub dst_port: u16,
}

impl Flow {
    #[inline(always)]
    pub fn parse(ctx: &XdpContext) -> Option<Flow> {
        let ethertype: [u8; 2] = read(ctx, ETH_HLEN - 2)?;
        let mut flow = Flow {
            family: 0,
            protocol: 0,
            src: [0; 16],
            dst: [0; 16],
            src_port: 0,
            dst_port: 0,
        };
        let l4 = match u16::from_be_bytes(ethertype) {
            ETH_P_IP => {
                let ip: [u8; 20] = read(ctx, ETH_HLEN)?;
                flow.family = FAMILY_IPV4;
                flow.protocol = ip[9];
                flow.src[..4].copy_from_slice(&ip[12..16]);
                flow.dst[..4].copy_from_slice(&ip[16..20]);
                ETH_HLEN + ((ip[0] & 0x0f) as usize) * 4
            }
            ETH_P_IPV6 => {
                let ip: [u8; 40] = read(ctx, ETH_HLEN)?;
                flow.family = FAMILY_IPV6;
                flow.protocol = ip[6];
                flow.src.copy_from_slice(&ip[8..24]);
                flow.dst.copy_from_slice(&ip[24..40]);
                ETH_HLEN + 40
            }
            _ => return None,
        };
        if flow.protocol == IPPROTO_TCP || flow.protocol == IPPROTO_UDP {
            let ports: [u8; 4] = read(ctx, l4)?;
            flow.src_port = u16::from_be_bytes([ports[0], ports[1]]);
            flow.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
        }
        Some(flow)
    }

    /// The conntrack key of a packet the local workload sent.
    #[inline(always)]
    pub fn key(&self, ifindex: u32) -> FlowKey {
        FlowKey {
            ifindex,
            family: self.family,
            protocol: self.protocol,
            local_port: self.src_port,
            remote_port: self.dst_port,
            _pad: [0; 2],
            local: self.src,
            remote: self.dst,
        }
    }
}

/// A copy of the `T` at `offset`, if the packet holds all of it (one bounds
/// check per header keeps the verifier's pointer tracking simple).
#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    let at = ctx.data() + offset;
    if at + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    // SAFETY: the bounds check above covers all of T.
    Some(unsafe { (at as *const T).read_unaligned() })
}
