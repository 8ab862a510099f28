//! The one decision path both hooks share: "protected here?" first (an
//! array lookup: untagged traffic costs nothing more), then conntrack (an
//! established flow costs one lookup), then anti-spoofing, identity and
//! policy for a new flow. Every outcome is counted under one reason.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use zpr_common::{
    Direction,
    config::Config,
    conntrack::{FLOW_AUDITED, FlowKey, FlowState, FragmentKey},
    counters::{Reason, UNATTRIBUTED_ROW},
    endpoint::{
        ENDPOINT_AUDIT, ENDPOINT_PROTECTED, EndpointConfig, EndpointKey, LocalAddressKey,
        LocalIdentity, endpoint_index_position,
    },
    event::{IPPROTO_TCP, NO_RULE, VERDICT_ALLOWED, VERDICT_AUDITED, VERDICT_DROPPED},
    policy::{POLICY_EGRESS, POLICY_INGRESS, POLICY_STATELESS},
};

use crate::{
    address,
    conntrack::{self, Opened, Table},
    counters,
    events::{self, Verdict},
    headers::{self, ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, Fragment, Headers},
    identity,
    maps::{ZPR_CONFIG, ZPR_ENDPOINT_INDEX, ZPR_ENDPOINTS, ZPR_FRAGMENTS, ZPR_LOCAL_ADDRESSES},
    packet::Packet,
    policy, usage,
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pass,
    Drop,
}

/// Where the packet is (a protected endpoint's vNIC), which Plan is live,
/// and when (read once per packet). Only what the decision reads: the
/// program's stack is 512 bytes and this path is at its edge.
pub struct Site {
    /// The coarse monotonic clock (the last tick's time, no TSC read): what
    /// idle timeouts of seconds and a per-second event budget need. Events
    /// carry the precise clock, read only when one is sent.
    pub now: u64,
    pub ifindex: u32,
    pub generation: u32,
    pub direction: Direction,
    pub slot: u8,
    /// The endpoint is in audit mode: report denials, drop nothing.
    pub audited: bool,
}

/// Decides and counts one packet; returns why and what to do.
#[inline(always)]
pub fn process(packet: &Packet, ifindex: u32, direction: Direction) -> (Reason, Action) {
    let (row, (reason, action)) = match ZPR_CONFIG.get(0) {
        Some(config) if config.generation != 0 => match local_endpoint(config, ifindex) {
            Some(endpoint) if endpoint.flags & ENDPOINT_PROTECTED != 0 => {
                let site = Site {
                    // SAFETY: a helper with no arguments.
                    now: unsafe { bpf_ktime_get_coarse_ns() },
                    ifindex,
                    generation: config.generation,
                    direction,
                    slot: config.slot(),
                    audited: endpoint.flags & ENDPOINT_AUDIT != 0,
                };
                (endpoint.counter_row, decide(packet, &site))
            }
            Some(endpoint) => (endpoint.counter_row, (Reason::NotProtected, Action::Pass)),
            None => (UNATTRIBUTED_ROW, (Reason::NotProtected, Action::Pass)),
        },
        _ => (UNATTRIBUTED_ROW, (Reason::NotProtected, Action::Pass)),
    };
    counters::count(row, direction, reason, packet.len());
    (reason, action)
}

/// The interface's endpoint in the live Plan: from the index when the
/// entry there is this ifindex's, else from the hash.
#[inline(always)]
fn local_endpoint(config: &Config, ifindex: u32) -> Option<EndpointConfig> {
    let slot = config.slot();
    // The hash key is written whichever way the endpoint is found, so both
    // ways reach the decision with the same stack (otherwise the verifier
    // walks the whole decision once for each); as one 8-byte store.
    let bits = EndpointKey {
        ifindex,
        slot,
        _pad: [0; 3],
    }
    .to_bits();
    let mut key_bits = 0u64;
    // SAFETY: a write to a local.
    unsafe { core::ptr::write_volatile(&mut key_bits, bits) };
    // SAFETY: EndpointKey is 8 plain bytes, aligned at most as u64 is.
    let key = unsafe { &*(&key_bits as *const u64).cast::<EndpointKey>() };
    match ZPR_ENDPOINT_INDEX.get(endpoint_index_position(slot, ifindex)) {
        Some(entry) if entry.ifindex == ifindex => Some(entry.config),
        // SAFETY: read-only copy of a value user space replaces whole.
        _ => unsafe { ZPR_ENDPOINTS.get(key) }.copied(),
    }
}

