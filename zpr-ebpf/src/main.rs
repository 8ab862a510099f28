//! zpr's kernel programs, attached to each protected workload's host-side
//! vNIC. All three hooks run the same decision code (`decide`); a
//! quarantined vNIC's three run `quarantine`'s instead.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features, reason = "atomic_xadd: see usage.rs")]
#![allow(
    clippy::not_unsafe_ptr_arg_deref,
    reason = "aya's #[classifier] expands to a pub fn taking the raw __sk_buff pointer"
)]

mod address;
mod conntrack;
mod counters;
mod decide;
mod events;
mod headers;
mod identity;
mod maps;
mod packet;
mod policy;
mod quarantine;
mod usage;

use aya_ebpf::{
    EbpfContext,
    bindings::{__sk_buff, TC_ACT_OK, TC_ACT_SHOT, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use aya_log_ebpf::debug;
use zpr_common::{Direction, counters::Reason};

use crate::{decide::Action, packet::Packet};

// Each program is `#[inline(always)]`: aya's macros wrap it in the
// program's entry point, and a body left out of line is a BPF-to-BPF call
// every packet pays.

/// Headers a decision may read, ICMP errors' quoted packets included.
const PULL_BYTES: u32 = 256;

/// Packets sent by the workload, at XDP (native or generic).
#[xdp]
#[inline(always)]
pub fn zpr_from_workload_xdp(ctx: XdpContext) -> u32 {
    xdp_verdict::<Enforce>(&ctx)
}

/// Packets sent by the workload, at tcx ingress of the host-side vNIC
/// (keeps GRO/TSO on veth, where native XDP loses them).
#[classifier]
#[inline(always)]
pub fn zpr_from_workload_tc(ctx: TcContext) -> i32 {
    tc_verdict::<Enforce>(&ctx, Direction::FromWorkload)
}

/// Packets delivered to the workload, at tcx egress of the host-side vNIC.
#[classifier]
#[inline(always)]
pub fn zpr_to_workload_tc(ctx: TcContext) -> i32 {
    tc_verdict::<Enforce>(&ctx, Direction::ToWorkload)
}

/// Packets sent by a quarantined vNIC's workload, at XDP.
#[xdp]
#[inline(always)]
pub fn zpr_quarantine_from_xdp(ctx: XdpContext) -> u32 {
    xdp_verdict::<Quarantine>(&ctx)
}

/// Packets sent by a quarantined vNIC's workload, at tcx ingress.
#[classifier]
#[inline(always)]
pub fn zpr_quarantine_from_tc(ctx: TcContext) -> i32 {
    tc_verdict::<Quarantine>(&ctx, Direction::FromWorkload)
}

/// Packets delivered to a quarantined vNIC's workload, at tcx egress.
#[classifier]
#[inline(always)]
pub fn zpr_quarantine_to_tc(ctx: TcContext) -> i32 {
    tc_verdict::<Quarantine>(&ctx, Direction::ToWorkload)
}

#[inline(always)]
fn xdp_verdict<D: Decision>(ctx: &XdpContext) -> u32 {
    let packet = Packet {
        start: ctx.data(),
        end: ctx.data_end(),
    };
    // SAFETY: the context pointer is the kernel's xdp_md.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    let (reason, action) = D::decide(&packet, ifindex, Direction::FromWorkload);
    log_rare(ctx, ifindex, reason);
    match action {
        Action::Pass => xdp_action::XDP_PASS,
        Action::Drop => xdp_action::XDP_DROP,
    }
}

#[inline(always)]
fn tc_verdict<D: Decision>(ctx: &TcContext, direction: Direction) -> i32 {
    // Headers may sit in paged data; make the first bytes linear. A short
    // packet cannot be pulled this far; it is then judged on what is linear.
    let _ = ctx.pull_data(PULL_BYTES.min(ctx.len()));
    let packet = Packet {
        start: ctx.data(),
        end: ctx.data_end(),
    };
    // SAFETY: the context pointer is the kernel's __sk_buff.
    let ifindex = unsafe { (*(ctx.as_ptr() as *const __sk_buff)).ifindex };
    let (reason, action) = D::decide(&packet, ifindex, direction);
    log_rare(ctx, ifindex, reason);
    match action {
        Action::Pass => TC_ACT_OK,
        Action::Drop => TC_ACT_SHOT,
    }
}

/// A decision over one packet seen on an ifindex: why, and what to do.
/// A trait's inlined function, not a closure or a function pointer: BPF has
/// no indirect calls, and a closure's call shim is left out of line (a
/// BPF-to-BPF call, whose entry and return every packet would pay).
trait Decision {
    fn decide(packet: &Packet, ifindex: u32, direction: Direction) -> (Reason, Action);
}

/// A registered endpoint's vNIC: the policy decides.
struct Enforce;

impl Decision for Enforce {
    #[inline(always)]
    fn decide(packet: &Packet, ifindex: u32, direction: Direction) -> (Reason, Action) {
        decide::process(packet, ifindex, direction)
    }
}

/// A quarantined vNIC: deny all but what a network needs to come up.
struct Quarantine;

impl Decision for Quarantine {
    #[inline(always)]
    fn decide(packet: &Packet, ifindex: u32, direction: Direction) -> (Reason, Action) {
        quarantine::process(packet, ifindex, direction)
    }
}

/// Events worth a line in the agent's debug log (the ring buffer carries
/// every drop; these say something about the datapath itself).
#[inline(always)]
fn log_rare<C: EbpfContext>(ctx: &C, ifindex: u32, reason: Reason) {
    match reason {
        Reason::Revoked => debug!(
            ctx,
            "ifindex {}: a tracked flow lost its statement and was cut", ifindex
        ),
        Reason::ConntrackFull => debug!(
            ctx,
            "ifindex {}: the conntrack table refused a new flow", ifindex
        ),
        _ => {}
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves every path terminates; a panic path is never taken.
    loop {}
}
