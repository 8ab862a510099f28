//! Bounded, verifier-friendly header access.

use aya_ebpf::programs::XdpContext;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
const ETH_HLEN: usize = 14;

/// A pointer to a `T` at `offset`, if the packet holds all of it.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// The Ethernet frame's EtherType, host order.
#[inline(always)]
pub fn ethertype(ctx: &XdpContext) -> Option<u16> {
    let raw: *const [u8; 2] = ptr_at(ctx, ETH_HLEN - 2)?;
    // SAFETY: bounds checked by ptr_at.
    Some(u16::from_be_bytes(unsafe { *raw }))
}
