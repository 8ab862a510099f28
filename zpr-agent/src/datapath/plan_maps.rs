//! Writing a Plan into the maps: into the idle slot, then one update of the
//! config switches every program to it. The slot left behind stays intact
//! until the next reload clears it, so a packet that read the old
//! generation still finds the old entries.

use std::{
    collections::{BTreeMap, BTreeSet},
    hash::Hash,
    net::IpAddr,
};

use anyhow::Context as _;
use aya::maps::{Array, HashMap, LpmTrie, MapData, lpm_trie::Key};
use zpr_common::{
    Address, FAMILY_IPV4, FAMILY_IPV6,
    config::{Config, LAYOUT_VERSION},
    counters::UNATTRIBUTED_ROW,
    endpoint::{
        ENDPOINT_AUDIT, ENDPOINT_PROTECTED, EndpointConfig, EndpointKey, IndexedEndpoint,
        LocalAddressKey, LocalIdentity, endpoint_index_position, is_indexed,
    },
    identity::{HostKey, PREFIX_STATIC_BITS, PrefixKey},
    maps,
    policy::{
        POLICY_EGRESS, POLICY_INGRESS, POLICY_STATELESS, POLICY_STATIC_BITS, PolicyKey, PolicyValue,
    },
};

use super::{Datapath, batch::for_each_entry, counter_rows::rows_in_slot};
use crate::{
    compile::{ANY_REMOTE, Direction, Plan},
    inventory::Mode,
};

/// Host interface name -> ifindex, for the endpoints present on this host.
pub type InterfaceIndexes = BTreeMap<String, u32>;

/// Writes `plan` as the next generation and switches to it; returns the
/// generation now live. Endpoints whose interface is not in `interfaces`
/// are remote: only their identities are written, not their policy.
///
/// The idle slot holds the Plan of two generations ago. When this process
/// wrote it and the kernel still holds exactly that, only the difference
/// is written (a reload costs what changed, not the size of the policy).
/// Otherwise (maps adopted from pins, an earlier write failed part-way,
/// or another process wrote the maps) the slot is cleared and written
/// whole: a difference against a memory the kernel no longer matches
/// would leave someone else's entries, and the paths they open, in place.
pub fn write_plan(
    datapath: &mut Datapath,
    plan: &Plan,
    interfaces: &InterfaceIndexes,
) -> anyhow::Result<WrittenPlan> {
    let live = live_config(datapath)?;
    let generation = next_generation(&live);
    let slot = Config { generation, ..live }.slot();
    let live_rows = match &datapath.written[usize::from(live.slot())] {
        Some(written) => written.counter_rows(),
        None => rows_in_slot(datapath, live.slot())?,
    };
    let mut counter_rows = std::mem::take(&mut datapath.counter_rows);
    let rows = counter_rows.assign(datapath, plan, interfaces, &live_rows);
    datapath.counter_rows = counter_rows;
    let desired = SlotContents::of(plan, interfaces, slot, &rows?)?;
    let remembered = datapath.written[usize::from(slot)].take();
    let mut outside_change = false;
    let current = match remembered {
        Some(remembered) if kernel_holds(datapath, slot, &remembered)? => remembered,
        remembered => {
            outside_change = remembered.is_some();
            clear_slot(datapath, slot)?;
            SlotContents::default()
        }
    };
    write_difference(datapath, slot, &current, &desired)?;
    datapath.written[usize::from(slot)] = Some(desired);

    let next = Config {
        generation,
        layout: LAYOUT_VERSION,
        events_per_second: datapath.events_per_second.unwrap_or(live.events_per_second),
        ..live
    };
    let mut config: Array<_, Config> = Array::try_from(datapath.map_mut(maps::CONFIG)?)?;
    config
        .set(0, &next, 0)
        .context("switching to the new generation")?;
    Ok(WrittenPlan {
        generation,
        outside_change,
    })
}

/// What [`write_plan`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenPlan {
    /// The generation now live.
    pub generation: u32,
    /// The slot did not hold what this process had written there: another
    /// process changed the maps. It was rewritten whole.
    pub outside_change: bool,
}

type Entries<K, V> = foldhash::HashMap<K, V>;

