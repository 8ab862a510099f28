//! The one-entry configuration array: which Plan is live.

/// Index 0 of [`crate::maps::CONFIG`]. A reload writes the new Plan into the
/// idle slot, then bumps `generation` in this one update: packets see the
/// old Plan or the new one, never a mix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Policy generation; 0 means no Plan was ever written (nothing enforced).
    pub generation: u32,
    /// Drop/allow events allowed per second per CPU (token bucket refill).
    pub events_per_second: u32,
    /// [`LAYOUT_VERSION`] of the agent that wrote the maps: an agent adopts
    /// pinned maps only when it equals its own.
    pub layout: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<Config>() == 16);

/// Bumped whenever a map's key, value or meaning changes.
pub const LAYOUT_VERSION: u32 = 6;
crate::user_pod!(Config);

impl Config {
    /// The slot the live Plan sits in.
    pub const fn slot(&self) -> u8 {
        (self.generation % crate::SLOTS) as u8
    }
}
