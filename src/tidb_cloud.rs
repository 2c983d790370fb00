//! The TiDB Cloud API client: TiDB Cloud's AWS account and zones, and the private link connection
//! of a cluster to an endpoint service (create, get, list, delete), as the `v1beta1` contract in
//! `tests/tidb_cloud_double/tidbcloud-privatelink-openapi.yaml` describes them.
//!
//! Requests are signed with HTTP Digest (RFC 7616: MD5 or, when offered, SHA-256; qop `auth`) so
//! the private key never travels; a short 429 is waited out as the rate-limit headers say; every
//! failure becomes a `TiDBCloud*` [`StepError`] whose name the state machines match on.
//!
//! The API key pair is kept in AWS Secrets Manager as the JSON text
//! `{"public_key": "...", "private_key": "..."}`, read on first use and kept for the life of the
//! Lambda environment. [`ApiKey`] never shows the private key in `Debug`, `Display` or errors.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_config::SdkConfig;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest;

use crate::{aws, StepError};

pub const DEFAULT_BASE_URL: &str = "https://serverless.tidbapi.com";

/// Responses are small JSON documents; anything bigger is not TiDB Cloud talking.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
const PAGE_SIZE: u32 = 100;
const MAX_PAGES: usize = 100;

/// A TiDB Cloud API key pair (it acts as organization owner, hence the care).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    public_key: String,
    private_key: String,
}

impl ApiKey {
    pub fn new(public_key: impl Into<String>, private_key: impl Into<String>) -> Self {
        Self { public_key: public_key.into(), private_key: private_key.into() }
    }

    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Reads the secret `{"public_key": "...", "private_key": "..."}`.
    pub async fn from_secrets_manager(
        client: &aws_sdk_secretsmanager::Client,
        secret_id: &str,
    ) -> Result<Self, StepError> {
        let out = client.get_secret_value().secret_id(secret_id).send().await.map_err(|error| {
            if aws::error_code(&error) == Some("ResourceNotFoundException") {
                StepError::Misconfigured(format!("the TiDB Cloud API key secret {secret_id} does not exist"))
            } else {
                aws::failure("GetSecretValue", error)
            }
        })?;
        let text = out.secret_string().ok_or_else(|| {
            StepError::Misconfigured(format!(
                "secret {secret_id} has no text value; store the TiDB Cloud key pair as JSON text"
            ))
        })?;
        Self::from_secret_json(secret_id, text)
    }

