//! The `zpr` command line: one module per subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod agent_options;
mod agent_paths;
mod agent_view;
mod api_client;
pub mod attribute;
pub mod check;
pub mod compile;
pub mod completion;
pub mod configuration;
pub mod diff;
mod diff_live;
pub mod down;
mod duration;
pub mod endpoint;
mod etcd_access;
mod event_source;
pub mod explain;
pub mod fleet;
mod fleet_agent;
pub mod fmt;
mod git_revision;
pub mod hook;
mod input_files;
mod key;
mod libvirt_domain;
pub mod man_pages;
pub mod monitor;
pub mod namespace;
pub mod policy;
pub mod run;
pub mod serve;
pub mod status;
pub mod suggest;
pub mod usage;
pub mod vcn;
pub mod work_request;

#[derive(Parser, Debug)]
#[command(
    name = "zpr",
    version,
    about = "Zero Trust Packet Routing for Linux hosts",
    long_about = "Zero Trust Packet Routing for Linux hosts.\n\n\
        Tag workloads with security attributes in an inventory, write intent in the ZPR \
        policy language, and zpr enforces it per flow at each workload's virtual NIC \
        with eBPF: default deny for everything tagged."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse and validate policy files; report every problem with file:line:col.
    Check(check::Args),
    /// Print policy files in canonical form, or check that they already are.
    Fmt(fmt::Args),
    /// Compile policy + inventory and show the Plan the kernel would enforce.
    Compile(compile::Args),
    /// Explain whether a path is allowed or denied, and by which statements.
    Explain(explain::Args),
    /// The statements that the flows dropped (or audited) need: from flow logs, or watched live.
    Suggest(suggest::Args),
    /// Exactly which paths a change opens and closes (exit 0 none, 2 some, 1 error).
    Diff(diff::Args),
    /// Run the agent: load, attach to local endpoints, enforce, reload on change.
    Run(run::Args),
    /// Show what is attached, the policy generation, map fill levels and counters.
    Status(status::Args),
    /// How much each statement is used here: flows allowed, when last, since when.
    Usage(usage::Args),
    /// Stream drop (and optionally allow) events with endpoint names and reasons.
    Monitor(monitor::Args),
    /// Detach every zpr program and remove every zpr pin.
    Down(down::Args),
    /// The management API (IAM-guarded) over a store; with SQLite, also this host's agent.
    Serve(serve::Args),
    /// A fleet's nodes and the revision each enforces; confirm or restore.
    Fleet(fleet::Args),
    /// Keys that sign a fleet's store states.
    Key(key::Args),
    /// Wait until every node of a fleet enforces a revision.
    Wait(fleet::WaitArgs),
    /// ZPR policies in the store (through the API).
    Policy(policy::Args),
    /// Security-attribute namespaces (through the API).
    Namespace(namespace::Args),
    /// Security attributes of a namespace (through the API).
    Attribute(attribute::Args),
    /// Endpoints: create, list, move, delete, import, tag (through the API).
    Endpoint(endpoint::Args),
    /// VCNs (through the API).
    Vcn(vcn::Args),
    /// Hypervisor hooks that register VMs' vNICs (libvirt's qemu hook).
    Hook(hook::Args),
    /// Enable or disable enforcement (through the API).
    Configuration(configuration::Args),
    /// What each change through the API did.
    WorkRequest(work_request::Args),
    /// Print a shell completion script (bash, zsh or fish).
    Completion(completion::Args),
    /// Write the man pages (one per command) into a directory.
    #[command(hide = true)]
    ManPages(man_pages::Args),
}

/// How a command prints data.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Text,
    Json,
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if !matches!(cli.command, Command::Run(_) | Command::Serve(_)) {
        stop_quietly_when_the_reader_goes();
    }
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Fmt(args) => fmt::run(args),
        Command::Compile(args) => compile::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Suggest(args) => suggest::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Run(args) => run::run(args),
        Command::Status(args) => status::run(args),
        Command::Usage(args) => usage::run(args),
        Command::Monitor(args) => monitor::run(args),
        Command::Down(args) => down::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Fleet(args) => fleet::run(args),
        Command::Key(args) => key::run(args),
        Command::Wait(args) => fleet::wait(args),
        Command::Policy(args) => policy::run(args),
        Command::Namespace(args) => namespace::run(args),
        Command::Attribute(args) => attribute::run(args),
        Command::Endpoint(args) => endpoint::run(args),
        Command::Vcn(args) => vcn::run(args),
        Command::Hook(args) => hook::run(args),
        Command::Configuration(args) => configuration::run(args),
        Command::WorkRequest(args) => work_request::run(args),
        Command::Completion(args) => completion::run(args),
        Command::ManPages(args) => man_pages::run(args),
    }
}

/// `zpr compile | head` ends as other Unix tools do, silently, when the
/// reader closes the pipe (Rust ignores SIGPIPE, which turns the closed
/// pipe into an error or a panic). Not for the agent: a write to a peer
/// that went away must never end enforcement's process.
fn stop_quietly_when_the_reader_goes() {
    // SAFETY: restores the default disposition of one signal.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// Prints a command-line error; exits as clap does (2 for usage errors),
/// except `zpr diff`, whose 2 means "something changes": its usage errors
/// exit 1, so a CI gate never takes a typo for a change.
pub fn usage_error(error: clap::Error) -> ExitCode {
    let is_diff = std::env::args().nth(1).as_deref() == Some("diff");
    if !is_diff || !error.use_stderr() {
        error.exit();
    }
    let _ = error.print();
    ExitCode::from(1)
}
