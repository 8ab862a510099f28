//! Work requests: what became of each change made through the API (OCI's
//! asynchronous-operation record), kept in the store beside the tenancy.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkRequest {
    pub id: String,
    /// The API operation, e.g. `CreateZprPolicy`.
    pub operation_type: String,
    /// `SUCCEEDED` or `FAILED`.
    pub status: String,
    pub resource_type: String,
    /// The security-attribute namespace concerned, if any (for IAM).
    pub namespace: Option<String>,
    pub resource: String,
    pub principal: String,
    /// The store's revision that holds the change (what a fleet's agents
    /// report enforcing).
    #[serde(default)]
    pub revision: Option<u64>,
    /// The policy generation the change produced on the host that served
    /// the request, when an agent runs beside the API.
    pub generation: Option<u32>,
    pub percent_complete: f32,
    pub errors: Vec<WorkRequestError>,
    pub logs: Vec<WorkRequestLog>,
    pub time_accepted: u64,
    pub time_finished: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkRequestError {
    pub code: String,
    pub message: String,
    pub timestamp: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkRequestLog {
    pub message: String,
    pub timestamp: u64,
}
