//! `zpr explain`: is this path allowed, at the source's side and at the
//! destination's, by which statements and attributes, or why not.

use std::io::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;

use clap::ValueEnum;

use super::Output;
use super::input_files::InputFiles;
use crate::compile::{PROTOCOL_ICMP, PROTOCOL_ICMPV6, PacketFacts, explain};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub inputs: InputFiles,
    /// Source address of the connection.
    #[arg(long, value_name = "ADDR")]
    pub from: IpAddr,
    /// Destination address of the connection.
    #[arg(long, value_name = "ADDR")]
    pub to: IpAddr,
    #[arg(long, value_enum, default_value_t = ProtocolArg::Tcp)]
    pub protocol: ProtocolArg,
    /// Destination port (required for tcp and udp).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// ICMP type (default: echo request, 8 for icmp, 128 for icmpv6).
    #[arg(long, value_name = "T")]
    pub icmp_type: Option<u8>,
    /// ICMP code (default 0).
    #[arg(long, value_name = "C")]
    pub icmp_code: Option<u8>,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolArg {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
}

/// Exit 0 when the path is allowed on both sides, 1 when denied (also in
/// audit mode, where the packet would pass), 2 on usage errors.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let facts = match packet(&args) {
        Ok(facts) => facts,
        Err(usage) => {
            eprintln!("zpr explain: {usage}");
            return Ok(ExitCode::from(2));
        }
    };
    let Some(inputs) = args.inputs.load()? else {
        return Ok(ExitCode::from(1));
    };
    let explanation = explain(&inputs.inventory, &inputs.policies, &inputs.plan, &facts)?;
    let mut stdout = std::io::stdout().lock();
    match args.output {
        Output::Text => write!(stdout, "{explanation}")?,
        Output::Json => {
            serde_json::to_writer_pretty(&mut stdout, &explanation)?;
            writeln!(stdout)?;
        }
    }
    Ok(if explanation.allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn packet(args: &Args) -> Result<PacketFacts, String> {
    if args.from.is_ipv4() != args.to.is_ipv4() {
        return Err(format!(
            "--from {} and --to {} are of different IP versions",
            args.from, args.to
        ));
    }
    let icmp = matches!(args.protocol, ProtocolArg::Icmp | ProtocolArg::Icmpv6);
    if icmp && args.port.is_some() {
        return Err("--port is for tcp and udp; use --icmp-type and --icmp-code".to_owned());
    }
    if !icmp && (args.icmp_type.is_some() || args.icmp_code.is_some()) {
        return Err("--icmp-type and --icmp-code need --protocol icmp or icmpv6".to_owned());
    }
    let port = || {
        args.port
            .ok_or_else(|| "--port is required for tcp and udp".to_owned())
    };
    let (from, to) = (args.from, args.to);
    let icmp_facts = |protocol, echo_request| PacketFacts {
        protocol,
        icmp_type: args.icmp_type.unwrap_or(echo_request),
        icmp_code: args.icmp_code.unwrap_or(0),
        ..PacketFacts::other(from, to, protocol)
    };
    Ok(match args.protocol {
        ProtocolArg::Tcp => PacketFacts::tcp(from, to, port()?),
        ProtocolArg::Udp => PacketFacts::udp(from, to, port()?),
        ProtocolArg::Icmp => icmp_facts(PROTOCOL_ICMP, 8),
        ProtocolArg::Icmpv6 => icmp_facts(PROTOCOL_ICMPV6, 128),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::compile::{PROTOCOL_TCP, PROTOCOL_UDP};

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        args: Args,
    }

    fn facts(extra: &[&str]) -> Result<PacketFacts, String> {
        let mut argv = vec!["explain", "--inventory", "i.yaml", "p.zpr"];
        argv.extend_from_slice(extra);
        packet(
            &Command::try_parse_from(argv)
                .map_err(|e| e.to_string())?
                .args,
        )
    }

    #[test]
    fn packets_from_arguments() {
        let tcp = facts(&["--from", "10.0.0.1", "--to", "10.0.0.2", "--port", "22"]).unwrap();
        assert_eq!((tcp.protocol, tcp.dst_port), (PROTOCOL_TCP, 22));
        let udp = facts(&[
            "--from",
            "::1",
            "--to",
            "::2",
            "--protocol",
            "udp",
            "--port",
            "53",
        ]);
        assert_eq!(udp.unwrap().protocol, PROTOCOL_UDP);
        let ping = facts(&[
            "--from",
            "10.0.0.1",
            "--to",
            "10.0.0.2",
            "--protocol",
            "icmp",
        ]);
        let ping = ping.unwrap();
        assert_eq!(
            (ping.protocol, ping.icmp_type, ping.icmp_code),
            (PROTOCOL_ICMP, 8, 0)
        );
        let v6 = facts(&[
            "--from",
            "fd00::1",
            "--to",
            "fd00::2",
            "--protocol",
            "icmpv6",
            "--icmp-type",
            "1",
            "--icmp-code",
            "4",
        ]);
        let v6 = v6.unwrap();
        assert_eq!(
            (v6.protocol, v6.icmp_type, v6.icmp_code),
            (PROTOCOL_ICMPV6, 1, 4)
        );
    }

    #[test]
    fn usage_errors() {
        for (extra, expected) in [
            (
                &["--from", "10.0.0.1", "--to", "10.0.0.2"][..],
                "--port is required",
            ),
            (
                &["--from", "10.0.0.1", "--to", "fd00::2", "--port", "1"][..],
                "different IP versions",
            ),
            (
                &[
                    "--from",
                    "10.0.0.1",
                    "--to",
                    "10.0.0.2",
                    "--protocol",
                    "icmp",
                    "--port",
                    "1",
                ][..],
                "--port is for tcp",
            ),
            (
                &[
                    "--from",
                    "10.0.0.1",
                    "--to",
                    "10.0.0.2",
                    "--port",
                    "1",
                    "--icmp-type",
                    "8",
                ][..],
                "need --protocol icmp",
            ),
            (
                &["--from", "10.0.0.1", "--to", "10.0.0.2", "--port", "70000"][..],
                "70000",
            ),
        ] {
            let error = facts(extra).unwrap_err();
            assert!(error.contains(expected), "{extra:?}: {error}");
        }
    }
}
