//! Reading how much each Plan entry was used (`ZPR_RULE_USAGE`).

use zpr_common::{
    config::Config,
    maps,
    usage::{RULE_USAGE_PER_SLOT, RuleUsage},
};

use super::{
    Datapath,
    batch::array_range,
    plan_maps::{live_config, next_generation},
};

/// The usage of the first `rules` entries of `slot` (at most the counted
/// ones), in one syscall.
pub fn read_rule_usage(
    datapath: &Datapath,
    slot: u8,
    rules: usize,
) -> anyhow::Result<Vec<RuleUsage>> {
    let aya::maps::Map::Array(map) = datapath.map(maps::RULE_USAGE)? else {
        anyhow::bail!("{} is not an array", maps::RULE_USAGE);
    };
    let rules = rules.min(RULE_USAGE_PER_SLOT as usize);
    array_range(
        map,
        u32::from(slot) * RULE_USAGE_PER_SLOT,
        rules,
        "the rule usage",
    )
}

/// The slot the next [`super::write_plan`] writes into.
pub fn next_slot(datapath: &Datapath) -> anyhow::Result<u8> {
    let live = live_config(datapath)?;
    Ok(Config {
        generation: next_generation(&live),
        ..live
    }
    .slot())
}
