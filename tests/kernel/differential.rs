//! Differential test: the kernel programs, fed crafted packets through
//! BPF_PROG_TEST_RUN over randomly generated Plans, reach the verdict the
//! Plan lookup (`plan_decide`) and the reference evaluator (`decide`) reach,
//! for the same reason.

use std::net::IpAddr;

use zpr_agent::{
    compile::{self, Decision, DenyReason, Direction as PolicyDirection, PacketFacts, Verdict},
    datapath::{
        CounterTable, Datapath, Hook, InterfaceIndexes, TEST_RUN_IFINDEX, flush_flows,
        read_counters, write_plan,
    },
    inventory::{Inventory, Mode},
    lang::{self, Policy},
};
use zpr_common::{Direction, counters::Reason};
use zpr_tests::frames::{L4, TCP_ACK, TCP_SYN, frame};

const PLANS: u64 = 60;
const PACKETS_PER_PLAN: usize = 48;
const LOCAL: &str = "ep0";
const LOCAL_INTERFACE: &str = "zt-local";

/// xorshift64*: deterministic, so a failure names a seed to replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const ATTRIBUTES: [&str; 5] = ["t.app:web", "t.app:api", "t.app:db", "t.tier:x", "t.tier:y"];
const ENDPOINTS: usize = 6;

fn inventory_yaml(rng: &mut Rng) -> String {
    let mut yaml = String::from(
        "namespaces:\n  - name: t\n    attributes:\n      - { key: net, type: list, values: [a, b] }\n      - { key: app, type: list, values: [web, api, db] }\n      - { key: tier, type: list, values: [x, y] }\nvcns:\n  - { name: vcn-a, cidrs: [10.0.0.0/16, \"fd00:a::/48\"], security-attribute: \"t.net:a\" }\n  - { name: vcn-b, cidrs: [10.1.0.0/16, \"fd00:b::/48\"], security-attribute: \"t.net:b\" }\nosn-services: [192.0.2.0/24]\nendpoints:\n",
    );
    for i in 0..ENDPOINTS {
        let (vcn, v4, v6) = if rng.chance(50) {
            ("vcn-a", 0, 'a')
        } else {
            ("vcn-b", 1, 'b')
        };
        let mut attributes: Vec<&str> = Vec::new();
        for _ in 0..rng.below(3) {
            let attribute = *rng.pick(&ATTRIBUTES);
            if !attributes.contains(&attribute) {
                attributes.push(attribute);
            }
        }
        // The local endpoint is protected most of the time.
        if i == 0 && attributes.is_empty() && rng.chance(85) {
            attributes.push(ATTRIBUTES[0]);
        }
        yaml += &format!(
            "  - name: ep{i}\n    vcn: {vcn}\n    addresses: [10.{v4}.{i}.10, \"fd00:{v6}::{i}\"]\n    security-attributes: [{}]\n",
            attributes.join(", ")
        );
        if i == 0 {
            let mode = if rng.chance(20) { "audit" } else { "enforce" };
            yaml += &format!("    interface: {LOCAL_INTERFACE}\n    mode: {mode}\n");
        }
    }
    yaml
}

fn endpoint_text(rng: &mut Rng) -> String {
    const OTHERS: [&str; 8] = [
        "'10.0.0.0/16'",
        "'10.0.0.0/8'",
        "'0.0.0.0/0'",
        "'10.1.3.0/24'",
        "'fd00::/16'",
        "'fd00:a::/48'",
        "all-endpoints",
        "osn-services-ip-addresses",
    ];
    if rng.chance(45) {
        format!("{} endpoints", rng.pick(&ATTRIBUTES))
    } else {
        rng.pick(&OTHERS).to_string()
    }
}

fn filters_text(rng: &mut Rng) -> String {
    const PROTOCOLS: [&str; 9] = [
        "",
        "protocol='tcp/80'",
        "protocol='tcp/1000-2000'",
        "protocol='udp/53,5353'",
        "protocol='tcp'",
        "protocol='icmp'",
        "protocol='icmp', protocol.icmp.type='8'",
        "protocol='icmpv6'",
        "protocol='tcp/22,443,1500'",
    ];
    let mut filters: Vec<String> = Vec::new();
    let protocol = rng.pick(&PROTOCOLS);
    if !protocol.is_empty() {
        filters.push(protocol.to_string());
    }
    if rng.chance(20) {
        filters.push("connection-state='stateless'".into());
    }
    if filters.is_empty() {
        String::new()
    } else {
        format!(" with {}", filters.join(", "))
    }
}

fn statement_text(rng: &mut Rng) -> String {
    let net = |rng: &mut Rng| if rng.chance(50) { "t.net:a" } else { "t.net:b" };
    if rng.chance(70) {
        let vcn = net(rng);
        let (src, dst) = (endpoint_text(rng), endpoint_text(rng));
        format!(
            "in {vcn} VCN allow {src} to connect to {dst}{}",
            filters_text(rng)
        )
    } else {
        let (src_vcn, dst_vcn) = (net(rng), net(rng));
        let (src, dst) = (rng.pick(&ATTRIBUTES), rng.pick(&ATTRIBUTES));
        format!(
            "allow {src} endpoints in {src_vcn} VCN to connect to {dst} endpoints{} in {dst_vcn} VCN",
            filters_text(rng)
        )
    }
}

