//! Turning AWS SDK errors into [`StepError`]s: throttling and transport failures become the
//! transient names the state machines retry; everything else keeps AWS's code and message.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::StepError;

/// Error codes AWS services use when a caller exceeds its request rate.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "ProvisionedThroughputExceededException",
];

/// Error codes that mean an account quota is reached: the code, the quota's name and its
/// service in the Service Quotas console (ELB "Quotas for your Network Load Balancers"; Amazon VPC
/// quotas, "Security groups").
const QUOTA_CODES: &[(&str, &str, &str)] = &[
    ("TooManyLoadBalancers", "Network Load Balancers per Region", "Elastic Load Balancing"),
    ("TooManyTargetGroups", "Target Groups per Region", "Elastic Load Balancing"),
    ("TooManyListeners", "Listeners per Network Load Balancer", "Elastic Load Balancing"),
    ("SecurityGroupLimitExceeded", "VPC security groups per Region", "Amazon Virtual Private Cloud (Amazon VPC)"),
    (
        "RulesPerSecurityGroupLimitExceeded",
        "Inbound or outbound rules per security group",
        "Amazon Virtual Private Cloud (Amazon VPC)",
    ),
];

/// The AWS error code of a failed call, if the service answered with one.
pub fn error_code<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> Option<&str> {
    error.code()
}

/// Classifies any SDK failure of `operation`.
pub fn failure<E>(operation: &'static str, error: SdkError<E, HttpResponse>) -> StepError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = error
        .message()
        .map(str::to_owned)
        .unwrap_or_else(|| aws_smithy_types::error::display::DisplayErrorContext(&error).to_string());
    match &error {
        SdkError::ServiceError(service) => {
            let code = error.code().unwrap_or("Unknown");
            if let Some((_, quota, service)) = QUOTA_CODES.iter().find(|(c, _, _)| *c == code) {
                StepError::QuotaExceeded { operation, quota, service, message: format!("{code}: {message}") }
            } else if THROTTLING_CODES.contains(&code) {
                StepError::Throttled { operation, message }
            } else if service.raw().status().is_server_error() {
                StepError::AwsUnavailable { operation, message: format!("{code}: {message}") }
            } else {
                StepError::AwsRequestFailed { operation, code: code.to_owned(), message }
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            StepError::AwsUnavailable { operation, message }
        }
        _ => StepError::AwsRequestFailed { operation, code: "ClientError".into(), message },
    }
}

/// A value AWS always returns (an ID, an ARN, the resource a create call made), or
/// [`StepError::AwsAnswerIncomplete`] naming it: a missing one is never taken for empty.
pub fn required<T>(value: Option<T>, missing: &'static str) -> Result<T, StepError> {
    value.ok_or(StepError::AwsAnswerIncomplete { missing })
}

/// A call's answer, `None` when AWS answers with the error code `code`: a describe's not-found, or
/// the answer a retried change meets when its first try was applied but its answer lost.
pub fn unless_code<T, E>(
    answer: Result<T, SdkError<E, HttpResponse>>,
    code: &str,
    operation: &'static str,
) -> Result<Option<T>, StepError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match answer {
        Ok(out) => Ok(Some(out)),
        Err(e) if e.code() == Some(code) => Ok(None),
        Err(e) => Err(failure(operation, e)),
    }
}

/// `map_err` helper: `.send().await.map_err(aws::fail("CreateTargetGroup"))?`.
pub fn fail<E>(operation: &'static str) -> impl FnOnce(SdkError<E, HttpResponse>) -> StepError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |error| failure(operation, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_value_is_a_named_final_error() {
        let error = required(None::<&str>, "a load balancer's LoadBalancerArn").unwrap_err();
        assert_eq!(error.name(), "AwsAnswerIncomplete");
        assert!(!error.is_transient());
        assert!(error.to_string().contains("LoadBalancerArn"), "{error}");
        assert_eq!(required(Some("arn"), "unused").unwrap(), "arn");
    }
}