/// Every entry one slot of the per-Plan maps holds, keys as the kernel
/// sees them (LPM keys with their prefix length).
#[derive(Default, PartialEq)]
pub(crate) struct SlotContents {
    endpoints: Entries<EndpointKey, EndpointConfig>,
    local_addresses: Entries<LocalAddressKey, LocalIdentity>,
    hosts: Entries<HostKey, u32>,
    prefixes: Entries<(u32, PrefixKey), u32>,
    policy: Entries<(u32, PolicyKey), PolicyValue>,
}

impl SlotContents {
    /// The slot's entries for `plan`; each local endpoint counts in its
    /// row of `rows` (by name), or in the unattributed row.
    fn of(
        plan: &Plan,
        interfaces: &InterfaceIndexes,
        slot: u8,
        rows: &BTreeMap<String, u32>,
    ) -> anyhow::Result<SlotContents> {
        let mut contents = SlotContents::default();
        let any_remote = any_remote_tables(plan);
        let local_endpoints = plan.endpoints.iter().filter_map(|endpoint| {
            let ifindex = *interfaces.get(endpoint.interface.as_ref()?)?;
            Some((ifindex, endpoint))
        });
        for (ifindex, endpoint) in local_endpoints {
            let mut flags = 0;
            if endpoint.protected {
                flags |= ENDPOINT_PROTECTED;
            }
            if endpoint.mode == Mode::Audit {
                flags |= ENDPOINT_AUDIT;
            }
            let key = EndpointKey {
                ifindex,
                slot,
                _pad: [0; 3],
            };
            let counter_row = rows.get(&endpoint.name).copied();
            let config = EndpointConfig {
                flags,
                counter_row: counter_row.unwrap_or(UNATTRIBUTED_ROW),
            };
            contents.endpoints.insert(key, config);
            for own in &endpoint.addresses {
                let (family, addr) = address(own.address);
                let key = LocalAddressKey {
                    ifindex,
                    slot,
                    family,
                    _pad: [0; 2],
                    addr,
                };
                let tables = any_remote.get(&own.uid).copied().unwrap_or_default();
                let identity = LocalIdentity::new(own.uid, tables)
                    .with_context(|| format!("UID {} is beyond the datapath's limit", own.uid))?;
                contents.local_addresses.insert(key, identity);
            }
        }
        for host in &plan.hosts {
            let (family, addr) = address(host.address);
            let key = HostKey {
                slot,
                family,
                _pad: [0; 2],
                addr,
            };
            contents.hosts.insert(key, host.uid);
        }
        for entry in &plan.prefixes {
            let (family, addr) = address(entry.prefix.addr);
            let data = PrefixKey {
                slot,
                family,
                addr,
                _pad: [0; 2],
            };
            let len = PREFIX_STATIC_BITS + u32::from(entry.prefix.len);
            contents.prefixes.insert((len, data), entry.uid);
        }
        // Only this host's endpoints look policy up; the rest of the Plan's
        // entries (every protected UID) would be dead weight here.
        let local_uids: BTreeSet<u32> = contents
            .local_addresses
            .values()
            .map(|identity| identity.uid())
            .collect();
        let local_entries = plan
            .policy
            .iter()
            .enumerate()
            .filter(|(_, entry)| local_uids.contains(&entry.key.local));
        for (rule, entry) in local_entries {
            let len = POLICY_STATIC_BITS + u32::from(entry.key.l4.len);
            let value = PolicyValue {
                rule: u32::try_from(rule).context("more policy entries than u32")?,
                flags: if entry.value.stateless {
                    POLICY_STATELESS
                } else {
                    0
                },
            };
            contents
                .policy
                .insert((len, map_policy_key(slot, &entry.key)), value);
        }
        Ok(contents)
    }
}

/// Writes the live Plan into the idle slot too, when nothing this process
/// knows is there (after the agent's first apply: the slot the maps
/// started with): the next reload then writes only its difference there,
/// where it would clear the slot and write every entry, on the path of
/// the change. Called well after a switch (a packet that read the old
/// generation is long done with the idle slot). Whether it wrote.
pub fn prime_idle_slot(datapath: &mut Datapath) -> anyhow::Result<bool> {
    let live = live_config(datapath)?;
    let idle = Config {
        generation: next_generation(&live),
        ..live
    }
    .slot();
    if datapath.written[usize::from(idle)].is_some() {
        return Ok(false);
    }
    let Some(desired) = datapath.written[usize::from(live.slot())]
        .as_ref()
        .map(|live_contents| live_contents.in_slot(idle))
    else {
        return Ok(false);
    };
    clear_slot(datapath, idle)?;
    write_difference(datapath, idle, &SlotContents::default(), &desired)?;
    datapath.written[usize::from(idle)] = Some(desired);
    Ok(true)
}

