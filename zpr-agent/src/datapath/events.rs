//! Reading drop and new-flow events from the kernel's ring buffer.

use aya::maps::RingBuf;
use zpr_common::{event::Event, maps};

use super::Datapath;

/// Every event waiting in the ring buffer, oldest first.
pub fn drain_events(datapath: &mut Datapath) -> anyhow::Result<Vec<Event>> {
    let mut ring = RingBuf::try_from(datapath.map_mut(maps::EVENTS)?)?;
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        if let Some(event) = decode(&item) {
            events.push(event);
        }
    }
    Ok(events)
}

/// An event from ring-buffer bytes (`None` for a record of another size).
pub fn decode(bytes: &[u8]) -> Option<Event> {
    (bytes.len() == size_of::<Event>())
        // SAFETY: Event is repr(C) plain data; the length was checked.
        .then(|| unsafe { bytes.as_ptr().cast::<Event>().read_unaligned() })
}