    /// Parses the secret's text. The error names the shape, never the content: serde's own messages
    /// quote the values they reject, and one of them may be the private key.
    pub fn from_secret_json(secret_id: &str, text: &str) -> Result<Self, StepError> {
        #[derive(Deserialize)]
        struct Shape {
            public_key: String,
            private_key: String,
        }
        let shape = |detail: String| {
            StepError::Misconfigured(format!(
                "secret {secret_id} must be JSON {{\"public_key\": \"...\", \"private_key\": \"...\"}} ({detail})"
            ))
        };
        let parsed: Shape = serde_json::from_str(text)
            .map_err(|e| shape(format!("{:?} error at line {}, column {}", e.classify(), e.line(), e.column())))?;
        let key = Self::new(parsed.public_key.trim(), parsed.private_key.trim());
        if key.public_key.is_empty() || key.private_key.is_empty() {
            return Err(shape("a key is empty".into()));
        }
        Ok(key)
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
            base_url: DEFAULT_BASE_URL.into(),
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
    pub private_link_connection_id: String,
    pub cluster_id: String,
    #[serde(default)]
    pub display_name: String,
    pub state: ConnectionState,
    /// Why the connection failed, when it did.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(rename = "type", default)]
    pub connection_type: String,
    #[serde(default)]
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
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint_id: Option<String>,
    #[serde(default)]
    pub availability_zone_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionState {
    Creating,
    PendingAcceptance,
    Active,
    Failed,
    Deleting,
    /// A state this client does not know yet; callers wait on it like `Creating`.
    #[serde(other)]
    Unknown,
}

/// The TiDB Cloud API, built once per cold start.
pub struct TiDBCloud {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base_url: String,
    options: ClientOptions,
    secret: Option<(aws_sdk_secretsmanager::Client, String)>,
    key: Mutex<Option<ApiKey>>,
    /// The server's last challenge: later requests answer it at once (with the next nonce count)
    /// instead of paying a 401 round trip each.
    challenge: Mutex<Option<Challenge>>,
}

impl fmt::Debug for TiDBCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TiDBCloud").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl TiDBCloud {
    /// A client with a key at hand (tests, tools).
    pub fn new(key: ApiKey, options: ClientOptions) -> Result<Self, StepError> {
        Self::build(None, Some(key), options)
    }

    /// A client whose key pair is read from Secrets Manager (`secret_id`: name or ARN) on first use.
    pub fn with_secret(sdk: &SdkConfig, secret_id: &str, options: ClientOptions) -> Result<Self, StepError> {
        Self::build(Some((aws_sdk_secretsmanager::Client::new(sdk), secret_id.to_owned())), None, options)
    }

    fn build(
        secret: Option<(aws_sdk_secretsmanager::Client, String)>,
        key: Option<ApiKey>,
        options: ClientOptions,
    ) -> Result<Self, StepError> {
        let base_url = options.base_url.trim().trim_end_matches('/').to_owned();
        let misconfigured = |why: String| StepError::Misconfigured(format!("TiDB Cloud API URL '{base_url}': {why}"));
        let uri: Uri = base_url.parse().map_err(|e| misconfigured(format!("{e}")))?;
        if uri.host().is_none() || !matches!(uri.scheme_str(), Some("https" | "http")) {
            return Err(misconfigured("not an http(s) URL".into()));
        }
        // An explicit provider: the process-wide default is ambiguous once a dependency enables
        // a second one, and aws-lc-rs is the one the AWS SDK already brings.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = if uri.scheme_str() == Some("https") {
            HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider)
                .map_err(|e| misconfigured(format!("no trusted root certificates: {e}")))?
        } else {
            // Plain HTTP (the local test double) needs no trust store, which a minimal host may lack.
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| misconfigured(e.to_string()))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            HttpsConnectorBuilder::new().with_tls_config(config)
        };
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(options.timeout));
        let https = tls.https_or_http().enable_http1().wrap_connector(connector);
        // Lambda freezes between invocations; a connection idle for long is likely dead.
        let http = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(20)).build(https);
        Ok(Self { http, base_url, options, secret, key: Mutex::new(key), challenge: Mutex::new(None) })
    }

    /// TiDB Cloud's AWS account and the zone IDs its endpoints can use, for `cluster_id`'s region.
    pub async fn availability_zones(&self, cluster_id: &str) -> Result<AvailabilityZones, StepError> {
        let path = format!("{}:getAvailabilityZones", collection(cluster_id)?);
        self.call("GetAvailabilityZones", Method::GET, &path, None).await
    }

    /// Asks TiDB Cloud to connect `cluster_id` to the endpoint service `endpoint_service_name`
    /// (`com.amazonaws.vpce.<region>.vpce-svc-...`). The answer is `CREATING`; TiDB Cloud then
    /// creates its endpoint and reports `PENDING_ACCEPTANCE` with the endpoint's ID.
    pub async fn create_private_link_connection(
        &self,
        cluster_id: &str,
        display_name: &str,
        endpoint_service_name: &str,
    ) -> Result<PrivateLinkConnection, StepError> {
        let body = json!({"privateLinkConnection": {
            "clusterId": cluster_id,
            "displayName": display_name,
            "type": "AWS_ENDPOINT_SERVICE",
            "awsEndpointService": {"name": endpoint_service_name},
        }});
        self.call("CreatePrivateLinkConnection", Method::POST, &collection(cluster_id)?, Some(body.to_string())).await
    }

    pub async fn get_private_link_connection(
        &self,
        cluster_id: &str,
        connection_id: &str,
    ) -> Result<PrivateLinkConnection, StepError> {
        let path = format!("{}/{}", collection(cluster_id)?, segment("private link connection ID", connection_id)?);
        self.call("GetPrivateLinkConnection", Method::GET, &path, None).await
    }

    /// Every private link connection of the cluster (all pages).
    pub async fn list_private_link_connections(
        &self,
        cluster_id: &str,
    ) -> Result<Vec<PrivateLinkConnection>, StepError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            #[serde(default)]
            private_link_connections: Vec<PrivateLinkConnection>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let first = format!("{}?pageSize={PAGE_SIZE}", collection(cluster_id)?);
        let mut connections = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let path = match &token {
                Some(token) => format!("{first}&pageToken={}", percent_encode(token)),
                None => first.clone(),
            };
            let page: Page = self.call("ListPrivateLinkConnections", Method::GET, &path, None).await?;
            connections.extend(page.private_link_connections);
            match page.next_page_token.filter(|next| !next.is_empty()) {
                // A server that hands back the same token would loop us forever.
                Some(next) if token.as_ref() != Some(&next) => token = Some(next),
                _ => break,
            }
        }
        Ok(connections)
    }

    /// The cluster's connection to `endpoint_service_name`, if there is one: how a retried step
    /// finds its earlier work instead of creating a second connection.
    pub async fn find_private_link_connection(
        &self,
        cluster_id: &str,
        endpoint_service_name: &str,
    ) -> Result<Option<PrivateLinkConnection>, StepError> {
        let connections = self.list_private_link_connections(cluster_id).await?;
        Ok(connections.into_iter().find(|c| c.endpoint_service_name() == Some(endpoint_service_name)))
    }

    /// Starts deleting the connection (TiDB Cloud answers `DELETING`, then it is gone: 404).
    pub async fn delete_private_link_connection(
        &self,
        cluster_id: &str,
        connection_id: &str,
    ) -> Result<PrivateLinkConnection, StepError> {
        let path = format!("{}/{}", collection(cluster_id)?, segment("private link connection ID", connection_id)?);
        self.call("DeletePrivateLinkConnection", Method::DELETE, &path, None).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<T, StepError> {
        let uri: Uri = format!("{}{path}", self.base_url)
            .parse()
            .map_err(|e| StepError::InvalidInput(format!("'{path}' does not make a TiDB Cloud URL: {e}")))?;
        let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let body = Bytes::from(body.unwrap_or_default());
        let key = self.key().await?;
        let mut challenged = false;
        let mut sent_while_throttled = 0;
        loop {
            let authorization = match lock(&self.challenge).as_mut() {
                Some(challenge) => Some(challenge.authorization(&key, method.as_str(), &target, &cnonce()?)),
                None => None,
            };
            let (status, headers, answer) = self.exchange(operation, &method, &uri, authorization, &body).await?;
            if status.is_success() {
                return serde_json::from_slice(&answer).map_err(|e| StepError::TiDBCloudRequestFailed {
                    operation,
                    status: status.as_u16(),
                    code: "InvalidResponse".into(),
                    message: format!("the answer is not the documented shape: {e}"),
                });
            }
            if status == StatusCode::UNAUTHORIZED {
                // First request of the process, or a nonce the server no longer takes: answer the
                // fresh challenge once. A second 401 means the key itself is wrong.
                if !challenged {
                    if let Some(challenge) = Challenge::pick(&headers) {
                        *lock(&self.challenge) = Some(challenge);
                        challenged = true;
                        continue;
                    }
                    if !headers.contains_key(WWW_AUTHENTICATE) {
                        return Err(failure(operation, status, &headers, &answer, 0));
                    }
                    return Err(StepError::TiDBCloudUnauthorized {
                        operation,
                        status: status.as_u16(),
                        message:
                            "TiDB Cloud offered no Digest challenge this client can answer (MD5 or SHA-256, qop auth)"
                                .into(),
                    });
                }
                // The secret may have been fixed since we read it: read it again next time.
                if self.secret.is_some() {
                    *lock(&self.key) = None;
                }
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                sent_while_throttled += 1;
                let wait = throttle_wait(&headers, sent_while_throttled);
                if sent_while_throttled < self.options.max_attempts && wait <= self.options.max_throttle_wait {
                    tracing::warn!(
                        operation,
                        attempt = sent_while_throttled,
                        wait_ms = wait.as_millis() as u64,
                        "TiDB Cloud throttled the request; waiting as its rate-limit headers ask"
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            return Err(failure(operation, status, &headers, &answer, sent_while_throttled));
        }
    }

    /// One HTTP exchange, bounded by the timeout; transport failures are transient.
    async fn exchange(
        &self,
        operation: &'static str,
        method: &Method,
        uri: &Uri,
        authorization: Option<String>,
        body: &Bytes,
    ) -> Result<(StatusCode, HeaderMap, Bytes), StepError> {
        let unavailable = |message: String| StepError::TiDBCloudUnavailable { operation, message };
        let mut request = Request::builder().method(method.clone()).uri(uri.clone()).header(ACCEPT, "application/json");
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if let Some(authorization) = authorization {
            let value = HeaderValue::from_str(&authorization).map_err(|_| {
                StepError::Misconfigured("the TiDB Cloud public key has characters an HTTP header cannot carry".into())
            })?;
            request = request.header(AUTHORIZATION, value);
        }
        let request = request
            .body(Full::new(body.clone()))
            .map_err(|e| StepError::InvalidInput(format!("cannot build the TiDB Cloud request: {e}")))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| unavailable(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| unavailable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        };
        tokio::time::timeout(self.options.timeout, exchange)
            .await
            .map_err(|_| unavailable(format!("no complete answer within {} ms", self.options.timeout.as_millis())))?
    }

    async fn key(&self) -> Result<ApiKey, StepError> {
        if let Some(key) = lock(&self.key).clone() {
            return Ok(key);
        }
        let Some((client, secret_id)) = &self.secret else {
            return Err(StepError::Misconfigured("no TiDB Cloud API key is configured".into()));
        };
        let key = ApiKey::from_secrets_manager(client, secret_id).await?;
        *lock(&self.key) = Some(key.clone());
        Ok(key)
    }
}

/// A poisoned lock only means another request panicked; the value inside is still sound.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn collection(cluster_id: &str) -> Result<String, StepError> {
    Ok(format!("/v1beta1/clusters/{}/privateLinkConnections", segment("cluster ID", cluster_id)?))
}

/// IDs come from tags and payloads; one that could change the request's path is refused.
fn segment<'a>(what: &str, id: &'a str) -> Result<&'a str, StepError> {
    let valid =
        !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(id)
    } else {
        Err(StepError::InvalidInput(format!("'{id}' is not a TiDB Cloud {what} (letters, digits, '-' and '_' only)")))
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

/// How long TiDB Cloud asks us to wait: `Retry-After`, else `X-Ratelimit-Reset` (seconds until
/// the minute's quota refills), else exponential backoff from one second.
fn throttle_wait(headers: &HeaderMap, attempt: u32) -> Duration {
    let seconds = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    seconds(RETRY_AFTER.as_str())
        .or_else(|| seconds("x-ratelimit-reset"))
        .map(Duration::from_secs)
        .unwrap_or_else(|| Duration::from_secs(1 << attempt.saturating_sub(1).min(5)))
}

/// A failed answer as a named error, with TiDB Cloud's own `Status` code and message.
fn failure(operation: &'static str, status: StatusCode, headers: &HeaderMap, body: &[u8], attempts: u32) -> StepError {
    #[derive(Deserialize, Default)]
    struct Status {
        #[serde(default)]
        code: Option<serde_json::Value>,
        #[serde(default)]
        message: Option<String>,
    }
    let parsed: Status = serde_json::from_slice(body).unwrap_or_default();
    let code = match parsed.code {
        Some(serde_json::Value::String(code)) => code,
        Some(code) => code.to_string(),
        None => "none".into(),
    };
    let message = parsed.message.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            status.canonical_reason().unwrap_or("no message").to_owned()
        } else {
            text.chars().take(300).collect()
        }
    });
    let status_code = status.as_u16();
    match status_code {
        401 | 403 => StepError::TiDBCloudUnauthorized { operation, status: status_code, message },
        404 => StepError::TiDBCloudNotFound { operation, message },
        429 => {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("?").to_owned();
            StepError::TiDBCloudThrottled {
                operation,
                message: format!(
                    "{message} (still 429 after {attempts} attempt(s); limit {} requests a minute, resets in {} s)",
                    header("x-ratelimit-limit-minute"),
                    header("x-ratelimit-reset")
                ),
            }
        }
        408 | 500..=599 => StepError::TiDBCloudUnavailable {
            operation,
            message: format!("HTTP {status_code}, code {code}: {message}"),
        },
        _ => StepError::TiDBCloudRequestFailed { operation, status: status_code, code, message },
    }
}