impl SlotContents {
    /// The same entries, keyed for `slot`.
    fn in_slot(&self, slot: u8) -> SlotContents {
        fn keyed<K: Copy + Hash + Eq, V: Copy>(
            entries: &Entries<K, V>,
            slot_of: impl Fn(&mut K) -> &mut u8,
            slot: u8,
        ) -> Entries<K, V> {
            entries
                .iter()
                .map(|(key, value)| {
                    let mut key = *key;
                    *slot_of(&mut key) = slot;
                    (key, *value)
                })
                .collect()
        }
        SlotContents {
            endpoints: keyed(&self.endpoints, |key| &mut key.slot, slot),
            local_addresses: keyed(&self.local_addresses, |key| &mut key.slot, slot),
            hosts: keyed(&self.hosts, |key| &mut key.slot, slot),
            prefixes: keyed(&self.prefixes, |(_, data)| &mut data.slot, slot),
            policy: keyed(&self.policy, |(_, data)| &mut data.slot, slot),
        }
    }

    /// The row each ifindex counts in.
    fn counter_rows(&self) -> BTreeMap<u32, u32> {
        self.endpoints
            .iter()
            .map(|(key, config)| (key.ifindex, config.counter_row))
            .collect()
    }
}

/// Per local UID, the policy directions (indexed by `POLICY_EGRESS` /
/// `POLICY_INGRESS`) in which it has an "any remote" table.
fn any_remote_tables(plan: &Plan) -> BTreeMap<u32, [bool; 2]> {
    let mut tables = BTreeMap::<u32, [bool; 2]>::new();
    for entry in plan.policy.iter().filter(|e| e.key.remote == ANY_REMOTE) {
        let direction = match entry.key.direction {
            Direction::Egress => POLICY_EGRESS,
            Direction::Ingress => POLICY_INGRESS,
        };
        tables.entry(entry.key.local).or_default()[usize::from(direction)] = true;
    }
    tables
}

/// Entries of `current` that `desired` lacks.
fn removed<'a, K: Hash + Eq, V>(
    current: &'a Entries<K, V>,
    desired: &'a Entries<K, V>,
) -> impl Iterator<Item = &'a K> {
    current.keys().filter(|key| !desired.contains_key(key))
}

/// Entries of `desired` that `current` lacks or holds with another value.
fn changed<'a, K: Hash + Eq, V: PartialEq>(
    current: &'a Entries<K, V>,
    desired: &'a Entries<K, V>,
) -> impl Iterator<Item = (&'a K, &'a V)> {
    desired
        .iter()
        .filter(|(key, value)| current.get(key) != Some(value))
}

