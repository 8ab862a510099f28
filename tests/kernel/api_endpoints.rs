//! VMs come and go: endpoints and VCNs created, changed and deleted
//! through the management API (`zpr endpoint ...`, `zpr vcn ...`), on the
//! three-tier site with real traffic. A registered endpoint's paths open
//! as its attributes say; the one checker refuses an address or an
//! interface used twice; deleting an endpoint cuts its live flows and its
//! address inherits nothing; a VCN that holds endpoints is not deleted;
//! `zpr endpoint import --prune` shows the change and then enforces what
//! it showed; and each new permission is needed (403 without it).

use std::process::Output;

use zpr_tests::{
    os_users::TestUser,
    served_agent::ServedAgent,
    three_tier::{Network, example},
    traffic::{connect, echo, tcp_exchange},
    unique_name,
};

const APPS_TO_DB: &str = "allow ocvtc002.apps:server endpoints in ocvtc002.networks:front-end VCN to connect to ocvtc002.db:customer-db endpoints with protocol='tcp/1521' in ocvtc002.networks:back-end VCN";

fn works(network: &Network, from: &str, to: &str, port: u16) -> bool {
    tcp_exchange(network.netns(from), network.address(to), port).is_ok()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn succeeds(agent: &ServedAgent, arguments: &[&str]) -> String {
    let output = agent.cli(None, arguments).unwrap();
    assert!(
        output.status.success(),
        "zpr {arguments:?}: {}\n{}",
        text(&output),
        agent.log()
    );
    text(&output)
}

fn refused(agent: &ServedAgent, arguments: &[&str]) -> String {
    let output = agent.cli(None, arguments).unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "zpr {arguments:?}: {}",
        text(&output)
    );
    text(&output)
}

/// The example's inventory without app-2: its VM runs (the vNIC exists)
/// but nobody has registered it yet.
fn inventory_without_app_2() -> std::path::PathBuf {
    let full = std::fs::read_to_string(example("inventory.yaml")).unwrap();
    let start = full.find("  - name: app-2").unwrap();
    let end = start + full[start..].find("  - name: db").unwrap();
    let path = std::env::temp_dir().join(format!("{}.yaml", unique_name("zae")));
    std::fs::write(&path, format!("{}{}", &full[..start], &full[end..])).unwrap();
    path
}

/// `zpr endpoint create app-2 ...` as the example's inventory has it (and
/// `more`); its output.
fn register_app_2(agent: &ServedAgent, more: &[&str]) -> String {
    let mut arguments = vec![
        "endpoint",
        "create",
        "app-2",
        "--vcn",
        "frontend-vcn",
        "--address",
        "10.0.2.11",
        "--interface",
        "zpr-app2",
        "--attribute",
        "ocvtc002.apps:server",
    ];
    arguments.extend_from_slice(more);
    succeeds(agent, &arguments)
}

/// The three-tier site, its store seeded without app-2 (whose VM runs),
/// and apps allowed to reach the database.
fn site_without_app_2() -> (Network, ServedAgent) {
    let network = Network::start().unwrap();
    let seed = inventory_without_app_2();
    let agent = ServedAgent::start(network.router(), &seed, "", "root").unwrap();
    std::fs::remove_file(&seed).unwrap();
    succeeds(
        &agent,
        &["policy", "create", "apps-to-db", "--statement", APPS_TO_DB],
    );
    (network, agent)
}

/// `zpr explain`'s verdict on the example's inventory with APPS_TO_DB.
fn explained_allowed(network: &Network, from: &str, to: &str, port: u16) -> bool {
    let policy = std::env::temp_dir().join(format!("{}.zpr", unique_name("zax")));
    std::fs::write(&policy, APPS_TO_DB).unwrap();
    let explained = std::process::Command::new(zpr_tests::agent::zpr_binary())
        .args(["explain", "--inventory"])
        .arg(example("inventory.yaml"))
        .args(["--from", &network.address(from).to_string()])
        .args(["--to", &network.address(to).to_string()])
        .args(["--port", &port.to_string()])
        .arg(&policy)
        .output()
        .unwrap();
    std::fs::remove_file(&policy).unwrap();
    let verdict = String::from_utf8_lossy(&explained.stdout);
    let first = verdict.lines().next().unwrap_or_default().to_owned();
    assert!(
        first.ends_with("allowed") || first.ends_with("denied"),
        "{verdict}"
    );
    first.ends_with("allowed")
}

