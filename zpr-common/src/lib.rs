//! The contract between zpr's kernel programs and its agent: every map key,
//! value and event is `#[repr(C)]` with explicit padding and a size assert,
//! and map names and sizes live here, in one place.
#![no_std]

pub mod counters;
pub mod maps;

/// Which way a packet crosses the workload's vNIC.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sent by the workload (XDP / tcx ingress on the host-side vNIC).
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
}
