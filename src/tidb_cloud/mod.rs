//! The TiDB Cloud API client: TiDB Cloud's AWS account and zones, and the private link connection
//! of a cluster to an endpoint service (create, get, list, delete), as the `v1beta1` contract in
//! `tests/tidb_cloud_double/tidbcloud-privatelink-openapi.yaml` describes them. `client` sends
//! the requests (HTTP Digest, so the private key never travels), `models` reads the answers and
//! `errors` names each failure as a `TiDBCloud*` [`StepError`], which the state machines match on.
//!
//! The API key pair is kept in AWS Secrets Manager as the JSON text
//! `{"public_key": "...", "private_key": "..."}`, read on first use and kept for the life of the
//! Lambda environment. [`ApiKey`] never shows the private key in `Debug`, `Display` or errors.

mod client;
mod errors;
mod models;

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::SdkConfig;
use client::Call;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

pub use models::{AvailabilityZones, AwsEndpointService, ConnectionState, PrivateLinkConnection};

use crate::{aws, StepError};

type Result<T, E = StepError> = std::result::Result<T, E>;
type Secret = (aws_sdk_secretsmanager::Client, String);

const PAGE_SIZE: u32 = 100;
const MAX_PAGES: usize = 100;

/// A TiDB Cloud API key pair (it acts as organization owner, hence the care).
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct ApiKey {
    public_key: String,
    private_key: String,
}

impl ApiKey {
    pub fn new(public_key: impl Into<String>, private_key: impl Into<String>) -> Self {
        Self { public_key: public_key.into(), private_key: private_key.into() }
    }

    /// Reads the secret `{"public_key": "...", "private_key": "..."}`.
    pub async fn from_secrets_manager(client: &aws_sdk_secretsmanager::Client, secret_id: &str) -> Result<Self> {
        let out = client.get_secret_value().secret_id(secret_id).send().await.map_err(|error| {
            if aws::error_code(&error) != Some("ResourceNotFoundException") {
                return aws::failure("GetSecretValue", error);
            }
            StepError::Misconfigured(format!("the TiDB Cloud API key secret {secret_id} does not exist"))
        })?;
        let text = out.secret_string().ok_or_else(|| {
            StepError::Misconfigured(format!("secret {secret_id} has no text value; store the key pair as JSON text"))
        })?;
        Self::from_secret_json(secret_id, text)
    }

    /// Parses the secret's text. The error names the shape, never the content: serde's own messages
    /// quote the values they reject, and one of them may be the private key.
    pub fn from_secret_json(secret_id: &str, text: &str) -> Result<Self> {
        let shape = |detail: String| {
            let json = r#"{"public_key": "...", "private_key": "..."}"#;
            StepError::Misconfigured(format!("secret {secret_id} must be JSON {json} ({detail})"))
        };
        let parsed: Self = serde_json::from_str(text)
            .map_err(|e| shape(format!("{:?} error at line {}, column {}", e.classify(), e.line(), e.column())))?;
        let key = Self::new(parsed.public_key.trim(), parsed.private_key.trim());
        match key.public_key.is_empty() || key.private_key.is_empty() {
            true => Err(shape("a key is empty".into())),
            false => Ok(key),
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey").field("public_key", &self.public_key).field("private_key", &"<redacted>").finish()
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TiDB Cloud API key {} (private key redacted)", self.public_key)
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
    /// The longest 429 wait sat out inside the function; a longer one fails `TiDBCloudThrottled` at
    /// once, so that the state machine's retry waits instead of a billed, idle Lambda.
    pub max_throttle_wait: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            base_url: "https://serverless.tidbapi.com".into(),
            timeout: Duration::from_secs(10),
            max_attempts: 3,
            max_throttle_wait: Duration::from_secs(20),
        }
    }
}

impl ClientOptions {
    /// The longest one call can take: a digest challenge, then every attempt timing out, with
    /// the longest throttle wait between attempts. The functions that call TiDB Cloud have a
    /// Lambda timeout above this (template.yaml), so one call always fits.
    pub fn worst_case(&self) -> Duration {
        self.timeout * (1 + self.max_attempts) + self.max_throttle_wait * self.max_attempts.saturating_sub(1)
    }
}

/// The TiDB Cloud API, built once per cold start.
#[derive(Debug)]
pub struct TiDBCloud {
    http: reqwest::Client,
    base_url: String,
    options: ClientOptions,
    secret: Option<Secret>,
    key: Mutex<Option<ApiKey>>,
    /// The server's last challenge, answered at once by later requests (no 401 round trip each).
    challenge: Mutex<Option<client::Challenge>>,
}

impl TiDBCloud {
    /// A client with a key at hand (tests, tools).
    pub fn new(key: ApiKey, options: ClientOptions) -> Result<Self> {
        Self::build(None, Some(key), options)
    }

    /// A client whose key pair is read from Secrets Manager (`secret_id`: name or ARN) on first use.
    pub fn with_secret(sdk: &SdkConfig, secret_id: &str, options: ClientOptions) -> Result<Self> {
        Self::build(Some((aws_sdk_secretsmanager::Client::new(sdk), secret_id.to_owned())), None, options)
    }

