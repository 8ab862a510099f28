//! `cargo xtask`: set up, build and test zpr.

mod bench;
mod build;
mod command;
mod demo;
mod package;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Set up, build and test zpr")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what zpr needs: the pinned toolchain, Debian packages for the
    /// tests, and bpf-linker built against the toolchain's LLVM. Idempotent.
    Setup,
    /// Build the eBPF object and the `zpr` binary that embeds it (release).
    Build,
    /// Run every test: unit tests, then the kernel tests (root).
    Test,
    /// The three-tier walkthrough on a real topology in network namespaces
    /// (root): every path tried, a denial explained, drops monitored, a
    /// live reload.
    Demo,
    /// The man pages, from zpr's own command-line definitions, into
    /// target/man.
    Man,
    /// A Debian package (target/deb): binary, systemd unit (enabled, not
    /// started), completions, man pages.
    Deb {
        /// Then install it here, check it, and purge it (root).
        #[arg(long)]
        check_install: bool,
    },
    /// The benchmarks (root): per-packet cost next to minimal programs,
    /// scaling, throughput and deny floods next to iptables and nftables,
    /// control-plane times; a full run records BENCHMARKS.md.
    Bench {
        /// CI smoke run (under two minutes); records nothing.
        #[arg(long)]
        quick: bool,
        /// Run only these parts (micro, throughput, flood, control-plane,
        /// diff, conntrack, fleet, signing, scrape; comma-separated);
        /// records nothing.
        #[arg(long, value_name = "PARTS")]
        only: Option<String>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Build => setup::run().and_then(|()| build::run().map(|_| ())),
        Task::Test => setup::run().and_then(|()| test::run()),
        Task::Demo => setup::run().and_then(|()| demo::run()),
        Task::Man => setup::run().and_then(|()| package::man().map(drop)),
        Task::Deb { check_install } => setup::run().and_then(|()| {
            let deb = package::deb()?;
            if check_install {
                package::check_install(&deb)?;
            }
            Ok(())
        }),
        Task::Bench { quick, only } => {
            setup::run().and_then(|()| bench::run(quick, only.as_deref()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