#[inline(always)]
fn decide(packet: &Packet, site: &Site) -> (Reason, Action) {
    // A protected endpoint's frames that cannot be judged on L3/L4 facts
    // are denied (or audited) under the reason they could not be.
    let Some(ethertype) = headers::ethertype(packet) else {
        return deny(site, &headers::EMPTY, Reason::Malformed, 0, 0);
    };
    if ethertype == ETH_P_ARP {
        return (Reason::Arp, Action::Pass);
    }
    let Some(family) = headers::ip_family(ethertype) else {
        let reason = if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            Reason::VlanTagged
        } else {
            Reason::UnsupportedEthertype
        };
        return deny(site, &headers::EMPTY, reason, 0, 0);
    };
    let Ok(headers) = headers::parse_ip(packet, ETH_HLEN, family, false) else {
        return deny(site, &headers::EMPTY, Reason::Malformed, 0, 0);
    };

    let key = conntrack::flow_key(site.ifindex, site.direction, &headers);
    let tracked = match headers.fragment {
        Fragment::Later { .. } => None,
        _ => conntrack::find(&key, opening_looked_up_late(site, &headers)),
    };
    if let Some((state, table)) = tracked {
        // SAFETY: value pointer from this lookup; a racing writer can only
        // make the state stale, which the next packet re-checks.
        let state = unsafe { &mut *state };
        if conntrack::is_live(state, headers.protocol, site.now)
            && !conntrack::is_reopened(state, &headers)
        {
            if state.generation == site.generation {
                conntrack::touch(state, &headers, site.direction, site.now);
                if table == Table::Opening {
                    conntrack::confirm_if_seen_both_ways(&key, state);
                }
                return (Reason::Established, Action::Pass);
            }
            return recheck(site, &headers, &key, state, table);
        }
        // Idle or reused: decided afresh, as a flow that starts opening.
        conntrack::remove(&key, table);
    }
    decide_new_flow(packet, site, &headers, &key)
}

