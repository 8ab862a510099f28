//! User-space side of the kernel programs: load the embedded object, attach
//! it to interfaces, read counters. Thin on purpose: decisions live in
//! `compile` (user space) and `zpr-ebpf` (kernel).

mod counters;
mod object;

pub use counters::{CounterTable, read_counters};
pub use object::{Datapath, XdpMode};
