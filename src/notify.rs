//! Notifications: one SNS message per outcome of the two workflows, with a subject a person can
//! read and a JSON body a machine can. Step Functions sends every execution's status change to
//! EventBridge; a rule hands the endings of this stack's executions here, so the state machines
//! need no notification states. No message for an execution that had nothing to do (a repeated or
//! out-of-date event), nor for a rollback's teardown that succeeded (the failed provisioning's
//! message says what its rollback removed).
//!
//! The functions that see an outcome first tell it through the same [`Notifier`]: sync-targets a
//! target moved after a failover or a target that turned unhealthy, the acceptor a foreign
//! endpoint connection it rejected. Every message has the same shape: a subject, and a JSON body
//! with `stack`, `event` (its kind) and the kind's fields.

use aws_config::SdkConfig;
use aws_sdk_sfn::types::HistoryEventType;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{error, info};

use crate::turn::instance_of_input;
use crate::{aws, Settings, Step, StepError};

/// The `detail` of a "Step Functions Execution Status Change" event.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    pub execution_arn: String,
    pub state_machine_arn: String,
    pub status: String,
    pub input: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

#[derive(Deserialize)]
pub struct StatusChangeEvent {
    pub detail: StatusChange,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub subject: String,
    pub body: Value,
}

/// What a finished execution is worth telling, if anything. `rollback` is what a failed
/// provisioning's rollback reported (its output, or its failure).
pub fn notification(
    stack: &str,
    provision: bool,
    change: &StatusChange,
    rollback: Option<Value>,
) -> Option<Notification> {
    let parse = |text: &Option<String>| text.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok());
    let (input, output) = (parse(&change.input).unwrap_or_default(), parse(&change.output).unwrap_or_default());
    let instance = instance_of_input(&input).unwrap_or_else(|| "an unknown instance".into());
    let skipped = output.pointer("/turn/decision").and_then(Value::as_str) == Some("skip");
    let rollback_teardown = input.get("AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID").is_some();
    let base = json!({"db_instance_identifier": instance, "execution_arn": change.execution_arn,
        "status": change.status});
    let (event, subject, extra) = match (provision, change.status.as_str()) {
        (_, "RUNNING") => return None,
        (_, "SUCCEEDED") if skipped => return None,
        (true, "SUCCEEDED") => {
            output.get("endpoint_service_name")?;
            let zones: Vec<&Value> =
                output["subnets"].as_array().into_iter().flatten().map(|s| &s["availability_zone"]).collect();
            let extra = json!({"endpoint_service_name": output["endpoint_service_name"],
                "endpoint_service_id": output["endpoint_service_id"], "port": output["port"],
                "tidb_cloud_connection_id": output["tidb_cloud_connection_id"], "zones": zones,
                "target": output.pointer("/target_health/target"), "target_state": output.pointer("/target_health/state")});
            ("provisioned", format!("TiDB Cloud link ready: {instance}"), extra)
        }
        (true, _) => {
            let extra = json!({"error": change.error, "cause": change.cause, "rollback": rollback});
            let error = change.error.as_deref().unwrap_or(&change.status);
            ("provisioning-failed", format!("TiDB Cloud link failed: {instance}: {error}"), extra)
        }
        (false, "SUCCEEDED") if rollback_teardown => return None,
        (false, "SUCCEEDED") => {
            ("torn-down", format!("TiDB Cloud link removed: {instance}"), json!({"removed": output["removed"]}))
        }
        (false, _) => {
            let error = change.error.as_deref().unwrap_or(&change.status);
            let extra =
                json!({"error": change.error, "cause": change.cause, "rollback_of_a_provisioning": rollback_teardown});
            ("teardown-failed", format!("TiDB Cloud link teardown failed: {instance}: {error}"), extra)
        }
    };
    let mut body = base;
    body.as_object_mut()?.extend(extra.as_object().cloned().unwrap_or_default());
    Some(Notification::new(stack, event, &subject, body))
}

impl Notification {
    /// A message of kind `event`: `fields` (an object) with the stack and the kind added.
    pub fn new(stack: &str, event: &str, subject: &str, fields: Value) -> Self {
        let mut body = json!({"stack": stack});
        if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
            body.extend(fields);
        }
        body["event"] = json!(event);
        Self { subject: sns_subject(subject), body }
    }
}

/// Publishes [`Notification`]s to the stack's notification topic.
pub struct Notifier {
    sns: aws_sdk_sns::Client,
    topic_arn: String,
    pub stack_name: String,
}

