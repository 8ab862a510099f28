//! The three-tier network with `zpr run` enforcing the example on it, and
//! the example's inputs in a scratch directory the test may rewrite.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
};

use crate::{
    agent::{AgentProcess, zpr_binary},
    three_tier::{Network, example},
    traffic::{connect, echo},
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
        self.replace(&self.policy(), text)
    }

    /// Rewrites the inventory as [`Inputs::write_policy`] does the policy.
    pub fn write_inventory(&self, text: &str) -> anyhow::Result<()> {
        self.replace(&self.inventory(), text)
    }

    fn replace(&self, path: &Path, text: &str) -> anyhow::Result<()> {
        let temporary = self.dir.join(".input.swp");
        fs::write(&temporary, text)?;
        fs::rename(&temporary, path)?;
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
        self.network.works(from, to, port)
    }

    pub fn assert_paths_as_in_example(&self) {
        self.network.assert_paths_as_in_example();
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

impl<R> Probed<R> {
    /// Fails unless the denied path was tried, and never got through.
    pub fn assert_denied_throughout(&self, while_what: &str) {
        assert!(
            self.tries > 0,
            "{while_what}: the denied path was never tried"
        );
        assert_eq!(
            self.through, 0,
            "{while_what}: a denied connection got through ({} of {} tries)",
            self.through, self.tries
        );
    }
}

/// Runs `body` while another thread tries the denied internet -> app-1:80
/// over and over, counting the connections that get through.
pub fn while_probing_denied<R>(
    network: &Network,
    body: impl FnOnce() -> anyhow::Result<R>,
) -> anyhow::Result<Probed<R>> {
    let (result, through, tries) =
        while_repeating(body, || network.works("internet", "app-1", 80))?;
    Ok(Probed {
        result,
        through,
        tries,
    })
}

/// What [`while_holding_allowed`] saw.
pub struct Held<R> {
    /// What the body returned.
    pub result: R,
    /// Round trips over the held connection that came back, and all tried.
    pub echoed: usize,
    pub tries: usize,
}

/// Runs `body` while another thread sends over one allowed connection
/// (lb -> app-1:80, opened first) over and over, counting the round trips
/// that come back within [`crate::traffic::TIMEOUT`]: one that does not was
/// cut or stalled.
pub fn while_holding_allowed<R>(
    network: &Network,
    body: impl FnOnce() -> anyhow::Result<R>,
) -> anyhow::Result<Held<R>> {
    let mut held = connect(network.netns("lb"), None, network.address("app-1"), 80)?;
    let (result, echoed, tries) =
        while_repeating(body, || echo(&mut held, b"held across the change").is_ok())?;
    Ok(Held {
        result,
        echoed,
        tries,
    })
}

/// Runs `body` while another thread calls `attempt` over and over; returns
/// what the body returned, how many attempts succeeded, and how many ran.
fn while_repeating<R>(
    body: impl FnOnce() -> anyhow::Result<R>,
    mut attempt: impl FnMut() -> bool + Send,
) -> anyhow::Result<(R, usize, usize)> {
    let stop = AtomicBool::new(false);
    let (succeeded, tries) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if attempt() {
                    succeeded.fetch_add(1, Ordering::Relaxed);
                }
                tries.fetch_add(1, Ordering::Relaxed);
            }
        });
        let result = body();
        // Stop the attempts whatever happened, or the scope never ends.
        stop.store(true, Ordering::Relaxed);
        result
    })?;
    Ok((result, succeeded.into_inner(), tries.into_inner()))
}
