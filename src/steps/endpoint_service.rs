//! Step 6, endpoint service: a VPC endpoint service on the load balancer that requires acceptance,
//! admits exactly TiDB Cloud's account, and notifies the stack's topic of connection requests,
//! which the acceptor function answers. Its name is what the user gives TiDB Cloud.

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, ResourceType, ServiceConfiguration, Tag};
use aws_sdk_ec2::Client;
use tracing::{info, warn};

use crate::naming::{
    account_root, partition_of, resource_name, short_hash, Ownership, NAME_PREFIX, TIDB_CLOUD_ACCOUNT_TAG,
    TIDB_CLOUD_CLUSTER_TAG,
};
use crate::payload::{Database, EndpointService, LoadBalancer, ZonePlan};
use crate::resources::{ec2_tags, endpoint_service_id, find_endpoint_service, tag_value};
use crate::{aws, Settings, Step, StepError};

#[derive(Debug, serde::Deserialize)]
pub struct Input {
    pub database: Database,
    pub zones: ZonePlan,
    pub load_balancer: LoadBalancer,
}

/// Every connection event, so the acceptor also hears of connections it must reject or that go.
const CONNECTION_EVENTS: &[&str] = &["Connect", "Accept", "Reject", "Delete"];

pub struct CreateEndpointService {
    ec2: Client,
    settings: Settings,
}

impl Step for CreateEndpointService {
    type Input = Input;
    type Output = EndpointService;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        Ok(Self { ec2: Client::new(sdk), settings: settings.clone() })
    }

    async fn run(&self, input: Input) -> Result<EndpointService, StepError> {
        let topic_arn = self.settings.connection_topic_arn()?.to_owned();
        let identifier = &input.database.identifier;
        // The service is its load balancer's owner's: the database's, or its VPC's.
        let ownership =
            Ownership::new(&self.settings.stack_name, &input.load_balancer.owner(&self.settings, &input.database));
        let tidb_cloud_tags = tidb_cloud_tags(&input);
        // A service this run created carries its tags and has no principal or notification yet.
        let (service, created) = match find_endpoint_service(&self.ec2, &ownership).await? {
            Some(service) => (self.ensure_fronts(service, &input.load_balancer, &ownership)?, false),
            None => (self.create(&input.load_balancer, &ownership, &tidb_cloud_tags).await?, true),
        };
        let service_id = endpoint_service_id(&service)?.to_owned();
        let partition = partition_of(&input.database.arn)?;
        let principal = account_root(partition, &input.zones.tidb_cloud_account_id);
        self.allow_only(&service_id, &principal, created).await?;
        if ownership.identifier != *identifier {
            ensure_same_cluster(&service, &input, &ownership)?;
        }
        if !tidb_cloud_tags.iter().all(|tag| service.tags().contains(tag)) {
            self.record_tidb_cloud(&service_id, tidb_cloud_tags).await?;
        }
        let connection_notification_id = self.ensure_notification(&service_id, &topic_arn, created).await?;
        let service_name = aws::required(service.service_name(), "an endpoint service's ServiceName")?.to_owned();
        info!(db_instance = %identifier, service = %service_name, principal = %principal, "endpoint service ready");
        Ok(EndpointService { service_id, service_name, allowed_principal: principal, connection_notification_id })
    }
}

impl CreateEndpointService {
    fn ensure_fronts(
        &self,
        service: ServiceConfiguration,
        lb: &LoadBalancer,
        ownership: &Ownership,
    ) -> Result<ServiceConfiguration, StepError> {
        if service.network_load_balancer_arns().iter().any(|arn| arn == &lb.arn) {
            return Ok(service);
        }
        Err(StepError::ResourceConflict {
            kind: "endpoint service",
            name: endpoint_service_id(&service)?.to_owned(),
            identifier: ownership.database(),
            reason: format!(
                "it fronts {:?}, not load balancer {}; deprovision the instance first",
                service.network_load_balancer_arns(),
                lb.arn
            ),
        })
    }

    async fn create(
        &self,
        lb: &LoadBalancer,
        ownership: &Ownership,
        tidb_cloud_tags: &[Tag],
    ) -> Result<ServiceConfiguration, StepError> {
        let name = resource_name(&ownership.identifier);
        let mut tags = ec2_tags(ResourceType::VpcEndpointService, ownership, &name);
        tags.tags.get_or_insert_with(Vec::new).extend_from_slice(tidb_cloud_tags);
        let out = self
            .ec2
            .create_vpc_endpoint_service_configuration()
            .acceptance_required(true)
            .network_load_balancer_arns(&lb.arn)
            // The load balancer's ARN is unique to this provisioning, so a retried call after a
            // lost response returns the same service instead of a second one.
            .client_token(client_token(&lb.arn))
            .tag_specifications(tags)
            .send()
            .await
            .map_err(aws::fail("CreateVpcEndpointServiceConfiguration"))?;
        let service = out.service_configuration().cloned();
        let service = aws::required(service, "CreateVpcEndpointServiceConfiguration's service configuration")?;
        info!(db_instance = %ownership.identifier, service = endpoint_service_id(&service)?, "endpoint service created");
        Ok(service)
    }