#[test]
fn endpoints_created_and_deleted_through_the_api_are_enforced() {
    let (network, agent) = site_without_app_2();
    assert!(works(&network, "app-1", "db", 1521));
    assert!(!works(&network, "app-2", "db", 1521), "unregistered");

    let created = register_app_2(&agent, &["--mac", "52:54:00:00:02:11"]);
    assert!(created.contains("app-2"), "{created}");
    // Its paths are what the reference evaluator says of the example's
    // inventory (which lists app-2 as it was just created) and the policy.
    for (from, to, port) in [
        ("app-2", "db", 1521),
        ("app-2", "db", 22),
        ("lb", "app-2", 80),
    ] {
        assert_eq!(
            works(&network, from, to, port),
            explained_allowed(&network, from, to, port),
            "{from} -> {to}:{port}"
        );
    }
    assert!(works(&network, "app-2", "db", 1521));
    let got = succeeds(&agent, &["endpoint", "get", "app-2", "--output", "json"]);
    assert!(
        got.contains("52:54:00:00:02:11") && got.contains("\"etag\""),
        "{got}"
    );

    // The one checker: an address or an interface used twice is refused.
    let twice = refused(
        &agent,
        &[
            "endpoint",
            "create",
            "app-3",
            "--vcn",
            "frontend-vcn",
            "--address",
            "10.0.2.10",
        ],
    );
    assert!(
        twice.contains("also declared by endpoint 'app-1'"),
        "{twice}"
    );
    let twice = refused(
        &agent,
        &[
            "endpoint",
            "create",
            "app-3",
            "--vcn",
            "frontend-vcn",
            "--address",
            "10.0.2.12",
            "--interface",
            "zpr-app1",
        ],
    );
    assert!(
        twice.contains("interface 'zpr-app1' is also used"),
        "{twice}"
    );
    let outside = refused(
        &agent,
        &[
            "endpoint",
            "create",
            "app-3",
            "--vcn",
            "frontend-vcn",
            "--address",
            "10.7.0.1",
        ],
    );
    assert!(outside.contains("outside VCN 'frontend-vcn'"), "{outside}");
    let bad_mac = refused(
        &agent,
        &[
            "endpoint",
            "create",
            "app-3",
            "--vcn",
            "frontend-vcn",
            "--address",
            "10.0.2.12",
            "--mac",
            "52:54:00",
        ],
    );
    assert!(bad_mac.contains("is not a MAC address"), "{bad_mac}");
    let listed = succeeds(&agent, &["endpoint", "list", "--vcn", "frontend-vcn"]);
    assert!(
        !listed.contains("app-3") && !listed.contains("\ndb\t"),
        "{listed}"
    );
    for name in ["lb", "app-1", "app-2"] {
        assert!(listed.contains(&format!("{name}\t")), "{listed}");
    }
    let tagged = succeeds(
        &agent,
        &["endpoint", "list", "--attribute", "ocvtc002.apps:server"],
    );
    assert!(!tagged.contains("lb\t"), "{tagged}");

    // Deleting the endpoint cuts its live flow; its address (reused by
    // whatever VM comes next) inherits nothing.
    let mut live = connect(network.netns("app-2"), None, network.address("db"), 1521).unwrap();
    echo(&mut live, b"before").unwrap();
    succeeds(&agent, &["endpoint", "delete", "app-2"]);
    assert!(echo(&mut live, b"after").is_err(), "the live flow goes on");
    assert!(!works(&network, "app-2", "db", 1521));
    assert!(works(&network, "app-1", "db", 1521));

    // A VCN with endpoints is not deleted; an empty one is.
    let held = refused(&agent, &["vcn", "delete", "frontend-vcn"]);
    assert!(
        held.contains("(409)") && held.contains("lb") && held.contains("app-1"),
        "{held}"
    );
    succeeds(
        &agent,
        &["vcn", "create", "spare-vcn", "--cidr", "10.9.0.0/16"],
    );
    assert!(succeeds(&agent, &["vcn", "list"]).contains("spare-vcn\t10.9.0.0/16"));
    succeeds(&agent, &["vcn", "delete", "spare-vcn"]);
    assert!(!succeeds(&agent, &["vcn", "list"]).contains("spare-vcn"));
    assert!(works(&network, "app-1", "db", 1521));
}

