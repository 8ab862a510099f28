//! zpr: Zero Trust Packet Routing for Linux hosts.
//!
//! Data flows one way: policy files and the inventory are parsed (`lang`,
//! `inventory`), compiled into a Plan (`compile`), written into BPF maps
//! (`datapath`) and kept current by the agent. `lang`, `inventory`,
//! `compile` and `synthetic` do no I/O.

pub mod api;
pub mod cli;
pub mod compile;
pub mod daemon;
pub mod datapath;
pub mod flock;
pub mod iam;
pub mod inputs;
pub mod inventory;
pub mod lang;
pub mod store;
pub mod synthetic;
