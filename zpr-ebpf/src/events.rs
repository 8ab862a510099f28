//! Drop and new-flow events to user space, rate-limited per CPU.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use zpr_common::{
    counters::Reason,
    event::{EVENTS_LOST, EVENTS_RATE_LIMITED, Event},
};

use crate::{
    decide::Site,
    headers::Headers,
    maps::{ZPR_CONFIG, ZPR_EVENT_STATS, ZPR_EVENTS, ZPR_RATE_LIMITER},
};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// What an event says beyond the packet's own headers.
pub struct Verdict {
    pub reason: Reason,
    pub verdict: u8,
    pub local_uid: u32,
    pub remote_uid: u32,
    pub rule: u32,
}

#[inline(always)]
pub fn report(site: &Site, headers: &Headers, verdict: &Verdict) {
    let now = site.now;
    // Read here rather than carried in the site: the decision's stack is full.
    let per_second = ZPR_CONFIG
        .get(0)
        .map_or(0, |config| config.events_per_second);
    if !take_token(now, per_second as u64) {
        bump(EVENTS_RATE_LIMITED);
        return;
    }
    let Some(mut entry) = ZPR_EVENTS.reserve(0) else {
        bump(EVENTS_LOST);
        return;
    };
    entry.write(Event {
        // The precise clock (the site's is the last tick's): readers order
        // events against their own start, read from the same clock.
        // SAFETY: a helper with no arguments.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        ifindex: site.ifindex,
        generation: site.generation,
        local_uid: verdict.local_uid,
        remote_uid: verdict.remote_uid,
        rule: verdict.rule,
        src_port: headers.src_port,
        dst_port: headers.dst_port,
        family: headers.family,
        protocol: headers.protocol,
        direction: site.direction as u8,
        reason: verdict.reason as u8,
        verdict: verdict.verdict,
        _pad: [0; 3],
        src: headers.src,
        dst: headers.dst,
    });
    entry.submit(0);
}

/// Token bucket: `per_second` tokens a second, bursts of up to one second.
#[inline(always)]
fn take_token(now: u64, per_second: u64) -> bool {
    let Some(limiter) = ZPR_RATE_LIMITER.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot; nothing else writes it while we run.
    let limiter = unsafe { &mut *limiter };
    let per_second = per_second.max(1);
    let elapsed = now.saturating_sub(limiter.last_refill_ns);
    // At most 10^9 * 2^32: no overflow, and no division on the path every
    // packet over the budget takes.
    let elapsed_tokens_ns = elapsed.min(NANOS_PER_SECOND) * per_second;
    if elapsed_tokens_ns >= NANOS_PER_SECOND {
        let refill = elapsed_tokens_ns / NANOS_PER_SECOND;
        limiter.tokens = (limiter.tokens + refill).min(per_second);
        // The time the whole tokens stand for, not `now`: the fraction of a
        // token left over counts toward the next one (else the rate falls
        // below the budget, to half of it in the worst case).
        limiter.last_refill_ns = if elapsed >= NANOS_PER_SECOND {
            now
        } else {
            limiter.last_refill_ns + refill * NANOS_PER_SECOND / per_second
        };
    }
    if limiter.tokens == 0 {
        return false;
    }
    limiter.tokens -= 1;
    true
}

#[inline(always)]
fn bump(slot: u32) {
    if let Some(value) = ZPR_EVENT_STATS.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot.
        unsafe { *value += 1 };
    }
}
