//! One call: HTTP/1.1 over rustls (reqwest); the Digest challenge answered (http-auth) and kept, so
//! that later requests answer it at once with the next nonce count; a 429 waited out as its
//! rate-limit headers say while the wait is short (backon); each failure a named [`StepError`]
//! with TiDB Cloud's own message and never the request's credentials.
use std::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use http_auth::{digest::Algorithm, digest::Qop, DigestClient, PasswordParams};
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{ApiKey, ClientOptions, Result, Secret, TiDBCloud};
use crate::{aws, StepError};

/// The product and its version, as TiDB Cloud's own CLI names itself (`ticloud/<version>`).
pub(super) const USER_AGENT: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

/// A Digest challenge we can answer, and whether it named its algorithm: the answer names it only
/// then, as TiDB Cloud's CLI does (none means MD5).
#[derive(Debug)]
pub(super) struct Challenge {
    digest: DigestClient,
    names_algorithm: bool,
}

impl Challenge {
    /// The strongest challenge with qop `auth` (or none) among all `WWW-Authenticate` headers.
    pub(super) fn pick(headers: &HeaderMap) -> Option<Self> {
        let values = headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok());
        let challenges = values.filter_map(|value| http_auth::parse_challenges(value).ok()).flatten();
        let answerable = challenges.filter_map(|challenge| {
            let names_algorithm = challenge.params.iter().any(|(k, _)| k.eq_ignore_ascii_case("algorithm"));
            let digest = DigestClient::try_from(&challenge).ok().filter(|digest| digest.qop() & Qop::Auth)?;
            Some(Self { digest, names_algorithm })
        });
        answerable.max_by_key(|c| c.digest.algorithm() == Algorithm::Sha256)
    }

    pub(super) fn authorization(&mut self, key: &ApiKey, method: &Method, uri: &str) -> Option<HeaderValue> {
        let (username, password, method) = (key.public_key.as_str(), key.private_key.expose_secret(), method.as_str());
        let header = self.digest.respond(&PasswordParams { username, password, uri, method, body: None }).ok()?;
        let header = if self.names_algorithm { header } else { header.replacen("algorithm=MD5, ", "", 1) };
        let mut value = HeaderValue::try_from(header).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// One call, as sent (again) to answer a challenge or after a 429.
pub(super) struct Call {
    operation: &'static str,
    method: Method,
    pub url: Url,
    pub body: Option<String>,
}

/// An answer's body, or the failure and the wait a 429 asks.
type Attempt = Result<Vec<u8>, (StepError, Option<Duration>)>;

impl TiDBCloud {
    pub(super) fn build(options: ClientOptions, key: Option<ApiKey>, secret: Option<Secret>) -> Result<Self> {
        let url = options.base_url.trim();
        let misconfigured = |why: String| StepError::Misconfigured(format!("TiDB Cloud API URL '{url}' {why}"));
        let base_url = Url::parse(url).ok().filter(|url| url.has_host() && matches!(url.scheme(), "https" | "http"));
        let base_url = base_url.ok_or_else(|| misconfigured("is not an absolute http(s) URL".into()))?;
        let tls = crate::tls::client_config()
            .map_err(|e| StepError::Misconfigured(format!("no TLS configuration for the TiDB Cloud client: {e}")))?;
        let http = reqwest::Client::builder().tls_backend_preconfigured(tls);
        let http = http.user_agent(USER_AGENT).timeout(options.timeout).no_proxy();
        // A connection idle for long is likely dead (Lambda freezes between invocations); a redirect
        // would be answered with the wrong digest URI (TiDB Cloud sends none).
        let http = http.pool_idle_timeout(Duration::from_secs(20)).redirect(reqwest::redirect::Policy::none()).build();
        let http = http.map_err(|e| misconfigured(format!("makes no HTTP client: {e}")))?;
        Ok(Self { http, base_url, options, secret, key: Mutex::new(key), challenge: Mutex::new(None) })
    }

    /// `path` (its segments checked) under the base URL.
    pub(super) fn call(&self, operation: &'static str, method: Method, path: &str) -> Call {
        let mut url = self.base_url.clone();
        url.set_path(&format!("{}{path}", self.base_url.path().trim_end_matches('/')));
        Call { operation, method, url, body: None }
    }

    pub(super) async fn json<T: DeserializeOwned>(&self, call: &Call) -> Result<T> {
        let (operation, answer) = (call.operation, self.send(call).await?);
        serde_json::from_slice(&answer).map_err(|e| {
            let message = format!("the answer is not the documented shape: {e}");
            StepError::TiDBCloudRequestFailed { operation, status: 200, code: "InvalidResponse".into(), message }
        })
    }

    /// Sends `call`, its 429s waited out, and returns the body of its successful answer.
    pub(super) async fn send(&self, call: &Call) -> Result<Vec<u8>> {
        let (key, max_wait, challenged) = (self.key().await?, self.options.max_throttle_wait, AtomicBool::new(false));
        let retries = self.options.max_attempts.saturating_sub(1) as usize;
        (|| self.attempt(call, &key, &challenged))
            .retry(ExponentialBuilder::new().with_min_delay(Duration::from_secs(1)).with_max_times(retries))
            .when(|(error, _)| matches!(error, StepError::TiDBCloudThrottled { .. }))
            .adjust(|(_, asked), next| next.map(|next| asked.unwrap_or(next)).filter(|wait| *wait <= max_wait))
            .notify(|_, wait| tracing::warn!(call.operation, wait_ms = wait.as_millis() as u64, "TiDB Cloud throttled"))
            .await
            .map_err(|(error, _)| error)
    }

    async fn attempt(&self, call: &Call, key: &ApiKey, challenged: &AtomicBool) -> Attempt {
        let lost = |e| (unavailable(call.operation, self.options.timeout, e), None);
        let mut response = self.request(call, key).await.map_err(lost)?;
        // The first request, or a nonce no longer taken: answer the fresh challenge, once a call
        // (as the worst case in the tests counts). Another 401 means the key is wrong; it may be
        // fixed since we read it, so read it again next time.
        if response.status() == StatusCode::UNAUTHORIZED && !challenged.swap(true, Ordering::Relaxed) {
            if let Some(challenge) = Challenge::pick(response.headers()) {
                *self.challenge.lock() = Some(challenge);
                response = self.request(call, key).await.map_err(lost)?;
            }
        }
        if response.status() == StatusCode::UNAUTHORIZED && self.secret.is_some() {
            *self.key.lock() = None;
        }
        let (status, headers) = (response.status(), response.headers().clone());
        let answer = response.bytes().await.map_err(lost)?;
        if status.is_success() {
            return Ok(answer.to_vec());
        }
        // How long a 429 asks us to wait: `Retry-After`, else `X-Ratelimit-Reset` (seconds until
        // the minute's quota refills); none leaves it to the backoff.
        let seconds = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse().ok().map(Duration::from_secs);
        let wait = seconds(RETRY_AFTER.as_str()).or(seconds("x-ratelimit-reset"));
        Err((failure(call.operation, status, &headers, &answer), wait))
    }

    async fn request(&self, call: &Call, key: &ApiKey) -> reqwest::Result<Response> {
        let uri = call.url.query().map_or_else(|| call.url.path().to_owned(), |q| format!("{}?{q}", call.url.path()));
        let authorization = self.challenge.lock().as_mut().and_then(|c| c.authorization(key, &call.method, &uri));
        let request = self.http.request(call.method.clone(), call.url.clone()).header(ACCEPT, "application/json");
        let request = request.headers(authorization.map(|value| (AUTHORIZATION, value)).into_iter().collect());
        match &call.body {
            Some(body) => request.header(CONTENT_TYPE, "application/json").body(body.clone()).send().await,
            None => request.send().await,
        }
    }

    /// The key pair: the one given, else the secret `{"public_key": "...", "private_key": "..."}`.
    async fn key(&self) -> Result<ApiKey> {
        let cached = self.key.lock().clone();
        let (None, Some((client, secret_id))) = (&cached, &self.secret) else {
            return cached.ok_or_else(|| StepError::Misconfigured("no TiDB Cloud API key is configured".into()));
        };
        let missing = |why| StepError::Misconfigured(format!("the TiDB Cloud API key secret {secret_id} {why}"));
        let answer = client.get_secret_value().secret_id(secret_id).send().await;
        let found = aws::unless_code(answer, "ResourceNotFoundException", "GetSecretValue")?;
        let out = found.ok_or_else(|| missing("does not exist"))?;
        let text = out.secret_string().ok_or_else(|| missing("has no text value; store the key pair as JSON text"))?;
        Ok(self.key.lock().insert(ApiKey::from_secret_json(secret_id, text)?).clone())
    }
}

/// A failed answer, with TiDB Cloud's `Status` `{"code", "message"}` when it sent one.
fn failure(operation: &'static str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> StepError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or_default();
    let code = parsed.get("code").map_or("none".into(), |code| code.as_str().map_or(code.to_string(), str::to_owned));
    let text: String = String::from_utf8_lossy(body).trim().chars().take(300).collect();
    let messages =
        [parsed["message"].as_str().unwrap_or_default().trim(), &text, status.canonical_reason().unwrap_or("")];
    let message = messages.into_iter().find(|m| !m.is_empty()).unwrap_or("no message").to_owned();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("?").to_owned();
    let (limit, reset) = (header("x-ratelimit-limit-minute"), header("x-ratelimit-reset"));
    let throttled = format!("{message} (limit {limit} requests a minute, resets in {reset} s)");
    match status.as_u16() {
        status @ (401 | 403) => StepError::TiDBCloudUnauthorized { operation, status, message },
        404 => StepError::TiDBCloudNotFound { operation, message },
        429 => StepError::TiDBCloudThrottled { operation, message: throttled },
        status @ (408 | 500..=599) => {
            StepError::TiDBCloudUnavailable { operation, message: format!("HTTP {status}, code {code}: {message}") }
        }
        status => StepError::TiDBCloudRequestFailed { operation, status, code, message },
    }
}

/// A request that got no complete answer: transient.
fn unavailable(operation: &'static str, timeout: Duration, error: reqwest::Error) -> StepError {
    // reqwest's own message leaves out the cause (refused, reset, TLS), which is in its sources.
    let causes = std::iter::successors(Some(&error as &dyn Error), |e| (*e).source()).map(|e| e.to_string());
    let message = match error.is_timeout() {
        true => format!("no complete answer within {} ms", timeout.as_millis()),
        false => causes.collect::<Vec<_>>().join(": "),
    };
    StepError::TiDBCloudUnavailable { operation, message }
}
