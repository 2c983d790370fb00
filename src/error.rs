//! The errors a step can end with. Each variant's name is what Step Functions sees as the error
//! name (`Retry`/`Catch` match on it), so names are part of the workflow's contract: never rename
//! one without updating `statemachine/*.asl.json`.

use lambda_runtime::Diagnostic;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("RDS {identifier} was not found in this account and region; check the identifier and the region the stack is deployed in")]
    DatabaseNotFound { identifier: String },

    #[error("RDS {identifier} is '{status}', not 'available'; run the workflow again once it is available")]
    DatabaseNotAvailable { identifier: String, status: String },

    #[error("RDS {identifier} runs engine '{engine}'; only MySQL-compatible engines (mysql, mariadb, aurora-mysql) can be reached by TiDB Cloud Dataflow")]
    UnsupportedEngine { identifier: String, engine: String },

    #[error("RDS instance '{identifier}' is a member of DB cluster '{cluster}'; tag the cluster instead (arn:...:cluster:{cluster}): it is reached at its writer endpoint, whichever member is the writer")]
    DatabaseIsClusterMember { identifier: String, cluster: String },

    #[error("RDS {identifier} is not in a VPC (it has no DB subnet group); PrivateLink needs a VPC")]
    DatabaseNotInVpc { identifier: String },

    #[error("the endpoint {address} of RDS {identifier} did not resolve: {reason}")]
    DatabaseEndpointUnresolved { identifier: String, address: String, reason: String },

    #[error("the endpoint {address} of RDS {identifier} resolves to {resolved}, outside VPC {vpc_id} ({cidrs}){hint}")]
    DatabaseAddressOutsideVpc {
        identifier: String,
        address: String,
        resolved: String,
        vpc_id: String,
        cidrs: String,
        hint: &'static str,
    },

    #[error("no availability zone is shared: VPC {vpc_id} has subnets in [{ours}], TiDB Cloud uses [{tidb_cloud}]; add a subnet to the VPC in one of TiDB Cloud's zones")]
    NoCommonAvailabilityZone { vpc_id: String, ours: String, tidb_cloud: String },

    #[error("the database target {target} of load balancer {load_balancer} is not healthy: it is '{state}' ({reason}: {description}); {check}")]
    TargetNotHealthy {
        target: String,
        load_balancer: String,
        state: String,
        reason: String,
        description: String,
        check: String,
    },

    #[error("{kind} '{name}' cannot serve RDS {identifier}: {reason}")]
    ResourceConflict { kind: &'static str, name: String, identifier: String, reason: String },

    #[error("TiDB Cloud's private link connection {connection_id} failed again after it was created anew: {message}")]
    TiDBCloudConnectionFailed { connection_id: String, message: String },

    #[error("{0} is still in use; the teardown retries this step")]
    TeardownPending(String),

    #[error("the step stopped {seconds} s before its Lambda timeout, with work left; the state machine runs it again")]
    OutOfTime { seconds: u64 },

    #[error("invalid input: {0}")]
    InvalidInput(String),

    #[error("the function is misconfigured: {0}; check the stack's parameters")]
    Misconfigured(String),

    #[error("the account's quota '{quota}' is reached ({operation}: {message}); request an increase in the Service Quotas console ({service}, '{quota}') or remove resources that count against it, then run the workflow again; everything created was removed")]
    QuotaExceeded { operation: &'static str, quota: &'static str, service: &'static str, message: String },

    #[error("AWS throttled {operation}: {message}")]
    Throttled { operation: &'static str, message: String },

    #[error("AWS could not be reached or failed transiently during {operation}: {message}")]
    AwsUnavailable { operation: &'static str, message: String },

    #[error("{operation} failed: {code}: {message}")]
    AwsRequestFailed { operation: &'static str, code: String, message: String },

    #[error("TiDB Cloud rejected the API key during {operation} (HTTP {status}): {message}; check the key pair in the stack's TiDB Cloud secret and that the key's organization owns the cluster")]
    TiDBCloudUnauthorized { operation: &'static str, status: u16, message: String },

    #[error("TiDB Cloud found no such resource during {operation}: {message}; check the TiDB Cloud cluster ID")]
    TiDBCloudNotFound { operation: &'static str, message: String },

    #[error("TiDB Cloud {operation} failed (HTTP {status}, code {code}): {message}")]
    TiDBCloudRequestFailed { operation: &'static str, status: u16, code: String, message: String },

    #[error("TiDB Cloud throttled {operation}: {message}")]
    TiDBCloudThrottled { operation: &'static str, message: String },

    #[error("TiDB Cloud could not be reached or failed transiently during {operation}: {message}")]
    TiDBCloudUnavailable { operation: &'static str, message: String },
}

impl StepError {
    /// The stable error name Step Functions matches on.
    pub fn name(&self) -> &'static str {
        match self {
            Self::DatabaseNotFound { .. } => "DatabaseNotFound",
            Self::DatabaseNotAvailable { .. } => "DatabaseNotAvailable",
            Self::UnsupportedEngine { .. } => "UnsupportedEngine",
            Self::DatabaseNotInVpc { .. } => "DatabaseNotInVpc",
            Self::DatabaseIsClusterMember { .. } => "DatabaseIsClusterMember",
            Self::DatabaseEndpointUnresolved { .. } => "DatabaseEndpointUnresolved",
            Self::DatabaseAddressOutsideVpc { .. } => "DatabaseAddressOutsideVpc",
            Self::NoCommonAvailabilityZone { .. } => "NoCommonAvailabilityZone",
            Self::TargetNotHealthy { .. } => "TargetNotHealthy",
            Self::ResourceConflict { .. } => "ResourceConflict",
            Self::TiDBCloudConnectionFailed { .. } => "TiDBCloudConnectionFailed",
            Self::TeardownPending(_) => "TeardownPending",
            Self::OutOfTime { .. } => "OutOfTime",
            Self::InvalidInput(_) => "InvalidInput",
            Self::Misconfigured(_) => "Misconfigured",
            Self::QuotaExceeded { .. } => "QuotaExceeded",
            Self::Throttled { .. } => "Throttled",
            Self::AwsUnavailable { .. } => "AwsUnavailable",
            Self::AwsRequestFailed { .. } => "AwsRequestFailed",
            Self::TiDBCloudUnauthorized { .. } => "TiDBCloudUnauthorized",
            Self::TiDBCloudNotFound { .. } => "TiDBCloudNotFound",
            Self::TiDBCloudRequestFailed { .. } => "TiDBCloudRequestFailed",
            Self::TiDBCloudThrottled { .. } => "TiDBCloudThrottled",
            Self::TiDBCloudUnavailable { .. } => "TiDBCloudUnavailable",
        }
    }

    /// Whether running the step again later can succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. }
                | Self::AwsUnavailable { .. }
                | Self::OutOfTime { .. }
                | Self::TiDBCloudThrottled { .. }
                | Self::TiDBCloudUnavailable { .. }
        )
    }
}

impl From<StepError> for Diagnostic {
    fn from(error: StepError) -> Self {
        Diagnostic { error_type: error.name().to_string(), error_message: error.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_carries_the_stable_name_not_the_rust_type() {
        let diagnostic =
            Diagnostic::from(StepError::DatabaseNotAvailable { identifier: "orders".into(), status: "stopped".into() });
        assert_eq!(diagnostic.error_type, "DatabaseNotAvailable");
        assert!(diagnostic.error_message.contains("'stopped'"), "{}", diagnostic.error_message);
    }

    #[test]
    fn only_throttling_and_unavailability_are_transient() {
        let throttled = StepError::Throttled { operation: "DescribeSubnets", message: "slow down".into() };
        let failed = StepError::AwsRequestFailed {
            operation: "DescribeSubnets",
            code: "UnauthorizedOperation".into(),
            message: "no".into(),
        };
        assert!(throttled.is_transient());
        assert!(!failed.is_transient());
    }
}
