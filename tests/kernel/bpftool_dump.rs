//! Maps carry BTF: `bpftool map dump` of a pinned map prints typed fields;
//! removing the pins leaves nothing behind; a reload that writes only the
//! difference leaves the maps as a full write would.

use std::path::{Path, PathBuf};

use zpr_agent::{
    compile,
    datapath::{
        Adoption, ConntrackSize, Datapath, InterfaceIndexes, PinLayout, ensure_bpffs,
        prime_idle_slot, remove_all, write_plan,
    },
    inventory::Inventory,
    lang, synthetic,
};
use zpr_common::maps;
use zpr_tests::{run, unique_name};

/// A bpffs directory of this test, removed (pins and all) on drop.
struct Bpffs(PathBuf);

impl Bpffs {
    fn new() -> anyhow::Result<Bpffs> {
        let bpffs = Bpffs(Path::new("/sys/fs/bpf").join(unique_name("zprt")));
        ensure_bpffs(&bpffs.0)?;
        Ok(bpffs)
    }

    fn pins(&self) -> PinLayout {
        PinLayout::new(&self.0)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = remove_all(&PinLayout::new(&self.0));
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dump(pins: &PinLayout, map: &str) -> anyhow::Result<serde_json::Value> {
    let path = pins.map(map);
    let output = run(
        "bpftool",
        &["-j", "map", "dump", "pinned", path.to_str().unwrap()],
    )?;
    Ok(serde_json::from_slice(&output.stdout)?)
}

#[test]
fn pinned_maps_dump_typed_fields() -> anyhow::Result<()> {
    let bpffs = Bpffs::new()?;
    let pins = bpffs.pins();

    let inventory = Inventory::from_yaml_str(
        "namespaces: [{ name: t, attributes: [{ key: app, type: list, values: [web] }, { key: net, type: list, values: [a] }] }]\n\
         vcns: [{ name: a, cidrs: [10.0.0.0/16], security-attribute: 't.net:a' }]\n\
         endpoints: [{ name: web, vcn: a, addresses: [10.0.0.5], interface: lo, security-attributes: ['t.app:web'] }]",
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let policy = lang::parse(
        "dump",
        "in t.net:a VCN allow '0.0.0.0/0' to connect to t.app:web endpoints with protocol='tcp/443'",
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?
    .policy;
    let plan = compile::compile(&[policy], &inventory);
    let (mut datapath, adoption) = Datapath::open_pinned(&pins, ConntrackSize::default())?;
    assert_eq!(adoption, Adoption::Fresh);
    write_plan(
        &mut datapath,
        &plan,
        &InterfaceIndexes::from([("lo".to_owned(), 1)]),
    )?;

    let endpoints = dump(&pins, maps::ENDPOINTS)?;
    let entry = &endpoints[0]["formatted"];
    assert_eq!(entry["key"]["ifindex"], 1, "typed key: {endpoints}");
    assert!(
        entry["value"]["flags"].is_number(),
        "typed value: {endpoints}"
    );

    // The endpoint's counters row: per CPU, packets and bytes by reason
    // number in each direction.
    let row = &entry["value"]["counter_row"];
    assert_eq!(row, 1, "the first endpoint's row: {endpoints}");
    let counters = dump(&pins, maps::COUNTERS)?;
    let counted = counters
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["formatted"])
        .find(|entry| entry["key"] == *row)
        .unwrap_or_else(|| panic!("no row {row} in {counters}"));
    let on_cpu0 = &counted["values"][0]["value"];
    for direction in ["from_workload", "to_workload"] {
        let by_reason = on_cpu0[direction].as_array().unwrap();
        assert_eq!(by_reason.len(), zpr_common::counters::Reason::COUNT);
        assert!(by_reason[0]["packets"].is_number(), "{on_cpu0}");
        assert!(by_reason[0]["bytes"].is_number(), "{on_cpu0}");
    }

    let policy = dump(&pins, maps::POLICY)?;
    let text = policy.to_string();
    for field in ["local_uid", "remote_uid", "protocol", "rule", "flags"] {
        assert!(text.contains(&format!("\"{field}\"")), "{field} in {text}");
    }
    assert!(
        policy
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["formatted"]["key"]["data"]["protocol"] == 6),
        "a tcp entry: {text}"
    );
    let config = dump(&pins, maps::CONFIG)?;
    assert_eq!(config[0]["formatted"]["value"]["generation"], 1, "{config}");

    // A second open adopts the pinned maps and what they hold.
    drop(datapath);
    let (_, adoption) = Datapath::open_pinned(&pins, ConntrackSize::default())?;
    assert_eq!(adoption, Adoption::Adopted { generation: 1 });

    let removed = remove_all(&pins)?;
    assert_eq!(removed.maps, maps::ALL.len());
    assert!(
        !pins.root().exists(),
        "nothing is left under {}",
        pins.root().display()
    );
    Ok(())
}

/// The entries of `map` that belong to Plan slot `slot`, each as its JSON
/// text, sorted.
fn slot_entries(pins: &PinLayout, map: &str, slot: u64) -> anyhow::Result<Vec<String>> {
    let entries = dump(pins, map)?;
    let mut texts: Vec<String> = entries
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("{map}: not a list"))?
        .iter()
        .map(|entry| &entry["formatted"])
        .filter(|entry| {
            let key = &entry["key"];
            match map {
                // The index: slot s holds positions from s * 65536; unused
                // positions name ifindex 0.
                maps::ENDPOINT_INDEX => {
                    key.as_u64().is_some_and(|i| i / 65_536 == slot)
                        && entry["value"]["ifindex"] != 0
                }
                _ => key["slot"] == slot || key["data"]["slot"] == slot,
            }
        })
        .map(|entry| entry.to_string())
        .collect();
    texts.sort();
    Ok(texts)
}

/// Synthetic Plans of 300 statements. Different endpoint counts change
/// hosts, prefixes and local addresses too, not only policy; zs100 exists
/// only in inventories of more than 100 endpoints.
fn synthetic_plans(shapes: &[(usize, u64)]) -> Vec<compile::Plan> {
    shapes
        .iter()
        .map(|&(endpoints, seed)| {
            let set = synthetic::generate(300, endpoints, seed);
            compile::compile(&set.policies, &set.inventory)
        })
        .collect()
}

/// One vNIC in the endpoint index, one beyond it (found in the hash).
fn synthetic_interfaces() -> InterfaceIndexes {
    InterfaceIndexes::from([("zs0".to_owned(), 3), ("zs100".to_owned(), 70_000)])
}

/// Asserts that slot `slot` of every per-Plan map holds the same entries
/// under both pin roots, and something.
fn assert_slots_equal(pins: &PinLayout, expected: &PinLayout, slot: u64) -> anyhow::Result<()> {
    for map in [
        maps::ENDPOINTS,
        maps::ENDPOINT_INDEX,
        maps::LOCAL_ADDRESSES,
        maps::HOSTS,
        maps::PREFIXES,
        maps::POLICY,
    ] {
        let wanted = slot_entries(expected, map, slot)?;
        assert!(!wanted.is_empty(), "{map}: the plan writes something");
        assert_eq!(slot_entries(pins, map, slot)?, wanted, "{map}");
    }
    Ok(())
}

/// Writes `plan` alone into fresh pins, as generations 1 and 2: both
/// slots as a full write leaves them.
fn written_whole(plan: &compile::Plan) -> anyhow::Result<Bpffs> {
    let whole = Bpffs::new()?;
    let (mut fresh, _) = Datapath::open_pinned(&whole.pins(), ConntrackSize::default())?;
    for _ in 0..2 {
        write_plan(&mut fresh, plan, &synthetic_interfaces())?;
    }
    Ok(whole)
}

/// Plans A, B and C into one datapath (C lands in A's slot, written as the
/// difference), and C alone into another (a full write into the same
/// slot): the slot's entries are the same, map by map.
#[test]
fn difference_writes_equal_full_writes() -> anyhow::Result<()> {
    let plans = synthetic_plans(&[(120, 1), (100, 2), (100, 3)]);
    let by_difference = Bpffs::new()?;
    let (mut datapath, _) = Datapath::open_pinned(&by_difference.pins(), ConntrackSize::default())?;
    let generations = plans
        .iter()
        .map(|plan| {
            let written = write_plan(&mut datapath, plan, &synthetic_interfaces())?;
            anyhow::ensure!(!written.outside_change, "nobody else wrote the maps");
            Ok(written.generation)
        })
        .collect::<anyhow::Result<Vec<u32>>>()?;
    let whole = written_whole(&plans[2])?;
    let slot = u64::from(generations[2] % 2);
    assert_slots_equal(&by_difference.pins(), &whole.pins(), slot)
}

/// Plans compiled one from the last (the agent's reloads: statements
/// removed, one copied), each written as the difference from the one
/// before: the last slot holds what the whole compile of the last inputs,
/// written whole, holds.
#[test]
fn incremental_compiles_written_as_differences_equal_whole_compiles_written_whole()
-> anyhow::Result<()> {
    let set = synthetic::generate(300, 120, 1);
    let mut policies = set.policies.clone();
    let mut compiler = compile::Compiler::default();
    let by_difference = Bpffs::new()?;
    let (mut datapath, _) = Datapath::open_pinned(&by_difference.pins(), ConntrackSize::default())?;
    let mut generation = 0;
    for step in 0..5 {
        let statements = &mut policies[0].statements;
        if step == 4 {
            let mut copy = statements[10].clone();
            copy.id.line = 1_000;
            statements.insert(200, copy);
        } else {
            statements.remove(150 - step * 10);
        }
        let plan = compiler.compile(&policies, &set.inventory);
        let written = write_plan(&mut datapath, &plan, &synthetic_interfaces())?;
        anyhow::ensure!(!written.outside_change, "nobody else wrote the maps");
        generation = written.generation;
    }
    let whole = written_whole(&compile::compile(&policies, &set.inventory))?;
    assert_slots_equal(
        &by_difference.pins(),
        &whole.pins(),
        u64::from(generation % 2),
    )
}

/// After the first write, the idle slot is primed with the live Plan
/// (what the agent does once the change has settled): it then holds what
/// a full write of that Plan holds, the live generation stays, and the
/// next write is the difference from it, as a write whole would leave the
/// slot. Priming a slot the writer knows does nothing.
#[test]
fn a_primed_idle_slot_holds_the_live_plan_and_takes_the_next_as_a_difference() -> anyhow::Result<()>
{
    let plans = synthetic_plans(&[(120, 1), (100, 2)]);
    let interfaces = synthetic_interfaces();
    let primed = Bpffs::new()?;
    let (mut datapath, _) = Datapath::open_pinned(&primed.pins(), ConntrackSize::default())?;
    let first = write_plan(&mut datapath, &plans[0], &interfaces)?;
    assert!(prime_idle_slot(&mut datapath)?, "the idle slot was unknown");
    assert!(!prime_idle_slot(&mut datapath)?, "primed once");
    let idle = u64::from((first.generation + 1) % 2);
    assert_slots_equal(&primed.pins(), &written_whole(&plans[0])?.pins(), idle)?;
    let next = write_plan(&mut datapath, &plans[1], &interfaces)?;
    assert_eq!(
        next.generation,
        first.generation + 1,
        "priming switched nothing"
    );
    assert!(
        !next.outside_change,
        "the primed slot is what the writer remembers"
    );
    assert_slots_equal(&primed.pins(), &written_whole(&plans[1])?.pins(), idle)?;
    assert!(!prime_idle_slot(&mut datapath)?, "both slots are known");
    Ok(())
}

/// Another process writes both slots behind the writer's back (as a
/// second agent that ignored the pin root's lock did): the writer's next
/// writes notice that the kernel no longer holds what it remembers, and
/// write each slot whole, so none of the outsider's entries stay.
#[test]
fn slots_another_process_wrote_are_rewritten_whole() -> anyhow::Result<()> {
    let plans = synthetic_plans(&[(100, 1), (100, 2), (120, 4), (100, 3), (100, 5)]);
    let interfaces = synthetic_interfaces();
    let shared = Bpffs::new()?;
    let (mut ours, _) = Datapath::open_pinned(&shared.pins(), ConntrackSize::default())?;
    write_plan(&mut ours, &plans[0], &interfaces)?;
    write_plan(&mut ours, &plans[1], &interfaces)?;
    let (mut outsider, _) = Datapath::open_pinned(&shared.pins(), ConntrackSize::default())?;
    write_plan(&mut outsider, &plans[2], &interfaces)?;
    write_plan(&mut outsider, &plans[2], &interfaces)?;
    for plan in &plans[3..] {
        let written = write_plan(&mut ours, plan, &interfaces)?;
        assert!(written.outside_change, "the outsider's slot is noticed");
        let whole = written_whole(plan)?;
        let slot = u64::from(written.generation % 2);
        assert_slots_equal(&shared.pins(), &whole.pins(), slot)?;
    }
    Ok(())
}