/// A fresh client nonce per request (RFC 7616: unpredictable, so a server cannot choose what we hash).
fn cnonce() -> Result<String, StepError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| StepError::TiDBCloudUnavailable {
        operation: "Digest",
        message: format!("no randomness for the client nonce: {e}"),
    })?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// No `algorithm` parameter means MD5 (RFC 7616 3.3).
    fn parse(name: Option<&str>) -> Option<Self> {
        match name.map(str::to_ascii_uppercase).as_deref() {
            None | Some("MD5") => Some(Self::Md5),
            Some("MD5-SESS") => Some(Self::Md5Sess),
            Some("SHA-256") => Some(Self::Sha256),
            Some("SHA-256-SESS") => Some(Self::Sha256Sess),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
        }
    }

    fn hash(self, data: &str) -> String {
        match self {
            Self::Md5 | Self::Md5Sess => hex(&md5::Md5::digest(data.as_bytes())),
            Self::Sha256 | Self::Sha256Sess => hex(&sha2::Sha256::digest(data.as_bytes())),
        }
    }

    fn session(self) -> bool {
        matches!(self, Self::Md5Sess | Self::Sha256Sess)
    }
}

/// A Digest challenge from `WWW-Authenticate`, and how many requests have answered its nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Challenge {
    realm: String,
    nonce: String,
    opaque: Option<String>,
    algorithm: Algorithm,
    /// qop `auth` offered; without any qop the server speaks RFC 2069.
    qop_auth: bool,
    nonce_count: u32,
}

