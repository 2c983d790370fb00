//! One workflow at a time per RDS instance. EventBridge delivers events at least once and not
//! necessarily in order, and a user may tag, untag and tag again within a minute; without care a
//! teardown could race a provisioning of the same instance, or two provisionings race each other.
//!
//! So both workflows start by asking for their turn: an execution waits (a Wait/Choice loop in the
//! state machine) while an older execution of either workflow for the same instance is running.
//! Once it is its turn, an execution started by an event checks the instance's *current* state,
//! not the event: it provisions only if the instance is still opted in, and tears down only if it
//! no longer is. Duplicated or stale events thus end as no-ops, and the last word is the tag's.

use aws_config::SdkConfig;
use aws_sdk_sfn::types::ExecutionStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;

use crate::database::{describe, AWAITING_WRITER};
use crate::naming::DatabaseRef;
use crate::runtime::Step;
use crate::{aws, Settings, StepError};

/// Instance and cluster states that end in `available` without anyone acting.
const BECOMING_AVAILABLE: &[&str] = &[
    "creating",
    "failing-over",
    "backing-up",
    "modifying",
    "rebooting",
    "starting",
    "upgrading",
    "maintenance",
    "configuring-enhanced-monitoring",
    AWAITING_WRITER,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Workflow {
    Provision,
    Deprovision,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnRequest {
    pub db_instance_identifier: String,
    pub workflow: Workflow,
    /// `$$.Execution.Id` of the asking execution.
    pub execution_id: String,
    /// Started by a tag or instance event (checked against the current state), not by hand.
    #[serde(default)]
    pub triggered_by_event: bool,
    /// The provisioning whose rollback this is: it is running, and waiting for it would deadlock.
    #[serde(default)]
    pub parent_execution_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Go,
    Wait,
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub decision: Decision,
    pub reason: String,
}

/// Which workflow the instance's current state asks for: provisioning while it exists (and is not
/// being deleted) with the opt-in tag set to anything but `false`/`disabled`, else teardown.
pub fn wanted_workflow(instance: Option<(&str, Option<&str>)>) -> Workflow {
    match instance {
        Some((status, Some(value)))
            if status != "deleting" && !["false", "disabled"].contains(&value.trim().to_ascii_lowercase().as_str()) =>
        {
            Workflow::Provision
        }
        _ => Workflow::Deprovision,
    }
}

/// The RDS database a workflow execution is about, as its key (`orders`, `cluster:orders`), from
/// its input: a manual request, a rollback request, or the CloudTrail event that started it.
pub fn instance_of_input(input: &Value) -> Option<String> {
    let parameters = input.pointer("/detail/requestParameters");
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_ascii_lowercase);
    let from_arn = text(parameters.and_then(|p| p.get("resourceName")))
        .and_then(|arn| DatabaseRef::from_arn(&arn))
        .map(|database| database.key());
    // Creations (CreateDBInstance, CreateDBCluster, restores, read replicas, clones) name the new
    // database in their response; a deletion names it in the request.
    let field = |name: &str| {
        text(input.pointer(&format!("/detail/responseElements/{name}")))
            .or_else(|| text(parameters.and_then(|p| p.get(name))))
    };
    let cluster_key = |id: String| DatabaseRef::Cluster(id).key();
    let from_event = field("dBInstanceIdentifier").or_else(|| field("dBClusterIdentifier").map(cluster_key));
    let from_request =
        text(input.get("db_instance_identifier")).or_else(|| text(input.get("db_cluster_identifier")).map(cluster_key));
    from_request.or(from_arn).or(from_event)
}

pub struct AwaitTurn {
    rds: aws_sdk_rds::Client,
    sfn: aws_sdk_sfn::Client,
    settings: Settings,
}

impl Step for AwaitTurn {
    type Input = TurnRequest;
    type Output = Turn;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        settings.state_machine_arns()?;
        Ok(Self { rds: aws_sdk_rds::Client::new(sdk), sfn: aws_sdk_sfn::Client::new(sdk), settings: settings.clone() })
    }

    async fn run(&self, request: TurnRequest) -> Result<Turn, StepError> {
        let database = DatabaseRef::parse(&request.db_instance_identifier)?;
        let identifier = database.key();
        if let Some(older) = self.older_running_execution(&identifier, &request).await? {
            let reason = format!("execution {older} for the same instance is still running");
            info!(db_instance = %identifier, execution = %request.execution_id, reason = %reason, "waiting for turn");
            return Ok(Turn { decision: Decision::Wait, reason });
        }
        if request.triggered_by_event {
            let state = self.opt_in_state(&database).await?;
            let wanted = wanted_workflow(state.as_ref().map(|(s, v)| (s.as_str(), v.as_deref())));
            if let Some((status, _)) = state.as_ref().filter(|(s, _)| BECOMING_AVAILABLE.contains(&s.as_str())) {
                if wanted == Workflow::Provision && request.workflow == Workflow::Provision {
                    // Tagged at creation (or while changing): provision once it is available.
                    let reason = format!("the database is '{status}'");
                    info!(db_instance = %identifier, execution = %request.execution_id, reason = %reason, "waiting for the instance");
                    return Ok(Turn { decision: Decision::Wait, reason });
                }
            }
            if wanted != request.workflow {
                let reason = format!(
                    "the instance's current state asks for {wanted:?}, not {:?}: the event is stale or repeated",
                    request.workflow
                );
                info!(db_instance = %identifier, execution = %request.execution_id, reason = %reason, "skipping");
                return Ok(Turn { decision: Decision::Skip, reason });
            }
        }
        Ok(Turn { decision: Decision::Go, reason: "no older execution for this instance is running".into() })
    }
}

