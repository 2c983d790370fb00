//! Teardown step 4: the rule on the database's security group that admits the load balancer, then
//! the load balancer's security group. AWS refuses to delete a group while network interfaces of the
//! deleted load balancer still use it (they drain for minutes), or while another group's rule
//! refers to it; the step then fails with `TeardownPending` and the state machine runs it again
//! after a wait.

use aws_sdk_ec2::types::{Filter, IpPermission, UserIdGroupPair};
use tracing::info;

use aws_config::SdkConfig;

use super::{Removes, Teardown};
use crate::naming::Ownership;
use crate::payload::Removal;
use crate::resources::{find_security_group, security_group_id};
use crate::{aws, Settings, StepError};

pub type RemoveSecurityGroups = Teardown<SecurityGroupsRemoval>;

pub struct SecurityGroupsRemoval {
    ec2: aws_sdk_ec2::Client,
}

impl Removes for SecurityGroupsRemoval {
    fn new(sdk: &SdkConfig, _settings: &Settings) -> Result<Self, StepError> {
        Ok(Self { ec2: aws_sdk_ec2::Client::new(sdk) })
    }

    async fn remove(&self, ownership: &Ownership) -> Result<Removal, StepError> {
        let ec2 = &self.ec2;
        let Some(group) = find_security_group(ec2, &ownership).await? else {
            return Ok(Removal::nothing());
        };
        let group_id = security_group_id(&group)?.to_owned();
        let mut removed = revoke_rules_referring_to(ec2, &group_id).await?;
        match ec2.delete_security_group().group_id(&group_id).send().await {
            Ok(_) => {}
            Err(e) if aws::error_code(&e) == Some("DependencyViolation") => {
                return Err(StepError::TeardownPending(format!("security group {group_id}")))
            }
            Err(e) if aws::error_code(&e) == Some("InvalidGroup.NotFound") => {}
            Err(e) => return Err(aws::failure("DeleteSecurityGroup", e)),
        }
        info!(db_instance = %ownership.identifier, security_group = %group_id, "load balancer security group deleted");
        removed.push(group_id);
        Ok(Removal { removed, done: true })
    }
}

/// Removes, from every security group in the account, the inbound permissions that name our
/// group (the rule provisioning added to the database's group); other rules stay.
async fn revoke_rules_referring_to(ec2: &aws_sdk_ec2::Client, group_id: &str) -> Result<Vec<String>, StepError> {
    let referring = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("ip-permission.group-id").values(group_id).build())
        .send()
        .await
        .map_err(aws::fail("DescribeSecurityGroups"))?;
    let mut removed = Vec::new();
    for other in referring.security_groups() {
        let other_id = security_group_id(other)?;
        let ours: Vec<IpPermission> = other
            .ip_permissions()
            .iter()
            .filter(|p| p.user_id_group_pairs().iter().any(|pair| pair.group_id() == Some(group_id)))
            .map(|p| only_pair_with(p, group_id))
            .collect();
        if ours.is_empty() || other_id == group_id {
            continue;
        }
        let revoked =
            ec2.revoke_security_group_ingress().group_id(other_id).set_ip_permissions(Some(ours)).send().await;
        // Gone already: a retried call whose first answer was lost revoked it.
        aws::unless_code(revoked, "InvalidPermission.NotFound", "RevokeSecurityGroupIngress")?;
        info!(security_group = other_id, from = group_id, "rule admitting the load balancer revoked");
        removed.push(format!("{other_id} ingress from {group_id}"));
    }
    Ok(removed)
}

/// The permission narrowed to our group, so that revoking it leaves the rule's other sources.
fn only_pair_with(permission: &IpPermission, group_id: &str) -> IpPermission {
    let pairs: Vec<UserIdGroupPair> =
        permission.user_id_group_pairs().iter().filter(|pair| pair.group_id() == Some(group_id)).cloned().collect();
    IpPermission::builder()
        .set_ip_protocol(permission.ip_protocol().map(str::to_owned))
        .set_from_port(permission.from_port())
        .set_to_port(permission.to_port())
        .set_user_id_group_pairs(Some(pairs))
        .build()
}
