//! Steps 7 and 8, the TiDB Cloud side, when a cluster is linked: the private link connection is
//! created in TiDB Cloud with the endpoint service's name (or found, when a run is repeated), and
//! polled (the state machine runs the step again) until TiDB Cloud reports `ACTIVE`. Once TiDB
//! Cloud has created its endpoint (`PENDING_ACCEPTANCE`), the endpoint's ID is tagged on the
//! service, so the acceptor accepts exactly that endpoint. A connection that ends `FAILED` is
//! deleted and created once more (a fresh endpoint service can refuse connections for a while);
//! a second failure ends the workflow with TiDB Cloud's message.

use aws_config::SdkConfig;
use aws_sdk_ec2::types::Tag;
use tracing::{info, warn};

use crate::naming::{resource_name, TIDB_CLOUD_ENDPOINT_TAG};
use crate::payload::{Database, EndpointService, LoadBalancer, TiDBCloudConnection};
use crate::tidb_cloud::{ConnectionState, PrivateLinkConnection, TiDBCloud};
use crate::{aws, Settings, Step, StepError};

#[derive(Debug, serde::Deserialize)]
pub struct Input {
    pub database: Database,
    pub endpoint_service: EndpointService,
    /// Absent in documents from before the load balancer named its owner.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancer>,
    /// This step's previous result, while polling.
    #[serde(default)]
    pub tidb_cloud: Option<TiDBCloudConnection>,
}

pub struct ConnectTiDBCloud {
    ec2: aws_sdk_ec2::Client,
    tidb_cloud: Option<TiDBCloud>,
    settings: Settings,
}

impl Step for ConnectTiDBCloud {
    type Input = Input;
    type Output = TiDBCloudConnection;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        Ok(Self {
            ec2: aws_sdk_ec2::Client::new(sdk),
            tidb_cloud: settings.tidb_cloud(sdk)?,
            settings: settings.clone(),
        })
    }

    async fn run(&self, input: Input) -> Result<TiDBCloudConnection, StepError> {
        let Some(cluster) = input.database.tidb_cloud_cluster_id.clone() else {
            return Ok(TiDBCloudConnection::default());
        };
        let api = self.tidb_cloud.as_ref().ok_or_else(|| {
            StepError::Misconfigured(format!(
                "TiDB Cloud cluster {cluster} is to be linked, but the stack has no TiDB Cloud API key"
            ))
        })?;
        let service_name = &input.endpoint_service.service_name;
        let previous = input.tidb_cloud.unwrap_or_default();
        let recreated = previous.recreated;
        let pending = previous.state.as_deref() == Some(PENDING_ACCEPTANCE);
        let tagged = previous.endpoint_id.filter(|_| pending);
        let known = previous.connection_id.as_deref();
        let connection = match api.find_private_link_connection(&cluster, service_name, known).await? {
            Some(connection) => connection,
            None => {
                // Named as the endpoint service's owner: the database, or its VPC.
                let owner = input.load_balancer.as_ref().map(|lb| lb.owner(&self.settings, &input.database));
                let display_name = resource_name(&owner.unwrap_or_else(|| input.database.identifier.clone()));
                let created = api.create_private_link_connection(&cluster, &display_name, service_name).await?;
                info!(db_instance = %input.database.identifier, cluster = %cluster, connection = %created.private_link_connection_id, "TiDB Cloud private link connection created");
                created
            }
        };
        let mut result = TiDBCloudConnection {
            configured: true,
            cluster_id: Some(cluster.clone()),
            connection_id: Some(connection.private_link_connection_id.clone()).filter(|id| !id.is_empty()),
            state: Some(state_name(&connection)),
            endpoint_id: connection.endpoint_id().map(str::to_owned),
            recreated,
        };
        match connection.state {
            ConnectionState::Failed if !recreated => {
                let message = connection.message.clone().unwrap_or_default();
                warn!(connection = %connection.private_link_connection_id, message = %message, "TiDB Cloud's connection failed; creating it once more");
                api.delete_private_link_connection(&cluster, &connection.private_link_connection_id).await?;
                result.state = Some("DELETING".into());
                result.recreated = true;
            }
            ConnectionState::Failed => {
                return Err(StepError::TiDBCloudConnectionFailed {
                    connection_id: connection.private_link_connection_id,
                    message: connection.message.unwrap_or_default(),
                })
            }
            // Tagged once: a poll that found the connection pending tagged its endpoint before it
            // returned.
            ConnectionState::PendingAcceptance if result.endpoint_id != tagged => {
                if let Some(endpoint_id) = &result.endpoint_id {
                    self.expect_endpoint(&input.endpoint_service.service_id, endpoint_id).await?;
                }
            }
            _ => {}
        }
        info!(db_instance = %input.database.identifier, state = ?result.state, endpoint = ?result.endpoint_id, "TiDB Cloud connection checked");
        Ok(result)
    }
}

impl ConnectTiDBCloud {
    async fn expect_endpoint(&self, service_id: &str, endpoint_id: &str) -> Result<(), StepError> {
        self.ec2
            .create_tags()
            .resources(service_id)
            .tags(Tag::builder().key(TIDB_CLOUD_ENDPOINT_TAG).value(endpoint_id).build())
            .send()
            .await
            .map_err(aws::fail("CreateTags"))?;
        Ok(())
    }
}

const PENDING_ACCEPTANCE: &str = "PENDING_ACCEPTANCE";

/// The state as TiDB Cloud spells it, which the state machine's Choice compares.
fn state_name(connection: &PrivateLinkConnection) -> String {
    serde_json::to_value(connection.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "UNKNOWN".into())
}
