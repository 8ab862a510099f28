//! Control plane: compile time by policy size, reload latency, and the
//! agent's peak memory.

use std::{path::Path, time::Instant};

use anyhow::Context as _;

use zpr_agent::{compile::compile, synthetic};
use zpr_tests::Netns;

use crate::{
    agent::Agent,
    generated::endpoints_for,
    interrupt, reload,
    report::{Bound, Figure, Section, Target, Unit, listed},
    scratch::Scratch,
    stats::Summary,
};

const COMPILE_LIMIT_MS: f64 = 2_000.0;
const COMPILE_TARGET_STATEMENTS: usize = 100_000;
const RELOAD_LIMIT_MS: f64 = 100.0;
const RELOAD_CPU_LIMIT_MS: f64 = 50.0;
/// A one-statement change at the largest size costs at most this many
/// times what it costs at the smallest (the agent's own reload_ms).
const RELOAD_SCALE_LIMIT: f64 = 3.0;
const CPU_TARGET_STATEMENTS: usize = 100_000;
const FIRST_APPLY_LIMIT_MS: f64 = 1_000.0;
const PEAK_RSS_LIMIT_MIB: f64 = 150.0;

pub struct Settings {
    /// Statement counts whose compile time is measured, smallest first.
    pub compile_sizes: Vec<usize>,
    pub rounds: usize,
    /// Statement counts reloads are measured at.
    pub reload_statements: Vec<usize>,
    /// Policy changes per reload measurement (half open the probe's path,
    /// half close it).
    pub reloads: usize,
    pub memory_statements: usize,
}

