//! One call: HTTP/1.1 over rustls (reqwest); the Digest challenge answered (http-auth), and the
//! latest one kept so that later requests answer it at once with the next nonce count; a 429
//! waited out as its rate-limit headers say, while the wait is short (backon).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use http_auth::digest::{Algorithm, Qop};
use http_auth::{DigestClient, PasswordParams};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};

use super::errors::{failure, throttle_wait, unavailable};
use super::{ApiKey, ClientOptions, Result, Secret, TiDBCloud};
use crate::StepError;

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
        challenges
            .filter_map(|challenge| {
                let names_algorithm = challenge.params.iter().any(|(k, _)| k.eq_ignore_ascii_case("algorithm"));
                Some(Self { digest: DigestClient::try_from(&challenge).ok()?, names_algorithm })
            })
            .filter(|c| c.digest.qop() & Qop::Auth)
            .max_by_key(|c| c.digest.algorithm() == Algorithm::Sha256)
    }

    pub(super) fn authorization(&mut self, key: &ApiKey, method: &Method, uri: &str) -> Option<HeaderValue> {
        let (username, password) = (key.public_key.as_str(), key.private_key.as_str());
        let params = PasswordParams { username, password, uri, method: method.as_str(), body: None };
        let mut header = self.digest.respond(&params).ok()?;
        if !self.names_algorithm {
            header = header.replacen("algorithm=MD5, ", "", 1);
        }
        let mut value = HeaderValue::from_str(&header).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// How an attempt fails: its error and, for a 429 that may be sent again, the wait it asks.
type Failure = (StepError, Option<Option<Duration>>);

/// One call, as sent (again) to answer a challenge or after a 429.
#[derive(Clone)]
pub(super) struct Call {
    pub operation: &'static str,
    pub method: Method,
    pub url: Url,
    pub body: Option<String>,
}

impl TiDBCloud {
    pub(super) fn build(secret: Option<Secret>, key: Option<ApiKey>, options: ClientOptions) -> Result<Self> {
        let base_url = options.base_url.trim().trim_end_matches('/').to_owned();
        let misconfigured = |why: String| StepError::Misconfigured(format!("TiDB Cloud API URL '{base_url}': {why}"));
        let url = Url::parse(&base_url).map_err(|e| misconfigured(e.to_string()))?;
        if !url.has_host() || !matches!(url.scheme(), "https" | "http") {
            return Err(misconfigured("not an http(s) URL".into()));
        }
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            // Lambda freezes between invocations; a connection idle for long is likely dead.
            .pool_idle_timeout(Duration::from_secs(20))
            // A redirect would be answered with the wrong digest URI; TiDB Cloud sends none.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| misconfigured(e.to_string()))?;
        Ok(Self { http, base_url, options, secret, key: Mutex::new(key), challenge: Mutex::new(None) })
    }

    /// Sends `call`, its 429s waited out, and returns the body of its successful answer.
    pub(super) async fn send(&self, call: Call) -> Result<Vec<u8>> {
        let (key, max_wait) = (self.key().await?, self.options.max_throttle_wait);
        let attempts = self.options.max_attempts.saturating_sub(1) as usize;
        let backoff = ExponentialBuilder::new().with_min_delay(Duration::from_secs(1)).with_max_times(attempts);
        let challenged = AtomicBool::new(false);
        (|| self.attempt(&call, &key, &challenged))
            .retry(backoff)
            .when(|(_, throttled)| throttled.is_some())
            .adjust(|(_, asked), next| {
                next.map(|next| asked.flatten().unwrap_or(next)).filter(|wait| *wait <= max_wait)
            })
            .notify(|_, wait| tracing::warn!(call.operation, wait_ms = wait.as_millis() as u64, "TiDB Cloud throttled"))
            .await
            .map_err(|(error, _)| error)
    }

    async fn attempt(&self, call: &Call, key: &ApiKey, challenged: &AtomicBool) -> Result<Vec<u8>, Failure> {
        let mut response = self.request(call, key).await.map_err(|e| (e, None))?;
        // The first request, or a nonce no longer taken: answer the fresh challenge, once a call
        // (as ClientOptions::worst_case counts). Another 401 means the key is wrong; it may be
        // fixed since we read it, so read it again next time.
        if response.status() == StatusCode::UNAUTHORIZED && !challenged.swap(true, Ordering::Relaxed) {
            if let Some(challenge) = Challenge::pick(response.headers()) {
                *lock(&self.challenge) = Some(challenge);
                response = self.request(call, key).await.map_err(|e| (e, None))?;
            }
        }
        if response.status() == StatusCode::UNAUTHORIZED && self.secret.is_some() {
            *lock(&self.key) = None;
        }
        let (status, headers) = (response.status(), response.headers().clone());
        let answer =
            response.bytes().await.map_err(|e| (unavailable(call.operation, self.options.timeout, e), None))?;
        if status.is_success() {
            return Ok(answer.to_vec());
        }
        let throttled = (status == StatusCode::TOO_MANY_REQUESTS).then(|| throttle_wait(&headers));
        Err((failure(call.operation, status, &headers, &answer), throttled))
    }

    async fn request(&self, call: &Call, key: &ApiKey) -> Result<reqwest::Response> {
        let url = &call.url;
        let uri = url.query().map_or_else(|| url.path().to_owned(), |query| format!("{}?{query}", url.path()));
        let authorization = lock(&self.challenge).as_mut().and_then(|c| c.authorization(key, &call.method, &uri));
        let mut request = self.http.request(call.method.clone(), url.clone()).header(ACCEPT, "application/json");
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        if let Some(body) = &call.body {
            request = request.header(CONTENT_TYPE, "application/json").body(body.clone());
        }
        request.send().await.map_err(|e| unavailable(call.operation, self.options.timeout, e))
    }

    async fn key(&self) -> Result<ApiKey> {
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
