//! Teardown step 1: the endpoint service. Its connections are rejected first (AWS refuses to delete
//! a service with available or pending connections), then its notifications and the service go.

use aws_sdk_ec2::types::Filter;
use aws_sdk_ec2::Client as Ec2;
use tracing::info;

use aws_config::SdkConfig;

use super::{Parts, Removes, Teardown};
use crate::payload::Removal;
use crate::resources::{endpoint_service_id, find_endpoint_service};
use crate::{aws, Settings, StepError};

/// Connection states that keep a service from being deleted.
const LIVE_STATES: &[&str] = &["pendingAcceptance", "pending", "available"];

pub type RemoveEndpointService = Teardown<EndpointServiceRemoval>;

pub struct EndpointServiceRemoval {
    ec2: Ec2,
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

impl Removes for EndpointServiceRemoval {
    fn new(sdk: &SdkConfig, _settings: &Settings) -> Result<Self, StepError> {
        Ok(Self { ec2: Ec2::new(sdk), elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk) })
    }

    async fn remove(&self, parts: &Parts) -> Result<Removal, StepError> {
        let (ec2, ownership) = (&self.ec2, &parts.shared);
        if parts.used_by_others(&self.elb).await? {
            return Ok(Removal::nothing());
        }
        let Some(service) = find_endpoint_service(ec2, ownership).await? else {
            return Ok(Removal::nothing());
        };
        let service_id = endpoint_service_id(&service)?.to_owned();
        let by_service = || Filter::builder().name("service-id").values(&service_id).build();

        let connections = ec2
            .describe_vpc_endpoint_connections()
            .filters(by_service())
            .send()
            .await
            .map_err(aws::fail("DescribeVpcEndpointConnections"))?;
        let live: Vec<String> = connections
            .vpc_endpoint_connections()
            .iter()
            .filter(|c| {
                c.vpc_endpoint_state().is_some_and(|s| LIVE_STATES.iter().any(|l| s.as_str().eq_ignore_ascii_case(l)))
            })
            .filter_map(|c| c.vpc_endpoint_id().map(str::to_owned))
            .collect();
        if !live.is_empty() {
            ec2.reject_vpc_endpoint_connections()
                .service_id(&service_id)
                .set_vpc_endpoint_ids(Some(live.clone()))
                .send()
                .await
                .map_err(aws::fail("RejectVpcEndpointConnections"))?;
            info!(db_instance = %ownership.identifier, service = %service_id, endpoints = ?live, "endpoint connections rejected");
        }

        let notification_ids = notifications(ec2, by_service()).await?;
        if !notification_ids.is_empty() {
            let deleted = ec2
                .delete_vpc_endpoint_connection_notifications()
                .set_connection_notification_ids(Some(notification_ids));
            // When the answer to a delete that took effect is lost, the SDK's retry asks for
            // notifications that are gone, which EC2 refuses (not as not-found: the grant's tag
            // condition has no tags to match). What counts is whether any is left.
            if let Err(error) = deleted.send().await {
                if !notifications(ec2, by_service()).await?.is_empty() {
                    return Err(aws::failure("DeleteVpcEndpointConnectionNotifications", error));
                }
                info!(db_instance = %ownership.identifier, service = %service_id, "connection notifications already deleted");
            }
        }

        let deleted = ec2
            .delete_vpc_endpoint_service_configurations()
            .service_ids(&service_id)
            .send()
            .await
            .map_err(aws::fail("DeleteVpcEndpointServiceConfigurations"))?;
        if let Some(item) = deleted.unsuccessful().first() {
            let code = item.error().and_then(|e| e.code()).unwrap_or("Unknown");
            let message = item.error().and_then(|e| e.message()).unwrap_or_default();
            if code == "ExistingVpcEndpointConnections" {
                return Err(StepError::TeardownPending(format!("endpoint service {service_id} ({message})")));
            }
            if !code.ends_with("NotFound") {
                return Err(StepError::AwsRequestFailed {
                    operation: "DeleteVpcEndpointServiceConfigurations",
                    code: code.to_owned(),
                    message: message.to_owned(),
                });
            }
        }
        info!(db_instance = %ownership.identifier, service = %service_id, "endpoint service deleted");
        Ok(Removal { removed: vec![service_id], done: true })
    }
}

/// The IDs of the connection notifications `filter` selects.
async fn notifications(ec2: &Ec2, filter: Filter) -> Result<Vec<String>, StepError> {
    let described = ec2
        .describe_vpc_endpoint_connection_notifications()
        .filters(filter)
        .send()
        .await
        .map_err(aws::fail("DescribeVpcEndpointConnectionNotifications"))?;
    let found = described.connection_notification_set().iter().map(|n| n.connection_notification_id());
    found.map(|id| aws::required(id, "ConnectionNotificationId").map(str::to_owned)).collect()
}
