//! Reading maps in bulk with BPF_MAP_LOOKUP_BATCH: one syscall per batch of
//! entries rather than one per key (aya wraps only the per-key lookup).

use std::os::fd::{AsFd as _, AsRawFd as _};

use anyhow::Context as _;
use aya::maps::MapData;

use super::syscall::{bpf, pointer_halves};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Visits every entry of `map`, `batch` entries per syscall, with its
/// values: one per entry, or one per possible CPU for a per-CPU map
/// (`values_per_key`). `what` names the map in errors.
pub(super) fn for_each_entry<K: Copy + Default, V: Copy + Default>(
    map: &MapData,
    values_per_key: usize,
    batch: usize,
    what: &str,
    mut visit: impl FnMut(&K, &[V]),
) -> anyhow::Result<()> {
    let mut reader = Reader::new(map, values_per_key, batch, what)?;
    let mut after = None;
    loop {
        let (count, last, done) = reader.read(after, batch)?;
        for (key, values) in reader.entries(count) {
            visit(key, values);
        }
        if done {
            return Ok(());
        }
        after = Some(last);
    }
}

/// Buffers for one map's batches.
struct Reader<'a, K, V> {
    fd: u32,
    keys: Vec<K>,
    values: Vec<V>,
    values_per_key: usize,
    what: &'a str,
}

impl<'a, K: Copy + Default, V: Copy + Default> Reader<'a, K, V> {
    fn new(
        map: &MapData,
        values_per_key: usize,
        batch: usize,
        what: &'a str,
    ) -> anyhow::Result<Reader<'a, K, V>> {
        // The kernel rounds each CPU's value up to 8 bytes; a Vec<V> does not.
        anyhow::ensure!(
            values_per_key == 1 || size_of::<V>().is_multiple_of(8),
            "{what}: per-CPU values of {} bytes",
            size_of::<V>()
        );
        Ok(Reader {
            fd: map.fd().as_fd().as_raw_fd() as u32,
            keys: vec![K::default(); batch],
            values: vec![V::default(); batch * values_per_key],
            values_per_key,
            what,
        })
    }

    /// One syscall: up to `count` entries after position `after` (the
    /// first entries without one). Returns how many were read, the
    /// position to go on from, and whether the map has no more.
    fn read(&mut self, after: Option<u32>, count: usize) -> anyhow::Result<(usize, u32, bool)> {
        let count = count.min(self.keys.len());
        // An array's position is its last index, a hash map's a bucket
        // (both u32): the kernel hands back the one to go on from.
        let mut position = after.unwrap_or(0);
        let mut next: u32 = 0;
        let [in_low, in_high] = if after.is_some() {
            pointer_halves(&mut position)
        } else {
            [0, 0]
        };
        let [out_low, out_high] = pointer_halves(&mut next);
        let [keys_low, keys_high] = pointer_halves(self.keys.as_mut_ptr());
        let [values_low, values_high] = pointer_halves(self.values.as_mut_ptr());
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
            count as u32,
            self.fd,
            0,
            0,
            0,
            0,
        ];
        let result = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let read = (attr[8] as usize).min(count);
        if result < 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::ENOENT) {
                return Ok((read, next, true));
            }
            return Err(error)
                .with_context(|| format!("reading {} (BPF_MAP_LOOKUP_BATCH)", self.what));
        }
        Ok((read, next, false))
    }

    fn entries(&self, count: usize) -> impl Iterator<Item = (&K, &[V])> {
        self.keys
            .iter()
            .zip(self.values.chunks(self.values_per_key))
            .take(count)
    }
}