/// Turns the slot's maps from `current` into `desired`.
fn write_difference(
    datapath: &mut Datapath,
    slot: u8,
    current: &SlotContents,
    desired: &SlotContents,
) -> anyhow::Result<()> {
    {
        let mut endpoints: HashMap<_, EndpointKey, EndpointConfig> =
            HashMap::try_from(datapath.map_mut(maps::ENDPOINTS)?)?;
        for key in removed(&current.endpoints, &desired.endpoints) {
            endpoints.remove(key).context("removing an endpoint")?;
        }
        for (key, config) in changed(&current.endpoints, &desired.endpoints) {
            endpoints
                .insert(key, config, 0)
                .with_context(|| format!("writing the endpoint on ifindex {}", key.ifindex))?;
        }
    }
    {
        let mut index: Array<_, IndexedEndpoint> =
            Array::try_from(datapath.map_mut(maps::ENDPOINT_INDEX)?)?;
        let gone = removed(&current.endpoints, &desired.endpoints)
            .map(|key| (key.ifindex, IndexedEndpoint::default()));
        let written = changed(&current.endpoints, &desired.endpoints).map(|(key, &config)| {
            let entry = IndexedEndpoint {
                ifindex: key.ifindex,
                config,
            };
            (key.ifindex, entry)
        });
        for (ifindex, entry) in gone.chain(written).filter(|&(i, _)| is_indexed(i)) {
            index
                .set(endpoint_index_position(slot, ifindex), &entry, 0)
                .context("writing the endpoint index")?;
        }
    }
    {
        let mut local: HashMap<_, LocalAddressKey, LocalIdentity> =
            HashMap::try_from(datapath.map_mut(maps::LOCAL_ADDRESSES)?)?;
        for key in removed(&current.local_addresses, &desired.local_addresses) {
            local.remove(key).context("removing a local address")?;
        }
        for (key, identity) in changed(&current.local_addresses, &desired.local_addresses) {
            local
                .insert(key, identity, 0)
                .context("writing a local address")?;
        }
    }
    {
        let mut hosts: HashMap<_, HostKey, u32> =
            HashMap::try_from(datapath.map_mut(maps::HOSTS)?)?;
        for key in removed(&current.hosts, &desired.hosts) {
            hosts.remove(key).context("removing a host identity")?;
        }
        for (key, uid) in changed(&current.hosts, &desired.hosts) {
            hosts
                .insert(key, uid, 0)
                .context("writing a host identity")?;
        }
    }
    {
        let mut prefixes: LpmTrie<_, PrefixKey, u32> =
            LpmTrie::try_from(datapath.map_mut(maps::PREFIXES)?)?;
        for &(len, data) in removed(&current.prefixes, &desired.prefixes) {
            prefixes
                .remove(&Key::new(len, data))
                .context("removing a prefix identity")?;
        }
        for (&(len, data), uid) in changed(&current.prefixes, &desired.prefixes) {
            prefixes
                .insert(&Key::new(len, data), uid, 0)
                .context("writing a prefix identity")?;
        }
    }
    let mut policy: LpmTrie<_, PolicyKey, PolicyValue> =
        LpmTrie::try_from(datapath.map_mut(maps::POLICY)?)?;
    for &(len, data) in removed(&current.policy, &desired.policy) {
        policy
            .remove(&Key::new(len, data))
            .context("removing a policy entry")?;
    }
    for (&(len, data), value) in changed(&current.policy, &desired.policy) {
        policy
            .insert(&Key::new(len, data), value, 0)
            .context("writing a policy entry")?;
    }
    Ok(())
}

/// A Plan's policy key as the kernel's policy map holds it in `slot`.
pub fn map_policy_key(slot: u8, key: &crate::compile::PolicyKey) -> PolicyKey {
    PolicyKey {
        slot,
        direction: match key.direction {
            Direction::Egress => POLICY_EGRESS,
            Direction::Ingress => POLICY_INGRESS,
        },
        _pad: [0; 2],
        local_uid: key.local,
        remote_uid: key.remote,
        protocol: key.l4.protocol,
        port: key.l4.port.to_be_bytes(),
        _pad2: 0,
    }
}

/// The generation a write after `live` switches to (0 is never one).
pub(super) fn next_generation(live: &Config) -> u32 {
    live.generation.wrapping_add(1).max(1)
}

/// The live config; a never-written one gets the default event budget.
pub(crate) fn live_config(datapath: &Datapath) -> anyhow::Result<Config> {
    let config: Array<_, Config> = Array::try_from(datapath.map(maps::CONFIG)?)?;
    let mut live = config.get(&0, 0)?;
    if live.events_per_second == 0 {
        live.events_per_second = maps::EVENTS_PER_SECOND;
    }
    Ok(live)
}

