//! Accepting TiDB Cloud's endpoint connection, and only TiDB Cloud's. A connection notification on
//! the stack's topic is only a trigger: the truth is read with DescribeVpcEndpointConnections for
//! every endpoint service this stack manages. A pending connection is accepted when its endpoint
//! belongs to TiDB Cloud's account (and, once the provisioning knows the endpoint TiDB Cloud
//! created, only that endpoint); any other is rejected, even if someone widened the service's
//! allowed principals by hand. Services without this stack's tag are never touched.

use aws_config::SdkConfig;
use aws_lambda_events::sns::SnsEvent;
use aws_sdk_ec2::types::{Filter, ServiceConfiguration, VpcEndpointConnection};
use aws_sdk_ec2::Client;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::naming::{MANAGED_BY_TAG, TIDB_CLOUD_ENDPOINT_TAG};
use crate::runtime::Step;
use crate::{aws, Settings, StepError};

/// The state AWS gives a connection that waits for the service owner (the SDK has no variant for
/// this spelling, so states are compared as strings).
const PENDING: &str = "pendingAcceptance";

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
    settings: Settings,
}

impl Step for AcceptConnections {
    type Input = SnsEvent;
    type Output = Decisions;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        settings.tidb_cloud_account_id()?;
        Ok(Self { ec2: Client::new(sdk), settings: settings.clone() })
    }

    async fn run(&self, event: SnsEvent) -> Result<Decisions, StepError> {
        for record in &event.records {
            info!(message_id = %record.sns.message_id, topic = %record.sns.topic_arn, "connection notification received");
        }
        let tidb_cloud_account = self.settings.tidb_cloud_account_id()?;
        let mut decisions = Vec::new();
        for service in self.managed_services().await? {
            let service_id = service.service_id().unwrap_or_default();
            let expected =
                service.tags().iter().find(|t| t.key() == Some(TIDB_CLOUD_ENDPOINT_TAG)).and_then(|t| t.value());
            let mut accept = Vec::new();
            let mut reject = Vec::new();
            for connection in self.pending_connections(service_id).await? {
                let endpoint_id = connection.vpc_endpoint_id().unwrap_or_default().to_owned();
                let owner = connection.vpc_endpoint_owner().unwrap_or_default().to_owned();
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
        }
        Ok(Decisions { decisions })
    }
}

impl AcceptConnections {
    async fn managed_services(&self) -> Result<Vec<ServiceConfiguration>, StepError> {
        let mut pages = self
            .ec2
            .describe_vpc_endpoint_service_configurations()
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
                    .filter(|s| {
                        s.tags()
                            .iter()
                            .any(|t| t.key() == Some(MANAGED_BY_TAG) && t.value() == Some(&self.settings.stack_name))
                    })
                    .cloned(),
            );
        }
        Ok(services)
    }

    async fn pending_connections(&self, service_id: &str) -> Result<Vec<VpcEndpointConnection>, StepError> {
        let mut pages = self
            .ec2
            .describe_vpc_endpoint_connections()
            .filters(Filter::builder().name("service-id").values(service_id).build())
            .filters(Filter::builder().name("vpc-endpoint-state").values(PENDING).build())
            .into_paginator()
            .send();
        let mut pending = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws::fail("DescribeVpcEndpointConnections"))?;
            pending.extend(
                page.vpc_endpoint_connections()
                    .iter()
                    .filter(|c| c.service_id() == Some(service_id))
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
    fn a_known_endpoint_id_narrows_acceptance_to_it() {
        assert!(decide("380838443567", "vpce-1", "380838443567", Some("vpce-1")).0);
        let (accepted, reason) = decide("380838443567", "vpce-2", "380838443567", Some("vpce-1"));
        assert!(!accepted);
        assert!(reason.contains("vpce-1"), "{reason}");
    }
}
