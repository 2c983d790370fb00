//! Finding and tagging this stack's resources for one RDS instance. Provisioning and teardown
//! share these, so both agree on what "ours" means: the deterministic name and both tags.

use aws_sdk_ec2::types::{Filter, SecurityGroup, ServiceConfiguration, ServiceState};
use aws_sdk_ec2::types::{ResourceType, Tag as Ec2Tag, TagSpecification};
use aws_sdk_elasticloadbalancingv2::types::Tag as ElbTag;
use aws_sdk_elasticloadbalancingv2::types::{LoadBalancer, TargetGroup};

use crate::aws;
use crate::naming::Ownership;
use crate::StepError;

/// Tags for an EC2 resource created by a step, with a `Name` for the console.
pub(crate) fn ec2_tags(resource_type: ResourceType, ownership: &Ownership, name: &str) -> TagSpecification {
    let tags = ownership.tags().into_iter().chain([("Name", name)]);
    TagSpecification::builder()
        .resource_type(resource_type)
        .set_tags(Some(tags.map(|(k, v)| Ec2Tag::builder().key(k).value(v).build()).collect()))
        .build()
}

pub(crate) fn ec2_tag_pairs(tags: &[Ec2Tag]) -> impl Iterator<Item = (&str, &str)> {
    tags.iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
}

pub(crate) fn elb_tags(ownership: &Ownership) -> Vec<ElbTag> {
    ownership.tags().into_iter().map(|(k, v)| ElbTag::builder().key(k).value(v).build()).collect()
}

/// Fails with [`StepError::ResourceConflict`] unless the ELB resource at `arn` carries our tags:
/// a name is deterministic, so a resource with our name and other tags is someone else's.
pub(crate) async fn ensure_elb_owned(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    ownership: &Ownership,
    kind: &'static str,
    name: &str,
    arn: &str,
) -> Result<(), StepError> {
    let described = elb.describe_tags().resource_arns(arn).send().await.map_err(aws::fail("DescribeTags"))?;
    let tags: Vec<(&str, &str)> = described
        .tag_descriptions()
        .iter()
        .flat_map(|d| d.tags())
        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
        .collect();
    if ownership.owns(tags.iter().copied()) {
        Ok(())
    } else {
        Err(StepError::ResourceConflict {
            kind,
            name: name.to_owned(),
            identifier: ownership.database(),
            reason: ownership.mismatch(tags),
        })
    }
}

pub(crate) async fn find_target_group(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    name: &str,
) -> Result<Option<TargetGroup>, StepError> {
    match elb.describe_target_groups().names(name).send().await {
        Ok(out) => Ok(out.target_groups().first().cloned()),
        Err(e) if aws::error_code(&e) == Some("TargetGroupNotFound") => Ok(None),
        Err(e) => Err(aws::failure("DescribeTargetGroups", e)),
    }
}

pub(crate) async fn find_load_balancer(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    name: &str,
) -> Result<Option<LoadBalancer>, StepError> {
    match elb.describe_load_balancers().names(name).send().await {
        Ok(out) => Ok(out.load_balancers().first().cloned()),
        Err(e) if aws::error_code(&e) == Some("LoadBalancerNotFound") => Ok(None),
        Err(e) => Err(aws::failure("DescribeLoadBalancers", e)),
    }
}

fn tag_filters(ownership: &Ownership) -> [Filter; 2] {
    ownership.tags().map(|(key, value)| Filter::builder().name(format!("tag:{key}")).values(value).build())
}

/// Our endpoint service for this instance, found by its tags (filtered by AWS, checked here too).
pub(crate) async fn find_endpoint_service(
    ec2: &aws_sdk_ec2::Client,
    ownership: &Ownership,
) -> Result<Option<ServiceConfiguration>, StepError> {
    let mut pages = ec2
        .describe_vpc_endpoint_service_configurations()
        .set_filters(Some(tag_filters(ownership).to_vec()))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws::fail("DescribeVpcEndpointServiceConfigurations"))?;
        let live = page.service_configurations().iter().find(|s| {
            ownership.owns(ec2_tag_pairs(s.tags()))
                && !matches!(
                    s.service_state(),
                    Some(ServiceState::Deleted | ServiceState::Deleting | ServiceState::Failed)
                )
        });
        if let Some(service) = live {
            return Ok(Some(service.clone()));
        }
    }
    Ok(None)
}

/// Our load balancer's security group for this instance, found by its tags in any VPC (teardown
/// may run after the database, and with it the knowledge of its VPC, is gone).
pub(crate) async fn find_security_group(
    ec2: &aws_sdk_ec2::Client,
    ownership: &Ownership,
) -> Result<Option<SecurityGroup>, StepError> {
    let out = ec2
        .describe_security_groups()
        .set_filters(Some(tag_filters(ownership).to_vec()))
        .send()
        .await
        .map_err(aws::fail("DescribeSecurityGroups"))?;
    Ok(out.security_groups().iter().find(|g| ownership.owns(ec2_tag_pairs(g.tags()))).cloned())
}
