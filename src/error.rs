//! The errors a step can end with. Each variant's name is what Step Functions sees as the error
//! name (`Retry`/`Catch` match on it), so names are part of the workflow's contract: never rename
//! one without updating `statemachine/*.asl.json`.

#[derive(Debug, thiserror::Error)]
#[cfg_attr(test, derive(strum::EnumIter))]
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

    /// Final: AWS leaving out what its API always returns is not a passing condition, and the
    /// step must not go on with an empty ID in its place (it would name no resource, or the wrong one).
    #[error("AWS answered without {missing}, which it always returns; nothing was assumed in its place")]
    AwsAnswerIncomplete { missing: &'static str },

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
            Self::AwsAnswerIncomplete { .. } => "AwsAnswerIncomplete",
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;
    use strum::IntoEnumIterator;

    use super::*;

    /// Every Task state of a definition, Parallel branches and Map processors included.
    fn tasks<'a>(states: &'a Value, out: &mut Vec<(&'a str, &'a Value)>) {
        for (name, state) in states.as_object().into_iter().flatten() {
            if state["Type"] == "Task" {
                out.push((name, state));
            }
            let nested = state["Branches"].as_array().into_iter().flatten();
            for inner in nested.chain(["ItemProcessor", "Iterator"].map(|key| &state[key])) {
                tasks(&inner["States"], out);
            }
        }
    }

    fn matched<'a>(state: &'a Value, field: &str) -> BTreeSet<&'a str> {
        let rules = state[field].as_array().into_iter().flatten();
        rules.flat_map(|rule| rule["ErrorEquals"].as_array().into_iter().flatten()).filter_map(Value::as_str).collect()
    }

    /// The prefix of the error names a Task's integration raises (Step Functions developer guide,
    /// "Handling errors": `Lambda.*` for Lambda, the service's name for optimized and SDK
    /// integrations), and whether it runs one of our functions.
    fn integration(resource: &str) -> (&'static str, bool) {
        let service = resource.split(":::").nth(1).and_then(|rest| rest.split(':').next());
        let service = if service == Some("aws-sdk") { resource.split(':').nth(6) } else { service };
        match service {
            None => ("Lambda.", true), // a function's ARN placeholder
            Some("dynamodb") => ("DynamoDB.", false),
            Some("events") => ("EventBridge.", false),
            Some("rds") => ("Rds.", false),
            Some("states") => ("StepFunctions.", false),
            Some(other) => panic!("{resource}: no error prefix known for the integration '{other}'"),
        }
    }

    /// The names the state machines match on, held against the names the code raises: a Retry or
    /// Catch on a name nothing in its Task raises never fires; every function Task retries each
    /// transient name and no final one, and catches the rest (a provisioning's rollback, a
    /// teardown's failure report); the teardown's own "not yet", `TeardownPending`, is caught into
    /// its poll loop.
    #[test]
    fn the_state_machines_and_the_code_agree_on_error_names() {
        let raised: BTreeSet<&str> = StepError::iter().map(|e| e.name()).collect();
        let transient: BTreeSet<&str> = StepError::iter().filter(StepError::is_transient).map(|e| e.name()).collect();
        let mut matched_anywhere = BTreeSet::<String>::new();
        let mut caught_anywhere = BTreeSet::<String>::new();
        for machine in ["provision", "deprovision"] {
            let path = format!("{}/statemachine/{machine}.asl.json", env!("CARGO_MANIFEST_DIR"));
            let definition: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let mut found = Vec::new();
            tasks(&definition["States"], &mut found);
            assert!(found.len() > 5, "{path}: only {} Task states found", found.len());
            for (name, task) in found {
                let (prefix, ours) = integration(task["Resource"].as_str().unwrap_or_default());
                let (retried, caught) = (matched(task, "Retry"), matched(task, "Catch"));
                for error in retried.iter().chain(&caught) {
                    let known = error.starts_with("States.")
                        || error.starts_with(prefix)
                        || (ours && (raised.contains(error) || *error == "Sandbox.Timedout"));
                    assert!(known, "{machine} {name}: '{error}' is raised by nothing this Task runs");
                }
                matched_anywhere.extend(retried.iter().map(|error| error.to_string()));
                caught_anywhere.extend(caught.iter().map(|error| error.to_string()));
                if !ours {
                    continue;
                }
                for error in &transient {
                    assert!(retried.contains(error), "{machine} {name}: the transient {error} is not retried");
                }
                for error in retried.intersection(&raised) {
                    assert!(transient.contains(error), "{machine} {name}: {error} is final but retried");
                }
                assert!(
                    caught.contains("States.ALL"),
                    "{machine} {name}: a final error would end the execution unhandled"
                );
            }
        }
        for error in &transient {
            assert!(matched_anywhere.contains(*error), "{error} is retried nowhere");
        }
        assert!(caught_anywhere.contains("TeardownPending"), "no teardown step polls on TeardownPending");
    }

    /// The README's "When it fails" table names every error an execution can end with (the code's
    /// and those the state machines set themselves), and nothing else.
    #[test]
    fn the_readme_names_every_error_and_only_those() {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut raised: BTreeSet<String> = StepError::iter().map(|e| e.name().to_owned()).collect();
        raised.insert("Sandbox.Timedout".into()); // Lambda's, for a function that outlives its timeout
        for machine in ["provision", "deprovision"] {
            let text = std::fs::read_to_string(format!("{root}/statemachine/{machine}.asl.json")).unwrap();
            let definition: Value = serde_json::from_str(&text).unwrap();
            let own = definition["States"].as_object().into_iter().flatten().filter(|(_, s)| s["Type"] == "Pass");
            raised.extend(own.filter_map(|(_, state)| state["Result"]["Error"].as_str().map(str::to_owned)));
        }
        let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
        let table = readme.split("\n## When it fails").nth(1).and_then(|t| t.split("\n## ").next()).unwrap();
        let first_cells = table.lines().filter_map(|l| l.strip_prefix("| ")).map(|l| l.split(" |").next().unwrap());
        let documented: BTreeSet<String> = first_cells
            .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>())
            .collect();
        assert!(raised.len() > 20 && documented.len() > 20, "{raised:?} {documented:?}");
        let undocumented: Vec<_> = raised.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&raised).collect();
        assert!(undocumented.is_empty(), "raised but not in README's table: {undocumented:?}");
        assert!(unknown.is_empty(), "in README's table but raised by nothing: {unknown:?}");
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