#[test]
fn import_with_prune_shows_the_change_then_enforces_what_it_showed() {
    let network = Network::start().unwrap();
    let agent =
        ServedAgent::start(network.router(), &example("inventory.yaml"), "", "root").unwrap();
    succeeds(
        &agent,
        &["policy", "create", "apps-to-db", "--statement", APPS_TO_DB],
    );
    assert!(works(&network, "app-2", "db", 1521));

    let file = inventory_without_app_2();
    let preview = succeeds(
        &agent,
        &[
            "endpoint",
            "import",
            &file.display().to_string(),
            "--prune",
            "--dry-run",
        ],
    );
    assert!(preview.contains("dry run, nothing changed"), "{preview}");
    assert!(
        works(&network, "app-2", "db", 1521),
        "a dry run changes nothing"
    );

    let imported = succeeds(
        &agent,
        &["endpoint", "import", &file.display().to_string(), "--prune"],
    );
    std::fs::remove_file(&file).unwrap();
    assert!(imported.contains("endpoints removed: app-2"), "{imported}");
    assert!(
        imported.contains("closes: no longer allowed by apps-to-db:1\n  from app-2 [")
            && imported.contains("  to   db [")
            && imported.contains("tcp/1521"),
        "the diff names the path it closes:\n{imported}"
    );
    // And it says what a removed endpoint's running VM now is: unprotected.
    assert!(
        imported.contains("opens: at app-2 (enforced before, absent now)"),
        "{imported}"
    );
    assert!(imported.contains("applied in one commit"), "{imported}");
    assert!(!works(&network, "app-2", "db", 1521), "as shown");
    assert!(works(&network, "app-1", "db", 1521), "not shown: unchanged");

    // Importing the same file again changes nothing.
    let file = inventory_without_app_2();
    let again = succeeds(&agent, &["endpoint", "import", &file.display().to_string()]);
    std::fs::remove_file(&file).unwrap();
    assert!(again.contains("already matches"), "{again}");
}

