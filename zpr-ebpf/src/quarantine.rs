//! The deny-all decision of a quarantined vNIC: one that `--quarantine`
//! matches and that no endpoint is registered for on this node. Only what
//! a network needs to come up passes (ARP, IPv6 neighbour discovery, and
//! DHCP when the agent allows it); everything else is dropped under
//! `unregistered` and reported with the vNIC's ifindex.
//!
//! Its own programs rather than a mode of the policy's: a registered
//! endpoint's packets never pay for a quarantine check (no extra lookup or
//! branch on their path), and a quarantined vNIC never reaches the policy
//! code. The agent swaps one for the other on the vNIC's same links in
//! one update, as it does when it upgrades the programs.

use aya_ebpf::{Global, helpers::bpf_ktime_get_coarse_ns};
use zpr_common::{
    Direction, FAMILY_IPV4,
    counters::{Reason, UNATTRIBUTED_ROW},
    event::{IPPROTO_UDP, NO_RULE, VERDICT_DROPPED},
};

use crate::{
    counters,
    decide::{Action, Site},
    events::{self, Verdict},
    headers::{self, ETH_HLEN, ETH_P_ARP, Headers},
    maps::ZPR_CONFIG,
    packet::Packet,
};

const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;

/// Non-zero lets DHCP through: set by the agent when it loads the object
/// (`zpr_common::maps::QUARANTINE_ALLOW_DHCP`); read-only, so the verifier
/// knows its value and drops the branch not taken.
#[unsafe(no_mangle)]
static ZPR_QUARANTINE_ALLOW_DHCP: Global<u8> = Global::new(0);

/// Decides and counts one packet of a quarantined vNIC.
#[inline(always)]
pub fn process(packet: &Packet, ifindex: u32, direction: Direction) -> (Reason, Action) {
    let (reason, action) = match allowed(packet) {
        Ok(reason) => (reason, Action::Pass),
        Err(headers) => {
            report(ifindex, direction, &headers);
            (Reason::Unregistered, Action::Drop)
        }
    };
    counters::count(UNATTRIBUTED_ROW, direction, reason, packet.len());
    (reason, action)
}

/// Why the packet may pass, or the headers read before it was refused.
#[inline(always)]
fn allowed(packet: &Packet) -> Result<Reason, Headers> {
    let Some(ethertype) = headers::ethertype(packet) else {
        return Err(headers::EMPTY);
    };
    if ethertype == ETH_P_ARP {
        return Ok(Reason::Arp);
    }
    let Some(family) = headers::ip_family(ethertype) else {
        return Err(headers::EMPTY);
    };
    let Ok(headers) = headers::parse_ip(packet, ETH_HLEN, family, false) else {
        return Err(headers::EMPTY);
    };
    if headers.is_neighbor_discovery() {
        return Ok(Reason::NeighborDiscovery);
    }
    if is_dhcp(&headers) && dhcp_allowed() {
        return Ok(Reason::Dhcp);
    }
    Err(headers)
}

/// DHCPv4 between client and server ports, either way.
#[inline(always)]
fn is_dhcp(headers: &Headers) -> bool {
    let ports = [DHCP_SERVER_PORT, DHCP_CLIENT_PORT];
    headers.family == FAMILY_IPV4
        && headers.protocol == IPPROTO_UDP
        && ports.contains(&headers.src_port)
        && ports.contains(&headers.dst_port)
}

#[inline(always)]
fn dhcp_allowed() -> bool {
    ZPR_QUARANTINE_ALLOW_DHCP.load() != 0
}

/// A drop event: no endpoint, identity or statement, only the vNIC.
#[inline(always)]
fn report(ifindex: u32, direction: Direction, headers: &Headers) {
    let site = Site {
        // SAFETY: a helper with no arguments.
        now: unsafe { bpf_ktime_get_coarse_ns() },
        ifindex,
        generation: ZPR_CONFIG.get(0).map_or(0, |config| config.generation),
        direction,
        slot: 0,
        audited: false,
    };
    let verdict = Verdict {
        reason: Reason::Unregistered,
        verdict: VERDICT_DROPPED,
        local_uid: 0,
        remote_uid: 0,
        rule: NO_RULE,
    };
    events::report(&site, headers, &verdict);
}