/// A policy of 2..8 valid statements (invalid combinations are redrawn).
fn policy(rng: &mut Rng) -> Policy {
    let mut lines: Vec<String> = Vec::new();
    let wanted = 2 + rng.below(7);
    while lines.len() < wanted {
        let line = statement_text(rng);
        if lang::parse("probe", &line).is_ok() {
            lines.push(line);
        }
    }
    lang::parse("random", &lines.join("\n"))
        .unwrap_or_else(|errors| panic!("generated policy does not parse: {errors:?}"))
        .policy
}

fn packet(rng: &mut Rng, inventory: &Inventory, direction: PolicyDirection) -> (PacketFacts, L4) {
    let ipv6 = rng.chance(35);
    let family = |a: &IpAddr| a.is_ipv6() == ipv6;
    let local: Vec<IpAddr> = inventory
        .endpoint(LOCAL)
        .unwrap()
        .addresses
        .iter()
        .copied()
        .filter(family)
        .collect();
    let mut elsewhere: Vec<IpAddr> = inventory
        .endpoints()
        .iter()
        .filter(|e| e.name != LOCAL)
        .flat_map(|e| e.addresses.iter().copied())
        .filter(family)
        .collect();
    let external: [IpAddr; 8] = [
        "198.51.100.7".parse().unwrap(),
        "192.0.2.5".parse().unwrap(),
        "10.0.9.9".parse().unwrap(),
        "10.1.3.4".parse().unwrap(),
        "fd00:a::99".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
        "fe80::1".parse().unwrap(),
        "fd00:b::77".parse().unwrap(),
    ];
    elsewhere.extend(external.iter().copied().filter(family));
    let own = if rng.chance(90) {
        *rng.pick(&local)
    } else {
        *rng.pick(&elsewhere)
    };
    let other = *rng.pick(&elsewhere);
    let (src, dst) = match direction {
        PolicyDirection::Egress => (own, other),
        PolicyDirection::Ingress => (other, own),
    };
    let src_port = 1024 + rng.below(60000) as u16;
    let l4 = match rng.below(5) {
        0 | 1 => {
            let any_port = rng.below(65535) as u16 + 1;
            let dst_port = *rng.pick(&[22, 80, 443, 1500, 1999, 2000, 2001, 53, any_port]);
            // Some mid-stream, as after an eviction: picked up either way;
            // half of those are a server's replies (from its port).
            let flags = if rng.chance(30) { TCP_ACK } else { TCP_SYN };
            let (src_port, dst_port) = if flags == TCP_ACK && rng.chance(50) {
                (dst_port, src_port)
            } else {
                (src_port, dst_port)
            };
            L4::Tcp {
                src_port,
                dst_port,
                flags,
            }
        }
        2 => L4::Udp {
            src_port,
            dst_port: *rng.pick(&[53, 5353, 80, 9999]),
        },
        3 => {
            let icmp_type = if ipv6 {
                *rng.pick(&[128, 129, 1, 135, 136, 133])
            } else {
                *rng.pick(&[8, 0, 3, 11])
            };
            L4::Icmp {
                icmp_type,
                code: rng.below(2) as u8,
                id: rng.below(65535) as u16,
            }
        }
        _ => L4::Other {
            protocol: *rng.pick(&[47, 132, 50]),
        },
    };
    let protocol = l4.protocol(ipv6);
    let facts = match l4 {
        L4::Tcp { dst_port, .. } | L4::Udp { dst_port, .. } => PacketFacts {
            dst_port,
            ..PacketFacts::other(src, dst, protocol)
        },
        L4::Icmp {
            icmp_type, code, ..
        } => PacketFacts::icmp(src, dst, icmp_type, code),
        L4::Other { .. } => PacketFacts::other(src, dst, protocol),
    };
    (facts, l4)
}

/// The counter a kernel verdict must land in, per the Plan's decision.
fn expected_reason(verdict: &Verdict) -> Reason {
    let denied = |reason| {
        if verdict.mode == Mode::Audit {
            Reason::Audited
        } else {
            reason
        }
    };
    match &verdict.decision {
        Decision::Allow {
            stateless: false, ..
        } => Reason::NewFlow,
        Decision::Allow {
            stateless: true, ..
        } => Reason::Stateless,
        Decision::NeighbourDiscovery => Reason::NeighborDiscovery,
        Decision::NotEnforced => Reason::NotProtected,
        Decision::Deny {
            reason: DenyReason::NoPolicy,
        } => denied(Reason::NoPolicy),
        Decision::Deny {
            reason: DenyReason::SpoofedSource,
        } => denied(Reason::SpoofedSource),
        Decision::Deny {
            reason: DenyReason::ForeignDestination,
        } => denied(Reason::ForeignDestination),
    }
}

