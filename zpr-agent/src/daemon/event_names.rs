//! What a kernel event means in the inventory's and the policy's terms:
//! the vNIC's endpoint, both addresses' names and security attributes,
//! and the statements that allowed the flow. One description behind
//! `zpr monitor` and the flow log, named from the agent's status file
//! (the live generation's, and the one before it, kept across a reload).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    time::{Duration, Instant},
};

use zpr_common::{
    Direction, FAMILY_IPV4,
    counters::Reason,
    event::{Event, NO_RULE, VERDICT_ALLOWED, VERDICT_AUDITED, VERDICT_DROPPED},
};

use super::Status;

/// How soon the status file is read again when the last read did not
/// name an event's generation (the file can be tens of MB: not per event).
const REREAD_AFTER: Duration = Duration::from_secs(1);

/// The status of the live generation and of the one before it, read from
/// the agent's status file as events of newer generations arrive.
#[derive(Default)]
pub struct GenerationNames {
    current: Option<Status>,
    previous: Option<Status>,
    /// When the file was last read.
    read_at: Option<Instant>,
}

impl GenerationNames {
    /// Reads the status file again when an event of a generation newer
    /// than the current one arrives (an older one not kept is gone).
    pub fn refresh(&mut self, run_dir: &Path, generation: u32) {
        if self.of(generation).is_some()
            || self
                .current
                .as_ref()
                .is_some_and(|current| current.generation > generation)
            || self.read_at.is_some_and(|at| at.elapsed() < REREAD_AFTER)
        {
            return;
        }
        self.read_at = Some(Instant::now());
        let Ok(status) = Status::read(run_dir) else {
            return;
        };
        if self
            .current
            .as_ref()
            .is_none_or(|current| current.generation != status.generation)
        {
            self.previous = self.current.replace(status);
        }
    }

    /// The status that names events of `generation`, if still kept.
    fn of(&self, generation: u32) -> Option<&Status> {
        [&self.current, &self.previous]
            .into_iter()
            .flatten()
            .find(|status| status.generation == generation)
    }
}

/// What happened to the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Dropped,
    /// Would have been dropped; passed (the endpoint is in audit mode).
    Audited,
}

impl Verdict {
    fn of(verdict: u8) -> Verdict {
        match verdict {
            VERDICT_DROPPED => Verdict::Dropped,
            VERDICT_AUDITED => Verdict::Audited,
            VERDICT_ALLOWED => Verdict::Allowed,
            // The kernel sends no other value; a drop is the safe reading.
            _ => Verdict::Dropped,
        }
    }

    /// ALLOWED, DROPPED or AUDITED.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Allowed => "ALLOWED",
            Verdict::Dropped => "DROPPED",
            Verdict::Audited => "AUDITED",
        }
    }
}

/// One end of the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    pub address: IpAddr,
    pub port: u16,
    /// The endpoint owning the address, or the prefix it fell in
    /// ([`crate::compile::Identity::name_of`]), or `uid N`.
    pub name: String,
    /// The owning endpoint's security attributes (none for a prefix).
    pub attributes: Vec<String>,
}

/// The statements behind an event's policy entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Statements {
    /// No policy entry decided (drops, pick-ups).
    NoRule,
    /// Statement ids, `policy:line`.
    Named(Vec<String>),
    /// The entry of a generation whose Plan the agent no longer keeps.
    NotKept { rule: u32 },
}

