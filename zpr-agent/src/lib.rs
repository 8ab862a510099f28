//! zpr: Zero Trust Packet Routing for Linux hosts.
//!
//! Data flows one way: policy files and the inventory are parsed (`lang`,
//! `inventory`), checked (`inputs`) and compiled into a Plan (`compile`),
//! written into BPF maps (`datapath`) and kept current by the agent
//! (`daemon`). `lang`, `inventory`, `compile` and `synthetic` do no I/O.
//!
//! Layers, each using only those below it: the pure core (`lang`,
//! `inventory`, `inputs`, `compile`); `datapath` and `store` (where a
//! tenancy's state lives: SQLite, etcd); the agent (`daemon`, consuming
//! inputs) and the management API (`api`, changing a store after `iam`);
//! the CLI (`cli`), which composes them. Below them all: `clock`,
//! `side_by_side` (work split over the cores) and `http` (framing,
//! admission under floods, TLS).

pub mod api;
pub mod cli;
pub mod clock;
pub mod common_ends;
pub mod compile;
pub mod daemon;
pub mod datapath;
pub mod flock;
pub mod http;
pub mod iam;
pub mod inputs;
pub mod inventory;
pub mod lang;
pub mod private_file;
pub mod side_by_side;
pub mod store;
pub mod synthetic;
