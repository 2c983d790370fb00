//! Step 1, inspect the database: the instance or DB cluster must exist, be available, run a
//! MySQL-compatible engine, and its endpoint (a cluster's writer endpoint) must resolve to a
//! private address inside its VPC, the address the load balancer will forward to. A member
//! instance of a cluster is refused: the cluster is what is opted in, once for all its members.

use aws_config::SdkConfig;
use tracing::info;

use crate::address::{address_in_vpc, Endpoint};
use crate::database::describe;
use crate::dns::Resolver;
use crate::naming::{resource_name, DatabaseRef, LOAD_BALANCER_TAG};
use crate::payload::{Database, DbInstanceRequest};
use crate::settings::Sharing;
use crate::{Settings, Step, StepError};

/// Engines that speak the MySQL protocol TiDB Cloud Dataflow uses: of instances, and of clusters
/// (Aurora MySQL, and `mysql` Multi-AZ DB clusters).
pub const SUPPORTED_ENGINES: &[&str] = &["mysql", "mariadb", "aurora-mysql"];

pub struct InspectDatabase {
    rds: aws_sdk_rds::Client,
    ec2: aws_sdk_ec2::Client,
    resolver: Resolver,
    settings: Settings,
}

impl Step for InspectDatabase {
    type Input = DbInstanceRequest;
    type Output = Database;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        Ok(Self {
            rds: aws_sdk_rds::Client::new(sdk),
            ec2: aws_sdk_ec2::Client::new(sdk),
            resolver: Resolver::new(settings.dns_resolver).map_err(StepError::Misconfigured)?,
            settings: settings.clone(),
        })
    }

    async fn run(&self, request: DbInstanceRequest) -> Result<Database, StepError> {
        let database = DatabaseRef::parse(&request.db_instance_identifier)?;
        let named = database.to_string();
        let described = describe(&self.rds, &database)
            .await?
            .ok_or_else(|| StepError::DatabaseNotFound { identifier: named.clone() })?;
        if let Some(cluster) = described.member_of_cluster.clone() {
            return Err(StepError::DatabaseIsClusterMember { identifier: database.identifier().to_owned(), cluster });
        }
        if described.readiness() != "available" {
            return Err(StepError::DatabaseNotAvailable {
                identifier: named,
                status: described.readiness().to_owned(),
            });
        }
        if !SUPPORTED_ENGINES.contains(&described.engine.as_str()) {
            return Err(StepError::UnsupportedEngine { identifier: named, engine: described.engine });
        }
        let (Some(address), Some(port)) = (described.address.as_deref(), described.port) else {
            return Err(StepError::DatabaseNotAvailable {
                identifier: named,
                status: "available but without an endpoint".into(),
            });
        };
        let Some(network) = described.network(&self.rds).await? else {
            return Err(StepError::DatabaseNotInVpc { identifier: named });
        };
        // A database linked under the other sharing mode keeps its link until it is deprovisioned:
        // provisioning it now would make a second one, and a failure's rollback would remove both.
        let own_load_balancer = resource_name(&database.key());
        let per_vpc = self.settings.sharing == Sharing::PerVpc;
        if let Some(recorded) = described.tag(LOAD_BALANCER_TAG).filter(|lb| (*lb == own_load_balancer) == per_vpc) {
            return Err(StepError::ResourceConflict {
                kind: "load balancer",
                name: recorded.to_owned(),
                identifier: named,
                reason: format!(
                    "an earlier provisioning linked the database through it, under the other LoadBalancerSharing mode; deprovision the database, then provision it again"
                ),
            });
        }
        let endpoint = Endpoint {
            identifier: &named,
            address,
            vpc_id: &network.vpc_id,
            publicly_accessible: described.publicly_accessible,
        };
        let (ip_address, vpc_subnets) = address_in_vpc(&self.resolver, &self.ec2, &endpoint).await?;
        let inspected = Database {
            arn: described.arn.clone(),
            engine: described.engine.clone(),
            endpoint_address: address.to_owned(),
            port,
            ip_address,
            vpc_id: network.vpc_id,
            vpc_subnets,
            subnet_ids: network.subnet_ids,
            security_group_ids: described.security_group_ids.clone(),
            tidb_cloud_cluster_id: self.settings.cluster_for_tag(described.tag(&self.settings.opt_in_tag_key)),
            identifier: database.key(),
        };
        info!(db_instance = %inspected.identifier, ip = %inspected.ip_address, vpc = %inspected.vpc_id, engine = %inspected.engine, "database inspected");
        Ok(inspected)
    }
}