#[inline(always)]
fn decide_new_flow(
    packet: &Packet,
    site: &Site,
    headers: &Headers,
    key: &FlowKey,
) -> (Reason, Action) {
    let local = local_identity(site, key);
    // Neighbour discovery passes unless a workload sends it from a global
    // address that is not its own (link-local and :: are how ND starts).
    if headers.is_neighbor_discovery()
        && (site.direction == Direction::ToWorkload
            || local.is_some()
            || headers::is_link_local_or_unspecified(&headers.src))
    {
        return (Reason::NeighborDiscovery, Action::Pass);
    }
    let Some(local) = local else {
        let reason = match site.direction {
            Direction::FromWorkload => Reason::SpoofedSource,
            Direction::ToWorkload => Reason::ForeignDestination,
        };
        return deny(site, headers, reason, 0, 0);
    };
    let local_uid = local.uid();
    if let Fragment::Later { id } = headers.fragment {
        return if ZPR_FRAGMENTS
            .get_ptr(&fragment_key(site, headers, id))
            .is_some()
        {
            (Reason::FragmentOfAllowed, Action::Pass)
        } else {
            deny(site, headers, Reason::Fragment, local_uid, 0)
        };
    }
    if headers.is_icmp_error() && is_related_icmp(packet, site, headers) {
        return (Reason::RelatedIcmp, Action::Pass);
    }

    let policy_direction = match site.direction {
        Direction::FromWorkload => POLICY_EGRESS,
        Direction::ToWorkload => POLICY_INGRESS,
    };
    let slot = site.slot;
    let remote_uid = identity::remote_uid(slot, key);
    let port = headers.policy_port();
    let forward = policy::lookup(
        slot,
        policy_direction,
        local,
        remote_uid,
        headers.protocol,
        port,
    );
    // Mid-stream TCP may belong to a flow the other side opened (its entry
    // evicted or lost): the question its first packet was asked, the other
    // way round (as Linux's nf_conntrack_tcp_loose picks such flows up).
    let mid_stream = headers.protocol == IPPROTO_TCP && !headers.is_tcp_syn_only();
    let (allowed, origin, policy_port) = match forward {
        Some(allowed) => (allowed, site.direction, port),
        None if mid_stream => {
            let (reverse_direction, origin) = match site.direction {
                Direction::FromWorkload => (POLICY_INGRESS, Direction::ToWorkload),
                Direction::ToWorkload => (POLICY_EGRESS, Direction::FromWorkload),
            };
            match policy::lookup(
                slot,
                reverse_direction,
                local,
                remote_uid,
                headers.protocol,
                headers.src_port,
            ) {
                Some(allowed) => (allowed, origin, headers.src_port),
                None => return deny_new_flow(site, headers, key, (local_uid, remote_uid), port),
            }
        }
        None => return deny_new_flow(site, headers, key, (local_uid, remote_uid), port),
    };
    if let Fragment::First { id } = headers.fragment {
        let _ = ZPR_FRAGMENTS.insert(&fragment_key(site, headers, id), &allowed.rule, 0);
    }
    if allowed.flags & POLICY_STATELESS != 0 {
        usage::count_allowed(site, allowed.rule);
        return (Reason::Stateless, Action::Pass);
    }
    let uids = (local_uid, remote_uid);
    let opening = Opening {
        rule: allowed.rule,
        policy_port,
        origin,
        flags: 0,
    };
    match track(site, headers, key, uids, &opening) {
        Ok(Opened::New) => {}
        Ok(Opened::Already) => return (Reason::Established, Action::Pass),
        Err(_) => return deny(site, headers, Reason::ConntrackFull, local_uid, remote_uid),
    }
    usage::count_allowed(site, allowed.rule);
    let reason = if mid_stream {
        Reason::PickedUp
    } else {
        Reason::NewFlow
    };
    let verdict = Verdict {
        reason,
        verdict: VERDICT_ALLOWED,
        local_uid,
        remote_uid,
        rule: allowed.rule,
    };
    events::report(site, headers, &verdict);
    (reason, Action::Pass)
}

/// No statement allows the flow either way: dropped, or in audit mode
/// tracked so it is reported once, not per packet.
#[inline(always)]
fn deny_new_flow(
    site: &Site,
    headers: &Headers,
    key: &FlowKey,
    (local_uid, remote_uid): (u32, u32),
    port: u16,
) -> (Reason, Action) {
    let decision = deny(site, headers, Reason::NoPolicy, local_uid, remote_uid);
    if decision.1 == Action::Pass {
        let opening = Opening {
            rule: NO_RULE,
            policy_port: port,
            origin: site.direction,
            flags: FLOW_AUDITED,
        };
        let _ = track(site, headers, key, (local_uid, remote_uid), &opening);
    }
    decision
}

/// A live flow under an older generation: re-decided as its first packet
/// was (same origin, same policy port), under the live Plan.
#[inline(always)]
fn recheck(
    site: &Site,
    headers: &Headers,
    key: &FlowKey,
    state: &mut FlowState,
    table: Table,
) -> (Reason, Action) {
    let policy_direction = if state.origin == Direction::FromWorkload as u8 {
        POLICY_EGRESS
    } else {
        POLICY_INGRESS
    };
    let slot = site.slot;
    let local = local_identity(site, key);
    let local_uid = local.map_or(identity::UNRESOLVED, LocalIdentity::uid);
    let remote_uid = identity::remote_uid(slot, key);
    let allowed = local.and_then(|local| {
        policy::lookup(
            slot,
            policy_direction,
            local,
            remote_uid,
            headers.protocol,
            state.policy_port,
        )
    });
    state.generation = site.generation;
    state.local_uid = local_uid;
    state.remote_uid = remote_uid;
    if let Some(allowed) = allowed.filter(|allowed| allowed.flags & POLICY_STATELESS == 0) {
        state.rule = allowed.rule;
        state.flags = 0;
        conntrack::touch(state, headers, site.direction, site.now);
        return (Reason::Established, Action::Pass);
    }
    let decision = deny(site, headers, Reason::Revoked, local_uid, remote_uid);
    if decision.1 == Action::Drop {
        conntrack::remove(key, table);
    } else {
        state.rule = NO_RULE;
        state.flags = FLOW_AUDITED;
        conntrack::touch(state, headers, site.direction, site.now);
    }
    decision
}

