//! Reload latency: a statement allowing a probe's UDP port is added to a
//! generated policy set and removed again, and the time from writing the
//! policy file to the probe seeing the new verdict is measured, with the
//! agent (`zpr run` and its file watching, real packets), and at the
//! datapath level (the agent's checker: parse + check + compile, then
//! write_plan, then a BPF_PROG_TEST_RUN probe).

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use zpr_agent::{
    compile::{Decision, Direction, PacketFacts, Plan, PlanLookup, Tables, compile},
    datapath::{Datapath, Hook, InterfaceIndexes, TEST_RUN_IFINDEX, write_plan},
    inputs::{Checker, InputText},
    lang::{self, Attribute},
    synthetic,
};
use zpr_tests::{
    frames::{L4, frame},
    topology::Topology,
    traffic::EchoServer,
};

use crate::{agent::Agent, generated, interrupt, probe::Probe, scratch::Scratch};

const PROBE_PORT: u16 = 4444;
const POLICY_NAME: &str = "policy";
/// Time for the previous verdict to show before the next change.
const PAUSE: Duration = Duration::from_millis(200);

/// Milliseconds per reload, one sample each.
#[derive(Default)]
pub struct Samples {
    /// Agent: file written -> the probe's first datagram through.
    pub opened: Vec<f64>,
    /// Agent: file written -> the probe's datagrams stop coming back.
    pub closed: Vec<f64>,
    /// What the agent reports itself (input change seen -> new generation live).
    pub agent_reported: Vec<f64>,
    /// The agent's CPU time from the write to the new generation live.
    pub agent_cpu: Vec<f64>,
    /// Datapath level: inputs checked (parsed, compiled), written, first
    /// probe verdict.
    pub datapath: Vec<f64>,
    /// The checker, holding what the last reload read: parse, check,
    /// compile.
    pub check: Vec<f64>,
    pub write: Vec<f64>,
    /// The agent's peak RSS (VmHWM) once its reloads are done, bytes.
    pub agent_peak_rss: u64,
}

/// The generated set and the statement the reloads add and remove.
struct Toggle {
    synthetic: synthetic::Synthetic,
    source: Workload,
    destination: IpAddr,
    statement: String,
}

/// The probing workload: an endpoint with an interface.
struct Workload {
    name: String,
    interface: String,
    address: IpAddr,
}

impl Toggle {
    fn new(statements: usize) -> anyhow::Result<Toggle> {
        let synthetic = synthetic::generate(statements, generated::endpoints_for(statements), 1);
        let inventory = &synthetic.inventory;
        let source = inventory
            .endpoints()
            .iter()
            .find(|e| e.interface.is_some() && e.is_protected())
            .context("the generated inventory has no local endpoint")?;
        let app = source
            .attributes
            .iter()
            .find(|a| &*a.key == "app")
            .context("the local endpoint has no app attribute")?;
        let destination = inventory
            .endpoints()
            .iter()
            .find(|e| e.name != source.name && e.carries(app))
            .context("the local endpoint's app has one endpoint")?;
        let zone = inventory
            .vcn_of(source)
            .attribute
            .as_ref()
            .context("the local endpoint's VCN has no attribute")?;
        let text = |a: &Attribute| format!("{}.{}:{}", a.namespace(), a.key, a.value);
        let statement = format!(
            "in {} VCN allow {} endpoints to connect to {} endpoints with protocol='udp/{PROBE_PORT}'\n",
            text(zone),
            text(app),
            text(app)
        );
        let v4 = |addresses: &[IpAddr]| addresses.iter().copied().find(IpAddr::is_ipv4);
        let toggle = Toggle {
            source: Workload {
                name: source.name.clone(),
                interface: source.interface.clone().expect("filtered on interface"),
                address: v4(&source.addresses).context("no IPv4 address")?,
            },
            destination: v4(&destination.addresses).context("no IPv4 address")?,
            statement,
            synthetic,
        };
        toggle.check()?;
        Ok(toggle)
    }

    fn policy(&self, with_statement: bool) -> String {
        let mut text = self.synthetic.policy_text.clone();
        if with_statement {
            text += &self.statement;
        }
        text
    }

    /// The statement alone decides the probe's verdict.
    fn check(&self) -> anyhow::Result<()> {
        for allowed in [false, true] {
            let policy = parse(&self.policy(allowed))?;
            let plan = compile(&[policy], &self.synthetic.inventory);
            let facts = PacketFacts::udp(self.source.address, self.destination, PROBE_PORT);
            let verdict =
                PlanLookup::new(&plan).decide(&facts, Direction::Egress, &self.source.name)?;
            let passes = matches!(verdict.decision, Decision::Allow { .. });
            ensure!(
                passes == allowed,
                "the probe statement does not decide the probe"
            );
        }
        Ok(())
    }
}