pub fn measure(settings: &Settings, zpr: &Path) -> anyhow::Result<(Section, Vec<Target>)> {
    let mut figures = Vec::new();
    let mut targets = Vec::new();

    let inputs: Vec<_> = settings
        .compile_sizes
        .iter()
        .map(|&n| (n, synthetic::generate(n, endpoints_for(n), 1)))
        .collect();
    let mut compile_ms = vec![Vec::new(); inputs.len()];
    for round in 1..=settings.rounds {
        interrupt::checkpoint()?;
        eprintln!("control plane: compile, round {round}/{}", settings.rounds);
        for (samples, (_, synthetic)) in compile_ms.iter_mut().zip(&inputs) {
            // An untimed compile of the same set first: the allocator then
            // holds what this set needs, whatever size ran before it.
            drop(compile(&synthetic.policies, &synthetic.inventory));
            let started = Instant::now();
            let plan = compile(&synthetic.policies, &synthetic.inventory);
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
            drop(plan);
        }
    }
    for ((statements, _), samples) in inputs.iter().zip(&compile_ms) {
        let figure = Figure::new(
            format!("compile {statements} statements"),
            Unit::Milliseconds,
            samples.clone(),
        );
        if *statements == COMPILE_TARGET_STATEMENTS {
            targets.push(Target::check(
                format!("compile {statements} statements < {COMPILE_LIMIT_MS} ms"),
                Bound::AtMost(COMPILE_LIMIT_MS),
                figure.summary.median,
            ));
        }
        figures.push(figure);
    }

    let mut reported_medians = Vec::new();
    let mut reloaded_peak_rss = Vec::new();
    for &n in &settings.reload_statements {
        let reloads = reload::measure(zpr, n, settings.reloads)?;
        reported_medians.push((n, Summary::of(&reloads.agent_reported).median));
        reloaded_peak_rss.push((n, reloads.agent_peak_rss));
        for (series, name) in [
            (&reloads.opened, "path opened"),
            (&reloads.closed, "path closed"),
        ] {
            let figure = Figure::new(
                format!("reload at {n} statements, agent: policy file written → {name} (probe)"),
                Unit::Milliseconds,
                series.clone(),
            );
            targets.push(Target::check(
                format!("reload at {n} statements < {RELOAD_LIMIT_MS} ms ({name})"),
                Bound::AtMost(RELOAD_LIMIT_MS),
                figure.summary.median,
            ));
            figures.push(figure);
        }
        let cpu = Figure::new(
            format!("reload at {n} statements, agent's CPU time (write → generation live)"),
            Unit::Milliseconds,
            reloads.agent_cpu.clone(),
        );
        if n == CPU_TARGET_STATEMENTS {
            targets.push(Target::check(
                format!("agent CPU for a reload at {n} statements < {RELOAD_CPU_LIMIT_MS} ms"),
                Bound::AtMost(RELOAD_CPU_LIMIT_MS),
                cpu.summary.median,
            ));
        }
        figures.push(cpu);
        let labelled = [
            (
                &reloads.agent_reported,
                "agent's own reload_ms (change seen → generation live)",
            ),
            (
                &reloads.datapath,
                "datapath level: inputs checked → written → probe verdict",
            ),
            (
                &reloads.check,
                "datapath level: the agent's checker (parse, check, compile)",
            ),
            (&reloads.write, "datapath level: write_plan"),
        ];
        for (series, name) in labelled {
            figures.push(Figure::new(
                format!("reload at {n} statements, {name}"),
                Unit::Milliseconds,
                series.clone(),
            ));
        }
    }

    if let (Some(&(smallest, at_smallest)), Some(&(largest, at_largest))) = (
        reported_medians.iter().min_by_key(|(n, _)| *n),
        reported_medians.iter().max_by_key(|(n, _)| *n),
    ) && smallest < largest
    {
        targets.push(Target::check(
            format!(
                "reload at {largest} / at {smallest} statements ≤ {RELOAD_SCALE_LIMIT} (the \
                 agent's own reload_ms, medians)"
            ),
            Bound::AtMost(RELOAD_SCALE_LIMIT),
            at_largest / at_smallest,
        ));
    }

    let statements = settings.memory_statements;
    let after_reloads = reloaded_peak_rss
        .iter()
        .find(|(n, _)| *n == statements)
        .map(|&(_, bytes)| bytes as f64 / (1024.0 * 1024.0));
    // A start on two cores varies by a third from one to the next: one
    // per round.
    let starts = (0..settings.rounds)
        .map(|_| agent_start(zpr, statements))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first_apply = Figure::new(
        format!("agent start at {statements} statements: first policy applied (its reload_ms)"),
        Unit::Milliseconds,
        starts.iter().map(|start| start.first_reload_ms).collect(),
    );
    let peak_rss = Figure::new(
        format!("agent peak RSS (`zpr run`, VmHWM) at {statements} statements"),
        Unit::Mebibytes,
        starts
            .iter()
            .map(|start| start.peak_rss as f64 / (1024.0 * 1024.0))
            .collect(),
    );
    targets.push(Target::check(
        format!("first apply at {statements} statements < {FIRST_APPLY_LIMIT_MS} ms"),
        Bound::AtMost(FIRST_APPLY_LIMIT_MS),
        first_apply.summary.median,
    ));
    // The agent's peak is its peak in service: after reloads when they
    // were measured at this size (a reload holds two readings at once).
    let reloaded_peak = after_reloads.map(|mib| {
        Figure::new(
            format!(
                "agent peak RSS (`zpr run`, VmHWM) at {statements} statements after its {} reloads",
                settings.reloads
            ),
            Unit::Mebibytes,
            vec![mib],
        )
    });
    let peak_in_service = reloaded_peak
        .as_ref()
        .map_or(peak_rss.summary.median, |figure| {
            figure.summary.median.max(peak_rss.summary.median)
        });
    targets.push(Target::check(
        format!(
            "agent peak RSS at {statements} statements, at start and across reloads < \
             {PEAK_RSS_LIMIT_MIB} MiB"
        ),
        Bound::AtMost(PEAK_RSS_LIMIT_MIB),
        peak_in_service,
    ));
    figures.push(first_apply);
    figures.push(peak_rss);
    figures.extend(reloaded_peak);

    let method = vec![
        format!(
            "Compile: `compile()` of generated policy sets (zpr-agent's synthetic generator, \
             seed 1, statements / 10 endpoints), {} rounds, sizes interleaved, each timed \
             compile after an untimed one of the same set.",
            settings.rounds
        ),
        format!(
            "Reload through the agent: `zpr run` in a router namespace with the local \
             endpoint's vNIC (a veth to the workload's namespace) and a destination \
             namespace running a UDP echo server; a probe in the workload sends a numbered \
             datagram every 100 µs. The policy file ({} generated statements) is rewritten \
             (atomic rename) to add, then remove, one statement allowing the probe's port, \
             {} times. Opened: time from the write to the send time of the first datagram that \
             came back; closed: to the first of a run of datagrams that never came back. This \
             includes the agent's 5 ms settling of file events. The agent's CPU time: its \
             utime + stime (/proc, clock ticks of 10 ms) from the write to the new generation \
             live. The datapath-level figures do the agent's work \
             without inotify or settling: the agent's checker (holding the last reload's \
             reading) parses, checks and compiles, then write_plan, one BPF_PROG_TEST_RUN \
             probe of the flow.",
            listed(&settings.reload_statements),
            settings.reloads
        ),
        format!(
            "Agent start and memory: `zpr run` with a generated set of {statements} statements \
             in a namespace without its vNICs (it reads, compiles and writes the Plan, \
             attaches nothing), started {} times; the reload_ms it reports for that first \
             policy, and its VmHWM once the first generation is live. The reloading agent's \
             VmHWM after its reloads at the same size is its peak in service: the RSS target \
             takes the larger.",
            settings.rounds
        ),
    ];
    let section = Section {
        title: "Control plane".to_owned(),
        method,
        figures,
    };
    Ok((section, targets))
}

/// What starting the agent on a generated set cost.
struct AgentStart {
    first_reload_ms: f64,
    /// Bytes.
    peak_rss: u64,
}

fn agent_start(zpr: &Path, statements: usize) -> anyhow::Result<AgentStart> {
    eprintln!("control plane: agent start and memory at {statements} statements");
    let synthetic = synthetic::generate(statements, endpoints_for(statements), 1);
    let scratch = Scratch::new("memory")?;
    let inventory = scratch.write("inventory.yaml", &synthetic.inventory_yaml)?;
    let policy = scratch.write("policy.zpr", &synthetic.policy_text)?;
    let netns = Netns::new()?;
    let agent = Agent::start(zpr, &netns, &inventory, &policy, &scratch)?;
    Ok(AgentStart {
        first_reload_ms: agent
            .wait_for_generation(1)?
            .reload_ms
            .context("the agent reports no reload time")?,
        peak_rss: agent.peak_rss()?,
    })
}
