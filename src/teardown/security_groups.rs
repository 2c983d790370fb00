//! Teardown step 4: the rule on the database's security group that admits the load balancer, then
//! the load balancer's security group. AWS refuses to delete a group while network interfaces of the
//! deleted load balancer still use it (they drain for minutes), or while another group's rule
//! refers to it; the step then fails with `TeardownPending` and the state machine runs it again
//! after a wait.

use aws_sdk_ec2::types::{Filter, IpPermission, SecurityGroup, UserIdGroupPair};
use tracing::info;

use aws_config::SdkConfig;

use super::{Parts, Removes, Teardown};
use crate::naming::DB_SECURITY_GROUP_TAG;
use crate::payload::Removal;
use crate::resources::{describe_elb_tags, vpc_load_balancers};
use crate::resources::{find_security_group, listeners, load_balancer_arn, security_group_id, tag_value};
use crate::{aws, Settings, StepError};

pub type RemoveSecurityGroups = Teardown<SecurityGroupsRemoval>;

pub struct SecurityGroupsRemoval {
    ec2: aws_sdk_ec2::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

impl Removes for SecurityGroupsRemoval {
    fn new(sdk: &SdkConfig, _settings: &Settings) -> Result<Self, StepError> {
        Ok(Self { ec2: aws_sdk_ec2::Client::new(sdk), elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk) })
    }

    /// A shared group whose load balancer stays keeps the rules the remaining listeners need and
    /// loses the others; a group whose load balancer is gone goes with all rules naming it.
    async fn remove(&self, parts: &Parts) -> Result<Removal, StepError> {
        let ec2 = &self.ec2;
        let Some(group) = find_security_group(ec2, &parts.shared).await? else {
            return Ok(Removal::nothing());
        };
        let group_id = security_group_id(&group)?.to_owned();
        // The VPC's load balancers share its group: it goes with the last of them.
        let sharing = match &parts.vpc_id {
            Some(vpc_id) => vpc_load_balancers(&self.elb, vpc_id).await?,
            None => vec![],
        };
        if !sharing.is_empty() {
            let mut needed = Vec::new();
            for (_, lb) in &sharing {
                needed.extend(self.needed(load_balancer_arn(lb)?).await?);
            }
            let removed = revoke_unneeded(ec2, &group, &needed).await?;
            return Ok(Removal { removed, done: true });
        }
        let mut removed = revoke_unneeded(ec2, &group, &[]).await?;
        match ec2.delete_security_group().group_id(&group_id).send().await {
            Ok(_) => {}
            Err(e) if aws::error_code(&e) == Some("DependencyViolation") => {
                return Err(StepError::TeardownPending(format!("security group {group_id}")))
            }
            Err(e) if aws::error_code(&e) == Some("InvalidGroup.NotFound") => {}
            Err(e) => return Err(aws::failure("DeleteSecurityGroup", e)),
        }
        info!(db_instance = %parts.database.identifier, security_group = %group_id, "load balancer security group deleted");
        removed.push(group_id);
        Ok(Removal { removed, done: true })
    }
}

/// A rule a remaining listener needs: its database's port, towards its database's group (any
/// group when its target group does not name one).
struct Needed {
    port: i32,
    group_id: Option<String>,
}

impl SecurityGroupsRemoval {
    /// What the target groups behind the load balancer's remaining listeners need.
    async fn needed(&self, load_balancer_arn: &str) -> Result<Vec<Needed>, StepError> {
        let listeners = listeners(&self.elb, load_balancer_arn).await?;
        let mut arns: Vec<String> = listeners
            .iter()
            .flat_map(|l| l.default_actions().iter().filter_map(|a| a.target_group_arn().map(str::to_owned)))
            .collect();
        arns.dedup();
        let tags = describe_elb_tags(&self.elb, &arns).await?;
        let mut needed = Vec::new();
        // As many target groups per call as DescribeTags takes tags of.
        for chunk in arns.chunks(20) {
            let groups = self
                .elb
                .describe_target_groups()
                .set_target_group_arns(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(aws::fail("DescribeTargetGroups"))?;
            for group in groups.target_groups() {
                let described = tags.iter().find(|d| d.resource_arn() == group.target_group_arn());
                let group_id = described.and_then(|d| tag_value(d.tags(), DB_SECURITY_GROUP_TAG)).map(str::to_owned);
                needed.push(Needed { port: group.port().unwrap_or_default(), group_id });
            }
        }
        Ok(needed)
    }
}

/// Whether a rule towards or from `group_id` on `permission`'s ports is still needed.
fn is_needed(needed: &[Needed], group_id: &str, permission: &IpPermission) -> bool {
    let (from, to) = (permission.from_port().unwrap_or(-1), permission.to_port().unwrap_or(-1));
    needed.iter().any(|n| (from..=to).contains(&n.port) && n.group_id.as_deref().is_none_or(|g| g == group_id))
}

/// Revokes the rules naming our group that `needed` does not hold: the inbound rules of other
/// groups (the databases' groups admit the load balancer) and our group's outbound rules
/// (towards the databases' groups); other rules stay.
async fn revoke_unneeded(
    ec2: &aws_sdk_ec2::Client,
    group: &SecurityGroup,
    needed: &[Needed],
) -> Result<Vec<String>, StepError> {
    let group_id = security_group_id(group)?;
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
            .filter(|p| !is_needed(needed, other_id, p))
            .map(|p| only_pairs(p, |g| g == group_id))
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
    if needed.is_empty() {
        // The group itself goes next, with its outbound rules.
        return Ok(removed);
    }
    let unneeded: Vec<IpPermission> = group
        .ip_permissions_egress()
        .iter()
        .filter(|p| !p.user_id_group_pairs().is_empty())
        .map(|p| only_pairs(p, |g| !is_needed(needed, g, p)))
        .filter(|p| !p.user_id_group_pairs().is_empty())
        .collect();
    if !unneeded.is_empty() {
        let revoked =
            ec2.revoke_security_group_egress().group_id(group_id).set_ip_permissions(Some(unneeded)).send().await;
        aws::unless_code(revoked, "InvalidPermission.NotFound", "RevokeSecurityGroupEgress")?;
        info!(security_group = group_id, "outbound rules no remaining listener needs revoked");
        removed.push(format!("{group_id} egress no listener needs"));
    }
    Ok(removed)
}

/// The permission narrowed to the group pairs `keep` picks, so that revoking it leaves the rest.
fn only_pairs(permission: &IpPermission, keep: impl Fn(&str) -> bool) -> IpPermission {
    let pairs: Vec<UserIdGroupPair> =
        permission.user_id_group_pairs().iter().filter(|pair| pair.group_id().is_some_and(&keep)).cloned().collect();
    IpPermission::builder()
        .set_ip_protocol(permission.ip_protocol().map(str::to_owned))
        .set_from_port(permission.from_port())
        .set_to_port(permission.to_port())
        .set_user_id_group_pairs(Some(pairs))
        .build()
}
