//! One workflow at a time per RDS instance. EventBridge delivers events at least once and not
//! necessarily in order, and a user may tag, untag and tag again within a minute; without care a
//! teardown could race a provisioning of the same instance, or two provisionings race each other.
//!
//! So both workflows start by taking the instance's *turn*: a lease, one DynamoDB item per
//! instance, taken with a conditional write (free, expired, already ours, or held by the
//! provisioning a rollback rolls back) and released by the state machine on every way out. An
//! execution that finds the lease held waits (a Wait/Choice loop in the state machine); a holder
//! that ended without releasing it (stopped, timed out) is found out by one DescribeExecution and
//! its lease taken over, and a lease expires after the state machines' own timeout. Each poll thus
//! costs at most three calls, whatever the number of executions running (ListExecutions, which the
//! previous design paged through, is also only eventually consistent).
//!
//! With `per-vpc` sharing the databases of a VPC share its load balancer, security group,
//! endpoint service and TiDB Cloud connection, and which of them creates, allocates a listener
//! port on, or removes those must not race. So there is a second turn, the VPC's (`vpc:<id>`),
//! always taken after the database's own (one order, so no two executions wait on each other):
//! the instance's turn names the VPC, and the workflow then asks for the VPC's turn with that
//! `vpc_id`. A provisioning holds it from its security groups to the creation of TiDB Cloud's
//! connection and gives it back before the target's health checks, the slow part, so those run in
//! parallel; a teardown, which decides from the VPC's other listeners whether the shared parts go,
//! holds it throughout.
//!
//! Once it is its turn, an execution started by an event checks the instance's *current* state,
//! not the event: it provisions only if the instance is still opted in, and tears down only if it
//! no longer is. Duplicated or stale events thus end as no-ops, and the last word is the tag's.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_sfn::types::ExecutionStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;

use crate::database::{describe, DescribedDatabase, AWAITING_WRITER};
use crate::naming::{resource_name, vpc_key, DatabaseRef};
use crate::resources::find_target_group;
use crate::settings::Sharing;
use crate::{aws, Settings, Step, StepError};

/// How long a lease lasts: the state machines' `TimeoutSeconds`, so that no execution outlives
/// the lease it took, and a lease whose holder vanished is free at the latest then.
pub const LEASE_SECONDS: u64 = 4 * 3600;

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
    /// Asks for this VPC's turn (`per-vpc` sharing), once the instance's turn is ours; the
    /// instance's current state is not looked at again.
    #[serde(default)]
    pub vpc_id: Option<String>,
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
    /// The lease taken: the database's key, or, asked with a `vpc_id`, the VPC's (`vpc:<id>`).
    /// The state machine releases it.
    pub lease_key: String,
    /// With `per-vpc` sharing, the VPC whose shared parts the workflow works on (and whose turn
    /// it asks for next).
    #[serde(default)]
    pub vpc_id: Option<String>,
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
    elb: aws_sdk_elasticloadbalancingv2::Client,
    sfn: aws_sdk_sfn::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    settings: Settings,
}

/// Who holds an instance's turn, as a conditional write found it (`None`: it changed hands while
/// the write was refused, as AWS may answer without the item).
enum Claim {
    Ours,
    HeldBy(Option<String>),
}

impl Step for AwaitTurn {
    type Input = TurnRequest;
    type Output = Turn;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        settings.turn_table_name()?;
        Ok(Self {
            rds: aws_sdk_rds::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
            sfn: aws_sdk_sfn::Client::new(sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            settings: settings.clone(),
        })
    }

    async fn run(&self, request: TurnRequest) -> Result<Turn, StepError> {
        let database = DatabaseRef::parse(&request.db_instance_identifier)?;
        if let Some(vpc_id) = request.vpc_id.clone() {
            return self.vpc_turn(&database, vpc_id, &request).await;
        }
        let per_vpc = self.settings.sharing == Sharing::PerVpc;
        let described = match request.triggered_by_event || per_vpc {
            true => Some(describe(&self.rds, &database).await?),
            false => None,
        };
        let vpc_id = match (per_vpc, &described) {
            (true, Some(found)) => self.vpc_of(&database, found.as_ref()).await?,
            _ => None,
        };
        let identifier = database.key();
        let turn =
            |decision, reason: String| Turn { decision, reason, lease_key: identifier.clone(), vpc_id: vpc_id.clone() };
        if let Some(waiting) = self.wait_for(&identifier, &database, &request).await? {
            return Ok(turn(Decision::Wait, waiting));
        }
        if let Some(described) = described.filter(|_| request.triggered_by_event) {
            let state = described
                .map(|db| (db.readiness().to_owned(), db.tag(&self.settings.opt_in_tag_key).map(str::to_owned)));
            let wanted = wanted_workflow(state.as_ref().map(|(s, v)| (s.as_str(), v.as_deref())));
            if let Some((status, _)) = state.as_ref().filter(|(s, _)| BECOMING_AVAILABLE.contains(&s.as_str())) {
                if wanted == Workflow::Provision && request.workflow == Workflow::Provision {
                    // Tagged at creation (or while changing): provision once it is available.
                    let reason = format!("the database is '{status}'");
                    info!(db_instance = %database.key(), execution = %request.execution_id, reason = %reason, "waiting for the instance");
                    return Ok(turn(Decision::Wait, reason));
                }
            }
            if wanted != request.workflow {
                let reason = format!(
                    "the instance's current state asks for {wanted:?}, not {:?}: the event is stale or repeated",
                    request.workflow
                );
                info!(db_instance = %database.key(), execution = %request.execution_id, reason = %reason, "skipping");
                return Ok(turn(Decision::Skip, reason));
            }
        }
        Ok(turn(Decision::Go, format!("this execution holds the turn of {identifier}")))
    }
}

