//! Step 1, inspect the database: the instance must exist, be available, run a MySQL-compatible
//! engine, and its endpoint must resolve to a private address inside its VPC, the address the
//! load balancer will forward to.

use aws_config::SdkConfig;
use aws_sdk_rds::types::DbInstance;
use tracing::info;

use crate::address::{address_in_vpc, Endpoint};
use crate::dns::Resolver;
use crate::naming::db_instance_identifier;
use crate::payload::{Database, DbInstanceRequest};
use crate::runtime::Step;
use crate::{aws, Settings, StepError};

/// Engines whose instances speak the MySQL protocol TiDB Cloud Dataflow uses.
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
        let identifier = db_instance_identifier(&request.db_instance_identifier)?;
        let instance = self.describe(&identifier).await?;
        let status = instance.db_instance_status().unwrap_or("unknown");
        if status != "available" {
            return Err(StepError::DatabaseNotAvailable { identifier, status: status.to_owned() });
        }
        let engine = instance.engine().unwrap_or_default().to_owned();
        if !SUPPORTED_ENGINES.contains(&engine.as_str()) {
            return Err(StepError::UnsupportedEngine { identifier, engine });
        }
        let (Some(address), Some(port)) = (
            instance.endpoint().and_then(|e| e.address()),
            instance.endpoint().and_then(|e| e.port()).and_then(|p| u16::try_from(p).ok()),
        ) else {
            return Err(StepError::DatabaseNotAvailable {
                identifier,
                status: "available but without an endpoint".into(),
            });
        };
        let Some(subnet_group) = instance.db_subnet_group() else {
            return Err(StepError::DatabaseNotInVpc { identifier });
        };
        let vpc_id = subnet_group.vpc_id().unwrap_or_default().to_owned();
        let endpoint = Endpoint {
            identifier: &identifier,
            address,
            vpc_id: &vpc_id,
            publicly_accessible: instance.publicly_accessible() == Some(true),
        };
        let (ip_address, vpc_cidr_blocks) = address_in_vpc(&self.resolver, &self.ec2, &endpoint).await?;
        let database = Database {
            arn: instance.db_instance_arn().unwrap_or_default().to_owned(),
            engine,
            endpoint_address: address.to_owned(),
            port,
            ip_address,
            vpc_id,
            vpc_cidr_blocks,
            subnet_ids: subnet_group
                .subnets()
                .iter()
                .filter_map(|s| s.subnet_identifier())
                .map(str::to_owned)
                .collect(),
            security_group_ids: instance
                .vpc_security_groups()
                .iter()
                .filter(|g| g.status().is_none_or(|s| s == "active" || s == "adding"))
                .filter_map(|g| g.vpc_security_group_id())
                .map(str::to_owned)
                .collect(),
            tidb_cloud_cluster_id: self.settings.cluster_for_tag(
                instance
                    .tag_list()
                    .iter()
                    .find(|t| t.key() == Some(self.settings.opt_in_tag_key.as_str()))
                    .and_then(|t| t.value()),
            ),
            identifier,
        };
        info!(db_instance = %database.identifier, ip = %database.ip_address, vpc = %database.vpc_id, engine = %database.engine, "database inspected");
        Ok(database)
    }
}

impl InspectDatabase {
    async fn describe(&self, identifier: &str) -> Result<DbInstance, StepError> {
        let not_found = || StepError::DatabaseNotFound { identifier: identifier.to_owned() };
        match self.rds.describe_db_instances().db_instance_identifier(identifier).send().await {
            Ok(out) => out.db_instances().first().cloned().ok_or_else(not_found),
            Err(e) if aws::error_code(&e) == Some("DBInstanceNotFound") => Err(not_found()),
            Err(e) => Err(aws::failure("DescribeDBInstances", e)),
        }
    }
}