#[test]
fn each_endpoint_and_vcn_permission_is_needed() {
    let network = Network::start().unwrap();
    let inspector = TestUser::create("zei").unwrap();
    let user = TestUser::create("zeu").unwrap();
    let manager = TestUser::create("zem").unwrap();
    let iam = format!(
        "Allow group {} to inspect vnics in tenancy
         Allow group {} to inspect vcns in tenancy
         Allow group {} to use vnics in tenancy
         Allow group {} to manage virtual-network-family in tenancy",
        inspector.name, inspector.name, user.name, manager.name
    );
    let agent =
        ServedAgent::start(network.router(), &example("inventory.yaml"), &iam, "root").unwrap();
    let call = |who: &TestUser, arguments: &[&str]| agent.cli(Some(&who.name), arguments).unwrap();
    let denied = |who: &TestUser, arguments: &[&str], permission: &str| {
        let output = call(who, arguments);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{arguments:?}: {}",
            text(&output)
        );
        assert!(
            text(&output).contains("(403)") && text(&output).contains(permission),
            "{arguments:?} needs {permission}: {}",
            text(&output)
        );
    };
    let create = [
        "endpoint",
        "create",
        "app-3",
        "--vcn",
        "frontend-vcn",
        "--address",
        "10.0.2.12",
    ];
    let tagged_create = [
        "endpoint",
        "create",
        "app-4",
        "--vcn",
        "frontend-vcn",
        "--address",
        "10.0.2.13",
        "--attribute",
        "ocvtc002.apps:server",
    ];

    assert!(call(&inspector, &["endpoint", "list"]).status.success());
    assert!(
        call(&inspector, &["vcn", "get", "backend-vcn"])
            .status
            .success()
    );
    denied(&inspector, &create, "VNIC_CREATE");
    denied(
        &inspector,
        &["endpoint", "update", "lb", "--mode", "audit"],
        "VNIC_UPDATE",
    );
    denied(
        &inspector,
        &["vcn", "create", "x", "--cidr", "10.8.0.0/16"],
        "VCN_CREATE",
    );
    denied(&user, &["vcn", "list"], "VCN_READ");
    denied(&user, &["endpoint", "delete", "lb"], "VNIC_DELETE");
    denied(
        &user,
        &[
            "endpoint",
            "update",
            "lb",
            "--attribute",
            "ocvtc002.apps:server",
        ],
        "SECURITY_ATTRIBUTE_NAMESPACE_USE",
    );
    denied(&manager, &tagged_create, "SECURITY_ATTRIBUTE_NAMESPACE_USE");
    denied(&manager, &["policy", "list"], "ZPR_POLICY_INSPECT");

    let moved = call(&user, &["endpoint", "update", "app-1", "--node", "hv-2"]);
    assert!(moved.status.success(), "{}", text(&moved));
    assert!(call(&manager, &create).status.success());
    assert!(
        call(&manager, &["vcn", "create", "x", "--cidr", "10.8.0.0/16"])
            .status
            .success()
    );
    assert!(
        call(&manager, &["vcn", "update", "x", "--cidr", "10.8.0.0/17"])
            .status
            .success()
    );
    assert!(call(&manager, &["vcn", "delete", "x"]).status.success());
    assert!(
        call(&manager, &["endpoint", "delete", "app-3"])
            .status
            .success()
    );
    let audit = agent.audit();
    for operation in [
        "CreateEndpoint",
        "UpdateEndpoint",
        "DeleteEndpoint",
        "CreateVcn",
        "DeleteVcn",
    ] {
        assert!(
            audit
                .iter()
                .any(|record| record["operation"] == operation && record["allowed"] == true),
            "no audit record of {operation}"
        );
    }
}

/// `zpr hook libvirt-qemu GUEST OPERATION SUB EXTRA` with the domain XML
/// on stdin, as libvirtd runs `/etc/libvirt/hooks/qemu`.
fn libvirt_hook(agent: &ServedAgent, node: &str, operation: &[&str], domain: &str) -> Output {
    use std::io::Write as _;
    let mut hook = std::process::Command::new(zpr_tests::agent::zpr_binary())
        .args(["hook", "libvirt-qemu", "app-2"])
        .args(operation)
        .args(["--node-name", node, "--socket"])
        .arg(&agent.socket)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    hook.stdin
        .take()
        .unwrap()
        .write_all(domain.as_bytes())
        .unwrap();
    let output = hook.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "a hook must never fail libvirt: {}",
        text(&output)
    );
    output
}

