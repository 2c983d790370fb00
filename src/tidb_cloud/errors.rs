//! Answers and transport failures as the named [`StepError`]s the state machines match on, with
//! TiDB Cloud's own `Status` message; a request's credentials never appear in them.

use std::error::Error;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

use crate::StepError;

/// A failed answer, with TiDB Cloud's `Status` `{"code", "message"}` when it sent one.
pub(super) fn failure(operation: &'static str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> StepError {
    let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let code = match &parsed["code"] {
        serde_json::Value::Null => "none".into(),
        serde_json::Value::String(code) => code.clone(),
        code => code.to_string(),
    };
    let text: String = String::from_utf8_lossy(body).trim().chars().take(300).collect();
    let message = [parsed["message"].as_str().unwrap_or_default().trim(), &text]
        .into_iter()
        .find(|m| !m.is_empty())
        .unwrap_or(status.canonical_reason().unwrap_or("no message"))
        .to_owned();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("?").to_owned();
    match status.as_u16() {
        401 | 403 => StepError::TiDBCloudUnauthorized { operation, status: status.as_u16(), message },
        404 => StepError::TiDBCloudNotFound { operation, message },
        429 => StepError::TiDBCloudThrottled {
            operation,
            message: format!(
                "{message} (limit {} requests a minute, resets in {} s)",
                header("x-ratelimit-limit-minute"),
                header("x-ratelimit-reset")
            ),
        },
        408 | 500..=599 => StepError::TiDBCloudUnavailable {
            operation,
            message: format!("HTTP {}, code {code}: {message}", status.as_u16()),
        },
        other => StepError::TiDBCloudRequestFailed { operation, status: other, code, message },
    }
}

/// A request that got no complete answer: transient.
pub(super) fn unavailable(operation: &'static str, timeout: Duration, error: reqwest::Error) -> StepError {
    let message = if error.is_timeout() {
        format!("no complete answer within {} ms", timeout.as_millis())
    } else {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        message
    };
    StepError::TiDBCloudUnavailable { operation, message }
}

/// How long a 429 asks us to wait: `Retry-After`, else `X-Ratelimit-Reset` (seconds until the
/// minute's quota refills); `None` leaves it to the backoff.
pub(super) fn throttle_wait(headers: &HeaderMap) -> Option<Duration> {
    let seconds = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    seconds(RETRY_AFTER.as_str()).or_else(|| seconds("x-ratelimit-reset")).map(Duration::from_secs)
}
