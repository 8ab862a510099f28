//! Maps carry BTF: `bpftool map dump` of a pinned map prints typed fields;
//! removing the pins leaves nothing behind.

use std::path::{Path, PathBuf};

use zpr_agent::{
    compile,
    datapath::{
        Adoption, Datapath, InterfaceIndexes, PinLayout, ensure_bpffs, remove_all, write_plan,
    },
    inventory::Inventory,
    lang,
};
use zpr_common::maps;
use zpr_tests::{run, unique_name};

/// A bpffs directory of this test, removed (pins and all) on drop.
struct Bpffs(PathBuf);

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
    let bpffs = Bpffs(Path::new("/sys/fs/bpf").join(unique_name("zprt")));
    ensure_bpffs(&bpffs.0)?;
    let pins = PinLayout::new(&bpffs.0);

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
    let (mut datapath, adoption) = Datapath::open_pinned(&pins)?;
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
    let (_, adoption) = Datapath::open_pinned(&pins)?;
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