#[test]
fn the_libvirt_hook_registers_a_started_guest_and_releases_a_stopped_one() {
    let (network, agent) = site_without_app_2();
    let domain = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/libvirt/app-2.xml"),
    )
    .unwrap()
    .replace("TARGET_DEV", "zpr-app2");
    assert!(!works(&network, "app-2", "db", 1521), "unregistered");

    // What libvirtd runs around a guest's start: only `started` registers.
    for operation in [["prepare", "begin", "-"], ["start", "begin", "-"]] {
        libvirt_hook(&agent, "hv-1", &operation, &domain);
    }
    assert!(refused(&agent, &["endpoint", "get", "app-2-net0"]).contains("(404)"));
    libvirt_hook(&agent, "hv-1", &["started", "begin", "-"], &domain);
    let registered = succeeds(
        &agent,
        &["endpoint", "get", "app-2-net0", "--output", "json"],
    );
    for expected in [
        "zpr-app2",
        "52:54:00:6b:3c:58",
        "\"node\": \"hv-1\"",
        "ocvtc002.apps:server",
    ] {
        assert!(registered.contains(expected), "{expected} in {registered}");
    }
    assert!(works(&network, "app-2", "db", 1521));
    // libvirtd restarted: `reconnect` registers again, changing nothing.
    libvirt_hook(&agent, "hv-1", &["reconnect", "begin", "-"], &domain);
    assert!(works(&network, "app-2", "db", 1521));

    // Migrated to hv-2: its `started` moves the endpoint there; the source's
    // `stopped` and `release` then leave it alone.
    libvirt_hook(&agent, "hv-2", &["started", "begin", "-"], &domain);
    libvirt_hook(&agent, "hv-1", &["stopped", "end", "-"], &domain);
    libvirt_hook(&agent, "hv-1", &["release", "end", "migrated"], &domain);
    let moved = succeeds(
        &agent,
        &["endpoint", "get", "app-2-net0", "--output", "json"],
    );
    assert!(moved.contains("\"node\": \"hv-2\""), "{moved}");

    // Shut down where it runs: deleted, and its paths close.
    libvirt_hook(&agent, "hv-2", &["stopped", "end", "-"], &domain);
    assert!(refused(&agent, &["endpoint", "get", "app-2-net0"]).contains("(404)"));
    assert!(!works(&network, "app-2", "db", 1521));

    // A broken document or an API that is not there: reported, exit 0.
    let broken = libvirt_hook(
        &agent,
        "hv-1",
        &["started", "begin", "-"],
        "<domain><name>x",
    );
    assert!(
        text(&broken).contains("does not parse"),
        "{}",
        text(&broken)
    );
}

#[test]
fn quarantine_holds_a_vm_until_the_api_registers_it_in_either_order() {
    let mut network = Network::start().unwrap();
    let seed = inventory_without_app_2();
    let quarantine = ["--quarantine", "zpr-app*,zvm*"].map(str::to_owned);
    let agent =
        ServedAgent::start_with(network.router(), &seed, "", "root", &quarantine, &[]).unwrap();
    std::fs::remove_file(&seed).unwrap();
    succeeds(
        &agent,
        &["policy", "create", "apps-to-db", "--statement", APPS_TO_DB],
    );

    // Its vNIC first: closed both ways (the internet is no endpoint, and
    // would reach an unprotected VM), until the registration opens what
    // policy allows.
    assert!(!works(&network, "internet", "app-2", 80), "quarantined");
    assert!(!works(&network, "app-2", "db", 1521));
    register_app_2(&agent, &[]);
    assert!(
        works(&network, "app-2", "db", 1521),
        "its policy replaced the quarantine"
    );
    assert!(!works(&network, "internet", "app-2", 80));
    succeeds(&agent, &["endpoint", "delete", "app-2"]);
    assert!(!works(&network, "app-2", "db", 1521));
    assert!(
        !works(&network, "internet", "app-2", 80),
        "quarantined again"
    );

    // Its registration first: the vNIC comes up under its policy.
    succeeds(
        &agent,
        &[
            "endpoint",
            "create",
            "vm-9",
            "--vcn",
            "frontend-vcn",
            "--address",
            "10.0.2.19",
            "--interface",
            "zvm9",
            "--attribute",
            "ocvtc002.apps:server",
        ],
    );
    network
        .topology
        .add_host("vm-9", "zvm9", "10.0.2.19")
        .unwrap();
    let vm = &network.topology.host("vm-9").netns;
    let _server = zpr_tests::traffic::EchoServer::start(vm, 80).unwrap();
    assert!(tcp_exchange(vm, network.address("db"), 1521).is_ok());
    assert!(!works(&network, "internet", "vm-9", 80));
}
