//! What the product reads of an RDS database, instance or DB cluster, in one shape. An instance
//! is reached at its own endpoint; an Aurora MySQL or Multi-AZ DB cluster at its cluster (writer)
//! endpoint, which RDS points at the current writer. DescribeDBClusters names the cluster's DB
//! subnet group only, so its VPC and subnets take a DescribeDBSubnetGroups call.

use aws_sdk_rds::types::{DbCluster, DbInstance, DbSubnetGroup, Tag, VpcSecurityGroupMembership};

use crate::naming::DatabaseRef;
use crate::{aws, StepError};

/// What a cluster without a writer member is, for the workflows: not yet reachable (a cluster is
/// `available` before its first instance is, and a restored or cloned cluster has no instance until
/// one is added), so its writer endpoint does not resolve yet.
pub const AWAITING_WRITER: &str = "available, without a writer instance yet";

/// The database now, as DescribeDBInstances or DescribeDBClusters reports it.
#[derive(Debug, Clone, Default)]
pub struct DescribedDatabase {
    pub arn: String,
    pub status: String,
    pub engine: String,
    /// The address to reach: the instance's endpoint, the cluster's writer endpoint.
    pub address: Option<String>,
    pub port: Option<u16>,
    pub publicly_accessible: bool,
    pub security_group_ids: Vec<String>,
    /// For an instance, the cluster it is a member of.
    pub member_of_cluster: Option<String>,
    /// A cluster without a writer member.
    without_writer: bool,
    tags: Vec<(String, String)>,
    subnet_group: SubnetGroup,
}

#[derive(Debug, Clone, Default)]
enum SubnetGroup {
    #[default]
    None,
    /// An instance's description carries its group.
    Described(Network),
    /// A cluster's names it.
    Named(String),
}

/// The database's VPC and the subnets of its DB subnet group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    pub vpc_id: String,
    pub subnet_ids: Vec<String>,
}

impl DescribedDatabase {
    /// The status the workflows act on: RDS's, or [`AWAITING_WRITER`].
    pub fn readiness(&self) -> &str {
        if self.without_writer && self.status == "available" {
            AWAITING_WRITER
        } else {
            &self.status
        }
    }

    /// The value of tag `key` on the database.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The database's VPC and subnets; `None` without a DB subnet group (not in a VPC).
    pub async fn network(&self, rds: &aws_sdk_rds::Client) -> Result<Option<Network>, StepError> {
        match &self.subnet_group {
            SubnetGroup::None => Ok(None),
            SubnetGroup::Described(network) => Ok(Some(network.clone())),
            SubnetGroup::Named(name) => {
                let out = rds
                    .describe_db_subnet_groups()
                    .db_subnet_group_name(name)
                    .send()
                    .await
                    .map_err(aws::fail("DescribeDBSubnetGroups"))?;
                Ok(out.db_subnet_groups().first().map(network_of))
            }
        }
    }
}

/// Describes the instance or cluster; `None` when it does not exist.
pub async fn describe(
    rds: &aws_sdk_rds::Client,
    database: &DatabaseRef,
) -> Result<Option<DescribedDatabase>, StepError> {
    match database {
        DatabaseRef::Instance(id) => match rds.describe_db_instances().db_instance_identifier(id).send().await {
            Ok(out) => Ok(out.db_instances().first().map(of_instance)),
            Err(e) if aws::error_code(&e) == Some("DBInstanceNotFound") => Ok(None),
            Err(e) => Err(aws::failure("DescribeDBInstances", e)),
        },
        DatabaseRef::Cluster(id) => match rds.describe_db_clusters().db_cluster_identifier(id).send().await {
            Ok(out) => Ok(out.db_clusters().first().map(of_cluster)),
            Err(e) if aws::error_code(&e) == Some("DBClusterNotFoundFault") => Ok(None),
            Err(e) => Err(aws::failure("DescribeDBClusters", e)),
        },
    }
}

fn network_of(group: &DbSubnetGroup) -> Network {
    Network {
        vpc_id: group.vpc_id().unwrap_or_default().to_owned(),
        subnet_ids: group.subnets().iter().filter_map(|s| s.subnet_identifier()).map(str::to_owned).collect(),
    }
}

fn tags_of(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter().filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))).collect()
}

/// The database's VPC security groups; one being removed no longer admits anything of ours.
fn active_groups(groups: &[VpcSecurityGroupMembership]) -> Vec<String> {
    groups
        .iter()
        .filter(|g| g.status().is_none_or(|s| s == "active" || s == "adding"))
        .filter_map(|g| g.vpc_security_group_id())
        .map(str::to_owned)
        .collect()
}

fn of_instance(db: &DbInstance) -> DescribedDatabase {
    DescribedDatabase {
        arn: db.db_instance_arn().unwrap_or_default().to_owned(),
        status: db.db_instance_status().unwrap_or("unknown").to_owned(),
        engine: db.engine().unwrap_or_default().to_owned(),
        address: db.endpoint().and_then(|e| e.address()).map(str::to_owned),
        port: db.endpoint().and_then(|e| e.port()).and_then(|p| u16::try_from(p).ok()),
        publicly_accessible: db.publicly_accessible() == Some(true),
        security_group_ids: active_groups(db.vpc_security_groups()),
        member_of_cluster: db.db_cluster_identifier().map(str::to_owned),
        without_writer: false,
        tags: tags_of(db.tag_list()),
        subnet_group: db.db_subnet_group().map_or(SubnetGroup::None, |g| SubnetGroup::Described(network_of(g))),
    }
}

fn of_cluster(cluster: &DbCluster) -> DescribedDatabase {
    DescribedDatabase {
        arn: cluster.db_cluster_arn().unwrap_or_default().to_owned(),
        status: cluster.status().unwrap_or("unknown").to_owned(),
        engine: cluster.engine().unwrap_or_default().to_owned(),
        address: cluster.endpoint().map(str::to_owned),
        port: cluster.port().and_then(|p| u16::try_from(p).ok()),
        publicly_accessible: cluster.publicly_accessible() == Some(true),
        security_group_ids: active_groups(cluster.vpc_security_groups()),
        member_of_cluster: None,
        without_writer: !cluster.db_cluster_members().iter().any(|m| m.is_cluster_writer() == Some(true)),
        tags: tags_of(cluster.tag_list()),
        subnet_group: cluster.db_subnet_group().map_or(SubnetGroup::None, |name| SubnetGroup::Named(name.to_owned())),
    }
}