/// True when the kernel's `slot` holds exactly `remembered`: every
/// per-Plan map's entries of that slot, and the index positions of its
/// endpoints (the index is what the datapath reads first).
fn kernel_holds(datapath: &Datapath, slot: u8, remembered: &SlotContents) -> anyhow::Result<bool> {
    let index: Array<_, IndexedEndpoint> = Array::try_from(datapath.map(maps::ENDPOINT_INDEX)?)?;
    for (key, &config) in &remembered.endpoints {
        if is_indexed(key.ifindex) {
            let held = index.get(&endpoint_index_position(slot, key.ifindex), 0)?;
            if held
                != (IndexedEndpoint {
                    ifindex: key.ifindex,
                    config,
                })
            {
                return Ok(false);
            }
        }
    }
    let in_slot = |key_slot: u8| key_slot == slot;
    Ok(hash_holds(
        datapath,
        maps::ENDPOINTS,
        |k: &EndpointKey| in_slot(k.slot),
        &remembered.endpoints,
    )? && hash_holds(
        datapath,
        maps::LOCAL_ADDRESSES,
        |k: &LocalAddressKey| in_slot(k.slot),
        &remembered.local_addresses,
    )? && hash_holds(
        datapath,
        maps::HOSTS,
        |k: &HostKey| in_slot(k.slot),
        &remembered.hosts,
    )? && lpm_holds(
        datapath,
        maps::PREFIXES,
        |k: &PrefixKey| in_slot(k.slot),
        &remembered.prefixes,
    )? && lpm_holds(
        datapath,
        maps::POLICY,
        |k: &PolicyKey| in_slot(k.slot),
        &remembered.policy,
    )?)
}

/// Entries read per syscall: a hash map's batch must hold its fullest
/// bucket (else ENOSPC), which this leaves far behind.
const HASH_BATCH: usize = 4096;

/// Visits the entries of hash map `name`, read a batch per syscall: both
/// slots' hosts at 10,000 endpoints are 40,000 syscalls key by key, most
/// of a reload's write at 100,000 statements.
fn for_each_hash_entry<K: aya::Pod + Default, V: aya::Pod + Default>(
    datapath: &Datapath,
    name: &str,
    mut visit: impl FnMut(&K, &V),
) -> anyhow::Result<()> {
    let aya::maps::Map::HashMap(map) = datapath.map(name)? else {
        anyhow::bail!("{name} is not a hash map");
    };
    for_each_entry(map, 1, HASH_BATCH, name, |key: &K, values: &[V]| {
        visit(key, &values[0]);
    })
}

/// The entries of hash map `name` that `wanted` picks.
fn hash_entries<K: aya::Pod + Default + Hash + Eq, V: aya::Pod + Default>(
    datapath: &Datapath,
    name: &str,
    wanted: impl Fn(&K) -> bool,
) -> anyhow::Result<Entries<K, V>> {
    let mut entries = Entries::default();
    for_each_hash_entry(datapath, name, |key: &K, value: &V| {
        if wanted(key) {
            entries.insert(*key, *value);
        }
    })?;
    Ok(entries)
}

/// Whether the entries of hash map `name` that `wanted` picks are exactly
/// `remembered`: compared as they are read, nothing built.
fn hash_holds<K: aya::Pod + Default + Hash + Eq, V: aya::Pod + Default + PartialEq>(
    datapath: &Datapath,
    name: &str,
    wanted: impl Fn(&K) -> bool,
    remembered: &Entries<K, V>,
) -> anyhow::Result<bool> {
    let (mut held, mut same) = (0, true);
    for_each_hash_entry(datapath, name, |key: &K, value: &V| {
        if wanted(key) {
            held += 1;
            same &= remembered.get(key) == Some(value);
        }
    })?;
    Ok(same && held == remembered.len())
}

/// As [`hash_holds`], for LPM trie `name` (keys with their prefix length).
fn lpm_holds<K: aya::Pod + Hash + Eq, V: aya::Pod + PartialEq>(
    datapath: &Datapath,
    name: &str,
    wanted: impl Fn(&K) -> bool,
    remembered: &Entries<(u32, K), V>,
) -> anyhow::Result<bool> {
    let map: LpmTrie<_, K, V> = LpmTrie::try_from(datapath.map(name)?)?;
    let mut held = 0;
    for entry in map.iter() {
        let (key, value) = entry.with_context(|| format!("reading {name}"))?;
        if wanted(&key.data()) {
            held += 1;
            if remembered.get(&(key.prefix_len(), key.data())) != Some(&value) {
                return Ok(false);
            }
        }
    }
    Ok(held == remembered.len())
}

