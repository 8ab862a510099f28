//! Oracle's three-tier walkthrough, loaded from examples/three-tier/ with
//! the real parser: the paths the blog allows are allowed, the others are
//! denied, each with the reason `zpr explain` prints.

use std::net::IpAddr;

use zpr_agent::compile::{Explanation, PacketFacts, Plan, compile, explain};
use zpr_agent::inventory::Inventory;
use zpr_agent::lang::{Policy, parse};

const INTERNET: &str = "198.51.100.10";
const LB: &str = "10.0.1.10";
const APP: &str = "10.0.2.10";
const DB: &str = "10.1.1.10";

struct Example {
    inventory: Inventory,
    policies: Vec<Policy>,
    plan: Plan,
}

fn example() -> Example {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/three-tier");
    let inventory = Inventory::from_yaml_str(
        &std::fs::read_to_string(format!("{dir}/inventory.yaml")).unwrap(),
    )
    .unwrap();
    let source = std::fs::read_to_string(format!("{dir}/three-tier.zpr")).unwrap();
    let parsed = parse("three-tier", &source).unwrap();
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let policies = vec![parsed.policy];
    let plan = compile(&policies, &inventory);
    Example {
        inventory,
        policies,
        plan,
    }
}

impl Example {
    fn explain(&self, from: &str, to: &str, port: u16) -> (Explanation, String) {
        let from: IpAddr = from.parse().unwrap();
        let to: IpAddr = to.parse().unwrap();
        let facts = PacketFacts::tcp(from, to, port);
        let explanation = explain(&self.inventory, &self.policies, &self.plan, &facts).unwrap();
        let text = explanation.to_string();
        (explanation, text)
    }

    fn allowed(&self, from: &str, to: &str, port: u16) -> String {
        let (explanation, text) = self.explain(from, to, port);
        assert!(explanation.allowed(), "{text}");
        assert!(
            text.lines().next().unwrap().ends_with(": allowed"),
            "{text}"
        );
        text
    }

    fn denied(&self, from: &str, to: &str, port: u16) -> String {
        let (explanation, text) = self.explain(from, to, port);
        assert!(!explanation.allowed() && !explanation.passes(), "{text}");
        assert!(text.lines().next().unwrap().ends_with(": denied"), "{text}");
        text
    }
}

fn assert_contains(text: &str, expected: &str) {
    assert!(text.contains(expected), "expected {expected:?} in\n{text}");
}

#[test]
fn internet_reaches_the_load_balancer() {
    let text = example().allowed(INTERNET, LB, 80);
    assert_contains(&text, "source 198.51.100.10: external, not enforced");
    assert_contains(
        &text,
        "destination 10.0.1.10 (lb, ingress at zpr-lb): allowed by three-tier:1",
    );
    assert_contains(
        &text,
        "three-tier:1: source 198.51.100.10 is in '0.0.0.0/0'; destination 10.0.1.10 (lb) \
         carries ocvtc002.lb:frontend in VCN frontend-vcn tagged ocvtc002.networks:front-end",
    );
}

#[test]
fn load_balancer_reaches_the_apps() {
    let example = example();
    for app in [APP, "10.0.2.11"] {
        let text = example.allowed(LB, app, 80);
        assert_contains(&text, "(lb, egress at zpr-lb): allowed by three-tier:2");
        assert_contains(&text, "ingress at zpr-app");
        assert_contains(&text, "carries ocvtc002.apps:server");
    }
}

#[test]
fn apps_reach_the_database_across_vcns() {
    let example = example();
    let text = example.allowed(APP, DB, 1521);
    assert_contains(
        &text,
        "(app-1, egress at zpr-app1): allowed by three-tier:3",
    );
    assert_contains(&text, "(db, ingress at zpr-db): allowed by three-tier:3");
    assert_contains(
        &text,
        "destination 10.1.1.10 (db) carries ocvtc002.db:customer-db in VCN backend-vcn tagged \
         ocvtc002.networks:back-end",
    );
    // The same over IPv6.
    example.allowed("fd00:0:1::20", "fd00:0:2::10", 1521);
}

