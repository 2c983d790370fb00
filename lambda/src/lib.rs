//! What knows Lambda, and nothing else: logging, configuration and SDK clients set up once per
//! cold start, each invocation's payload given to its [`Step`], a failure reported to Lambda under
//! its Step Functions error name. The steps themselves are `tidb_privatelink`'s.

pub mod acceptor;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tidb_privatelink::{Settings, Step, StepError};

/// What a function's `main` returns when the runtime cannot start or stops.
pub use lambda_runtime::Error;

/// The longest one attempt of an AWS call may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a function's `main` builds its step from.
pub struct Wiring {
    pub sdk: SdkConfig,
    pub settings: Settings,
}

/// JSON logs when the function's log format is JSON (the template sets it), configuration from
/// the environment, and the SDK's default credential and region chain.
pub async fn init() -> Result<Wiring, Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    // The SDK sets no time limit on a call by default; one that hangs would take the whole
    // invocation with it. Bounded, a hung attempt is retried by the SDK like other failures.
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build();
    let sdk = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts).load().await;
    Ok(Wiring { sdk, settings })
}

/// A function's whole `main` when the step takes the invocation's payload as it comes.
pub async fn serve_step<S: Step>() -> Result<(), Error>
where
    S::Input: DeserializeOwned,
{
    serve_step_adapted::<S, S::Input>(|input| input).await
}

/// A function's whole `main`: wire the step, then serve invocations until Lambda stops us, each
/// payload turned into the step's input by `adapt`.
pub async fn serve_step_adapted<S: Step, E: DeserializeOwned + Send>(adapt: fn(E) -> S::Input) -> Result<(), Error> {
    let wiring = init().await?;
    let step = S::new(&wiring.sdk, &wiring.settings)?;
    // Boxed: the steps' futures (the TiDB Cloud client's HTTP stack inside the SDK's) are deep
    // enough types to exceed the compiler's layout recursion limit in `main`.
    serve(|event: E| -> Pin<Box<dyn Future<Output = Result<S::Output, StepError>> + Send + '_>> {
        Box::pin(step.run(adapt(event)))
    })
    .await
}

/// Runs `step` for each invocation; a failure is logged with its Step Functions error name and
/// returned to Lambda under that name.
pub async fn serve<I, O, F, Fut>(step: F) -> Result<(), Error>
where
    I: DeserializeOwned + Send,
    O: Serialize,
    F: Fn(I) -> Fut,
    Fut: Future<Output = Result<O, StepError>>,
{
    lambda_runtime::run(service_fn(|event: LambdaEvent<I>| {
        let deadline = event.context.deadline();
        let outcome = within_deadline(deadline, step(event.payload));
        async move {
            let outcome = outcome.await;
            if let Err(error) = &outcome {
                tracing::error!(error = error.name(), transient = error.is_transient(), "{error}");
            }
            outcome.map_err(diagnostic)
        }
    }))
    .await
}

/// Lambda's report of a failed invocation: the error's stable name, which Step Functions' `Retry`
/// and `Catch` match on, rather than the Rust type's.
pub fn diagnostic(error: StepError) -> Diagnostic {
    Diagnostic { error_type: error.name().to_string(), error_message: error.to_string() }
}

/// How long before the invocation's deadline a step gives up, so that it still answers.
pub const TIME_TO_ANSWER: Duration = Duration::from_secs(2);

/// Runs `work` until shortly before `deadline`. Lambda ends an invocation that outlives its
/// function's timeout as `Sandbox.Timedout`, which a state machine cannot tell from a crash; a
/// step about to run out of time ends with the transient `OutOfTime` instead, which the state
/// machines retry (every step is safe to run again). A deadline that is not in the future (no
/// runtime set one) imposes nothing.
pub async fn within_deadline<O>(
    deadline: SystemTime,
    work: impl Future<Output = Result<O, StepError>>,
) -> Result<O, StepError> {
    let Ok(left) = deadline.duration_since(SystemTime::now()) else { return work.await };
    let budget = left.saturating_sub(TIME_TO_ANSWER);
    tokio::time::timeout(budget, work).await.unwrap_or_else(|_| Err(StepError::OutOfTime { seconds: left.as_secs() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_step_about_to_outlive_its_invocation_ends_out_of_time() {
        let deadline = SystemTime::now() + TIME_TO_ANSWER + Duration::from_millis(300);
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, StepError>(())
        };
        let started = std::time::Instant::now();
        let error = within_deadline(deadline, slow).await.unwrap_err();
        assert_eq!(error.name(), "OutOfTime");
        assert!(error.is_transient());
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_step_in_time_or_without_a_deadline_keeps_its_result() {
        let soon = SystemTime::now() + Duration::from_secs(30);
        assert_eq!(within_deadline(soon, async { Ok::<_, StepError>(7) }).await.unwrap(), 7);
        assert_eq!(within_deadline(SystemTime::UNIX_EPOCH, async { Ok::<_, StepError>(8) }).await.unwrap(), 8);
    }

    #[test]
    fn diagnostic_carries_the_stable_name_not_the_rust_type() {
        let diagnostic =
            diagnostic(StepError::DatabaseNotAvailable { identifier: "orders".into(), status: "stopped".into() });
        assert_eq!(diagnostic.error_type, "DatabaseNotAvailable");
        assert!(diagnostic.error_message.contains("'stopped'"), "{}", diagnostic.error_message);
    }
}