/// The identity of the flow's local address, one of the endpoint's own;
/// `None` for any other address.
#[inline(always)]
fn local_identity(site: &Site, flow: &FlowKey) -> Option<LocalIdentity> {
    let mut key = LocalAddressKey {
        ifindex: site.ifindex,
        slot: site.slot,
        family: flow.family,
        _pad: [0; 2],
        addr: [0; 16],
    };
    // SAFETY: both are address fields of such keys.
    unsafe { address::copy_aligned(&mut key.addr, &flow.local) };
    // SAFETY: read-only copy of a value user space replaces whole.
    unsafe { ZPR_LOCAL_ADDRESSES.get(&key) }.copied()
}

/// An ICMP error quoting a packet of a tracked flow (which the quoted
/// packet crossed the other way).
#[inline(always)]
fn is_related_icmp(packet: &Packet, site: &Site, headers: &Headers) -> bool {
    let Ok(quoted) = headers::parse_ip(
        packet,
        headers::quoted_offset(headers),
        headers.family,
        true,
    ) else {
        return false;
    };
    let quoted_direction = match site.direction {
        Direction::FromWorkload => Direction::ToWorkload,
        Direction::ToWorkload => Direction::FromWorkload,
    };
    let key = conntrack::flow_key(site.ifindex, quoted_direction, &quoted);
    conntrack::is_tracked(&key)
}

#[inline(always)]
fn fragment_key(site: &Site, headers: &Headers, id: u32) -> FragmentKey {
    FragmentKey {
        ifindex: site.ifindex,
        id,
        family: headers.family,
        protocol: headers.protocol,
        _pad: [0; 2],
        src: headers.src,
        dst: headers.dst,
    }
}

/// A bare SYN opens a flow and answers none: it is looked for among the
/// established flows (a reused 4-tuple) first, and among the opening ones
/// only once a statement allowed it (`conntrack::open`), so a denied SYN
/// costs one lookup. Its own side's statement decides it, even in a
/// simultaneous open (the answering SYN-ACK completes that). An audited
/// endpoint's denied SYNs are tracked to be reported once, so they are
/// looked for in both first.
#[inline(always)]
fn opening_looked_up_late(site: &Site, headers: &Headers) -> bool {
    headers.is_tcp_syn_only() && !site.audited
}

/// What a new flow's entry records of the decision that allowed it.
struct Opening {
    rule: u32,
    /// The protocol/port bits the flow's origin was allowed on.
    policy_port: u16,
    origin: Direction,
    flags: u8,
}

#[inline(always)]
fn track(
    site: &Site,
    headers: &Headers,
    key: &FlowKey,
    (local_uid, remote_uid): (u32, u32),
    opening: &Opening,
) -> Result<Opened, i32> {
    let state = FlowState {
        last_seen_ns: site.now,
        generation: site.generation,
        rule: opening.rule,
        local_uid,
        remote_uid,
        origin: opening.origin as u8,
        tcp: if headers.protocol == IPPROTO_TCP {
            conntrack::tcp_bits(headers, site.direction)
        } else {
            0
        },
        flags: opening.flags | conntrack::confirmation(headers, site.direction),
        _pad: 0,
        policy_port: opening.policy_port,
        _pad2: [0; 2],
    };
    conntrack::open(
        key,
        &state,
        headers,
        site.direction,
        opening_looked_up_late(site, headers),
    )
}

/// A drop, or in audit mode a pass that is reported as one.
#[inline(always)]
fn deny(
    site: &Site,
    headers: &Headers,
    reason: Reason,
    local_uid: u32,
    remote_uid: u32,
) -> (Reason, Action) {
    let audited = site.audited;
    let verdict = Verdict {
        reason,
        verdict: if audited {
            VERDICT_AUDITED
        } else {
            VERDICT_DROPPED
        },
        local_uid,
        remote_uid,
        rule: NO_RULE,
    };
    events::report(site, headers, &verdict);
    if audited {
        (Reason::Audited, Action::Pass)
    } else {
        (reason, Action::Drop)
    }
}
