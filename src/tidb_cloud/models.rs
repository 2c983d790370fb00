//! The API's documents, read as leniently as the contract allows: of a connection only
//! `clusterId`, `displayName` and `type` are required, and a state this client does not know is
//! [`ConnectionState::Unknown`], not an error.

use serde::{Deserialize, Serialize};

/// `GET .../privateLinkConnections:getAvailabilityZones`: whom to allow and which zones to overlap.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityZones {
    pub account_id: String,
    /// Zone **IDs** such as `use1-az1`, not names.
    #[serde(default)]
    pub az_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateLinkConnection {
    /// `plc-...`; empty when the answer leaves it out.
    #[serde(default)]
    pub private_link_connection_id: String,
    pub cluster_id: String,
    pub display_name: String,
    #[serde(default)]
    pub state: ConnectionState,
    /// Why the connection failed, when it did.
    pub message: Option<String>,
    #[serde(rename = "type")]
    pub connection_type: String,
    pub aws_endpoint_service: Option<AwsEndpointService>,
}

impl PrivateLinkConnection {
    /// The `vpce-...` endpoint TiDB Cloud created: the one connection request to accept.
    pub fn endpoint_id(&self) -> Option<&str> {
        self.aws_endpoint_service.as_ref()?.endpoint_id.as_deref().filter(|id| !id.is_empty())
    }

    pub fn endpoint_service_name(&self) -> Option<&str> {
        self.aws_endpoint_service.as_ref().map(|s| s.name.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsEndpointService {
    pub name: String,
    pub endpoint_id: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionState {
    Creating,
    PendingAcceptance,
    Active,
    Failed,
    Deleting,
    /// A state this client does not know yet, or none; callers wait on it like `Creating`.
    #[default]
    #[serde(other)]
    Unknown,
}

/// One page of `GET .../privateLinkConnections`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Page {
    #[serde(default)]
    pub private_link_connections: Vec<PrivateLinkConnection>,
    pub next_page_token: Option<String>,
}
