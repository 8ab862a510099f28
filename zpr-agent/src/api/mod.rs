//! The management API of `zpr serve`: HTTP/1.1 + JSON on a Unix socket
//! (and over mutual TLS when asked),
//! OCI's operation names and resource shapes, authorised by IAM statements
//! for the caller's OS identity, every change applied as a new policy
//! generation through the agent's reload and recorded as a work request
//! and an audit line.

pub mod audit;
pub mod operations;
pub mod server;
pub mod service;

pub use operations::API_VERSION;