impl Notifier {
    /// The notifier of the topic in `NOTIFICATION_TOPIC_ARN`; `None` when it is not set.
    pub fn from_settings(sdk: &SdkConfig, settings: &Settings) -> Option<Self> {
        Some(Self {
            sns: aws_sdk_sns::Client::new(sdk),
            topic_arn: settings.notification_topic_arn.clone()?,
            stack_name: settings.stack_name.clone(),
        })
    }

    pub async fn publish(&self, message: &Notification) -> Result<(), StepError> {
        let body = serde_json::to_string_pretty(&message.body).unwrap_or_default();
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&message.subject)
            .message(body)
            .send()
            .await
            .map_err(aws::fail("Publish"))?;
        info!(subject = %message.subject, event = %message.body["event"], "notified");
        Ok(())
    }

    /// Publishes a message of kind `event` for work already done: a message that cannot be
    /// published is logged as an error (which every log level keeps) and does not fail the work.
    pub async fn tell(&self, event: &str, subject: &str, fields: Value) {
        if let Err(e) = self.publish(&Notification::new(&self.stack_name, event, subject, fields)).await {
            error!(event, error = %e, "notification not published");
        }
    }
}

/// Tells `notifier`, if the function has one.
pub async fn tell(notifier: &Option<Notifier>, event: &str, subject: &str, fields: Value) {
    if let Some(notifier) = notifier {
        notifier.tell(event, subject, fields).await;
    }
}

/// SNS subjects are at most 100 printable ASCII characters on one line.
fn sns_subject(text: &str) -> String {
    let printable: String = text.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
    match printable.char_indices().nth(100) {
        Some((cut, _)) => format!("{}...", &printable[..cut - 3]),
        None => printable,
    }
}

pub struct Notify {
    notifier: Notifier,
    sfn: aws_sdk_sfn::Client,
    provision_arn: String,
}

impl Step for Notify {
    type Input = StatusChangeEvent;
    type Output = Option<Notification>;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        let required = |value: &Option<String>, name: &str| {
            value.clone().ok_or_else(|| StepError::Misconfigured(format!("{name} is not set")))
        };
        let notifier = Notifier::from_settings(sdk, settings)
            .ok_or_else(|| StepError::Misconfigured("NOTIFICATION_TOPIC_ARN is not set".into()))?;
        Ok(Self {
            notifier,
            sfn: aws_sdk_sfn::Client::new(sdk),
            provision_arn: required(&settings.provision_state_machine_arn, "PROVISION_STATE_MACHINE_ARN")?,
        })
    }

    async fn run(&self, event: StatusChangeEvent) -> Result<Option<Notification>, StepError> {
        let change = event.detail;
        let provision = change.state_machine_arn == self.provision_arn;
        let failed = !matches!(change.status.as_str(), "RUNNING" | "SUCCEEDED");
        let rollback = if provision && failed { self.rollback_outcome(&change.execution_arn).await? } else { None };
        let Some(message) = notification(&self.notifier.stack_name, provision, &change, rollback) else {
            info!(execution = %change.execution_arn, status = %change.status, "nothing to notify");
            return Ok(None);
        };
        self.notifier.publish(&message).await?;
        info!(execution = %change.execution_arn, "execution's outcome told");
        Ok(Some(message))
    }
}

