//! Decisions read from a Plan exactly the way the kernel reads its maps:
//! endpoint config, exact host hash then LPM for the remote address, then
//! the policy table of the concrete remote and, on a miss, the wildcard
//! one, each a longest match over the 24 L4 bits. It knows nothing of
//! statements or selectors; that is what makes agreeing with
//! [`super::evaluate::decide`] worth checking.

use foldhash::HashMap;
use std::net::IpAddr;

use super::decision::{Decision, DenyReason, Direction, PacketFacts, UnknownEndpoint, Verdict};
use super::l4::{L4_BITS, L4Prefix, packet_key};
use super::plan::{ANY_REMOTE, EndpointConfig, Plan, PolicyKey, PolicyValue, Uid};
use crate::inventory::prefix::{self, Family};

/// A Plan indexed like the kernel's maps.
pub struct PlanLookup<'a> {
    plan: &'a Plan,
    hosts: HashMap<IpAddr, Uid>,
    prefixes: HashMap<(Family, u128, u8), Uid>,
    policy: HashMap<PolicyKey, &'a PolicyValue>,
}

impl<'a> PlanLookup<'a> {
    pub fn new(plan: &'a Plan) -> PlanLookup<'a> {
        PlanLookup {
            plan,
            hosts: plan.hosts.iter().map(|h| (h.address, h.uid)).collect(),
            prefixes: plan
                .prefixes
                .iter()
                .map(|p| {
                    let key = (
                        Family::of(p.prefix.addr),
                        prefix::bits(p.prefix.addr),
                        p.prefix.len,
                    );
                    (key, p.uid)
                })
                .collect(),
            policy: plan.policy.iter().map(|e| (e.key, &e.value)).collect(),
        }
    }

    pub fn decide(
        &self,
        facts: &PacketFacts,
        direction: Direction,
        endpoint: &str,
    ) -> Result<Verdict, UnknownEndpoint> {
        let local = self
            .plan
            .endpoint(endpoint)
            .ok_or_else(|| UnknownEndpoint(endpoint.to_owned()))?;
        Ok(Verdict {
            decision: self.decide_at(facts, direction, local),
            mode: local.mode,
        })
    }

    fn decide_at(
        &self,
        facts: &PacketFacts,
        direction: Direction,
        local: &EndpointConfig,
    ) -> Decision {
        if !local.protected {
            return Decision::NotEnforced;
        }
        let (local_address, remote_address) = match direction {
            Direction::Egress => (facts.src, facts.dst),
            Direction::Ingress => (facts.dst, facts.src),
        };
        let local_uid = local
            .addresses
            .iter()
            .find(|own| own.address == local_address)
            .map(|own| own.uid);
        let neighbour_discovery = facts.is_neighbour_discovery();
        if direction == Direction::Egress && local_uid.is_none() {
            let link_local = match facts.src {
                IpAddr::V6(v6) => v6.is_unspecified() || v6.segments()[0] >> 6 == 0xfe80 >> 6,
                IpAddr::V4(_) => false,
            };
            if !(neighbour_discovery && link_local) {
                return Decision::Deny {
                    reason: DenyReason::SpoofedSource,
                };
            }
        }
        if neighbour_discovery {
            return Decision::NeighbourDiscovery;
        }
        let Some(local_uid) = local_uid else {
            return Decision::Deny {
                reason: DenyReason::ForeignDestination,
            };
        };
        let remote_uid = self.resolve(remote_address);
        let key = packet_key(facts);
        let found = self
            .longest_l4_match(local_uid, remote_uid, direction, key)
            .or_else(|| self.longest_l4_match(local_uid, ANY_REMOTE, direction, key));
        match found {
            Some(value) => Decision::Allow {
                statements: self.plan.statement_ids(value),
                stateless: value.stateless,
            },
            None => Decision::Deny {
                reason: DenyReason::NoPolicy,
            },
        }
    }

    /// The remote address's UID: exact host entry first, then the LPM.
    pub fn resolve(&self, address: IpAddr) -> Uid {
        if let Some(&uid) = self.hosts.get(&address) {
            return uid;
        }
        let family = Family::of(address);
        let bits = prefix::bits(address);
        (0..=family.width())
            .rev()
            .find_map(|len| self.prefixes.get(&(family, bits & prefix::mask(len), len)))
            .copied()
            // The Plan always holds both default routes.
            .unwrap_or(ANY_REMOTE)
    }

    fn longest_l4_match(
        &self,
        local: Uid,
        remote: Uid,
        direction: Direction,
        key: u32,
    ) -> Option<&'a PolicyValue> {
        (0..=L4_BITS).rev().find_map(|len| {
            let policy_key = PolicyKey {
                local,
                remote,
                direction,
                l4: L4Prefix::of_key(key, len),
            };
            self.policy.get(&policy_key).copied()
        })
    }
}

/// One decision from a Plan; [`PlanLookup`] answers many without
/// re-indexing.
pub fn plan_decide(
    plan: &Plan,
    facts: &PacketFacts,
    direction: Direction,
    endpoint: &str,
) -> Result<Verdict, UnknownEndpoint> {
    PlanLookup::new(plan).decide(facts, direction, endpoint)
}