#[test]
fn internet_does_not_reach_the_apps() {
    let text = example().denied(INTERNET, APP, 80);
    assert_contains(&text, "source 198.51.100.10: external, not enforced");
    assert_contains(
        &text,
        "destination 10.0.2.10 (app-1, ingress at zpr-app1): denied (no-policy)",
    );
    assert_contains(
        &text,
        "nearest miss: statement three-tier:1 allows tcp/80 from '0.0.0.0/0' to \
         ocvtc002.lb:frontend endpoints in ocvtc002.networks:front-end VCN, but 10.0.2.10 \
         (app-1) does not carry ocvtc002.lb:frontend",
    );
    assert_contains(
        &text,
        "three-tier:2 allows tcp/80 from ocvtc002.lb:frontend endpoints",
    );
    assert_contains(&text, "but 198.51.100.10 is not an endpoint");
}

#[test]
fn load_balancer_does_not_reach_the_database() {
    let text = example().denied(LB, DB, 1521);
    assert_contains(
        &text,
        "source 10.0.1.10 (lb, egress at zpr-lb): denied (no-policy)",
    );
    assert_contains(
        &text,
        "destination 10.1.1.10 (db, ingress at zpr-db): denied (no-policy)",
    );
    assert_contains(
        &text,
        "nearest miss: statement three-tier:3 allows tcp/1521 from ocvtc002.apps:server \
         endpoints in ocvtc002.networks:front-end VCN to ocvtc002.db:customer-db endpoints in \
         ocvtc002.networks:back-end VCN, but 10.0.1.10 (lb) does not carry ocvtc002.apps:server",
    );
}

#[test]
fn apps_reach_the_database_only_on_its_port() {
    let text = example().denied(APP, DB, 22);
    assert_contains(
        &text,
        "nearest miss: statement three-tier:3 matches these endpoints but allows tcp/1521, not tcp/22",
    );
}

#[test]
fn database_does_not_call_the_apps() {
    let text = example().denied(DB, APP, 80);
    assert_contains(
        &text,
        "source 10.1.1.10 (db, egress at zpr-db): denied (no-policy)",
    );
    assert_contains(
        &text,
        "nearest miss: statement three-tier:1 allows tcp/80 from '0.0.0.0/0' to \
         ocvtc002.lb:frontend endpoints in ocvtc002.networks:front-end VCN, but 10.0.2.10 \
         (app-1) does not carry ocvtc002.lb:frontend",
    );
}

#[test]
fn a_database_in_the_wrong_vcn_is_named_as_such() {
    // The same database tag on an endpoint in the front-end VCN does not
    // satisfy the cross-VCN statement.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/three-tier");
    let yaml = std::fs::read_to_string(format!("{dir}/inventory.yaml")).unwrap()
        + "  - { name: stray-db, vcn: frontend-vcn, addresses: [10.0.3.10], \
           security-attributes: [ocvtc002.db:customer-db] }\n";
    let mut example = example();
    example.inventory = Inventory::from_yaml_str(&yaml).unwrap();
    example.plan = compile(&example.policies, &example.inventory);
    let text = example.denied(APP, "10.0.3.10", 1521);
    assert_contains(
        &text,
        "nearest miss: statement three-tier:3 allows tcp/1521 from ocvtc002.apps:server \
         endpoints in ocvtc002.networks:front-end VCN to ocvtc002.db:customer-db endpoints in \
         ocvtc002.networks:back-end VCN, but 10.0.3.10 (stray-db) is in VCN frontend-vcn tagged \
         ocvtc002.networks:front-end, not ocvtc002.networks:back-end",
    );
}

#[test]
fn the_plan_is_small_and_complete() {
    let plan = example().plan;
    assert_eq!(plan.sizes.statements, 3);
    assert_eq!((plan.sizes.hosts_v4, plan.sizes.hosts_v6), (4, 4));
    assert_eq!(plan.sizes.local_endpoints, 4);
    // Only the two default routes: no CIDR selector other than 0.0.0.0/0.
    assert_eq!((plan.sizes.prefixes_v4, plan.sizes.prefixes_v6), (1, 1));
    assert!(plan.endpoints.iter().all(|e| e.protected));
    assert!(
        plan.endpoints
            .iter()
            .all(|e| e.interface.as_ref().is_some_and(|i| i.len() <= 15))
    );
}