fn parse(text: &str) -> anyhow::Result<lang::Policy> {
    match lang::parse(POLICY_NAME, text) {
        Ok(parsed) => Ok(parsed.policy),
        Err(diagnostics) => bail!("the generated policy does not parse: {diagnostics:?}"),
    }
}

pub fn measure(zpr: &Path, statements: usize, reloads: usize) -> anyhow::Result<Samples> {
    let toggle = Toggle::new(statements)?;
    let mut samples = Samples::default();
    eprintln!("control plane: reloads through the agent at {statements} statements");
    through_agent(zpr, &toggle, reloads, &mut samples)?;
    eprintln!("control plane: reloads at the datapath level at {statements} statements");
    at_datapath(&toggle, reloads, &mut samples)?;
    Ok(samples)
}

fn through_agent(
    zpr: &Path,
    toggle: &Toggle,
    reloads: usize,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let scratch = Scratch::new("reload")?;
    let inventory = scratch.write("inventory.yaml", &toggle.synthetic.inventory_yaml)?;
    let policy_file = format!("{POLICY_NAME}.zpr");
    let policy = scratch.write(&policy_file, &toggle.policy(false))?;
    let source = &toggle.source;
    let topology = Topology::new(&[
        ("source", &source.interface, &source.address.to_string()),
        ("destination", "zb-dest", &toggle.destination.to_string()),
    ])?;
    let _server = EchoServer::start(&topology.host("destination").netns, PROBE_PORT)?;
    let agent = Agent::start(zpr, &topology.router, &inventory, &policy, &scratch)?;
    let probe = Probe::start(
        &topology.host("source").netns,
        SocketAddr::new(toggle.destination, PROBE_PORT),
    )?;
    let mut generation = 1;
    for reload in 0..reloads {
        interrupt::checkpoint()?;
        let allow = reload % 2 == 0;
        std::thread::sleep(PAUSE);
        let cpu_before = agent.cpu_ms()?;
        let since = Instant::now();
        scratch.write(&policy_file, &toggle.policy(allow))?;
        let seen = if allow {
            probe.opened_after(since)
        } else {
            probe.closed_after(since)
        }
        .with_context(|| format!("reload {reload} (allow: {allow})"))?;
        generation += 1;
        let status = agent.wait_for_generation(generation)?;
        samples.agent_cpu.push(agent.cpu_ms()? - cpu_before);
        let series = if allow {
            &mut samples.opened
        } else {
            &mut samples.closed
        };
        series.push(millis(seen));
        samples
            .agent_reported
            .extend(status.reload_ms.iter().copied());
    }
    samples.agent_peak_rss = agent.peak_rss()?;
    Ok(())
}

fn at_datapath(toggle: &Toggle, reloads: usize, samples: &mut Samples) -> anyhow::Result<()> {
    let source = &toggle.source;
    let interfaces = InterfaceIndexes::from([(source.interface.clone(), TEST_RUN_IFINDEX)]);
    let mut datapath = Datapath::load()?;
    let inventory = InputText::inventory(
        "inventory.yaml".to_owned(),
        toggle.synthetic.inventory_yaml.clone(),
    );
    let policy = |allow: bool| {
        InputText::policy(
            format!("{POLICY_NAME}.zpr"),
            POLICY_NAME.to_owned(),
            toggle.policy(allow),
        )
    };
    let mut checker = Checker::remembering(Tables::Local);
    write_plan(
        &mut datapath,
        &checked(&mut checker, &inventory, &policy(false))?,
        &interfaces,
    )?;
    let probe = frame(
        source.address,
        toggle.destination,
        L4::Udp {
            src_port: 5555,
            dst_port: PROBE_PORT,
        },
    );
    for reload in 0..reloads {
        let allow = reload % 2 == 0;
        let text = policy(allow);
        let since = Instant::now();
        let plan = checked(&mut checker, &inventory, &text)?;
        let compiled = Instant::now();
        write_plan(&mut datapath, &plan, &interfaces)?;
        let written = Instant::now();
        let verdict = datapath.test_run(Hook::FromWorkloadXdp, &probe, 1)?;
        let seen = Instant::now();
        ensure!(verdict.passed == allow, "the probe saw the old verdict");
        samples.check.push(millis(compiled - since));
        samples.write.push(millis(written - compiled));
        samples.datapath.push(millis(seen - since));
    }
    Ok(())
}

/// The Plan the agent's checker makes of the inputs.
fn checked(
    checker: &mut Checker,
    inventory: &InputText,
    policy: &InputText,
) -> anyhow::Result<Plan> {
    let loaded = checker.check(Some(inventory), std::slice::from_ref(policy));
    match loaded.inputs {
        Some(inputs) => Ok(inputs.plan),
        None => bail!("the generated inputs do not check:\n{}", loaded.report),
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
