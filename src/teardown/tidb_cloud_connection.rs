//! Teardown step 0: the private link connection in TiDB Cloud, first, so that TiDB Cloud stops
//! using the endpoint service before it goes. The cluster is the one recorded on the endpoint
//! service at provisioning; the step waits (`TeardownPending`) until TiDB Cloud has deleted it.

use tracing::{info, warn};

use aws_config::SdkConfig;

use super::{Parts, Removes, Teardown};
use crate::naming::TIDB_CLOUD_CLUSTER_TAG;
use crate::payload::Removal;
use crate::resources::{find_endpoint_service, tag_value};
use crate::tidb_cloud::{ConnectionState, TiDBCloud};
use crate::{Settings, StepError};

pub type RemoveTiDBCloudConnection = Teardown<TiDBCloudConnectionRemoval>;

pub struct TiDBCloudConnectionRemoval {
    ec2: aws_sdk_ec2::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    /// Present when the stack has a TiDB Cloud API key.
    tidb_cloud: Option<TiDBCloud>,
}

impl Removes for TiDBCloudConnectionRemoval {
    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        Ok(Self {
            ec2: aws_sdk_ec2::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
            tidb_cloud: settings.tidb_cloud(sdk)?,
        })
    }

    async fn remove(&self, parts: &Parts) -> Result<Removal, StepError> {
        let ownership = &parts.shared;
        if parts.used_by_others(&self.elb).await? {
            return Ok(Removal::nothing());
        }
        let Some(service) = find_endpoint_service(&self.ec2, ownership).await? else {
            return Ok(Removal::nothing());
        };
        let cluster = tag_value(service.tags(), TIDB_CLOUD_CLUSTER_TAG);
        let (Some(cluster), Some(service_name)) = (cluster, service.service_name()) else {
            return Ok(Removal::nothing());
        };
        let Some(api) = &self.tidb_cloud else {
            // Without a key the AWS side must still go: TiDB Cloud shows the connection as failed.
            warn!(db_instance = %ownership.identifier, cluster, "no TiDB Cloud API key: delete the private link connection in TiDB Cloud by hand");
            return Ok(Removal::nothing());
        };
        let Some(connection) = api.find_private_link_connection(cluster, service_name, None).await? else {
            return Ok(Removal::nothing());
        };
        let id = connection.private_link_connection_id;
        if connection.state != ConnectionState::Deleting {
            match api.delete_private_link_connection(cluster, &id).await {
                Ok(_) | Err(StepError::TiDBCloudNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            info!(db_instance = %ownership.identifier, cluster, connection = %id, "TiDB Cloud private link connection deleted");
        }
        match api.find_private_link_connection(cluster, service_name, Some(&id)).await? {
            None => Ok(Removal { removed: vec![id], done: true }),
            Some(_) => Err(StepError::TeardownPending(format!("TiDB Cloud private link connection {id}"))),
        }
    }
}