impl Statements {
    /// Statement ids, or a line saying which entry of which generation it
    /// was when its Plan is gone.
    pub fn lines(&self, generation: u32) -> Vec<String> {
        match self {
            Statements::NoRule => Vec::new(),
            Statements::Named(ids) => ids.clone(),
            Statements::NotKept { rule } => {
                vec![format!("rule {rule} of generation {generation}")]
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct DescribedEvent {
    /// CLOCK_MONOTONIC, as the kernel stamped it.
    pub timestamp_ns: u64,
    pub verdict: Verdict,
    pub reason: &'static str,
    /// The local endpoint whose vNIC saw the packet.
    pub endpoint: Option<String>,
    /// That vNIC's name, or `ifindex N`.
    pub interface: String,
    pub direction: Option<Direction>,
    pub protocol: u8,
    pub source: Party,
    pub destination: Party,
    pub statements: Statements,
    pub generation: u32,
}

impl DescribedEvent {
    /// The local endpoint's side and the remote side.
    pub fn local_and_remote(&self) -> (&Party, &Party) {
        match self.direction {
            Some(Direction::ToWorkload) => (&self.destination, &self.source),
            _ => (&self.source, &self.destination),
        }
    }

    pub fn direction_name(&self) -> &'static str {
        self.direction.map_or("?", Direction::name)
    }
}

/// `tcp`, `udp`, `icmp`, `icmpv6` or `proto-N`.
pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        1 => "icmp".to_owned(),
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        58 => "icmpv6".to_owned(),
        other => format!("proto-{other}"),
    }
}

/// The vNIC's name: its endpoint's, a quarantined vNIC's, or `ifindex N`.
fn interface_name(
    endpoint: Option<&super::AttachedEndpoint>,
    current: Option<&Status>,
    ifindex: u32,
) -> String {
    let quarantined = || current?.quarantined_by_ifindex(ifindex);
    match (endpoint, quarantined()) {
        (Some(endpoint), _) => endpoint.interface.clone(),
        (None, Some(vnic)) => vnic.interface.clone(),
        (None, None) => format!("ifindex {ifindex}"),
    }
}

pub fn describe(event: &Event, names: &GenerationNames) -> DescribedEvent {
    // Identities and rules are the Plan's of the event's generation; the
    // vNICs barely change between generations, so the newest names them.
    let status = names.of(event.generation);
    let endpoint = names
        .current
        .as_ref()
        .and_then(|current| current.endpoint_by_ifindex(event.ifindex));
    let direction = Direction::from_u8(event.direction);
    let (source_uid, destination_uid) = match direction {
        Some(Direction::ToWorkload) => (event.remote_uid, event.local_uid),
        _ => (event.local_uid, event.remote_uid),
    };
    let party = |uid: u32, address: IpAddr, port: u16| {
        // Named by what the address is, not by the first endpoint of the
        // identity it shares with others.
        let identity = status.and_then(|status| status.identity(uid));
        let owner = identity
            .and_then(|identity| identity.members.iter().find(|m| m.address == address))
            .map(|member| member.endpoint.as_str());
        // Identities are numbered from 1: 0 is an address the Plan does
        // not know (a quarantined VM's, the internet's).
        let unknown = || match uid {
            0 => "no identity".to_owned(),
            uid => format!("uid {uid}"),
        };
        Party {
            address,
            port,
            name: identity.map_or_else(unknown, |i| i.name_of(address)),
            attributes: owner
                .and_then(|owner| status?.names.attributes.get(owner).cloned())
                .unwrap_or_default(),
        }
    };
    let statements = match (event.rule, status) {
        (NO_RULE, _) => Statements::NoRule,
        (rule, Some(status)) => Statements::Named(status.names.rule_statements(rule)),
        (rule, None) => Statements::NotKept { rule },
    };
    DescribedEvent {
        timestamp_ns: event.timestamp_ns,
        verdict: Verdict::of(event.verdict),
        reason: Reason::from_u8(event.reason).map_or("unknown", Reason::name),
        endpoint: endpoint.map(|e| e.name.clone()),
        interface: interface_name(endpoint, names.current.as_ref(), event.ifindex),
        direction,
        protocol: event.protocol,
        source: party(
            source_uid,
            address(event.family, &event.src),
            event.src_port,
        ),
        destination: party(
            destination_uid,
            address(event.family, &event.dst),
            event.dst_port,
        ),
        statements,
        generation: event.generation,
    }
}

pub fn address(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == FAMILY_IPV4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        compile::{Identity, IdentityMember},
        daemon::{AttachedEndpoint, PlanNames, PolicyLines},
    };

    /// A status of `generation`: app-1 (10.0.2.10, uid 1, on ifindex 7)
    /// and the internet (uid 2); rule 0 is `three-tier:1`.
    pub(crate) fn status(generation: u32) -> Status {
        Status {
            generation,
            endpoints: vec![AttachedEndpoint {
                name: "app-1".to_owned(),
                interface: "zpr-app1".to_owned(),
                ifindex: Some(7),
                mode: "enforce".to_owned(),
                protected: true,
                counter_row: Some(1),
            }],
            names: Arc::new(PlanNames {
                statement_lines: vec![PolicyLines {
                    policy: "three-tier".to_owned(),
                    lines: vec![1],
                }],
                rules: vec![vec![0]],
                identities: vec![
                    Identity {
                        uid: 1,
                        members: vec![IdentityMember {
                            endpoint: "app-1".to_owned(),
                            address: "10.0.2.10".parse().unwrap(),
                        }],
                        prefixes: Vec::new(),
                        selectors: Vec::new(),
                    },
                    Identity {
                        uid: 2,
                        members: Vec::new(),
                        prefixes: vec![crate::lang::IpPrefix {
                            addr: "0.0.0.0".parse().unwrap(),
                            len: 0,
                        }],
                        selectors: Vec::new(),
                    },
                ],
                attributes: [("app-1".to_owned(), vec!["ocvtc002.apps:server".to_owned()])].into(),
                ..PlanNames::default()
            }),
            ..Status::default()
        }
    }