/// True when the kernel enforces exactly what this process last wrote:
/// the live generation is `generation`, and its slot holds what was
/// written there. False when another process switched the generation or
/// changed the live slot's entries.
pub fn live_plan_intact(datapath: &Datapath, generation: u32) -> anyhow::Result<bool> {
    let live = live_config(datapath)?;
    if live.generation != generation {
        return Ok(false);
    }
    match &datapath.written[usize::from(live.slot())] {
        Some(remembered) => kernel_holds(datapath, live.slot(), remembered),
        // Not written by this process (nothing applied yet): nothing to hold it to.
        None => Ok(true),
    }
}

/// The vNICs (ifindexes) whose endpoints the live Plan enforces: tagged
/// and not in audit mode, as the kernel holds them now.
pub fn protected_endpoints(datapath: &Datapath) -> anyhow::Result<BTreeSet<u32>> {
    let slot = live_config(datapath)?.slot();
    let endpoints: Entries<EndpointKey, EndpointConfig> =
        hash_entries(datapath, maps::ENDPOINTS, |key: &EndpointKey| {
            key.slot == slot
        })?;
    Ok(endpoints
        .into_iter()
        .filter(|(_, config)| {
            config.flags & ENDPOINT_PROTECTED != 0 && config.flags & ENDPOINT_AUDIT == 0
        })
        .map(|(key, _)| key.ifindex)
        .collect())
}

/// Removes every entry of `slot` from the per-Plan maps.
fn clear_slot(datapath: &mut Datapath, slot: u8) -> anyhow::Result<()> {
    let mut endpoints: HashMap<_, EndpointKey, EndpointConfig> =
        HashMap::try_from(datapath.map_mut(maps::ENDPOINTS)?)?;
    let cleared = remove_hash_keys(&mut endpoints, |key| key.slot == slot)?;
    // The hash holds every endpoint of the slot: it says which index
    // positions to zero (walking the whole array would cost a syscall per
    // ifindex).
    let mut index: Array<_, IndexedEndpoint> =
        Array::try_from(datapath.map_mut(maps::ENDPOINT_INDEX)?)?;
    for key in cleared.iter().filter(|key| is_indexed(key.ifindex)) {
        let position = endpoint_index_position(slot, key.ifindex);
        index.set(position, &IndexedEndpoint::default(), 0)?;
    }
    let mut local: HashMap<_, LocalAddressKey, LocalIdentity> =
        HashMap::try_from(datapath.map_mut(maps::LOCAL_ADDRESSES)?)?;
    remove_hash_keys(&mut local, |key| key.slot == slot)?;
    let mut hosts: HashMap<_, HostKey, u32> = HashMap::try_from(datapath.map_mut(maps::HOSTS)?)?;
    remove_hash_keys(&mut hosts, |key| key.slot == slot)?;
    let mut prefixes: LpmTrie<_, PrefixKey, u32> =
        LpmTrie::try_from(datapath.map_mut(maps::PREFIXES)?)?;
    remove_lpm_keys(&mut prefixes, |key| key.slot == slot)?;
    let mut policy: LpmTrie<_, PolicyKey, PolicyValue> =
        LpmTrie::try_from(datapath.map_mut(maps::POLICY)?)?;
    remove_lpm_keys(&mut policy, |key| key.slot == slot)
}

/// Removes the keys `doomed` picks; returns them.
fn remove_hash_keys<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<&mut MapData, K, V>,
    doomed: impl Fn(&K) -> bool,
) -> anyhow::Result<Vec<K>> {
    let keys: Vec<K> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| doomed(k))
        .collect();
    for key in &keys {
        map.remove(key)?;
    }
    Ok(keys)
}

fn remove_lpm_keys<K: aya::Pod, V: aya::Pod>(
    map: &mut LpmTrie<&mut MapData, K, V>,
    doomed: impl Fn(&K) -> bool,
) -> anyhow::Result<()> {
    let keys: Vec<Key<K>> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| doomed(&k.data()))
        .collect();
    for key in keys {
        map.remove(&key)?;
    }
    Ok(())
}

/// An address in map form.
pub(crate) fn address(ip: IpAddr) -> (u8, Address) {
    let mut addr = [0; 16];
    match ip {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            (FAMILY_IPV4, addr)
        }
        IpAddr::V6(v6) => (FAMILY_IPV6, v6.octets()),
    }
}
