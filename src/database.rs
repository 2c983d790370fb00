//! What the product reads of an RDS database, instance or DB cluster, in one shape. An instance
//! is reached at its own endpoint; an Aurora MySQL or Multi-AZ DB cluster at its cluster (writer)
//! endpoint, which RDS points at the current writer. DescribeDBClusters names the cluster's DB
//! subnet group only, so its VPC and subnets take a DescribeDBSubnetGroups call.

use aws_sdk_rds::types::{DbCluster, DbInstance, DbSubnetGroup, Tag, VpcSecurityGroupMembership};

use crate::naming::DatabaseRef;
use crate::resources::tag_pairs;
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
                out.db_subnet_groups().first().map(network_of).transpose()
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
        DatabaseRef::Instance(id) => {
            let answer = rds.describe_db_instances().db_instance_identifier(id).send().await;
            let out = aws::unless_code(answer, "DBInstanceNotFound", "DescribeDBInstances")?;
            out.as_ref().and_then(|out| out.db_instances().first()).map(of_instance).transpose()
        }
        DatabaseRef::Cluster(id) => {
            let answer = rds.describe_db_clusters().db_cluster_identifier(id).send().await;
            let out = aws::unless_code(answer, "DBClusterNotFoundFault", "DescribeDBClusters")?;
            out.as_ref().and_then(|out| out.db_clusters().first()).map(of_cluster).transpose()
        }
    }
}

fn network_of(group: &DbSubnetGroup) -> Result<Network, StepError> {
    Ok(Network {
        vpc_id: aws::required(group.vpc_id(), "a DB subnet group's VpcId")?.to_owned(),
        subnet_ids: group.subnets().iter().filter_map(|s| s.subnet_identifier()).map(str::to_owned).collect(),
    })
}

fn tags_of(tags: &[Tag]) -> Vec<(String, String)> {
    tag_pairs(tags).map(|(key, value)| (key.to_owned(), value.to_owned())).collect()
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

fn of_instance(db: &DbInstance) -> Result<DescribedDatabase, StepError> {
    let subnet_group = match db.db_subnet_group() {
        Some(group) => SubnetGroup::Described(network_of(group)?),
        None => SubnetGroup::None,
    };
    Ok(DescribedDatabase {
        arn: aws::required(db.db_instance_arn(), "a DB instance's DBInstanceArn")?.to_owned(),
        status: db.db_instance_status().unwrap_or("unknown").to_owned(),
        engine: aws::required(db.engine(), "a DB instance's Engine")?.to_owned(),
        address: db.endpoint().and_then(|e| e.address()).map(str::to_owned),
        port: db.endpoint().and_then(|e| e.port()).and_then(|p| u16::try_from(p).ok()),
        publicly_accessible: db.publicly_accessible() == Some(true),
        security_group_ids: active_groups(db.vpc_security_groups()),
        member_of_cluster: db.db_cluster_identifier().map(str::to_owned),
        without_writer: false,
        tags: tags_of(db.tag_list()),
        subnet_group,
    })
}

fn of_cluster(cluster: &DbCluster) -> Result<DescribedDatabase, StepError> {
    Ok(DescribedDatabase {
        arn: aws::required(cluster.db_cluster_arn(), "a DB cluster's DBClusterArn")?.to_owned(),
        status: cluster.status().unwrap_or("unknown").to_owned(),
        engine: aws::required(cluster.engine(), "a DB cluster's Engine")?.to_owned(),
        address: cluster.endpoint().map(str::to_owned),
        port: cluster.port().and_then(|p| u16::try_from(p).ok()),
        publicly_accessible: cluster.publicly_accessible() == Some(true),
        security_group_ids: active_groups(cluster.vpc_security_groups()),
        member_of_cluster: None,
        without_writer: !cluster.db_cluster_members().iter().any(|m| m.is_cluster_writer() == Some(true)),
        tags: tags_of(cluster.tag_list()),
        subnet_group: cluster.db_subnet_group().map_or(SubnetGroup::None, |name| SubnetGroup::Named(name.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_without_its_arn_is_an_incomplete_answer_not_an_empty_arn() {
        let described = of_instance(&DbInstance::builder().engine("mysql").build());
        let error = described.unwrap_err();
        assert_eq!(error.name(), "AwsAnswerIncomplete");
        assert!(error.to_string().contains("DBInstanceArn"), "{error}");
        let complete = DbInstance::builder().db_instance_arn("arn:aws:rds:us-east-1:1:db:orders").engine("mysql");
        assert_eq!(of_instance(&complete.build()).unwrap().arn, "arn:aws:rds:us-east-1:1:db:orders");
    }
}
