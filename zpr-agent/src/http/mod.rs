//! HTTP for zpr's servers (the management API, the metrics endpoint) and
//! the CLI: message framing, connection admission under floods, accept
//! loops, and mutual TLS.

pub mod admission;
pub mod client;
pub mod listener;
pub mod message;
pub mod tls;
