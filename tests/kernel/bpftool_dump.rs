//! Maps carry BTF: `bpftool map dump` of a pinned map prints typed fields.

use std::path::{Path, PathBuf};

use zpr_agent::{
    compile,
    datapath::{Datapath, InterfaceIndexes, ensure_bpffs, write_plan},
    inventory::Inventory,
    lang,
};
use zpr_common::maps;
use zpr_tests::{run, unique_name};

/// A pin directory removed (with its pins) on drop.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dump(dir: &Path, map: &str) -> anyhow::Result<serde_json::Value> {
    let path = dir.join(map);
    let output = run(
        "bpftool",
        &["-j", "map", "dump", "pinned", path.to_str().unwrap()],
    )?;
    Ok(serde_json::from_slice(&output.stdout)?)
}

#[test]
fn pinned_maps_dump_typed_fields() -> anyhow::Result<()> {
    let root = Path::new("/sys/fs/bpf");
    ensure_bpffs(root)?;
    let pins = PinDir(root.join(unique_name("zprt")));

    let inventory = Inventory::from_yaml_str(
        "namespaces: [{ name: t, attributes: [{ key: app, type: list, values: [web] }, { key: net, type: list, values: [a] }] }]\n\
         vcns: [{ name: a, cidrs: [10.0.0.0/16], security-attribute: 't.net:a' }]\n\
         endpoints: [{ name: web, vcn: a, addresses: [10.0.0.5], interface: lo, security-attributes: ['t.app:web'] }]",
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let policy = lang::parse("dump", "in t.net:a VCN allow '0.0.0.0/0' to connect to t.app:web endpoints with protocol='tcp/443'")
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .policy;
    let plan = compile::compile(&[policy], &inventory);
    let mut datapath = Datapath::load()?;
    write_plan(
        &mut datapath,
        &plan,
        &InterfaceIndexes::from([("lo".to_owned(), 1)]),
    )?;
    datapath.pin_maps(&pins.0)?;

    let endpoints = dump(&pins.0, maps::ENDPOINTS)?;
    let entry = &endpoints[0]["formatted"];
    assert_eq!(entry["key"]["ifindex"], 1, "typed key: {endpoints}");
    assert!(
        entry["value"]["flags"].is_number(),
        "typed value: {endpoints}"
    );

    let policy = dump(&pins.0, maps::POLICY)?;
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
    let config = dump(&pins.0, maps::CONFIG)?;
    assert_eq!(config[0]["formatted"]["value"]["generation"], 1, "{config}");
    Ok(())
}