    /// A service found with other TiDB Cloud tags (the account or the cluster changed) gets today's.
    async fn record_tidb_cloud(&self, service_id: &str, tags: Vec<Tag>) -> Result<(), StepError> {
        self.ec2
            .create_tags()
            .resources(service_id)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(aws::fail("CreateTags"))?;
        Ok(())
    }

    /// Exactly one allowed principal: TiDB Cloud's account. Anything else found there (added by
    /// hand, or left from another TiDB Cloud account) is removed; a new service has none.
    async fn allow_only(&self, service_id: &str, principal: &str, created: bool) -> Result<(), StepError> {
        let current = match created {
            true => None,
            false => Some(
                self.ec2
                    .describe_vpc_endpoint_service_permissions()
                    .service_id(service_id)
                    .send()
                    .await
                    .map_err(aws::fail("DescribeVpcEndpointServicePermissions"))?,
            ),
        };
        let allowed: Vec<&str> =
            current.iter().flat_map(|c| c.allowed_principals()).filter_map(|p| p.principal()).collect();
        let extra: Vec<String> = allowed.iter().filter(|p| **p != principal).map(|p| p.to_string()).collect();
        let missing = !allowed.contains(&principal);
        if !missing && extra.is_empty() {
            return Ok(());
        }
        if !extra.is_empty() {
            warn!(service = service_id, removed = ?extra, "removing principals that are not TiDB Cloud's account");
        }
        let mut change = self
            .ec2
            .modify_vpc_endpoint_service_permissions()
            .service_id(service_id)
            .set_remove_allowed_principals((!extra.is_empty()).then_some(extra));
        if missing {
            change = change.add_allowed_principals(principal);
        }
        change.send().await.map_err(aws::fail("ModifyVpcEndpointServicePermissions"))?;
        info!(service = service_id, principal, "endpoint service allows TiDB Cloud's account only");
        Ok(())
    }

    /// The service's notification to the stack's topic; a new service has none to look for.
    async fn ensure_notification(&self, service_id: &str, topic_arn: &str, created: bool) -> Result<String, StepError> {
        if !created {
            let existing = self
                .ec2
                .describe_vpc_endpoint_connection_notifications()
                .filters(Filter::builder().name("service-id").values(service_id).build())
                .send()
                .await
                .map_err(aws::fail("DescribeVpcEndpointConnectionNotifications"))?;
            let ours = existing
                .connection_notification_set()
                .iter()
                .find(|n| n.service_id() == Some(service_id) && n.connection_notification_arn() == Some(topic_arn));
            if let Some(id) = ours.and_then(|n| n.connection_notification_id()) {
                return Ok(id.to_owned());
            }
        }
        let out = self
            .ec2
            .create_vpc_endpoint_connection_notification()
            .service_id(service_id)
            .connection_notification_arn(topic_arn)
            .set_connection_events(Some(CONNECTION_EVENTS.iter().map(|e| e.to_string()).collect()))
            .client_token(client_token(&format!("{service_id}/{topic_arn}")))
            .send()
            .await
            .map_err(aws::fail("CreateVpcEndpointConnectionNotification"))?;
        let id = out.connection_notification().and_then(|n| n.connection_notification_id());
        let id = aws::required(id, "CreateVpcEndpointConnectionNotification's ConnectionNotificationId")?.to_owned();
        info!(service = service_id, notification = %id, topic = topic_arn, "connection notifications go to the stack's topic");
        Ok(id)
    }
}

/// A shared service links one TiDB Cloud cluster, the one its first database named: TiDB Cloud's
/// endpoint reaches every listener of the load balancer, and the teardown unlinks that cluster.
fn ensure_same_cluster(service: &ServiceConfiguration, input: &Input, ownership: &Ownership) -> Result<(), StepError> {
    let linked = tag_value(service.tags(), TIDB_CLOUD_CLUSTER_TAG);
    match (linked, input.database.tidb_cloud_cluster_id.as_deref()) {
        (Some(linked), Some(wanted)) if linked != wanted => Err(StepError::ResourceConflict {
            kind: "endpoint service",
            name: endpoint_service_id(service)?.to_owned(),
            identifier: ownership.database(),
            reason: format!(
                "it is shared by the VPC's databases and linked to TiDB Cloud cluster {linked}, not {wanted}; a shared load balancer links one cluster: opt the database in with {linked}, or use LoadBalancerSharing per-database"
            ),
        }),
        _ => Ok(()),
    }
}

/// Tags the acceptor and the teardown read: whose endpoints to accept, which cluster to unlink.
fn tidb_cloud_tags(input: &Input) -> Vec<Tag> {
    let tag = |key: &str, value: &str| Tag::builder().key(key).value(value).build();
    let cluster = input.database.tidb_cloud_cluster_id.as_deref().map(|cluster| tag(TIDB_CLOUD_CLUSTER_TAG, cluster));
    [tag(TIDB_CLOUD_ACCOUNT_TAG, &input.zones.tidb_cloud_account_id)].into_iter().chain(cluster).collect()
}

/// An idempotency token derived from what makes a request unique.
fn client_token(seed: &str) -> String {
    format!("{NAME_PREFIX}{}", short_hash(seed))
}
