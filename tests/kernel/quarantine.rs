//! `zpr run --quarantine`: a VM whose vNIC appears before its
//! registration is closed, not open. On the three-tier network a new
//! workload joins behind a vNIC the globs match: until the inventory
//! names it, it passes no TCP, UDP or ICMP (ARP still resolves), its
//! drops are counted and logged as `unregistered` with the vNIC's name,
//! and `zpr status` lists it while the host stays protected. Its
//! registration swaps the policy in on the same links; removing the
//! endpoint puts the vNIC back under quarantine. A vNIC the globs do not
//! match is left alone.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::Value;
use zpr_tests::{
    Netns,
    agent::AgentProcess,
    fleet::{
        Fleet,
        three_hosts::{HOST_B, INVENTORY},
    },
    http::http_get,
    run,
    site::Site,
    traffic::{EchoServer, TIMEOUT, tcp_exchange, udp_exchange},
    unique_name,
};

/// What `--quarantine` matches: the new workloads' vNICs, not the example's.
const GLOBS: &str = "zq*";
/// The new workload's address, in the front-end VCN.
const VM_ADDRESS: &str = "10.0.2.12";
/// The port the new workload serves, and the load balancer may reach
/// once it is registered as an app server.
const VM_PORT: u16 = 80;
/// The internet host: no endpoint, so nothing of zpr's runs on its vNIC.
const INTERNET: &str = "internet";