    /// TiDB Cloud's AWS account and the zone IDs its endpoints can use, for `cluster_id`'s region.
    pub async fn availability_zones(&self, cluster_id: &str) -> Result<AvailabilityZones> {
        let path = format!("{}:getAvailabilityZones", collection(cluster_id)?);
        self.json(self.call("GetAvailabilityZones", Method::GET, &path)?).await
    }

    /// Asks TiDB Cloud to connect `cluster_id` to the endpoint service `service`
    /// (`com.amazonaws.vpce.<region>.vpce-svc-...`). The answer is `CREATING`; TiDB Cloud then
    /// creates its endpoint and reports `PENDING_ACCEPTANCE` with the endpoint's ID.
    ///
    /// A 409 (it exists: a repeated step, or a lost answer) returns the existing connection. Of
    /// the other 4xx only 429 (waited out here while short, then `TiDBCloudThrottled`) and 408
    /// (`TiDBCloudUnavailable`) are retried, by the state machine; 400, 401, 403, 404 and the rest
    /// end the workflow.
    pub async fn create_private_link_connection(
        &self,
        cluster_id: &str,
        name: &str,
        service: &str,
    ) -> Result<PrivateLinkConnection> {
        let mut call = self.call("CreatePrivateLinkConnection", Method::POST, &collection(cluster_id)?)?;
        let connection = json!({"clusterId": cluster_id, "displayName": name, "type": "AWS_ENDPOINT_SERVICE",
            "awsEndpointService": {"name": service}});
        call.body = Some(json!({ "privateLinkConnection": connection }).to_string());
        match self.json(call).await {
            Err(conflict @ StepError::TiDBCloudRequestFailed { status: 409, .. }) => {
                self.find_private_link_connection(cluster_id, service).await?.ok_or(conflict)
            }
            created => created,
        }
    }

    pub async fn get_private_link_connection(&self, cluster_id: &str, id: &str) -> Result<PrivateLinkConnection> {
        self.json(self.call("GetPrivateLinkConnection", Method::GET, &item(cluster_id, id)?)?).await
    }

    /// Every private link connection of the cluster (all pages).
    pub async fn list_private_link_connections(&self, cluster_id: &str) -> Result<Vec<PrivateLinkConnection>> {
        let path = format!("{}?pageSize={PAGE_SIZE}", collection(cluster_id)?);
        let first = self.call("ListPrivateLinkConnections", Method::GET, &path)?;
        let (mut connections, mut token) = (Vec::new(), None::<String>);
        for _ in 0..MAX_PAGES {
            let mut call = first.clone();
            if let Some(token) = &token {
                call.url.query_pairs_mut().append_pair("pageToken", token);
            }
            let page: models::Page = self.json(call).await?;
            connections.extend(page.private_link_connections);
            match page.next_page_token.filter(|next| !next.is_empty()) {
                // A server that hands back the same token would loop us forever.
                Some(next) if token.as_ref() != Some(&next) => token = Some(next),
                _ => break,
            }
        }
        Ok(connections)
    }

    /// The cluster's connection to the endpoint service `service`, if there is one: how a retried
    /// step finds its earlier work instead of creating a second connection.
    pub async fn find_private_link_connection(
        &self,
        cluster_id: &str,
        service: &str,
    ) -> Result<Option<PrivateLinkConnection>> {
        let connections = self.list_private_link_connections(cluster_id).await?;
        Ok(connections.into_iter().find(|c| c.endpoint_service_name() == Some(service)))
    }

    /// Starts deleting the connection (TiDB Cloud reports `DELETING`, then, once it is gone, 404).
    /// The answer's body is not read.
    pub async fn delete_private_link_connection(&self, cluster_id: &str, id: &str) -> Result<()> {
        self.send(self.call("DeletePrivateLinkConnection", Method::DELETE, &item(cluster_id, id)?)?).await.map(drop)
    }

    fn call(&self, operation: &'static str, method: Method, path: &str) -> Result<Call> {
        let url = Url::parse(&format!("{}{path}", self.base_url))
            .map_err(|e| StepError::InvalidInput(format!("'{path}' does not make a TiDB Cloud URL: {e}")))?;
        Ok(Call { operation, method, url, body: None })
    }

    async fn json<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let (operation, answer) = (call.operation, self.send(call).await?);
        serde_json::from_slice(&answer).map_err(|e| StepError::TiDBCloudRequestFailed {
            operation,
            status: 200,
            code: "InvalidResponse".into(),
            message: format!("the answer is not the documented shape: {e}"),
        })
    }
}

fn collection(cluster_id: &str) -> Result<String> {
    Ok(format!("/v1beta1/clusters/{}/privateLinkConnections", segment("cluster ID", cluster_id)?))
}

fn item(cluster_id: &str, id: &str) -> Result<String> {
    Ok(format!("{}/{}", collection(cluster_id)?, segment("private link connection ID", id)?))
}

/// IDs come from tags and payloads; one that could change the request's path is refused.
fn segment<'a>(what: &str, id: &'a str) -> Result<&'a str> {
    let valid =
        !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(id)
    } else {
        Err(StepError::InvalidInput(format!("'{id}' is not a TiDB Cloud {what} (letters, digits, '-' and '_' only)")))
    }
}

#[cfg(test)]
mod tests;