    /// A new TCP flow from the internet to app-1:80, allowed by rule 0.
    pub(crate) fn allowed_event(generation: u32) -> Event {
        let mut event = Event {
            timestamp_ns: 1_000_000,
            ifindex: 7,
            generation,
            local_uid: 1,
            remote_uid: 2,
            rule: 0,
            src_port: 40000,
            dst_port: 80,
            family: FAMILY_IPV4,
            protocol: 6,
            direction: Direction::ToWorkload as u8,
            reason: Reason::NewFlow as u8,
            verdict: VERDICT_ALLOWED,
            ..Event::default()
        };
        event.src[..4].copy_from_slice(&[198, 51, 100, 10]);
        event.dst[..4].copy_from_slice(&[10, 0, 2, 10]);
        event
    }

    fn names(statuses: impl IntoIterator<Item = Status>) -> GenerationNames {
        let mut names = GenerationNames::default();
        for status in statuses {
            names.previous = names.current.replace(status);
        }
        names
    }

    #[test]
    fn an_event_is_named_by_endpoint_attributes_and_statement() {
        let described = describe(&allowed_event(3), &names([status(3)]));
        assert_eq!(described.verdict, Verdict::Allowed);
        assert_eq!(described.reason, "new-flow");
        assert_eq!(described.endpoint.as_deref(), Some("app-1"));
        assert_eq!(described.interface, "zpr-app1");
        assert_eq!(described.source.name, "0.0.0.0/0");
        assert!(described.source.attributes.is_empty());
        assert_eq!(described.destination.name, "app-1");
        assert_eq!(
            described.destination.attributes,
            ["ocvtc002.apps:server".to_owned()]
        );
        let (local, remote) = described.local_and_remote();
        assert_eq!((local.name.as_str(), remote.port), ("app-1", 40000));
        assert_eq!(
            described.statements,
            Statements::Named(vec!["three-tier:1".to_owned()])
        );
    }

    #[test]
    fn an_event_of_the_previous_generation_is_named_from_its_plan() {
        let mut newer = status(4);
        Arc::make_mut(&mut newer.names).statement_lines[0].lines = vec![3];
        let described = describe(&allowed_event(3), &names([status(3), newer]));
        assert_eq!(
            described.statements,
            Statements::Named(vec!["three-tier:1".to_owned()])
        );
        let gone = describe(&allowed_event(2), &names([status(3), status(4)]));
        assert_eq!(gone.statements, Statements::NotKept { rule: 0 });
        assert_eq!(gone.statements.lines(2), ["rule 0 of generation 2"]);
        assert_eq!(gone.destination.name, "uid 1");
    }

    #[test]
    fn a_quarantined_vnics_drop_is_named_by_its_vnic() {
        let mut quarantining = status(3);
        quarantining.quarantined = vec![crate::daemon::QuarantinedVnic {
            interface: "vnet9".to_owned(),
            ifindex: 9,
        }];
        let mut dropped = allowed_event(3);
        dropped.ifindex = 9;
        dropped.reason = Reason::Unregistered as u8;
        dropped.verdict = VERDICT_DROPPED;
        dropped.local_uid = 0;
        dropped.remote_uid = 0;
        let described = describe(&dropped, &names([quarantining]));
        assert_eq!(described.source.name, "no identity");
        assert_eq!(described.destination.name, "no identity");
        assert_eq!(described.reason, "unregistered");
        assert_eq!(described.verdict, Verdict::Dropped);
        assert_eq!(described.interface, "vnet9");
        assert_eq!(described.endpoint, None);
        let unknown = describe(&dropped, &names([status(3)]));
        assert_eq!(unknown.interface, "ifindex 9");
    }
}
