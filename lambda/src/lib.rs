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
use serde_json::Value;
use tidb_privatelink::{Settings, Step, StepError};
use tracing_subscriber::filter::{LevelFilter, Targets};

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
    init_logging();
    let settings = Settings::from_env()?;
    // The SDK sets no time limit on a call by default; one that hangs would take the whole
    // invocation with it. Bounded, a hung attempt is retried by the SDK like other failures.
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(tidb_privatelink::tls::aws_http_client())
        .timeout_config(timeouts)
        .load()
        .await;
    Ok(Wiring { sdk, settings })
}

/// Logs as Lambda's logging controls ask, as lambda_runtime's default subscriber does: JSON lines
/// when `AWS_LAMBDA_LOG_FORMAT` is `JSON`, the level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`
/// (`level` or `target=level,...`), else info; no timestamps (Lambda adds them). Its filter is
/// tracing-subscriber's `Targets`, not the regex-based `EnvFilter`, which would add a regex engine
/// to the bootstrap for span and field filters nobody sets (README, "Build").
pub fn init_logging() {
    use tracing_subscriber::prelude::*;

    let filter = log_filter(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok(), std::env::var("RUST_LOG").ok());
    let lines = tracing_subscriber::fmt::layer().with_target(false).without_time();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let lines = if json { lines.json().boxed() } else { lines.boxed() };
    tracing_subscriber::registry().with(lines.with_filter(filter)).init();
}

/// What is logged: Lambda's level if set, else `RUST_LOG`'s directives; info when neither reads.
fn log_filter(lambda_level: Option<String>, rust_log: Option<String>) -> Targets {
    let directives = lambda_level.or(rust_log).and_then(|directives| directives.parse::<Targets>().ok());
    directives.unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// A function's whole `main` when the step takes the invocation's payload as it comes.
pub async fn serve_step<S: Step>() -> Result<(), Error>
where
    S::Input: DeserializeOwned,
{
    serve_step_adapted::<S, S::Input>(|input| input).await
}

/// What a step's invocation comes to: its answer as JSON, boxed so that every step's future has
/// one type (the steps' own futures, the TiDB Cloud client's HTTP stack inside the SDK's, are also
/// deep enough to exceed the compiler's layout recursion limit in `main`).
pub type Answer<'a> = Pin<Box<dyn Future<Output = Result<Value, StepError>> + 'a>>;

/// A function's whole `main`: wire the step, then serve invocations until Lambda stops us, each
/// payload read as `E` and turned into the step's input by `adapt`.
pub async fn serve_step_adapted<S: Step, E: DeserializeOwned>(adapt: fn(E) -> S::Input) -> Result<(), Error> {
    let wiring = init().await?;
    let step = S::new(&wiring.sdk, &wiring.settings)?;
    serve(&|payload| answer(&step, adapt, payload)).await
}

/// One invocation of `step` on `payload`, read as `E` and adapted to the step's input.
fn answer<'s, S: Step, E: DeserializeOwned + 's>(step: &'s S, adapt: fn(E) -> S::Input, payload: Value) -> Answer<'s> {
    Box::pin(async move {
        let input = serde_json::from_value::<E>(payload).map_err(|e| {
            StepError::InvalidInput(format!("the payload is not what {} takes: {e}", std::any::type_name::<S>()))
        })?;
        let output = step.run(adapt(input)).await?;
        // A step's output is plain data (derived Serialize, string keys): it always has a JSON form.
        Ok(serde_json::to_value(output).expect("a step's output serializes to JSON"))
    })
}

/// Runs `step` for each invocation; a failure is logged with its Step Functions error name and
/// returned to Lambda under that name. Payloads and answers cross it as JSON, so the runtime's
/// machinery is compiled once for all the binary's steps, not once per step (README, "Build").
pub async fn serve<'s>(step: &'s dyn Fn(Value) -> Answer<'s>) -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
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
    use serde_json::json;

    /// A step that answers its number plus one.
    struct Increment;

    impl Step for Increment {
        type Input = u32;
        type Output = u32;

        fn new(_: &SdkConfig, _: &Settings) -> Result<Self, StepError> {
            Ok(Self)
        }

        async fn run(&self, input: u32) -> Result<u32, StepError> {
            Ok(input + 1)
        }
    }

    #[test]
    fn lambdas_log_level_comes_first_then_rust_log_then_info() {
        use tracing::Level;
        let some = |s: &str| Some(s.to_string());
        // Lambda's logging controls give upper-case levels.
        let lambda = log_filter(some("DEBUG"), some("error"));
        assert!(lambda.would_enable("tidb_privatelink", &Level::DEBUG));
        let per_target = log_filter(None, some("warn,tidb_privatelink=debug"));
        assert!(per_target.would_enable("tidb_privatelink::steps", &Level::DEBUG));
        assert!(!per_target.would_enable("aws_smithy_runtime", &Level::INFO));
        for unreadable in [None, some("tidb_privatelink=loud")] {
            let default = log_filter(None, unreadable);
            assert!(default.would_enable("tidb_privatelink", &Level::INFO));
            assert!(!default.would_enable("tidb_privatelink", &Level::DEBUG));
        }
    }

    #[tokio::test]
    async fn a_payload_is_read_as_the_steps_input_and_its_answer_written_as_json() {
        assert_eq!(answer(&Increment, |n: u32| n * 10, json!(4)).await.unwrap(), json!(41));
    }

    #[tokio::test]
    async fn a_payload_of_another_shape_is_invalid_input_naming_the_step() {
        let error = answer(&Increment, |n: u32| n, json!({"db_instance_identifier": "orders"})).await.unwrap_err();
        assert_eq!(error.name(), "InvalidInput");
        assert!(error.to_string().contains("Increment"), "{error}");
    }

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
