//! Accepting TiDB Cloud's endpoint connection, and only TiDB Cloud's. A connection notification on
//! the stack's topic is only a trigger: the truth is read with one DescribeVpcEndpointConnections
//! of the account's pending connections, of which those to services this stack manages are
//! answered, so a trigger costs the same few calls however many services there are (a wave of
//! a hundred provisionings triggers it hundreds of times). A pending connection is accepted when its endpoint
//! belongs to TiDB Cloud's account (and, once the provisioning knows the endpoint TiDB Cloud
//! created, only that endpoint); any other is rejected, even if someone widened the service's
//! allowed principals by hand. Services without this stack's tag are never touched.
//!
//! A provisioning that links a TiDB Cloud cluster waits for the acceptance on a task token. It
//! announces the wait with an EventBridge event carrying the token, which also triggers this
//! function: once the awaited endpoint is accepted, the waiting execution is resumed. Whichever
//! comes first, TiDB Cloud's connection request or the announcement, the other finds it done.
//!
//! Each rejected connection is counted (`ForeignConnectionRejected`, by `Stack`) and told to the
//! notification topic (`foreign-connection-rejected`).

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, ServiceConfiguration, VpcEndpointConnection};
use aws_sdk_ec2::Client;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::naming::{
    vpc_of_tag, DB_CLUSTER_TAG, DB_INSTANCE_TAG, MANAGED_BY_TAG, TIDB_CLOUD_ACCOUNT_TAG, TIDB_CLOUD_ENDPOINT_TAG,
    VPC_TAG,
};
use crate::notify::{tell, Notifier};
use crate::resources::{endpoint_service_id, tag_value};
use crate::{aws, Settings, Step, StepError};

/// The state AWS gives a connection that waits for the service owner (the SDK has no variant for
/// this spelling, so states are compared as strings).
const PENDING: &str = "pendingAcceptance";

/// Whether a connection's state means the service owner accepted it. An accepted connection
/// is `pending` (for seconds to minutes in AWS) before it is `available`; waiting for
/// `available` here would leave the provisioning waiting, since no later trigger carries its task
/// token. TiDB Cloud's `ACTIVE` is the proof that traffic flows.
pub fn is_accepted(state: &str) -> bool {
    ["pending", "available"].iter().any(|s| state.eq_ignore_ascii_case(s))
}

/// What the acceptor did with one pending connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub service_id: String,
    pub vpc_endpoint_id: String,
    pub vpc_endpoint_owner: String,
    pub accepted: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decisions {
    pub decisions: Vec<Decision>,
    /// Whether a provisioning waiting for this acceptance was resumed.
    #[serde(default)]
    pub resumed: bool,
}

/// A provisioning's announcement that it waits for its endpoint's acceptance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaited {
    pub service_id: String,
    pub endpoint_id: String,
    pub task_token: String,
}

/// What made the acceptor look; whichever it is, the connections themselves are the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A provisioning waits for this acceptance: once it is done, the provisioning is resumed.
    Awaited(Awaited),
    /// Connection notifications from the stack's topic.
    Notified(Vec<Notification>),
    /// Anything else (an event of another shape).
    Other,
}

/// One connection notification, as far as the log needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub message_id: String,
    pub topic_arn: String,
}

/// Whether to accept a connection from `owner`'s endpoint `endpoint_id`, and why.
pub fn decide(
    owner: &str,
    endpoint_id: &str,
    tidb_cloud_account: &str,
    expected_endpoint: Option<&str>,
) -> (bool, String) {
    if owner != tidb_cloud_account {
        return (false, format!("account {owner} is not TiDB Cloud's account {tidb_cloud_account}"));
    }
    match expected_endpoint {
        Some(expected) if expected != endpoint_id => {
            (false, format!("TiDB Cloud's connection uses endpoint {expected}, not {endpoint_id}"))
        }
        Some(_) => (true, "the endpoint TiDB Cloud created for this connection".into()),
        None => (true, "an endpoint of TiDB Cloud's account".into()),
    }
}

pub struct AcceptConnections {
    ec2: Client,
    sfn: aws_sdk_sfn::Client,
    metrics: Metrics,
    notifier: Option<Notifier>,
    settings: Settings,
}

