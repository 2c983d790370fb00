//! The TiDB Cloud API client: TiDB Cloud's AWS account and zones, and a cluster's private link
//! connections (create, get, list, delete), as `tests/tidb_cloud_double/tidbcloud-privatelink-openapi.yaml`
//! describes the `v1beta1` API, its documents read as leniently as it allows. `client` sends the
//! requests (HTTP Digest: the private key never travels) and names each failure as the
//! `TiDBCloud*` [`StepError`] the state machines match on. The key pair is the Secrets Manager secret
//! `{"public_key": "...", "private_key": "..."}`, read on first use, kept while the Lambda is warm.

mod client;

use std::time::Duration;

use aws_config::SdkConfig;
use parking_lot::Mutex;
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::StepError;

type Result<T, E = StepError> = std::result::Result<T, E>;
type Secret = (aws_sdk_secretsmanager::Client, String);

/// A TiDB Cloud API key pair. It acts as organization owner: its private key is a
/// [`SecretString`], which `Debug` redacts and a drop wipes from memory; errors never show it.
#[derive(Clone, Debug, Deserialize)]
pub struct ApiKey {
    public_key: String,
    private_key: SecretString,
}

impl ApiKey {
    /// Parses the secret's text. The error names the shape, never the content: serde's own messages
    /// quote the values they reject, and one of them may be the private key.
    pub fn from_secret_json(secret_id: &str, text: &str) -> Result<Self> {
        let json = r#"{"public_key": "...", "private_key": "..."}"#;
        let shape = |detail| StepError::Misconfigured(format!("secret {secret_id} must be JSON {json} ({detail})"));
        let Self { public_key, private_key } = serde_json::from_str(text)
            .map_err(|e| shape(format!("{:?} error at line {}, column {}", e.classify(), e.line(), e.column())))?;
        let key = Self { public_key: public_key.trim().into(), private_key: private_key.expose_secret().trim().into() };
        let empty = key.public_key.is_empty() || key.private_key.expose_secret().is_empty();
        (!empty).then_some(key).ok_or_else(|| shape("a key is empty".into()))
    }
}

/// How the client talks to TiDB Cloud.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `https://serverless.tidbapi.com` in production; the test double's `http://127.0.0.1:N` locally.
    pub base_url: String,
    /// For one request, from connecting to the last byte of the answer.
    pub timeout: Duration,
    /// How many times one call is sent in all while TiDB Cloud answers 429.
    pub max_attempts: u32,
    /// The longest 429 wait sat out in the function; a longer one fails `TiDBCloudThrottled` at
    /// once, so that the state machine's retry waits instead of a billed, idle Lambda.
    pub max_throttle_wait: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        let (base_url, timeout) = ("https://serverless.tidbapi.com".into(), Duration::from_secs(10));
        Self { base_url, timeout, max_attempts: 3, max_throttle_wait: Duration::from_secs(20) }
    }
}

/// The TiDB Cloud API, built once per cold start.
#[derive(Debug)]
pub struct TiDBCloud {
    http: reqwest::Client,
    base_url: Url,
    options: ClientOptions,
    /// The secret (name or ARN) the key is read from, and read again after a 401.
    secret: Option<Secret>,
    key: Mutex<Option<ApiKey>>,
    /// The server's last challenge, answered at once by later requests (no 401 round trip each).
    challenge: Mutex<Option<client::Challenge>>,
}

impl TiDBCloud {
    /// A client whose key pair is read from Secrets Manager (`secret_id`: name or ARN) on first use.
    pub fn with_secret(sdk: &SdkConfig, secret_id: &str, options: ClientOptions) -> Result<Self> {
        Self::build(options, None, Some((aws_sdk_secretsmanager::Client::new(sdk), secret_id.to_owned())))
    }

    /// TiDB Cloud's AWS account and the zone IDs its endpoints can use, in the cluster's region.
    pub async fn availability_zones(&self, cluster: &str) -> Result<AvailabilityZones> {
        let path = format!("{}:getAvailabilityZones", path(cluster, None)?);
        self.json(&self.call("GetAvailabilityZones", Method::GET, &path)).await
    }