impl AwaitTurn {
    /// The VPC's turn, asked for once the instance's is ours.
    async fn vpc_turn(&self, database: &DatabaseRef, vpc_id: String, request: &TurnRequest) -> Result<Turn, StepError> {
        let lease_key = vpc_key(&vpc_id);
        let (decision, reason) = match self.wait_for(&lease_key, database, request).await? {
            Some(waiting) => (Decision::Wait, waiting),
            None => (Decision::Go, format!("this execution holds the turn of {lease_key}")),
        };
        Ok(Turn { decision, reason, lease_key, vpc_id: Some(vpc_id) })
    }

    /// Claims the lease `identifier`; while another execution holds it, why this one waits.
    async fn wait_for(
        &self,
        identifier: &str,
        database: &DatabaseRef,
        request: &TurnRequest,
    ) -> Result<Option<String>, StepError> {
        let Claim::HeldBy(holder) = self.claim(identifier, request).await? else {
            return Ok(None);
        };
        let holder = holder.unwrap_or_else(|| "another execution".into());
        let reason = format!("{holder} holds the turn of {identifier}");
        info!(db_instance = %database.key(), execution = %request.execution_id, reason = %reason, "waiting for turn");
        Ok(Some(reason))
    }

    /// The VPC whose shared parts the database uses: its own, or, once it is gone, its target
    /// group's (the teardown removes the target group last); `None` when neither is left.
    async fn vpc_of(
        &self,
        database: &DatabaseRef,
        described: Option<&DescribedDatabase>,
    ) -> Result<Option<String>, StepError> {
        if let Some(db) = described {
            return Ok(db.network(&self.rds).await?.map(|network| network.vpc_id));
        }
        let group = find_target_group(&self.elb, &resource_name(&database.key())).await?;
        Ok(group.and_then(|group| group.vpc_id().map(str::to_owned)))
    }

    /// Takes the instance's lease when it is free, expired, already ours, or our parent's (a
    /// rollback takes over from the provisioning it rolls back, which waits for it); else takes
    /// it over from a holder that is no longer running. At most three calls.
    async fn claim(&self, identifier: &str, request: &TurnRequest) -> Result<Claim, StepError> {
        let parent = request.parent_execution_id.as_deref().unwrap_or(&request.execution_id);
        let free = "attribute_not_exists(holder) OR holder = :me OR expires_at < :now OR holder = :other";
        let holder = match self.put_lease(identifier, request, free, parent).await? {
            Claim::HeldBy(Some(holder)) => holder,
            claim => return Ok(claim),
        };
        if self.is_running(&holder).await? {
            return Ok(Claim::HeldBy(Some(holder)));
        }
        info!(db_instance = %identifier, execution = %request.execution_id, holder = %holder, "taking over the turn of an execution that ended");
        self.put_lease(identifier, request, "holder = :other", &holder).await
    }

    /// One conditional PutItem of the lease; on a failed condition, the holder found instead.
    /// `:me` is this execution, `:other` the one the condition names, `:now` the time.
    async fn put_lease(
        &self,
        identifier: &str,
        request: &TurnRequest,
        condition: &str,
        other: &str,
    ) -> Result<Claim, StepError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let workflow = match request.workflow {
            Workflow::Provision => "provision",
            Workflow::Deprovision => "deprovision",
        };
        let mut values = vec![(":me", request.execution_id.as_str()), (":other", other)];
        values.retain(|(name, _)| condition.contains(name));
        let mut put = self
            .dynamodb
            .put_item()
            .table_name(self.settings.turn_table_name()?)
            .item("db_instance_identifier", AttributeValue::S(identifier.to_owned()))
            .item("holder", AttributeValue::S(request.execution_id.clone()))
            .item("workflow", AttributeValue::S(workflow.into()))
            .item("expires_at", AttributeValue::N((now + LEASE_SECONDS).to_string()))
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, value) in values {
            put = put.expression_attribute_values(name, AttributeValue::S(value.to_owned()));
        }
        if condition.contains(":now") {
            put = put.expression_attribute_values(":now", AttributeValue::N(now.to_string()));
        }
        match put.send().await {
            Ok(_) => Ok(Claim::Ours),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    let holder = failed.item().and_then(|item| item.get("holder")).and_then(|h| h.as_s().ok());
                    Ok(Claim::HeldBy(holder.cloned()))
                }
                _ => Err(aws::failure("PutItem", e)),
            },
        }
    }

    /// Whether the execution holding a lease still runs (one that no longer exists does not).
    async fn is_running(&self, execution: &str) -> Result<bool, StepError> {
        match self.sfn.describe_execution().execution_arn(execution).send().await {
            Ok(out) => Ok(out.status() == &ExecutionStatus::Running),
            Err(e) if aws::error_code(&e) == Some("ExecutionDoesNotExist") => Ok(false),
            Err(e) => Err(aws::failure("DescribeExecution", e)),
        }
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