impl Notify {
    /// What the failed provisioning's rollback (its `startExecution.sync:2` task) ended with:
    /// the teardown's output, or its error; `None` when it failed before anything needed one.
    async fn rollback_outcome(&self, execution_arn: &str) -> Result<Option<Value>, StepError> {
        let history = self
            .sfn
            .get_execution_history()
            .execution_arn(execution_arn)
            .reverse_order(true)
            .max_results(100)
            .send()
            .await
            .map_err(aws::fail("GetExecutionHistory"))?;
        for event in history.events() {
            if let (HistoryEventType::TaskSucceeded, Some(done)) =
                (event.r#type(), event.task_succeeded_event_details())
            {
                if done.resource_type() == "states" {
                    // `.sync:2` gives the child's output as JSON (`.sync` as text).
                    let output: Value = done.output().and_then(|o| serde_json::from_str(o).ok()).unwrap_or_default();
                    let teardown = match &output["Output"] {
                        Value::String(text) => serde_json::from_str(text).unwrap_or_default(),
                        other => other.clone(),
                    };
                    return Ok(Some(json!({"removed": teardown["removed"]})));
                }
            }
            if let (HistoryEventType::TaskFailed, Some(failed)) = (event.r#type(), event.task_failed_event_details()) {
                if failed.resource_type() == "states" {
                    return Ok(Some(json!({"error": failed.error(), "cause": failed.cause()})));
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(status: &str, input: Value, output: Option<Value>) -> StatusChange {
        StatusChange {
            execution_arn: "arn:aws:states:us-east-1:1:execution:s-provision:x".into(),
            state_machine_arn: "arn:aws:states:us-east-1:1:stateMachine:s-provision".into(),
            status: status.into(),
            input: Some(input.to_string()),
            output: output.map(|o| o.to_string()),
            error: (status == "FAILED").then(|| "TargetNotHealthy".into()),
            cause: (status == "FAILED").then(|| "the target stayed unhealthy".into()),
        }
    }

    #[test]
    fn a_provisioning_tells_what_was_made() {
        let output = json!({"db_instance_identifier": "orders-db", "endpoint_service_name": "com.amazonaws.vpce.us-east-1.vpce-svc-1",
            "endpoint_service_id": "vpce-svc-1", "tidb_cloud_connection_id": "plc-1", "port": 3307,
            "subnets": [{"availability_zone": "us-east-1a"}, {"availability_zone": "us-east-1b"}],
            "target_health": {"target": "10.0.1.5:3306", "state": "healthy"}});
        let tag_event =
            json!({"detail": {"requestParameters": {"resourceName": "arn:aws:rds:us-east-1:1:db:orders-db"}}});
        let n = notification("s", true, &change("SUCCEEDED", tag_event, Some(output)), None).unwrap();
        assert_eq!(n.subject, "TiDB Cloud link ready: orders-db");
        assert_eq!(n.body["event"], "provisioned");
        assert_eq!(n.body["zones"], json!(["us-east-1a", "us-east-1b"]));
        // TiDB Cloud reaches the database at the endpoint and this port.
        assert_eq!(n.body["port"], 3307);
        assert_eq!(
            (n.body["tidb_cloud_connection_id"].as_str(), n.body["target"].as_str()),
            (Some("plc-1"), Some("10.0.1.5:3306"))
        );
    }

    #[test]
    fn nothing_to_do_and_running_say_nothing() {
        let input = json!({"db_instance_identifier": "orders-db"});
        let skipped = json!({"db_instance_identifier": "orders-db", "turn": {"decision": "skip"}});
        assert_eq!(notification("s", true, &change("SUCCEEDED", input.clone(), Some(skipped.clone())), None), None);
        assert_eq!(notification("s", false, &change("SUCCEEDED", input.clone(), Some(skipped)), None), None);
        assert_eq!(notification("s", true, &change("RUNNING", input, None), None), None);
    }

    #[test]
    fn a_failure_names_its_error_and_what_the_rollback_removed() {
        let rollback = json!({"removed": {"target_group": {"removed": ["arn:tg"]}}});
        let n = notification(
            "s",
            true,
            &change("FAILED", json!({"db_instance_identifier": "orders-db"}), None),
            Some(rollback.clone()),
        )
        .unwrap();
        assert_eq!(n.subject, "TiDB Cloud link failed: orders-db: TargetNotHealthy");
        assert_eq!(
            (&n.body["event"], &n.body["cause"], &n.body["rollback"]),
            (&json!("provisioning-failed"), &json!("the target stayed unhealthy"), &rollback)
        );
    }

    #[test]
    fn a_teardown_is_told_unless_it_is_a_rollback() {
        let removed = json!({"db_instance_identifier": "orders-db", "removed": {"endpoint_service": {"removed": ["vpce-svc-1"]}}});
        let untag = json!({"db_instance_identifier": "orders-db"});
        let n = notification("s", false, &change("SUCCEEDED", untag, Some(removed.clone())), None).unwrap();
        assert_eq!((n.body["event"].as_str(), &n.body["removed"]), (Some("torn-down"), &removed["removed"]));
        let rollback =
            json!({"db_instance_identifier": "orders-db", "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID": "arn:p"});
        assert_eq!(notification("s", false, &change("SUCCEEDED", rollback.clone(), Some(removed)), None), None);
        let failed = notification("s", false, &change("FAILED", rollback, None), None).unwrap();
        assert_eq!(
            (failed.body["event"].as_str(), failed.body["rollback_of_a_provisioning"].as_bool()),
            (Some("teardown-failed"), Some(true))
        );
    }

    #[test]
    fn every_message_names_its_stack_and_kind() {
        let n = Notification::new("s", "target-moved", "moved", json!({"event": "other", "new_address": "10.0.2.9"}));
        assert_eq!(n.body, json!({"stack": "s", "event": "target-moved", "new_address": "10.0.2.9"}));
    }

    #[test]
    fn subjects_fit_sns() {
        let long = format!("TiDB Cloud link failed: {}\n", "x".repeat(200));
        let subject = sns_subject(&long);
        assert!(subject.len() <= 100 && subject.ends_with("...") && !subject.contains('\n'));
    }
}
