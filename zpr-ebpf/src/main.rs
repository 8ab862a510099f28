//! zpr's kernel programs, attached to each protected workload's host-side vNIC.
#![no_std]
#![no_main]

mod counters;
mod parse;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use zpr_common::{Direction, counters::Reason};

/// Packets sent by the workload.
#[xdp]
pub fn zpr_from_workload(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let reason = match parse::ethertype(&ctx) {
        Some(parse::ETH_P_IP | parse::ETH_P_IPV6) => Reason::NotProtected,
        _ => Reason::NonIp,
    };
    counters::count(Direction::FromWorkload, reason, len);
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves every path terminates; a panic path is never taken.
    loop {}
}