    /// Asks TiDB Cloud to connect the cluster to the endpoint service `service`
    /// (`com.amazonaws.vpce.<region>.vpce-svc-...`): `CREATING`, then `PENDING_ACCEPTANCE` with
    /// TiDB Cloud's endpoint. A 409 (a repeated step, or a lost answer) finds the existing one.
    pub async fn create_private_link_connection(&self, cluster: &str, name: &str, service: &str) -> Result<Connection> {
        let mut call = self.call("CreatePrivateLinkConnection", Method::POST, &path(cluster, None)?);
        let connection = json!({"clusterId": cluster, "displayName": name, "type": "AWS_ENDPOINT_SERVICE",
            "awsEndpointService": {"name": service}});
        call.body = Some(json!({ "privateLinkConnection": connection }).to_string());
        match self.json(&call).await {
            Err(conflict @ StepError::TiDBCloudRequestFailed { status: 409, .. }) => {
                self.find_private_link_connection(cluster, service, None).await?.ok_or(conflict)
            }
            created => created,
        }
    }

    pub async fn get_private_link_connection(&self, cluster: &str, id: &str) -> Result<Connection> {
        self.json(&self.call("GetPrivateLinkConnection", Method::GET, &path(cluster, Some(id))?)).await
    }

    /// Every private link connection of the cluster (all pages).
    pub async fn list_private_link_connections(&self, cluster: &str) -> Result<Vec<Connection>> {
        let mut call = self.call("ListPrivateLinkConnections", Method::GET, &path(cluster, None)?);
        let (mut connections, mut token) = (Vec::new(), None::<String>);
        for _ in 0..100 {
            let pairs = token.iter().map(|token| ("pageToken", token.as_str()));
            call.url.query_pairs_mut().clear().append_pair("pageSize", "100").extend_pairs(pairs);
            let page: Page = self.json(&call).await?;
            connections.extend(page.private_link_connections);
            match page.next_page_token {
                // A server that hands back the same token would loop us forever.
                Some(next) if !next.is_empty() && token.as_ref() != Some(&next) => token = Some(next),
                _ => break,
            }
        }
        Ok(connections)
    }

    /// The cluster's connection to the endpoint service `service`, if any: how a retried step finds
    /// its earlier work instead of creating a second connection. `known`, the ID an earlier answer
    /// gave, is read alone (one small answer however many connections the cluster has); the
    /// cluster's list only when that one is gone or is another service's.
    pub async fn find_private_link_connection(
        &self,
        cluster: &str,
        service: &str,
        known: Option<&str>,
    ) -> Result<Option<Connection>> {
        if let Some(id) = known {
            match self.get_private_link_connection(cluster, id).await {
                Ok(found) if found.endpoint_service_name() == Some(service) => return Ok(Some(found)),
                Ok(_) | Err(StepError::TiDBCloudNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let connections = self.list_private_link_connections(cluster).await?;
        Ok(connections.into_iter().find(|c| c.endpoint_service_name() == Some(service)))
    }

    /// Starts deleting the connection: `DELETING`, then 404 once it is gone. The body is not read.
    pub async fn delete_private_link_connection(&self, cluster: &str, id: &str) -> Result<()> {
        self.send(&self.call("DeletePrivateLinkConnection", Method::DELETE, &path(cluster, Some(id))?)).await.map(drop)
    }
}

/// The cluster's connections, or one of them. IDs come from tags and payloads; one that could
/// change the request's path is refused.
fn path(cluster: &str, id: Option<&str>) -> Result<String> {
    let collection = format!("/v1beta1/clusters/{}/privateLinkConnections", segment("cluster ID", cluster)?);
    let Some(id) = id else { return Ok(collection) };
    Ok(format!("{collection}/{}", segment("private link connection ID", id)?))
}

fn segment<'a>(what: &str, id: &'a str) -> Result<&'a str> {
    let valid = (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    let invalid = || StepError::InvalidInput(format!("'{id}' is not a TiDB Cloud {what} (letters, digits, - and _)"));
    valid.then_some(id).ok_or_else(invalid)
}

/// `GET .../privateLinkConnections:getAvailabilityZones`: whom to allow and which zones to overlap.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityZones {
    pub account_id: String,
    /// Zone **IDs** such as `use1-az1`, not names.
    #[serde(default)]
    pub az_ids: Vec<String>,
}

/// Of a connection only `clusterId`, `displayName` and `type` are required.
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
type Connection = PrivateLinkConnection;

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
    /// A state this client does not know yet, or none: not an error; callers wait as on `Creating`.
    #[default]
    #[serde(other)]
    Unknown,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Page {
    private_link_connections: Vec<PrivateLinkConnection>,
    next_page_token: Option<String>,
}

#[cfg(test)]
mod tests;