/// The example site with `zpr run --quarantine zq* [extra]` and a flow log.
fn quarantining_site(extra: &[&str]) -> anyhow::Result<(Site, PathBuf)> {
    let mut flow_log = PathBuf::new();
    let site = Site::start_with(|_, agent| {
        flow_log = agent.run_dir.with_file_name("flows.json");
        agent.arguments.extend(
            [
                "--quarantine",
                GLOBS,
                "--flow-log",
                &flow_log.display().to_string(),
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .map(str::to_owned),
        );
        Ok(())
    })?;
    Ok((site, flow_log))
}

/// A workload starting on the host: its vNIC in the router's namespace,
/// an echo server on [`VM_PORT`] in its own. Returns the vNIC's name.
fn start_vm(site: &mut Site, name: &str, vnic_tag: &str, address: &str) -> anyhow::Result<String> {
    let vnic = unique_name(vnic_tag);
    site.network.topology.add_host(name, &vnic, address)?;
    Ok(vnic)
}

/// The example inventory with the workload registered as an app server
/// behind `vnic`.
fn registered(inventory: &str, vnic: &str) -> String {
    format!(
        "{inventory}  - name: vm\n    vcn: frontend-vcn\n    addresses: [{VM_ADDRESS}]\n    \
         interface: {vnic}\n    security-attributes: [ocvtc002.apps:server]\n"
    )
}

/// Replaces the inventory as an editor does (the agent reloads it).
fn write_inventory(site: &Site, text: &str) -> anyhow::Result<()> {
    let temporary = site.inputs.dir.join(".inventory.yaml.swp");
    fs::write(&temporary, text)?;
    fs::rename(&temporary, site.inputs.inventory())?;
    Ok(())
}

fn quarantined(status: &Value) -> Vec<String> {
    status["quarantined"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|vnic| vnic["interface"].as_str().map(str::to_owned))
        .collect()
}

fn wait_quarantined(agent: &AgentProcess, vnic: &str, yes: bool) -> anyhow::Result<Value> {
    agent.wait_for(&format!("{vnic} quarantined: {yes}"), |status| {
        quarantined(status).iter().any(|name| name == vnic) == yes
    })
}

/// Packets counted under `reason` in `direction` (`from_workload`,
/// `to_workload`), from `zpr status --output json`.
fn counted(report: &Value, reason: &str, direction: &str) -> u64 {
    report["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|row| row["reason"] == reason)
        .and_then(|row| row[direction].as_u64())
        .unwrap_or_else(|| panic!("no {reason} counter in {report:#}"))
}

/// `zpr status` as people read it.
fn status_text(site: &Site) -> anyhow::Result<String> {
    let output = site
        .agent
        .zpr(&["status"])
        .args(site.agent.paths())
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn pings(from: &Netns, to: Ipv4Addr) -> anyhow::Result<bool> {
    let output = from.try_exec(&["ping", "-c", "1", "-W", "1", &to.to_string()])?;
    Ok(output.status.success())
}

/// A DHCP-shaped exchange: a datagram from `client`'s port 68 to the
/// server's port 67, and the answer back. Ok when both arrive.
fn dhcp_exchange(client: &Netns, server: &Netns, server_address: Ipv4Addr) -> anyhow::Result<()> {
    let bind = |netns: &Netns, port: u16| -> anyhow::Result<UdpSocket> {
        let socket = netns.enter(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))??;
        socket.set_read_timeout(Some(TIMEOUT))?;
        Ok(socket)
    };
    let server_socket = bind(server, 67)?;
    let client_socket = bind(client, 68)?;
    client_socket.send_to(b"DHCPDISCOVER", (server_address, 67))?;
    let mut buffer = [0; 64];
    let (len, peer) = server_socket
        .recv_from(&mut buffer)
        .context("the server got no discover")?;
    server_socket.send_to(&buffer[..len], peer)?;
    client_socket
        .recv_from(&mut buffer)
        .context("the client got no offer")?;
    Ok(())
}

/// The neighbour entry `netns` holds for `address`: resolved (it has a
/// link-layer address) when ARP went through.
fn resolved_neighbour(netns: &Netns, address: &str) -> anyhow::Result<String> {
    let output = netns.exec(&["ip", "neigh", "show", address])?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// IPv6 between the VM and its host over the vNIC (the test namespaces
/// run without it): addresses without duplicate detection, then one ping
/// from the VM. Whether it was answered, and the VM's neighbour entry for
/// the host.
fn ping_host_over_ipv6(site: &Site, vm: &str, vnic: &str) -> anyhow::Result<(bool, String)> {
    let (router, vm) = (site.network.router(), site.network.netns(vm));
    for (netns, interface, address) in [
        (router, vnic, "fd00:0:1::1/64"),
        (vm, "e0", "fd00:0:1::99/64"),
    ] {
        for setting in ["accept_dad=0", "disable_ipv6=0"] {
            let key = format!("net.ipv6.conf.{interface}.{setting}");
            netns.exec(&["sysctl", "-qw", &key])?;
        }
        netns.exec(&[
            "ip", "-6", "addr", "add", address, "dev", interface, "nodad",
        ])?;
    }
    let answered = vm
        .try_exec(&["ping", "-6", "-c", "1", "-W", "1", "fd00:0:1::1"])?
        .status
        .success();
    Ok((answered, resolved_neighbour(vm, "fd00:0:1::1")?))
}

/// The id of the kernel link pinned for `vnic`'s to-workload end, and the
/// program it runs.
fn pinned_link(bpffs: &Path, vnic: &str) -> anyhow::Result<(u64, u64)> {
    let pin = bpffs.join("zpr/links").join(format!("{vnic}:to-tcx"));
    let output = run(
        "bpftool",
        &["-j", "link", "show", "pinned", pin.to_str().unwrap()],
    )?;
    let link: Value = serde_json::from_slice(&output.stdout)?;
    Ok((
        link["id"].as_u64().context("a link id")?,
        link["prog_id"].as_u64().context("a program id")?,
    ))
}

/// Flow-log records of `unregistered` drops on `vnic`, waited for.
fn unregistered_records(flow_log: &Path, vnic: &str) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let records: Vec<Value> = fs::read_to_string(flow_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|record| record["reason"] == "unregistered" && record["vnic"] == vnic)
            .collect();
        if !records.is_empty() || started.elapsed() > Duration::from_secs(10) {
            return records;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What an unregistered vNIC passes: nothing but ARP (and DHCP when
/// `dhcp` says it is allowed).
fn assert_closed(site: &Site, vm: &str, dhcp: bool) -> anyhow::Result<()> {
    let network = &site.network;
    let (vm_netns, internet) = (network.netns(vm), network.address(INTERNET));
    assert!(
        tcp_exchange(network.netns(INTERNET), network.address(vm), VM_PORT).is_err(),
        "TCP to the quarantined VM"
    );
    assert!(
        tcp_exchange(vm_netns, network.address("lb"), 80).is_err(),
        "TCP from the quarantined VM (the load balancer takes any address on tcp/80)"
    );
    assert!(
        udp_exchange(vm_netns, internet, 80).is_err(),
        "UDP from the quarantined VM"
    );
    assert!(!pings(vm_netns, internet)?, "ICMP from the quarantined VM");
    assert_eq!(
        dhcp_exchange(vm_netns, network.netns(INTERNET), internet).is_ok(),
        dhcp,
        "DHCP through the quarantined VM's vNIC"
    );
    // The pings above needed the gateway's address, and the internet
    // host's TCP attempt needed the VM's: both resolved through the vNIC.
    let gateway = resolved_neighbour(vm_netns, "169.254.1.1")?;
    assert!(
        gateway.contains("lladdr"),
        "the VM resolved its gateway: {gateway}"
    );
    let vm_entry = resolved_neighbour(network.router(), VM_ADDRESS)?;
    assert!(
        vm_entry.contains("lladdr"),
        "the host resolved the VM: {vm_entry}"
    );
    Ok(())
}

#[test]
fn an_unregistered_vnic_is_closed_until_registered_and_again_once_removed() -> anyhow::Result<()> {
    let (mut site, flow_log) = quarantining_site(&[])?;
    let inventory = fs::read_to_string(site.inputs.inventory())?;
    let vnic = start_vm(&mut site, "vm", "zq", VM_ADDRESS)?;
    let _vm_server = EchoServer::start(site.network.netns("vm"), VM_PORT)?;
    // Beside it, a vNIC the globs do not match: left alone, it passes all.
    let other = start_vm(&mut site, "other", "zo", "10.0.2.13")?;
    let status = wait_quarantined(&site.agent, &vnic, true)?;
    assert_eq!(
        quarantined(&status),
        std::slice::from_ref(&vnic),
        "only the matched vNIC"
    );

    assert_closed(&site, "vm", false)?;
    let (answered, host) = ping_host_over_ipv6(&site, "vm", &vnic)?;
    assert!(!answered, "ICMPv6 echo from the quarantined VM");
    assert!(
        host.contains("lladdr"),
        "neighbour discovery went through: {host}"
    );
    let network = &site.network;
    assert!(tcp_exchange(network.netns("other"), network.address("lb"), 80).is_ok());
    assert!(udp_exchange(network.netns("other"), network.address(INTERNET), 80).is_ok());
    assert!(pings(network.netns("other"), network.address(INTERNET))?);

    // Fail-closed, not unprotected: the host stays protected (exit 0).
    let report = site.status_json()?;
    let listed = &report["quarantined"][0];
    assert_eq!(listed["interface"], vnic.as_str(), "{report:#}");
    assert_eq!(listed["attached"], true, "{report:#}");
    assert!(!report["attached_interfaces"].to_string().contains(&other));
    for direction in ["from_workload", "to_workload"] {
        assert!(
            counted(&report, "unregistered", direction) > 0,
            "{direction}"
        );
    }
    assert!(counted(&report, "arp", "from_workload") > 0);
    assert!(counted(&report, "neighbor-discovery", "from_workload") > 0);
    let records = unregistered_records(&flow_log, &vnic);
    assert!(!records.is_empty(), "unregistered drops in the flow log");
    assert!(
        records.iter().all(|r| r["action"] == "REJECT"),
        "{records:?}"
    );
    let text = status_text(&site)?;
    assert!(text.contains("quarantine:  zq*"), "{text}");
    assert!(text.contains(&vnic), "{text}");
    let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, 9565));
    let (code, metrics) = http_get(site.network.router(), metrics, "/metrics")?;
    assert_eq!(code, 200, "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|line| line == "zpr_vnics_quarantined 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("zpr_packets_total{")
                && line.contains("reason=\"unregistered\"")
                && !line.ends_with(" 0")),
        "{metrics}"
    );

    // The registration arrives: its policy replaces the quarantine on the
    // same link, and allows what it says (lb -> app servers on tcp/80).
    let (link, quarantine_program) = pinned_link(&site.agent.bpffs, &vnic)?;
    write_inventory(&site, &registered(&inventory, &vnic))?;
    wait_quarantined(&site.agent, &vnic, false)?;
    let (same_link, policy_program) = pinned_link(&site.agent.bpffs, &vnic)?;
    assert_eq!(same_link, link, "the vNIC keeps its link");
    assert_ne!(
        policy_program, quarantine_program,
        "and runs the policy now"
    );
    let network = &site.network;
    assert!(tcp_exchange(network.netns("lb"), network.address("vm"), VM_PORT).is_ok());
    assert!(
        tcp_exchange(network.netns(INTERNET), network.address("vm"), VM_PORT).is_err(),
        "the internet may not reach an app server"
    );
    site.status_json()?;

    // The endpoint is removed while its VM runs on: quarantined again.
    write_inventory(&site, &inventory)?;
    wait_quarantined(&site.agent, &vnic, true)?;
    assert_eq!(pinned_link(&site.agent.bpffs, &vnic)?.0, link);
    assert!(tcp_exchange(network.netns("lb"), network.address("vm"), VM_PORT).is_err());
    assert_closed(&site, "vm", false)?;
    site.assert_paths_as_in_example();
    Ok(())
}

#[test]
fn a_vnic_registered_before_it_appears_gets_its_policy_not_the_quarantine() -> anyhow::Result<()> {
    let (mut site, _) = quarantining_site(&[])?;
    let inventory = fs::read_to_string(site.inputs.inventory())?;
    let vnic = unique_name("zq");
    let before = site.agent.reloads();
    write_inventory(&site, &registered(&inventory, &vnic))?;
    let status = site.agent.wait_for_reload(before)?;
    assert!(status["last_error"].is_null(), "{status:#}");

    site.network.topology.add_host("vm", &vnic, VM_ADDRESS)?;
    let _vm_server = EchoServer::start(site.network.netns("vm"), VM_PORT)?;
    site.agent.wait_for(&format!("{vnic} attached"), |status| {
        status["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["interface"] == vnic.as_str() && !e["ifindex"].is_null())
    })?;
    let network = &site.network;
    assert!(tcp_exchange(network.netns("lb"), network.address("vm"), VM_PORT).is_ok());
    assert!(tcp_exchange(network.netns(INTERNET), network.address("vm"), VM_PORT).is_err());
    let report = site.status_json()?;
    assert_eq!(report["quarantined"], serde_json::json!([]), "{report:#}");
    for direction in ["from_workload", "to_workload"] {
        assert_eq!(
            counted(&report, "unregistered", direction),
            0,
            "{direction}"
        );
    }
    assert!(counted(&report, "no-policy", "to_workload") > 0);
    Ok(())
}

#[test]
fn with_dhcp_allowed_a_quarantined_vnic_passes_dhcp_and_nothing_else() -> anyhow::Result<()> {
    // At generic XDP this time: the quarantine's XDP program judges what
    // the VM sends (the other tests run tcx).
    let (mut site, _) = quarantining_site(&["--quarantine-allow-dhcp", "--hook", "xdp-generic"])?;
    let vnic = start_vm(&mut site, "vm", "zq", VM_ADDRESS)?;
    let _vm_server = EchoServer::start(site.network.netns("vm"), VM_PORT)?;
    wait_quarantined(&site.agent, &vnic, true)?;
    let from_xdp = site.agent.bpffs.join(format!("zpr/links/{vnic}:from-xdp"));
    assert!(from_xdp.exists(), "{} is pinned", from_xdp.display());
    // `zpr monitor` names the drops' vNIC (it has no endpoint).
    let monitor = site
        .agent
        .zpr(&[
            "monitor",
            "--output",
            "json",
            "--count",
            "1",
            "--duration",
            "10",
        ])
        .args(site.agent.paths())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    assert_closed(&site, "vm", true)?;
    let output = monitor.wait_with_output()?;
    let shown = String::from_utf8_lossy(&output.stdout);
    let event: Value = shown
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["type"] == "event")
        .with_context(|| format!("no event from zpr monitor: {shown}"))?;
    assert_eq!(event["reason"], "unregistered", "{event}");
    assert_eq!(event["interface"], vnic.as_str(), "{event}");
    let report = site.status_json()?;
    for direction in ["from_workload", "to_workload"] {
        assert!(counted(&report, "dhcp", direction) > 0, "{direction}");
    }
    let text = status_text(&site)?;
    assert!(text.contains("ARP, neighbour discovery and DHCP"), "{text}");
    Ok(())
}

#[test]
fn a_glob_that_names_no_interface_is_refused_with_what_was_expected() -> anyhow::Result<()> {
    let output = std::process::Command::new(zpr_tests::agent::zpr_binary())
        .args([
            "run",
            "--quarantine",
            "vnet[0-9]",
            "--inventory",
            "x.yaml",
            "p.zpr",
        ])
        .output()?;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("'vnet[0-9]' holds '['"), "{stderr}");
    assert!(
        stderr.contains("expected comma-separated interface-name globs"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_vm_booting_while_the_store_is_unreachable_is_quarantined() -> anyhow::Result<()> {
    // One hypervisor of a fleet, following the tenancy in etcd; its VMs'
    // vNICs are named as libvirt names them.
    let mut fleet = Fleet::start(&[("host-b", &HOST_B)], &[80], INVENTORY)?;
    let agent = &mut fleet.host_mut("host-b").agent;
    agent.kill();
    agent
        .arguments
        .extend(["--quarantine", "vnet*"].map(str::to_owned));
    agent.spawn()?;
    let pid = agent.pid().map(u64::from);
    agent.wait_for("the agent restarted with --quarantine", |status| {
        status["pid"].as_u64() == pid && status["quarantine"] == serde_json::json!(["vnet*"])
    })?;

    fleet.etcd.kill();
    fleet
        .host("host-b")
        .agent
        .wait_for("the store unreachable", |status| {
            !status["store_unreachable"].is_null()
        })?;
    let host = fleet.host_mut("host-b");
    host.topology.add_host("vm", "vnet9", VM_ADDRESS)?;
    let status = wait_quarantined(&host.agent, "vnet9", true)?;
    assert_eq!(
        quarantined(&status),
        ["vnet9"],
        "the registered vNICs are not"
    );
    let vm = &host.topology.host("vm").netns;
    let gateway: Ipv4Addr = "169.254.1.1".parse()?;
    assert!(!pings(vm, gateway)?, "ICMP from the VM to its host");
    let resolved = resolved_neighbour(vm, "169.254.1.1")?;
    assert!(resolved.contains("lladdr"), "ARP still works: {resolved}");
    Ok(())
}
