//! Reading a map whole with BPF_MAP_LOOKUP_BATCH: one syscall per batch of
//! entries rather than one per key (aya wraps only the per-key lookup).

use std::os::fd::{AsFd as _, AsRawFd as _};

use anyhow::Context as _;
use aya::maps::MapData;

use super::syscall::{bpf, pointer_halves};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Visits every entry of `map`, `batch` entries per syscall, with its
/// values: one per entry, or one per possible CPU for a per-CPU map
/// (`values_per_key`). `V`'s size must be a multiple of 8, as the kernel
/// lays per-CPU values out. `what` names the map in errors.
pub(super) fn for_each_entry<K: Copy + Default, V: Copy + Default>(
    map: &MapData,
    values_per_key: usize,
    batch: usize,
    what: &str,
    mut visit: impl FnMut(&K, &[V]),
) -> anyhow::Result<()> {
    // The kernel rounds each CPU's value up to 8 bytes; a Vec<V> does not.
    anyhow::ensure!(
        values_per_key == 1 || size_of::<V>().is_multiple_of(8),
        "{what}: per-CPU values of {} bytes",
        size_of::<V>()
    );
    let fd = map.fd().as_fd().as_raw_fd() as u32;
    let mut keys = vec![K::default(); batch];
    let mut values = vec![V::default(); batch * values_per_key];
    // An array's batch position is an index, a hash map's a bucket (both
    // u32): the kernel hands back the next one; the first call passes none.
    let mut position: u32 = 0;
    let mut next: u32 = 0;
    let mut first = true;
    loop {
        let [in_low, in_high] = if first {
            [0, 0]
        } else {
            pointer_halves(&mut position)
        };
        let [out_low, out_high] = pointer_halves(&mut next);
        let [keys_low, keys_high] = pointer_halves(keys.as_mut_ptr());
        let [values_low, values_high] = pointer_halves(values.as_mut_ptr());
        // bpf_attr.batch: in_batch, out_batch, keys, values, count,
        // map_fd, elem_flags, flags.
        let mut attr = [
            in_low,
            in_high,
            out_low,
            out_high,
            keys_low,
            keys_high,
            values_low,
            values_high,
            batch as u32,
            fd,
            0,
            0,
            0,
            0,
        ];
        let result = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let error = (result < 0).then(std::io::Error::last_os_error);
        let count = (attr[8] as usize).min(batch);
        for (key, values) in keys.iter().zip(values.chunks(values_per_key)).take(count) {
            visit(key, values);
        }
        match error {
            None => {}
            Some(error) if error.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Some(error) => {
                return Err(error)
                    .with_context(|| format!("reading {what} (BPF_MAP_LOOKUP_BATCH)"));
            }
        }
        position = next;
        first = false;
    }
}
