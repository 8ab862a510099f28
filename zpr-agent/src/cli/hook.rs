//! `zpr hook libvirt-qemu`: the program to install as
//! `/etc/libvirt/hooks/qemu` (or to call from it). libvirt runs it with the
//! guest's name, the operation, the sub-operation and an extra argument,
//! and the domain's XML on stdin. When QEMU is up (`started`, and
//! `reconnect` after a libvirtd restart) it registers the guest's vNICs
//! that zpr's metadata describes, placed on this host, in one commit
//! (after a migration that moves them here); when the guest is gone
//! (`stopped`, `release`) it deletes those still placed on this host.
//!
//! Its change names one guest's vNICs, so it confirms the unprotect guard
//! for them: a host whose only VM migrates away or stops does stop
//! protecting it. It never stalls or fails libvirt: each call to the API is bounded, and
//! it exits 0 whatever happens, because a failing `started` or
//! `reconnect` hook makes libvirt kill the guest. A registration that
//! fails leaves the vNIC unregistered: closed under `zpr run
//! --quarantine`, open without it. The error goes to stderr, which
//! libvirt logs.

use std::{io::Read as _, process::ExitCode};

use serde_json::json;

use super::{api_client::ApiArgs, libvirt_domain::Domain, run::hostname};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub hook: Hook,
}

#[derive(clap::Subcommand, Debug)]
pub enum Hook {
    /// libvirt's qemu hook: GUEST OPERATION SUB-OPERATION EXTRA, the
    /// domain XML on stdin.
    LibvirtQemu(LibvirtQemu),
}

#[derive(clap::Args, Debug)]
pub struct LibvirtQemu {
    guest: String,
    operation: String,
    #[arg(default_value = "-")]
    sub_operation: String,
    #[arg(default_value = "-")]
    extra: String,
    /// This host's node name in the fleet [default: the hostname].
    #[arg(long, value_name = "NAME", env = "ZPR_NODE_NAME")]
    node_name: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

/// The longest a hook waits for the API: libvirt waits for the hook.
const HOOK_TIMEOUT_SECONDS: u64 = 10;
/// Domain XML is kilobytes; more is not a domain.
const MAX_DOMAIN_XML: u64 = 4 * 1024 * 1024;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Hook::LibvirtQemu(hook) = args.hook;
    if let Err(error) = libvirt_qemu(&hook) {
        eprintln!(
            "zpr hook: guest {} {}: {error:#}; its vNICs stay as they were (unregistered ones \
             are closed under `zpr run --quarantine`, open without it)",
            hook.guest, hook.operation
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn libvirt_qemu(hook: &LibvirtQemu) -> anyhow::Result<()> {
    let registering = match hook.operation.as_str() {
        "started" | "reconnect" => true,
        "stopped" | "release" => false,
        // prepare, start, migrate, restore, attach: nothing runs yet, or
        // nothing changes for zpr.
        _ => return Ok(()),
    };
    let mut xml = String::new();
    std::io::stdin()
        .take(MAX_DOMAIN_XML)
        .read_to_string(&mut xml)?;
    let domain = Domain::parse(&xml)?;
    let node = match &hook.node_name {
        Some(node) => node.clone(),
        None => hostname()?,
    };
    let edits = if registering {
        let upsert: Vec<_> = domain
            .registrations
            .iter()
            .map(|registered| {
                json!({
                    "name": registered.interface.endpoint,
                    "vcn": registered.vcn,
                    "addresses": registered.addresses,
                    "interface": registered.interface.device,
                    "mac": registered.interface.mac,
                    "node": node,
                    "securityAttributes": registered.attributes,
                })
            })
            .collect();
        if upsert.is_empty() {
            eprintln!(
                "zpr hook: guest {}: no zpr metadata, nothing registered",
                domain.name
            );
            return Ok(());
        }
        json!({ "upsert": upsert })
    } else {
        let names: Vec<&str> = domain
            .interfaces
            .iter()
            .map(|interface| interface.endpoint.as_str())
            .collect();
        json!({ "delete": names, "deleteOnlyOnNode": node })
    };
    let api = ApiArgs {
        timeout: hook.api.timeout.min(HOOK_TIMEOUT_SECONDS),
        // The change names one guest's vNICs: when it stops protecting
        // most of a host's endpoints, that host ran little else (the only
        // VM migrated away or shut down), not an emptied inventory. The
        // commit records the confirmation and this host's principal.
        allow_unprotect: true,
        ..hook.api.clone()
    };
    let (response, answer) =
        api.request("POST", "/endpoints/actions/bulkEdit", None, Some(&edits))?;
    if !(200..300).contains(&response.status) {
        anyhow::bail!(
            "the API refused ({}): {}",
            response.status,
            answer["message"].as_str().unwrap_or_default()
        );
    }
    eprintln!(
        "zpr hook: guest {} {} on {node}: {}",
        domain.name, hook.operation, answer
    );
    Ok(())
}