impl AwaitTurn {
    /// The database's status and opt-in tag value, or `None` when it no longer exists.
    async fn opt_in_state(&self, database: &DatabaseRef) -> Result<Option<(String, Option<String>)>, StepError> {
        let described = describe(&self.rds, database).await?;
        Ok(described.map(|db| (db.readiness().to_owned(), db.tag(&self.settings.opt_in_tag_key).map(str::to_owned))))
    }

    /// A running execution of either workflow, for the same instance, started before this one.
    async fn older_running_execution(
        &self,
        identifier: &str,
        request: &TurnRequest,
    ) -> Result<Option<String>, StepError> {
        let mine = self
            .sfn
            .describe_execution()
            .execution_arn(&request.execution_id)
            .send()
            .await
            .map_err(aws::fail("DescribeExecution"))?;
        let my_start = mine.start_date();
        for state_machine in self.settings.state_machine_arns()? {
            let mut pages = self
                .sfn
                .list_executions()
                .state_machine_arn(state_machine)
                .status_filter(ExecutionStatus::Running)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(aws::fail("ListExecutions"))?;
                for other in page.executions() {
                    let arn = other.execution_arn();
                    let older = (other.start_date().secs(), other.start_date().subsec_nanos(), arn)
                        < (my_start.secs(), my_start.subsec_nanos(), request.execution_id.as_str());
                    if !older || arn == request.execution_id || Some(arn) == request.parent_execution_id.as_deref() {
                        continue;
                    }
                    let described = self
                        .sfn
                        .describe_execution()
                        .execution_arn(arn)
                        .send()
                        .await
                        .map_err(aws::fail("DescribeExecution"))?;
                    let input: Value = described.input().and_then(|i| serde_json::from_str(i).ok()).unwrap_or_default();
                    if instance_of_input(&input).as_deref() == Some(identifier) {
                        return Ok(Some(arn.to_owned()));
                    }
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_current_tag_decides_the_workflow() {
        assert_eq!(wanted_workflow(Some(("available", Some("true")))), Workflow::Provision);
        assert_eq!(wanted_workflow(Some(("creating", Some("1234567890123456789")))), Workflow::Provision);
        assert_eq!(wanted_workflow(Some(("available", Some("Disabled")))), Workflow::Deprovision);
        assert_eq!(wanted_workflow(Some(("available", None))), Workflow::Deprovision);
        assert_eq!(wanted_workflow(Some(("deleting", Some("true")))), Workflow::Deprovision);
        assert_eq!(wanted_workflow(None), Workflow::Deprovision);
    }

    #[test]
    fn executions_name_their_instance_whatever_started_them() {
        let tag_event: Value =
            serde_json::from_str(include_str!("../tests/fixtures/events/cloudtrail-add-tags.json")).unwrap();
        assert_eq!(instance_of_input(&tag_event).as_deref(), Some("orders-db"));
        let create = json!({"detail": {"requestParameters": {"dBInstanceIdentifier": "Orders-DB"}}});
        assert_eq!(instance_of_input(&create).as_deref(), Some("orders-db"));
        let restore: Value = serde_json::from_str(include_str!(
            "../tests/fixtures/events/cloudtrail-restore-db-instance-to-point-in-time.json"
        ))
        .unwrap();
        assert_eq!(instance_of_input(&restore).as_deref(), Some("orders-db-restored"));
        let manual =
            json!({"db_instance_identifier": "orders-db", "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID": "arn:x"});
        assert_eq!(instance_of_input(&manual).as_deref(), Some("orders-db"));
        assert_eq!(instance_of_input(&json!({"other": 1})), None);
        let cluster_tag: Value =
            serde_json::from_str(include_str!("../tests/fixtures/events/cloudtrail-add-tags-cluster.json")).unwrap();
        assert_eq!(instance_of_input(&cluster_tag).as_deref(), Some("cluster:orders-cluster"));
        let cluster_create: Value =
            serde_json::from_str(include_str!("../tests/fixtures/events/cloudtrail-create-db-cluster.json")).unwrap();
        assert_eq!(instance_of_input(&cluster_create).as_deref(), Some("cluster:orders-cluster"));
        let cluster_delete = json!({"detail": {"requestParameters": {"dBClusterIdentifier": "Orders-Cluster"}}});
        assert_eq!(instance_of_input(&cluster_delete).as_deref(), Some("cluster:orders-cluster"));
        assert_eq!(
            instance_of_input(&json!({"db_cluster_identifier": "orders-cluster"})).as_deref(),
            Some("cluster:orders-cluster")
        );
    }
}
