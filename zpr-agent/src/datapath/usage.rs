//! Reading how much each Plan entry was used (`ZPR_RULE_USAGE`).

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::Context as _;
use zpr_common::{
    config::Config,
    maps,
    usage::{RULE_USAGE_ENTRIES, RULE_USAGE_PER_SLOT, RuleUsage},
};

use super::{
    Datapath,
    plan_maps::{live_config, next_generation},
};

/// The usage of the first `rules` entries of `slot` (at most the counted
/// ones), read from the map's memory (the map is `BPF_F_MMAPABLE`).
pub fn read_rule_usage(
    datapath: &Datapath,
    slot: u8,
    rules: usize,
) -> anyhow::Result<Vec<RuleUsage>> {
    let aya::maps::Map::Array(map) = datapath.map(maps::RULE_USAGE)? else {
        anyhow::bail!("{} is not an array", maps::RULE_USAGE);
    };
    let mapped = MappedUsage::of(map.fd().as_fd().as_raw_fd())?;
    let first = u32::from(slot) as usize * RULE_USAGE_PER_SLOT as usize;
    let rules = rules.min(RULE_USAGE_PER_SLOT as usize);
    Ok((first..first + rules)
        .map(|index| mapped.get(index))
        .collect())
}

/// The whole usage map, mapped read-only for one read.
struct MappedUsage {
    entries: *const RuleUsage,
}

/// Bytes mapped: every entry, whole pages.
const MAPPED_BYTES: usize =
    (RULE_USAGE_ENTRIES as usize * size_of::<RuleUsage>()).next_multiple_of(4096);

impl MappedUsage {
    fn of(fd: i32) -> anyhow::Result<MappedUsage> {
        // SAFETY: a fresh shared read-only mapping of the map's memory;
        // nothing else aliases it in this process.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MAPPED_BYTES,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error())
                .context("mapping the rule usage (a map without BPF_F_MMAPABLE?)");
        }
        Ok(MappedUsage {
            entries: address.cast(),
        })
    }

    /// Entry `index`; the kernel adds to it meanwhile (atomic 8-byte
    /// stores), so each field is read once, atomically.
    fn get(&self, index: usize) -> RuleUsage {
        assert!(index < RULE_USAGE_ENTRIES as usize);
        // SAFETY: within the mapping, 8-byte aligned (page-aligned base,
        // 16-byte entries); the kernel writes these words only atomically.
        unsafe {
            let entry = self.entries.add(index);
            let word =
                |field: *const u64| AtomicU64::from_ptr(field.cast_mut()).load(Ordering::Relaxed);
            RuleUsage {
                flows: word(&raw const (*entry).flows),
                last_ns: word(&raw const (*entry).last_ns),
            }
        }
    }
}

impl Drop for MappedUsage {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `of`, of that size, used no more.
        unsafe {
            libc::munmap(self.entries.cast_mut().cast(), MAPPED_BYTES);
        }
    }
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
