//! The management API of `zpr serve`: HTTP/1.1 + JSON on a Unix socket,
//! OCI's operation names and resource shapes, authorised by IAM statements
//! for the caller's OS identity, every change applied as a new policy
//! generation through the agent's reload and recorded as a work request
//! and an audit line.

pub mod audit;
pub mod http;
pub mod operations;
pub mod server;
pub mod service;

pub use operations::API_VERSION;