impl Step for AcceptConnections {
    type Input = Trigger;
    type Output = Decisions;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        Ok(Self {
            ec2: Client::new(sdk),
            sfn: aws_sdk_sfn::Client::new(sdk),
            metrics: Metrics::new(sdk),
            notifier: Notifier::from_settings(sdk, settings),
            settings: settings.clone(),
        })
    }

    async fn run(&self, trigger: Trigger) -> Result<Decisions, StepError> {
        let awaited = match trigger {
            Trigger::Awaited(awaited) => {
                info!(service = %awaited.service_id, endpoint = %awaited.endpoint_id, "a provisioning awaits the acceptance");
                Some(awaited)
            }
            Trigger::Notified(notifications) => {
                for notification in notifications {
                    info!(message_id = %notification.message_id, topic = %notification.topic_arn, "connection notification received");
                }
                None
            }
            Trigger::Other => {
                info!("triggered by an event that is not a connection notification; checking all the same");
                None
            }
        };
        let mut decisions = Vec::new();
        // One read of the pending connections, and of the services only when one waits: a trigger
        // costs the same few calls however many services exist. An announced wait looks at its own
        // service alone, so that a wave's other acceptances never hold up its resumption.
        let scope = awaited.as_ref().map(|awaited| awaited.service_id.as_str());
        let pending = self.pending_connections(scope).await?;
        let services = if pending.is_empty() { Vec::new() } else { self.managed_services(scope).await? };
        for service in services {
            let service_id = endpoint_service_id(&service)?;
            let tag = |key: &str| tag_value(service.tags(), key);
            let expected = tag(TIDB_CLOUD_ENDPOINT_TAG);
            // The account the provisioning planned for (from TiDB Cloud's API or the stack).
            let Some(tidb_cloud_account) =
                tag(TIDB_CLOUD_ACCOUNT_TAG).or(self.settings.tidb_cloud_account_id.as_deref())
            else {
                warn!(
                    service = service_id,
                    "no TiDB Cloud account is known for this service; its connections stay pending"
                );
                continue;
            };
            let mut accept = Vec::new();
            let mut reject = Vec::new();
            for connection in pending.iter().filter(|c| c.service_id() == Some(service_id)) {
                let endpoint_id =
                    aws::required(connection.vpc_endpoint_id(), "a connection's VpcEndpointId")?.to_owned();
                let owner =
                    aws::required(connection.vpc_endpoint_owner(), "a connection's VpcEndpointOwner")?.to_owned();
                let (accepted, reason) = decide(&owner, &endpoint_id, tidb_cloud_account, expected);
                info!(service = service_id, endpoint = %endpoint_id, owner = %owner, accepted, reason = %reason, "connection request decided");
                if accepted { &mut accept } else { &mut reject }.push(endpoint_id.clone());
                decisions.push(Decision {
                    service_id: service_id.to_owned(),
                    vpc_endpoint_id: endpoint_id,
                    vpc_endpoint_owner: owner,
                    accepted,
                    reason,
                });
            }
            self.answer(service_id, accept, true).await?;
            self.answer(service_id, reject, false).await?;
            let database = tag(DB_INSTANCE_TAG).or(tag(DB_CLUSTER_TAG));
            // A service shared with `per-vpc` belongs to its VPC, not to one database: the message
            // names the VPC instead.
            let vpc = tag(VPC_TAG).map(vpc_of_tag);
            for rejected in decisions.iter().filter(|d| d.service_id == service_id && !d.accepted) {
                self.metrics.count_by("ForeignConnectionRejected", "Stack", &self.settings.stack_name).await;
                let fields = json!({"service_id": service_id, "service_name": service.service_name(),
                    "vpc_endpoint_id": rejected.vpc_endpoint_id, "vpc_endpoint_owner": rejected.vpc_endpoint_owner,
                    "reason": rejected.reason, "db_instance_identifier": database, "vpc_id": vpc});
                let subject = format!("TiDB Cloud link: endpoint connection rejected: {}", rejected.vpc_endpoint_id);
                tell(&self.notifier, "foreign-connection-rejected", &subject, fields).await;
            }
        }
        let resumed = match awaited {
            Some(awaited) => self.resume(&awaited).await?,
            None => false,
        };
        info!(decided = decisions.len(), resumed, "connection requests answered");
        Ok(Decisions { decisions, resumed })
    }
}

impl AcceptConnections {
    /// Resumes the waiting provisioning once its endpoint's connection is available. A token
    /// whose execution has ended (timed out, stopped) is only logged.
    async fn resume(&self, awaited: &Awaited) -> Result<bool, StepError> {
        let connections = self
            .ec2
            .describe_vpc_endpoint_connections()
            .filters(Filter::builder().name("service-id").values(&awaited.service_id).build())
            .filters(Filter::builder().name("vpc-endpoint-id").values(&awaited.endpoint_id).build())
            .send()
            .await
            .map_err(aws::fail("DescribeVpcEndpointConnections"))?;
        let state = connections
            .vpc_endpoint_connections()
            .iter()
            .find(|c| c.vpc_endpoint_id() == Some(awaited.endpoint_id.as_str()))
            .and_then(|c| c.vpc_endpoint_state())
            .map(|s| s.as_str().to_owned());
        let Some(state) = state.clone().filter(|s| is_accepted(s)) else {
            info!(endpoint = %awaited.endpoint_id, state = ?state, "awaited endpoint not accepted yet; the provisioning keeps waiting");
            return Ok(false);
        };
        let output = serde_json::json!({"endpoint_id": awaited.endpoint_id, "state": state});
        match self.sfn.send_task_success().task_token(&awaited.task_token).output(output.to_string()).send().await {
            Ok(_) => {
                info!(endpoint = %awaited.endpoint_id, "waiting provisioning resumed");
                Ok(true)
            }
            Err(e) if matches!(aws::error_code(&e), Some("TaskTimedOut" | "TaskDoesNotExist" | "InvalidToken")) => {
                warn!(endpoint = %awaited.endpoint_id, code = aws::error_code(&e), "the waiting provisioning is gone; nothing to resume");
                Ok(false)
            }
            Err(e) => Err(aws::failure("SendTaskSuccess", e)),
        }
    }

