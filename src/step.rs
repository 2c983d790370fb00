//! What every provisioning, teardown and event step is to whatever runs it: built once from the
//! SDK configuration and the settings, then run once per input.

use std::future::Future;

use aws_config::SdkConfig;
use serde::Serialize;

use crate::{Settings, StepError};

/// A step: built once per cold start, run once per invocation.
pub trait Step: Sized {
    type Input: Send;
    type Output: Serialize;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError>;

    fn run(&self, input: Self::Input) -> impl Future<Output = Result<Self::Output, StepError>> + Send;
}
