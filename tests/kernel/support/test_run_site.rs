//! A datapath loaded with one policy over one inventory whose local
//! endpoint sits on BPF_PROG_TEST_RUN's interface, and crafted frames run
//! through its programs with the verdict and the reason counted checked.
//! Included by the kernel tests that use it (`#[path]`): the tests' library
//! cannot depend on zpr-agent (xtask, which zpr-agent builds with, uses it).

use zpr_agent::{
    compile,
    datapath::{Datapath, Hook, InterfaceIndexes, TEST_RUN_IFINDEX, read_counters, write_plan},
    inventory::Inventory,
    lang,
};
use zpr_common::{Direction, counters::Reason};

/// The interface name inventories give the endpoint under test.
pub const TEST_INTERFACE: &str = "test-lo";

pub struct TestRunSite {
    pub datapath: Datapath,
}

impl TestRunSite {
    /// Loads the programs and writes the Plan of `policy` over `inventory`
    /// (YAML), with [`TEST_INTERFACE`] as the test run's interface.
    pub fn new(inventory: &str, policy: &str) -> anyhow::Result<TestRunSite> {
        let inventory = Inventory::from_yaml_str(inventory).map_err(|e| anyhow::anyhow!("{e}"))?;
        let policy = lang::parse("test-run", policy)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .policy;
        let plan = compile::compile(&[policy], &inventory);
        let mut datapath = Datapath::load()?;
        let interfaces = InterfaceIndexes::from([(TEST_INTERFACE.to_owned(), TEST_RUN_IFINDEX)]);
        write_plan(&mut datapath, &plan, &interfaces)?;
        Ok(TestRunSite { datapath })
    }

    /// Runs `frame` through `hook`; asserts the verdict and the one reason
    /// counted.
    pub fn expect(&mut self, what: &str, hook: Hook, frame: &[u8], reason: Reason, passes: bool) {
        let before = read_counters(&self.datapath).unwrap();
        let result = self
            .datapath
            .test_run(hook, frame, 1)
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let after = read_counters(&self.datapath).unwrap();
        let direction = match hook {
            Hook::ToWorkloadTc => Direction::ToWorkload,
            _ => Direction::FromWorkload,
        };
        let counted: Vec<Reason> = Reason::ALL
            .into_iter()
            .filter(|&r| after.get(direction, r).packets != before.get(direction, r).packets)
            .collect();
        assert_eq!(counted, vec![reason], "{what}: counted under");
        assert_eq!(result.passed, passes, "{what}: passes");
    }
}