    /// The services this stack manages (`only`: that one, if it is).
    async fn managed_services(&self, only: Option<&str>) -> Result<Vec<ServiceConfiguration>, StepError> {
        let mut pages = self
            .ec2
            .describe_vpc_endpoint_service_configurations()
            .set_filters(only.map(|id| vec![Filter::builder().name("service-id").values(id).build()]))
            .filters(Filter::builder().name(format!("tag:{MANAGED_BY_TAG}")).values(&self.settings.stack_name).build())
            .into_paginator()
            .send();
        let mut services = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws::fail("DescribeVpcEndpointServiceConfigurations"))?;
            // Checked here too: a service without our tag must never be touched.
            services.extend(
                page.service_configurations()
                    .iter()
                    .filter(|s| tag_value(s.tags(), MANAGED_BY_TAG) == Some(&self.settings.stack_name))
                    .cloned(),
            );
        }
        Ok(services)
    }

    /// The connections waiting for an answer, to any of the account's services (`only`: to that one).
    async fn pending_connections(&self, only: Option<&str>) -> Result<Vec<VpcEndpointConnection>, StepError> {
        let mut pages = self
            .ec2
            .describe_vpc_endpoint_connections()
            .set_filters(only.map(|id| vec![Filter::builder().name("service-id").values(id).build()]))
            .filters(Filter::builder().name("vpc-endpoint-state").values(PENDING).build())
            .into_paginator()
            .send();
        let mut pending = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws::fail("DescribeVpcEndpointConnections"))?;
            pending.extend(
                page.vpc_endpoint_connections()
                    .iter()
                    .filter(|c| c.vpc_endpoint_state().is_some_and(|s| s.as_str().eq_ignore_ascii_case(PENDING)))
                    .cloned(),
            );
        }
        Ok(pending)
    }

    /// Accepts or rejects `endpoint_ids`. An endpoint that is no longer pending (another
    /// notification's run answered it first) is fine; any other refusal is an error, so the
    /// notification is delivered again.
    async fn answer(&self, service_id: &str, endpoint_ids: Vec<String>, accept: bool) -> Result<(), StepError> {
        if endpoint_ids.is_empty() {
            return Ok(());
        }
        let (operation, unsuccessful) = if accept {
            let out = self
                .ec2
                .accept_vpc_endpoint_connections()
                .service_id(service_id)
                .set_vpc_endpoint_ids(Some(endpoint_ids))
                .send()
                .await
                .map_err(aws::fail("AcceptVpcEndpointConnections"))?;
            ("AcceptVpcEndpointConnections", out.unsuccessful().to_vec())
        } else {
            let out = self
                .ec2
                .reject_vpc_endpoint_connections()
                .service_id(service_id)
                .set_vpc_endpoint_ids(Some(endpoint_ids))
                .send()
                .await
                .map_err(aws::fail("RejectVpcEndpointConnections"))?;
            ("RejectVpcEndpointConnections", out.unsuccessful().to_vec())
        };
        for item in unsuccessful {
            let code = item.error().and_then(|e| e.code()).unwrap_or("Unknown");
            let message = item.error().and_then(|e| e.message()).unwrap_or_default();
            let endpoint = item.resource_id().unwrap_or_default();
            if code == "InvalidState" || code == "InvalidVpcEndpointId.NotFound" {
                warn!(service = service_id, endpoint, code, "connection changed before it was answered; nothing to do");
                continue;
            }
            return Err(StepError::AwsRequestFailed {
                operation,
                code: code.to_owned(),
                message: format!("endpoint {endpoint}: {message}"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tidb_clouds_account_is_accepted() {
        assert!(decide("380838443567", "vpce-1", "380838443567", None).0);
        let (accepted, reason) = decide("111122223333", "vpce-1", "380838443567", None);
        assert!(!accepted);
        assert!(reason.contains("111122223333") && reason.contains("380838443567"), "{reason}");
    }

    #[test]
    fn pending_and_available_are_accepted_states() {
        assert!(is_accepted("pending") && is_accepted("available") && is_accepted("Available"));
        assert!(!is_accepted("pendingAcceptance") && !is_accepted("rejected") && !is_accepted("failed"));
    }

    #[test]
    fn a_known_endpoint_id_narrows_acceptance_to_it() {
        assert!(decide("380838443567", "vpce-1", "380838443567", Some("vpce-1")).0);
        let (accepted, reason) = decide("380838443567", "vpce-2", "380838443567", Some("vpce-1"));
        assert!(!accepted);
        assert!(reason.contains("vpce-1"), "{reason}");
    }
}