/// The counter of a mid-stream TCP packet with no entry: picked up when a
/// statement allows its flow in its own direction or, failing that, the
/// other way round (`reverse` decides the packet's reply).
fn expected_mid_stream_reason(forward: &Verdict, reverse: &Verdict) -> Reason {
    let picked_up = |verdict: &Verdict| match verdict.decision {
        Decision::Allow {
            stateless: false, ..
        } => Some(Reason::PickedUp),
        Decision::Allow {
            stateless: true, ..
        } => Some(Reason::Stateless),
        _ => None,
    };
    let no_policy = matches!(
        forward.decision,
        Decision::Deny {
            reason: DenyReason::NoPolicy
        }
    );
    picked_up(forward)
        .or_else(|| picked_up(reverse).filter(|_| no_policy))
        .unwrap_or_else(|| expected_reason(forward))
}

/// The single (direction, reason) slot that counted one more packet.
fn counted(before: &CounterTable, after: &CounterTable) -> Vec<(Direction, Reason)> {
    Direction::ALL
        .iter()
        .flat_map(|&d| Reason::ALL.iter().map(move |&r| (d, r)))
        .filter(|&(d, r)| after.get(d, r).packets != before.get(d, r).packets)
        .collect()
}

#[test]
fn kernel_agrees_with_plan_and_reference_evaluator() -> anyhow::Result<()> {
    let mut datapath = Datapath::load()?;
    let interfaces = InterfaceIndexes::from([(LOCAL_INTERFACE.to_owned(), TEST_RUN_IFINDEX)]);
    let mut checked = 0;
    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    for seed in 1..=PLANS {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
        let inventory = Inventory::from_yaml_str(&inventory_yaml(&mut rng))
            .map_err(|errors| anyhow::anyhow!("seed {seed}: inventory: {errors}"))?;
        let policies = vec![policy(&mut rng)];
        let plan = compile::compile(&policies, &inventory);
        write_plan(&mut datapath, &plan, &interfaces)?;

        for _ in 0..PACKETS_PER_PLAN {
            let direction = if rng.chance(50) {
                PolicyDirection::Egress
            } else {
                PolicyDirection::Ingress
            };
            let (facts, l4) = packet(&mut rng, &inventory, direction);
            let planned = compile::plan_decide(&plan, &facts, direction, LOCAL)?;
            let reference = compile::decide(&inventory, &policies, &facts, direction, LOCAL)?;
            assert_eq!(
                planned, reference,
                "seed {seed}: {facts} {direction:?}: plan vs reference"
            );
            let expected = match l4 {
                L4::Tcp {
                    src_port,
                    flags: TCP_ACK,
                    ..
                } => {
                    let reply = PacketFacts {
                        src: facts.dst,
                        dst: facts.src,
                        dst_port: src_port,
                        ..facts
                    };
                    let back = direction.opposite();
                    let reverse = compile::plan_decide(&plan, &reply, back, LOCAL)?;
                    let reference = compile::decide(&inventory, &policies, &reply, back, LOCAL)?;
                    assert_eq!(reverse, reference, "seed {seed}: {reply} {back:?}");
                    let expected = expected_mid_stream_reason(&planned, &reverse);
                    if expected == Reason::PickedUp && !planned.passes() {
                        *outcomes.entry("picked-up the other way").or_default() += 1;
                    }
                    expected
                }
                _ => expected_reason(&planned),
            };
            let hooks: &[Hook] = match direction {
                PolicyDirection::Egress => &[Hook::FromWorkloadXdp, Hook::FromWorkloadTc],
                PolicyDirection::Ingress => &[Hook::ToWorkloadTc],
            };
            let kernel_direction = match direction {
                PolicyDirection::Egress => Direction::FromWorkload,
                PolicyDirection::Ingress => Direction::ToWorkload,
            };
            for &hook in hooks {
                flush_flows(&mut datapath)?;
                let before = read_counters(&datapath)?;
                let result = datapath.test_run(hook, &frame(facts.src, facts.dst, l4), 1)?;
                let after = read_counters(&datapath)?;
                let context = || {
                    format!(
                        "seed {seed}, {hook:?}, {facts} from {} to {}: plan says {planned:?}\n{}",
                        facts.src,
                        facts.dst,
                        policies[0]
                            .statements
                            .iter()
                            .map(lang::format_statement)
                            .collect::<Vec<_>>()
                            .join("\n")
                    )
                };
                assert_eq!(result.passed, !expected.is_drop(), "{}", context());
                assert_eq!(
                    counted(&before, &after),
                    vec![(kernel_direction, expected)],
                    "{}",
                    context()
                );
                *outcomes.entry(expected.name()).or_default() += 1;
                checked += 1;
            }
        }
    }
    eprintln!("{checked} kernel verdicts matched the Plan: {outcomes:?}");
    // The generator must exercise both verdicts and the main reasons.
    for reason in [
        "new-flow",
        "picked-up",
        "picked-up the other way",
        "no-policy",
        "spoofed-source",
        "stateless",
    ] {
        assert!(
            outcomes.get(reason).copied().unwrap_or(0) > 0,
            "no packet was {reason}"
        );
    }
    Ok(())
}