impl Challenge {
    /// The strongest Digest challenge we can answer among all `WWW-Authenticate` headers.
    fn pick(headers: &HeaderMap) -> Option<Self> {
        headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(parse_challenges)
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Digest"))
            .filter_map(|(_, params)| Self::from_params(&params))
            .max_by_key(|challenge| challenge.algorithm)
    }

    fn from_params(params: &[(String, String)]) -> Option<Self> {
        let param = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let qop_auth = match param("qop") {
            None => false,
            Some(qops) if qops.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")) => true,
            Some(_) => return None, // auth-int only: would need the body hashed, TiDB Cloud does not ask it
        };
        Some(Self {
            realm: param("realm").unwrap_or_default().to_owned(),
            nonce: param("nonce")?.to_owned(),
            opaque: param("opaque").map(str::to_owned),
            algorithm: Algorithm::parse(param("algorithm"))?,
            qop_auth,
            nonce_count: 0,
        })
    }

    /// The `Authorization` value for one request (RFC 7616 3.4), counting the nonce's use.
    fn authorization(&mut self, key: &ApiKey, method: &str, uri: &str, cnonce: &str) -> String {
        self.nonce_count += 1;
        let nc = format!("{:08x}", self.nonce_count);
        let algorithm = self.algorithm;
        let mut ha1 = algorithm.hash(&format!("{}:{}:{}", key.public_key, self.realm, key.private_key));
        if algorithm.session() {
            ha1 = algorithm.hash(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = algorithm.hash(&format!("{method}:{uri}"));
        let response = if self.qop_auth {
            algorithm.hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            algorithm.hash(&format!("{ha1}:{}:{ha2}", self.nonce))
        };
        let mut header = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", algorithm={}, response=\"{response}\"",
            quote(&key.public_key),
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri),
            algorithm.name(),
        );
        if self.qop_auth {
            header.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
        }
        if let Some(opaque) = &self.opaque {
            header.push_str(&format!(", opaque=\"{}\"", quote(opaque)));
        }
        header
    }
}

fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Splits one `WWW-Authenticate` value into its challenges, `(scheme, [(param, value)])`. A value
/// may hold several challenges, and quoted values may hold commas and escaped quotes.
fn parse_challenges(value: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut challenges: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() {
            return challenges;
        }
        let end = rest.find(|c: char| c == '=' || c == ',' || c.is_whitespace()).unwrap_or(rest.len());
        let token = &rest[..end];
        rest = &rest[end..];
        if token.is_empty() {
            rest = &rest[1..]; // a stray '='
            continue;
        }
        let after = rest.trim_start();
        let Some(after_equals) = after.strip_prefix('=') else {
            challenges.push((token.to_owned(), Vec::new()));
            continue;
        };
        let raw = after_equals.trim_start();
        let value = if let Some(quoted) = raw.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut consumed = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, escaped)| escaped)),
                    '"' => {
                        consumed = i + 1;
                        break;
                    }
                    _ => value.push(c),
                }
            }
            rest = &quoted[consumed..];
            value
        } else {
            let end = raw.find(',').unwrap_or(raw.len());
            rest = &raw[end..];
            raw[..end].trim().to_owned()
        };
        if let Some((_, params)) = challenges.last_mut() {
            params.push((token.to_ascii_lowercase(), value));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::time::Instant;

    use super::*;

    // RFC 7616 section 3.9.1.
    const RFC_REALM: &str = "http-auth@example.org";
    const RFC_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const RFC_OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";
    const RFC_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    const PUBLIC: &str = "Mufasa";
    const PRIVATE: &str = "Circle of Life";

    fn rfc_challenge(algorithm: Algorithm) -> Challenge {
        Challenge {
            realm: RFC_REALM.into(),
            nonce: RFC_NONCE.into(),
            opaque: Some(RFC_OPAQUE.into()),
            algorithm,
            qop_auth: true,
            nonce_count: 0,
        }
    }

    fn params_of(authorization: &str) -> Vec<(String, String)> {
        let mut challenges = parse_challenges(authorization);
        assert_eq!(challenges.len(), 1, "{authorization}");
        challenges.remove(0).1
    }

    fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
        params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("{name} missing"))
    }

    #[test]
    fn one_call_fits_in_the_functions_timeout() {
        // template.yaml gives the TiDB Cloud functions 120 s, and scripts/check_definitions.py
        // holds them above this figure.
        assert_eq!(ClientOptions::default().worst_case(), Duration::from_secs(80));
    }

    #[test]
    fn digest_gives_the_rfc_7616_known_answers() {
        let key = ApiKey::new(PUBLIC, PRIVATE);
        for (algorithm, expected) in [
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (Algorithm::Sha256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ] {
            let mut challenge = rfc_challenge(algorithm);
            let header = challenge.authorization(&key, "GET", "/dir/index.html", RFC_CNONCE);
            let params = params_of(&header);
            assert_eq!(param(&params, "response"), expected, "{header}");
            assert_eq!(param(&params, "username"), PUBLIC);
            assert_eq!(param(&params, "nc"), "00000001");
            assert_eq!(param(&params, "qop"), "auth");
            assert_eq!(param(&params, "opaque"), RFC_OPAQUE);
            assert_eq!(param(&params, "algorithm"), algorithm.name());
            assert!(!header.contains(PRIVATE));
            let again = challenge.authorization(&key, "GET", "/dir/index.html", RFC_CNONCE);
            assert_eq!(param(&params_of(&again), "nc"), "00000002", "the nonce count grows per request");
        }
    }

    #[test]
    fn picks_sha256_among_several_challenges() {
        let mut headers = HeaderMap::new();
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"x\""));
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Digest realm=\"tidb, cloud\", nonce=\"n-md5\", qop=\"auth,auth-int\", algorithm=MD5, \
                 Digest realm=\"tidb, cloud\", nonce=\"n-\\\"sha\\\"\", qop=\"auth\", algorithm=SHA-256, opaque=\"o\"",
            ),
        );
        let picked = Challenge::pick(&headers).unwrap();
        assert_eq!(picked.algorithm, Algorithm::Sha256);
        assert_eq!(picked.realm, "tidb, cloud");
        assert_eq!(picked.nonce, "n-\"sha\"");
        assert_eq!(picked.opaque.as_deref(), Some("o"));

        let md5_only = HeaderMap::from_iter([(WWW_AUTHENTICATE, HeaderValue::from_static("Digest realm=r, nonce=n"))]);
        let picked = Challenge::pick(&md5_only).unwrap();
        assert_eq!(
            (picked.algorithm, picked.qop_auth),
            (Algorithm::Md5, false),
            "no algorithm means MD5, no qop RFC 2069"
        );

        let unusable = HeaderMap::from_iter([(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Digest realm=r, nonce=n, qop=\"auth-int\", Digest realm=r, nonce=m, algorithm=SHA-512-256",
            ),
        )]);
        assert_eq!(Challenge::pick(&unusable), None);
    }

    /// One request as the test server read it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        target: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    struct Server {
        url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Server {
        fn requests(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    /// A one-connection-per-request HTTP/1.1 server on 127.0.0.1 answering with `respond(request,
    /// n)` (n counts from 1); enough to script TiDB Cloud's answers without a mocking crate.
    fn serve(respond: impl Fn(&Seen, usize) -> String + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&mut stream) else { continue };
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(request.clone());
                    log.len()
                };
                let _ = stream.write_all(respond(&request, n).as_bytes());
            }
        });
        Server { url, seen }
    }

    fn read_request(stream: &mut std::net::TcpStream) -> Option<Seen> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':')?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        Some(Seen { method, target, headers, body: String::from_utf8_lossy(&body).into_owned() })
    }

    fn reply(status: &str, headers: &[(&str, &str)], body: &str) -> String {
        let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
    }

    const CHALLENGE: &str = "Digest realm=\"http-auth@example.org\", qop=\"auth\", algorithm=SHA-256, \
        nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    const ZONES: &str = r#"{"accountId": "380838443567", "azIds": ["use1-az1", "use1-az4"]}"#;

    /// Whether `request` carries a valid SHA-256 Digest answer to [`CHALLENGE`] for the RFC's
    /// user, computed here from the RFC's formula rather than by the client's code.
    fn authorized(request: &Seen) -> bool {
        let Some(header) = request.header("authorization") else { return false };
        let params = params_of(header);
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        let h = |data: String| hex(&sha2::Sha256::digest(data.as_bytes()));
        let ha1 = h(format!("{PUBLIC}:{RFC_REALM}:{PRIVATE}"));
        let ha2 = h(format!("{}:{}", request.method, request.target));
        let expected = h(format!("{ha1}:{RFC_NONCE}:{}:{}:auth:{ha2}", get("nc"), get("cnonce")));
        get("username") == PUBLIC
            && get("uri") == request.target
            && get("opaque") == RFC_OPAQUE
            && get("algorithm") == "SHA-256"
            && get("response") == expected
    }

    fn client(server: &Server, key: ApiKey) -> TiDBCloud {
        let options = ClientOptions {
            base_url: format!("{}/", server.url),
            timeout: Duration::from_secs(5),
            max_attempts: 3,
            max_throttle_wait: Duration::from_secs(5),
        };
        TiDBCloud::new(key, options).unwrap()
    }

    fn rfc_key() -> ApiKey {
        ApiKey::new(PUBLIC, PRIVATE)
    }

    /// A server that insists on digest: a challenge for anything unauthorized, else `answer`.
    fn digest_server(answer: impl Fn(&Seen, usize) -> String + Send + 'static) -> Server {
        serve(move |request, n| {
            if authorized(request) {
                answer(request, n)
            } else {
                reply(
                    "401 Unauthorized",
                    &[("WWW-Authenticate", CHALLENGE)],
                    r#"{"code": 49900001, "message": "public_key not found", "details": []}"#,
                )
            }
        })
    }

    #[tokio::test]
    async fn answers_the_challenge_then_reuses_the_nonce() {
        let server = digest_server(|_, _| reply("200 OK", &[], ZONES));
        let tidb = client(&server, rfc_key());

        let zones = tidb.availability_zones("10140100115280519574").await.unwrap();
        assert_eq!(zones.account_id, "380838443567");
        assert_eq!(zones.az_ids, ["use1-az1", "use1-az4"]);
        tidb.availability_zones("10140100115280519574").await.unwrap();

        let requests = server.requests();
        assert_eq!(requests.len(), 3, "challenge, answer, then the next call answers at once: {requests:?}");
        assert_eq!(requests[0].header("authorization"), None);
        assert_eq!(
            requests[1].target,
            "/v1beta1/clusters/10140100115280519574/privateLinkConnections:getAvailabilityZones"
        );
        assert_eq!(param(&params_of(requests[1].header("authorization").unwrap()), "nc"), "00000001");
        assert_eq!(param(&params_of(requests[2].header("authorization").unwrap()), "nc"), "00000002");
        assert!(requests.iter().all(|r| !format!("{r:?}").contains(PRIVATE)), "the private key never travels");
    }

    #[tokio::test]
    async fn wrong_key_is_unauthorized_after_one_retry() {
        let server = digest_server(|_, _| reply("200 OK", &[], ZONES));
        let secret = "not-the-private-key-0123456789";
        let tidb = client(&server, ApiKey::new(PUBLIC, secret));

        let error = tidb.availability_zones("1").await.unwrap_err();
        assert_eq!(error.name(), "TiDBCloudUnauthorized");
        assert!(!error.is_transient());
        assert!(error.to_string().contains("public_key not found"), "{error}");
        assert!(!error.to_string().contains(secret) && !format!("{error:?}").contains(secret));
        assert_eq!(server.requests().len(), 2, "one challenge answered, then give up");
    }

    #[tokio::test]
    async fn status_bodies_become_named_errors() {
        let server = serve(|request, _| match request.target.as_str() {
            t if t.ends_with("/bad") => reply(
                "400 Bad Request",
                &[],
                r#"{"code": 3, "message": "invalid endpoint service name", "details": []}"#,
            ),
            t if t.ends_with("/gone") => {
                reply("404 Not Found", &[], r#"{"code": 5, "message": "private link connection not found"}"#)
            }
            _ => reply("503 Service Unavailable", &[], "upstream connect error"),
        });
        let tidb = client(&server, rfc_key());

        let error = tidb.get_private_link_connection("1", "bad").await.unwrap_err();
        let StepError::TiDBCloudRequestFailed { status, code, message, .. } = &error else { panic!("{error:?}") };
        assert_eq!((*status, code.as_str(), message.as_str()), (400, "3", "invalid endpoint service name"));
        assert!(!error.is_transient());

        let error = tidb.get_private_link_connection("1", "gone").await.unwrap_err();
        assert_eq!(error.name(), "TiDBCloudNotFound");
        assert!(error.to_string().contains("private link connection not found"), "{error}");

        let error = tidb.get_private_link_connection("1", "plc-1").await.unwrap_err();
        assert_eq!(error.name(), "TiDBCloudUnavailable");
        assert!(error.is_transient() && error.to_string().contains("upstream connect error"), "{error}");
    }

    #[tokio::test]
    async fn waits_as_retry_after_says_then_succeeds() {
        let server = serve(|_, n| match n {
            1 => reply(
                "429 Too Many Requests",
                &[("Retry-After", "1"), ("X-Ratelimit-Limit-Minute", "100"), ("X-Ratelimit-Remaining-Minute", "0")],
                r#"{"code": 49900007, "message": "rate limit exceeded"}"#,
            ),
            _ => reply("200 OK", &[], ZONES),
        });
        let started = Instant::now();
        let zones = client(&server, rfc_key()).availability_zones("1").await.unwrap();
        assert_eq!(zones.account_id, "380838443567");
        assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn waits_for_the_rate_limit_reset_without_retry_after() {
        let server = serve(|_, n| match n {
            1 => reply(
                "429 Too Many Requests",
                &[("X-Ratelimit-Reset", "1")],
                r#"{"code": 49900007, "message": "slow"}"#,
            ),
            _ => reply("200 OK", &[], ZONES),
        });
        let started = Instant::now();
        client(&server, rfc_key()).availability_zones("1").await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn throttled_for_good_is_throttled_after_the_attempts() {
        let server = serve(|_, _| {
            reply(
                "429 Too Many Requests",
                &[("Retry-After", "0"), ("X-Ratelimit-Limit-Minute", "100"), ("X-Ratelimit-Reset", "0")],
                r#"{"code": 49900007, "message": "The request exceeded the limit of 100 times per apikey per minute."}"#,
            )
        });
        let error = client(&server, rfc_key()).availability_zones("1").await.unwrap_err();
        assert_eq!(error.name(), "TiDBCloudThrottled");
        assert!(error.is_transient());
        assert!(error.to_string().contains("limit 100 requests a minute"), "{error}");
        assert_eq!(server.requests().len(), 3, "max_attempts bounds the retries");
    }

    #[tokio::test]
    async fn a_long_wait_is_left_to_the_state_machine() {
        let server = serve(|_, _| reply("429 Too Many Requests", &[("Retry-After", "60")], "{}"));
        let started = Instant::now();
        let error = client(&server, rfc_key()).availability_zones("1").await.unwrap_err();
        assert_eq!(error.name(), "TiDBCloudThrottled");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn silence_and_refusal_are_unavailable() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        // Accepts, reads nothing, never answers.
        std::thread::spawn(move || {
            let _held: Vec<_> = listener.incoming().collect();
        });
        let options = ClientOptions { base_url: url, timeout: Duration::from_millis(300), ..ClientOptions::default() };
        let error = TiDBCloud::new(rfc_key(), options).unwrap().availability_zones("1").await.unwrap_err();
        assert_eq!(error.name(), "TiDBCloudUnavailable");
        assert!(error.to_string().contains("within 300 ms"), "{error}");

        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let options = ClientOptions { base_url: format!("http://{closed}"), ..ClientOptions::default() };
        let error = TiDBCloud::new(rfc_key(), options).unwrap().availability_zones("1").await.unwrap_err();
        assert_eq!(error.name(), "TiDBCloudUnavailable", "{error}");
    }

    const PENDING: &str = r#"{"privateLinkConnectionId": "plc-7f3a", "clusterId": "42", "displayName": "orders-db",
        "state": "PENDING_ACCEPTANCE", "type": "AWS_ENDPOINT_SERVICE", "createTime": "2026-05-01T10:00:00Z",
        "awsEndpointService": {"name": "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0",
                               "region": "us-east-1", "endpointId": "vpce-0a1b2c3d4e5f60718",
                               "availabilityZoneIds": ["use1-az1"]}}"#;

    #[tokio::test]
    async fn creates_with_the_documented_body_and_reads_states() {
        let server = serve(|request, _| match request.method.as_str() {
            "POST" => reply(
                "200 OK",
                &[],
                r#"{"privateLinkConnectionId": "plc-7f3a", "clusterId": "42", "displayName": "orders-db",
                    "state": "CREATING", "type": "AWS_ENDPOINT_SERVICE",
                    "awsEndpointService": {"name": "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0"}}"#,
            ),
            "DELETE" => reply("200 OK", &[], &PENDING.replace("PENDING_ACCEPTANCE", "DELETING")),
            _ => reply("200 OK", &[], &PENDING.replace("PENDING_ACCEPTANCE", "SOMETHING_NEW")),
        });
        let tidb = client(&server, rfc_key());
        let service = "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0";

        let created = tidb.create_private_link_connection("42", "orders-db", service).await.unwrap();
        assert_eq!((created.state, created.endpoint_id()), (ConnectionState::Creating, None));
        let request = &server.requests()[0];
        assert_eq!(request.target, "/v1beta1/clusters/42/privateLinkConnections");
        assert_eq!(request.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(
            body,
            json!({"privateLinkConnection": {"clusterId": "42", "displayName": "orders-db",
                "type": "AWS_ENDPOINT_SERVICE", "awsEndpointService": {"name": service}}})
        );

        let pending: PrivateLinkConnection = serde_json::from_str(PENDING).unwrap();
        assert_eq!(pending.state, ConnectionState::PendingAcceptance);
        assert_eq!(pending.endpoint_id(), Some("vpce-0a1b2c3d4e5f60718"));
        assert_eq!(pending.endpoint_service_name(), Some(service));

        let later = tidb.get_private_link_connection("42", "plc-7f3a").await.unwrap();
        assert_eq!(later.state, ConnectionState::Unknown, "a new state is not an error");
        let deleting = tidb.delete_private_link_connection("42", "plc-7f3a").await.unwrap();
        assert_eq!(deleting.state, ConnectionState::Deleting);
        let requests = server.requests();
        assert_eq!(
            (requests[2].method.as_str(), requests[2].target.as_str()),
            ("DELETE", "/v1beta1/clusters/42/privateLinkConnections/plc-7f3a")
        );
    }

    #[tokio::test]
    async fn lists_every_page_and_finds_by_service_name() {
        let server = serve(|request, _| {
            if request.target.contains("pageToken=next%2Fpage") {
                reply("200 OK", &[], &format!(r#"{{"privateLinkConnections": [{PENDING}], "totalSize": 2}}"#))
            } else {
                let failed = PENDING
                    .replace("plc-7f3a", "plc-0001")
                    .replace("PENDING_ACCEPTANCE", "FAILED")
                    .replace("vpce-svc-0123456789abcdef0", "vpce-svc-0000000000000000f");
                reply(
                    "200 OK",
                    &[],
                    &format!(
                        r#"{{"privateLinkConnections": [{failed}], "nextPageToken": "next/page", "totalSize": 2}}"#
                    ),
                )
            }
        });
        let tidb = client(&server, rfc_key());
        let all = tidb.list_private_link_connections("42").await.unwrap();
        assert_eq!(
            all.iter().map(|c| c.private_link_connection_id.as_str()).collect::<Vec<_>>(),
            ["plc-0001", "plc-7f3a"]
        );
        assert_eq!(server.requests()[0].target, "/v1beta1/clusters/42/privateLinkConnections?pageSize=100");

        let found = tidb
            .find_private_link_connection("42", "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0")
            .await
            .unwrap();
        assert_eq!(found.map(|c| c.private_link_connection_id), Some("plc-7f3a".into()));
        assert_eq!(
            tidb.find_private_link_connection("42", "com.amazonaws.vpce.us-east-1.vpce-svc-1").await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn ids_that_would_change_the_path_are_refused_before_sending() {
        let server = serve(|_, _| reply("200 OK", &[], ZONES));
        let tidb = client(&server, rfc_key());
        for id in ["", "../other", "1/privateLinkConnections", "1?x=y", "a b"] {
            let error = tidb.availability_zones(id).await.unwrap_err();
            assert_eq!(error.name(), "InvalidInput", "{id:?}");
        }
        assert_eq!(tidb.get_private_link_connection("1", "..").await.unwrap_err().name(), "InvalidInput");
        assert!(server.requests().is_empty());
    }

    #[test]
    fn the_private_key_never_shows() {
        let secret = "sk-this-must-stay-hidden";
        let key = ApiKey::new("PUB123", secret);
        assert_eq!(format!("{key:?}"), r#"ApiKey { public_key: "PUB123", private_key: "<redacted>" }"#);
        assert!(!key.to_string().contains(secret) && key.to_string().contains("PUB123"));

        let parsed =
            ApiKey::from_secret_json("tidb", &format!(r#"{{"public_key": " PUB123 ", "private_key": "{secret}"}}"#));
        assert_eq!(parsed.unwrap(), key, "keys are trimmed");
        for malformed in [
            format!(r#"{{"public_key": 7, "private_key": "{secret}"}}"#),
            format!(r#"{{"publicKey": "PUB123", "private_key": "{secret}"}}"#),
            format!(r#"{{"public_key": "PUB123", "private_key": {secret}}}"#),
            format!(r#"{{"public_key": "", "private_key": "{secret}"}}"#),
        ] {
            let error = ApiKey::from_secret_json("tidb", &malformed).unwrap_err();
            assert_eq!(error.name(), "Misconfigured");
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains(secret) && !shown.contains("PUB123"), "{shown}");
            assert!(shown.contains("secret tidb must be JSON"), "{shown}");
        }
        let tidb = TiDBCloud::new(key, ClientOptions::default()).unwrap();
        assert!(!format!("{tidb:?}").contains(secret));
    }

    #[test]
    fn calls_can_run_inside_a_lambda_step() {
        fn send<T: Send>(_: &T) {}
        fn shared<T: Send + Sync>() {}
        shared::<TiDBCloud>();
        let tidb = TiDBCloud::new(rfc_key(), ClientOptions::default()).unwrap();
        send(&tidb.availability_zones("1"));
        send(&tidb.create_private_link_connection("1", "d", "s"));
        send(&tidb.list_private_link_connections("1"));
    }

    #[test]
    fn a_bad_base_url_is_misconfiguration() {
        for url in ["", "serverless.tidbapi.com", "ftp://serverless.tidbapi.com"] {
            let options = ClientOptions { base_url: url.into(), ..ClientOptions::default() };
            assert_eq!(TiDBCloud::new(rfc_key(), options).unwrap_err().name(), "Misconfigured", "{url:?}");
        }
    }
}
