//! The contract between zpr's kernel programs and its agent: every map key,
//! value and event is `#[repr(C)]` with explicit padding and a size assert,
//! and map names and sizes live in [`maps`], in one place.
#![no_std]

pub mod config;
pub mod conntrack;
pub mod counters;
pub mod endpoint;
pub mod event;
pub mod identity;
pub mod maps;
pub mod policy;
pub mod usage;

/// Which way a packet crosses the workload's vNIC.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sent by the workload (XDP or tcx ingress on the host-side vNIC).
    FromWorkload = 0,
    /// Delivered to the workload (tcx egress on the host-side vNIC).
    ToWorkload = 1,
}

impl Direction {
    pub const COUNT: usize = 2;
    pub const ALL: [Direction; Direction::COUNT] = [Direction::FromWorkload, Direction::ToWorkload];

    pub const fn name(self) -> &'static str {
        match self {
            Direction::FromWorkload => "from-workload",
            Direction::ToWorkload => "to-workload",
        }
    }

    pub const fn from_u8(raw: u8) -> Option<Direction> {
        match raw {
            0 => Some(Direction::FromWorkload),
            1 => Some(Direction::ToWorkload),
            _ => None,
        }
    }
}

/// Address family as stored in keys (values of `AF_INET` / `AF_INET6`
/// would waste nothing but say less; these are the on-map values).
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// An address in map form: IPv4 in the first four bytes, the rest zero.
pub type Address = [u8; 16];

/// Plans are written into one of two slots; the live one is
/// `generation % 2` (see [`config::Config`]).
pub const SLOTS: u32 = 2;

/// Implements `aya::Pod` for contract types on the user side.
macro_rules! user_pod {
    ($($ty:ty),* $(,)?) => {
        $(
            #[cfg(feature = "user")]
            // SAFETY: repr(C), padding explicit and zeroed, every bit pattern valid.
            unsafe impl aya::Pod for $ty {}
        )*
    };
}
pub(crate) use user_pod;
