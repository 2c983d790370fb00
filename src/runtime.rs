//! Lambda wiring shared by every function: logging, configuration and SDK clients are set up once
//! per cold start, then each invocation's payload goes to the step.

use std::future::Future;
use std::pin::Pin;

use aws_config::{BehaviorVersion, SdkConfig};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Settings, StepError};

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
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    Ok(Wiring { sdk, settings })
}

/// A provisioning step: built once per cold start, run once per invocation.
pub trait Step: Sized {
    type Input: DeserializeOwned + Send;
    type Output: Serialize;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError>;

    fn run(&self, input: Self::Input) -> impl Future<Output = Result<Self::Output, StepError>> + Send;
}

/// A function's whole `main`: wire the step, then serve invocations until Lambda stops us.
pub async fn serve_step<S: Step>() -> Result<(), Error> {
    let wiring = init().await?;
    let step = S::new(&wiring.sdk, &wiring.settings)?;
    // Boxed: the steps' futures (the TiDB Cloud client's HTTP stack inside the SDK's) are deep
    // enough types to exceed the compiler's layout recursion limit in `main`.
    serve(|input| -> Pin<Box<dyn Future<Output = Result<S::Output, StepError>> + Send + '_>> {
        Box::pin(step.run(input))
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
        let outcome = step(event.payload);
        async move {
            let outcome = outcome.await;
            if let Err(error) = &outcome {
                tracing::error!(error = error.name(), transient = error.is_transient(), "{error}");
            }
            outcome
        }
    }))
    .await
}
