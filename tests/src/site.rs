//! The three-tier network with `zpr run` enforcing the example on it, and
//! the example's inputs in a scratch directory the test may rewrite.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
};

use crate::{
    agent::{AgentProcess, zpr_binary},
    three_tier::{Network, PATHS, example},
    traffic::tcp_exchange,
    unique_name,
};

/// A statement no path of the tests uses: toggled to force reloads.
pub const UNRELATED: &str = "allow ocvtc002.db:customer-db endpoints in ocvtc002.networks:back-end VCN to connect to ocvtc002.apps:server endpoints with protocol='udp/9999' in ocvtc002.networks:front-end VCN";
/// Opens internet -> app servers on tcp/80.
pub const OPENING: &str = "In ocvtc002.networks:front-end VCN allow '0.0.0.0/0' to connect to ocvtc002.apps:server endpoints with protocol='tcp/80'";

/// A scratch directory with copies of the example inputs, removed on drop.
pub struct Inputs {
    pub dir: PathBuf,
}

impl Inputs {
    pub fn new() -> anyhow::Result<Inputs> {
        let dir = std::env::temp_dir().join(unique_name("zpa"));
        fs::create_dir_all(&dir)?;
        for file in ["inventory.yaml", "three-tier.zpr"] {
            fs::copy(example(file), dir.join(file))?;
        }
        Ok(Inputs { dir })
    }

    pub fn inventory(&self) -> PathBuf {
        self.dir.join("inventory.yaml")
    }

    pub fn policy(&self) -> PathBuf {
        self.dir.join("three-tier.zpr")
    }

    pub fn original_policy(&self) -> String {
        fs::read_to_string(example("three-tier.zpr")).unwrap()
    }

    /// The example policy with statement 2 (lb -> app servers) blanked,
    /// so the other statements keep their ids.
    pub fn policy_without_lb_to_apps(&self) -> String {
        self.original_policy()
            .lines()
            .enumerate()
            .map(|(index, line)| {
                if index == 1 {
                    "\n".to_owned()
                } else {
                    format!("{line}\n")
                }
            })
            .collect()
    }

    /// `zpr run` on these inputs, in `network`'s router namespace.
    pub fn start_agent(&self, network: &Network) -> anyhow::Result<AgentProcess> {
        let mut agent = self.prepare_agent(network, &self.dir);
        agent.spawn()?;
        Ok(agent)
    }

    /// `zpr run` on these inputs, not started yet; its state goes under `state`.
    pub fn prepare_agent(&self, network: &Network, state: &Path) -> AgentProcess {
        AgentProcess::prepare(
            &zpr_binary(),
            network.router(),
            &self.inventory(),
            &[self.policy()],
            state,
        )
    }

    /// Rewrites the policy the way editors do: a new file renamed over it.
    pub fn write_policy(&self, text: &str) -> anyhow::Result<()> {
        let temporary = self.dir.join(".three-tier.zpr.swp");
        fs::write(&temporary, text)?;
        fs::rename(&temporary, self.policy())?;
        Ok(())
    }
}

impl Drop for Inputs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub struct Site {
    pub network: Network,
    pub inputs: Inputs,
    pub agent: AgentProcess,
}

impl Site {
    /// The network, and the agent enforcing the example on it.
    pub fn start() -> anyhow::Result<Site> {
        Site::start_with(|_, _| Ok(()))
    }

    /// As [`Site::start`], with the agent adjusted (its arguments, say)
    /// once the network exists and before it starts.
    pub fn start_with(
        configure: impl FnOnce(&Network, &mut AgentProcess) -> anyhow::Result<()>,
    ) -> anyhow::Result<Site> {
        let network = Network::start()?;
        let inputs = Inputs::new()?;
        let mut agent = inputs.prepare_agent(&network, &inputs.dir);
        configure(&network, &mut agent)?;
        agent.spawn()?;
        agent.wait_for_generation(1)?;
        Ok(Site {
            network,
            inputs,
            agent,
        })
    }

    pub fn works(&self, from: &str, to: &str, port: u16) -> bool {
        tcp_exchange(self.network.netns(from), self.network.address(to), port).is_ok()
    }

    pub fn assert_paths_as_in_example(&self) {
        for (from, to, port, allowed) in PATHS {
            assert_eq!(self.works(from, to, port), allowed, "{from} -> {to}:{port}");
        }
    }

    /// `zpr status --output json`, which must say the host is protected.
    pub fn status_json(&self) -> anyhow::Result<serde_json::Value> {
        let (code, report) = self.agent.status_report()?;
        anyhow::ensure!(code == 0, "zpr status exited {code}: {report:#}");
        Ok(report)
    }
}

/// What [`while_probing_denied`] saw.
pub struct Probed<R> {
    /// What the body returned.
    pub result: R,
    /// Denied connections that got through.
    pub through: usize,
    pub tries: usize,
}

/// Runs `body` while another thread tries the denied internet -> app-1:80
/// over and over, counting the connections that get through.
pub fn while_probing_denied<R>(
    network: &Network,
    body: impl FnOnce() -> anyhow::Result<R>,
) -> anyhow::Result<Probed<R>> {
    let stop = AtomicBool::new(false);
    let (through, tries) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if tcp_exchange(network.netns("internet"), network.address("app-1"), 80).is_ok() {
                    through.fetch_add(1, Ordering::Relaxed);
                }
                tries.fetch_add(1, Ordering::Relaxed);
            }
        });
        let result = body();
        // Stop the probe whatever happened, or the scope never ends.
        stop.store(true, Ordering::Relaxed);
        result
    })?;
    Ok(Probed {
        result,
        through: through.into_inner(),
        tries: tries.into_inner(),
    })
}
