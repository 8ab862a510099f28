//! `zpr compile`: the Plan the kernel would enforce, readable or as JSON.
//! Also prints the inputs' problems for `zpr explain`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use super::{Output, input_files::InputFiles};
use crate::compile::{ANY_REMOTE, Direction, Plan};
use crate::lang::address::format_prefix;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub inputs: InputFiles,
    /// How to print the Plan.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// Exit 0 with the Plan; 1 when the inventory or a policy has errors, or
/// the Plan does not fit the datapath's maps (printed to stderr); I/O
/// problems are errors (exit 2).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(inputs) = args.inputs.load()? else {
        return Ok(ExitCode::from(1));
    };
    let plan = inputs.plan;
    let mut stdout = std::io::stdout().lock();
    match args.output {
        Output::Text => stdout.write_all(render(&plan).as_bytes())?,
        Output::Json => {
            serde_json::to_writer_pretty(&mut stdout, &plan)?;
            writeln!(stdout)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The Plan as `zpr compile` prints it.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    render_into(&mut out, plan).expect("writing to a String cannot fail");
    out
}

fn render_into(out: &mut String, plan: &Plan) -> std::fmt::Result {
    let sizes = &plan.sizes;
    writeln!(out, "plan {:016x}", plan.content_hash)?;
    writeln!(
        out,
        "  {} statements, {} identities, {} host entries ({} IPv4, {} IPv6), {} prefix \
         entries ({} IPv4, {} IPv6),",
        sizes.statements,
        sizes.identities,
        sizes.hosts_v4 + sizes.hosts_v6,
        sizes.hosts_v4,
        sizes.hosts_v6,
        sizes.prefixes_v4 + sizes.prefixes_v6,
        sizes.prefixes_v4,
        sizes.prefixes_v6
    )?;
    writeln!(
        out,
        "  {} endpoints ({} local), {} policy entries ({} for local endpoints) in {} tables, \
         {} statement references",
        sizes.endpoints,
        sizes.local_endpoints,
        sizes.policy_entries,
        sizes.local_policy_entries,
        sizes.policy_tables,
        sizes.statement_references
    )?;

    writeln!(out, "\nstatements")?;
    for statement in &plan.statements {
        let stateless = if statement.stateless {
            " (stateless)"
        } else {
            ""
        };
        writeln!(out, "  {}{stateless}", statement.id)?;
    }

    writeln!(out, "\nidentities")?;
    for identity in &plan.identities {
        let selectors = if identity.selectors.is_empty() {
            "matched by no selector".to_owned()
        } else {
            format!("matched by {}", identity.selectors.join(", "))
        };
        writeln!(out, "  uid {}: {selectors}", identity.uid)?;
        if !identity.members.is_empty() {
            let members: Vec<String> = identity
                .members
                .iter()
                .map(|m| format!("{} {}", m.endpoint, m.address))
                .collect();
            writeln!(out, "    endpoints: {}", members.join(", "))?;
        }
        if !identity.prefixes.is_empty() {
            let prefixes: Vec<String> = identity.prefixes.iter().map(format_prefix).collect();
            writeln!(out, "    prefixes: {}", prefixes.join(", "))?;
        }
    }

    writeln!(out, "\nendpoints")?;
    for endpoint in &plan.endpoints {
        let place = match &endpoint.interface {
            Some(interface) => format!("on {interface}"),
            None => "remote".to_owned(),
        };
        let protection = if endpoint.protected {
            format!("protected, {}", endpoint.mode)
        } else {
            "untagged, not enforced".to_owned()
        };
        let addresses: Vec<String> = endpoint
            .addresses
            .iter()
            .map(|a| format!("{} (uid {})", a.address, a.uid))
            .collect();
        writeln!(
            out,
            "  {} {place}, {protection}: {}",
            endpoint.name,
            addresses.join(", ")
        )?;
    }

    writeln!(out, "\nhosts (exact)")?;
    for host in &plan.hosts {
        writeln!(
            out,
            "  {} -> uid {} ({})",
            host.address, host.uid, host.endpoint
        )?;
    }
    writeln!(out, "\nprefixes (longest match)")?;
    for entry in &plan.prefixes {
        writeln!(
            out,
            "  {} -> uid {}",
            format_prefix(&entry.prefix),
            entry.uid
        )?;
    }

    writeln!(
        out,
        "\npolicy (local uid, direction, remote uid, l4: statements)"
    )?;
    let mut tables: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for entry in &plan.policy {
        let key = entry.key;
        tables
            .entry((key.local, key.direction, key.remote))
            .or_default()
            .push(entry);
    }
    for ((local, direction, remote), entries) in tables {
        let remote = if remote == ANY_REMOTE {
            "any".to_owned()
        } else {
            format!("uid {remote}")
        };
        let way = match direction {
            Direction::Egress => "egress to",
            Direction::Ingress => "ingress from",
        };
        writeln!(out, "  uid {local} {way} {remote}")?;
        for entry in entries {
            let statements: Vec<String> = plan
                .statement_ids(&entry.value)
                .iter()
                .map(ToString::to_string)
                .collect();
            let stateless = if entry.value.stateless {
                " (stateless)"
            } else {
                ""
            };
            writeln!(
                out,
                "    {}: {}{stateless}",
                entry.key.l4,
                statements.join(", ")
            )?;
        }
    }
    Ok(())
}
