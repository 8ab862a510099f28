//! The conntrack table from user space.

use aya::maps::HashMap;
use zpr_common::{
    conntrack::{FlowKey, FlowState},
    maps,
};

use super::Datapath;

/// Forgets every tracked flow; returns how many there were. Their next
/// packets are decided as new flows under the live Plan.
pub fn flush_flows(datapath: &mut Datapath) -> anyhow::Result<usize> {
    let mut flows: HashMap<_, FlowKey, FlowState> =
        HashMap::try_from(datapath.map_mut(maps::CONNTRACK)?)?;
    let keys: Vec<FlowKey> = flows.keys().filter_map(Result::ok).collect();
    for key in &keys {
        // A flow may idle out of the LRU between listing and removal.
        let _ = flows.remove(key);
    }
    Ok(keys.len())
}
