//! Finding and tagging this stack's resources for one RDS instance. Provisioning and teardown
//! share these, so both agree on what "ours" means: the deterministic name and both tags.

use aws_sdk_ec2::types::{Filter, SecurityGroup, ServiceConfiguration, ServiceState};
use aws_sdk_ec2::types::{ResourceType, Tag as Ec2Tag, TagSpecification};
use aws_sdk_elasticloadbalancingv2::types::Tag as ElbTag;
use aws_sdk_elasticloadbalancingv2::types::{Listener, LoadBalancer, TagDescription, TargetGroup};
use aws_sdk_rds::types::Tag as RdsTag;

use crate::aws;
use crate::naming::{resource_name, vpc_load_balancer_key, Ownership, MAX_LOAD_BALANCERS_PER_VPC};
use crate::StepError;

/// Tags for an EC2 resource created by a step, with a `Name` for the console.
pub(crate) fn ec2_tags(resource_type: ResourceType, ownership: &Ownership, name: &str) -> TagSpecification {
    let tags = ownership.tags().into_iter().chain([("Name", name)]);
    TagSpecification::builder()
        .resource_type(resource_type)
        .set_tags(Some(tags.map(|(k, v)| Ec2Tag::builder().key(k).value(v).build()).collect()))
        .build()
}

/// A tag as each AWS service's SDK spells it (EC2, ELB and RDS each have their own type).
pub(crate) trait AwsTag {
    fn key(&self) -> Option<&str>;
    fn value(&self) -> Option<&str>;
}

macro_rules! aws_tag {
    ($($tag:ty),*) => {$(
        impl AwsTag for $tag {
            fn key(&self) -> Option<&str> {
                <$tag>::key(self)
            }
            fn value(&self) -> Option<&str> {
                <$tag>::value(self)
            }
        }
    )*};
}
aws_tag!(Ec2Tag, ElbTag, RdsTag);

/// Tags as (key, value) pairs. A tag without a value is one whose value is empty (AWS may leave an
/// empty value out), not an incomplete answer.
pub(crate) fn tag_pairs<T: AwsTag>(tags: &[T]) -> impl Iterator<Item = (&str, &str)> {
    tags.iter().filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())))
}

/// The value of tag `key`, if the resource has it.
pub(crate) fn tag_value<'a, T: AwsTag>(tags: &'a [T], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

// The IDs AWS returns with every load balancer, target group, endpoint service and security group.

pub(crate) fn load_balancer_arn(lb: &LoadBalancer) -> Result<&str, StepError> {
    aws::required(lb.load_balancer_arn(), "a load balancer's LoadBalancerArn")
}

pub(crate) fn target_group_arn(group: &TargetGroup) -> Result<&str, StepError> {
    aws::required(group.target_group_arn(), "a target group's TargetGroupArn")
}

pub(crate) fn endpoint_service_id(service: &ServiceConfiguration) -> Result<&str, StepError> {
    aws::required(service.service_id(), "an endpoint service's ServiceId")
}

pub(crate) fn security_group_id(group: &SecurityGroup) -> Result<&str, StepError> {
    aws::required(group.group_id(), "a security group's GroupId")
}

pub(crate) fn elb_tag(key: &str, value: &str) -> ElbTag {
    ElbTag::builder().key(key).value(value).build()
}

pub(crate) fn elb_tags(ownership: &Ownership) -> Vec<ElbTag> {
    ownership.tags().into_iter().map(|(k, v)| elb_tag(k, v)).collect()
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
    let tags: Vec<(&str, &str)> = described.tag_descriptions().iter().flat_map(|d| tag_pairs(d.tags())).collect();
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
    let answer = elb.describe_target_groups().names(name).send().await;
    let out = aws::unless_code(answer, "TargetGroupNotFound", "DescribeTargetGroups")?;
    Ok(out.and_then(|out| out.target_groups().first().cloned()))
}

/// With `per-vpc` sharing, the VPC's load balancers that exist, with their keys, first to last.
/// Listed, not described by name: DescribeLoadBalancers fails when one of the names is missing.
pub(crate) async fn vpc_load_balancers(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    vpc_id: &str,
) -> Result<Vec<(String, LoadBalancer)>, StepError> {
    let keys: Vec<String> = (1..=MAX_LOAD_BALANCERS_PER_VPC).map(|n| vpc_load_balancer_key(vpc_id, n)).collect();
    let names: Vec<String> = keys.iter().map(|key| resource_name(key)).collect();
    let mut found = Vec::new();
    let mut pages = elb.describe_load_balancers().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws::fail("DescribeLoadBalancers"))?;
        for lb in page.load_balancers() {
            if let Some(n) = names.iter().position(|name| lb.load_balancer_name() == Some(name.as_str())) {
                found.push((n, lb.clone()));
            }
        }
    }
    found.sort_by_key(|(n, _)| *n);
    Ok(found.into_iter().map(|(n, lb)| (keys[n].clone(), lb)).collect())
}

/// The tags of ELB resources, in calls of 20 (DescribeTags' limit).
pub(crate) async fn describe_elb_tags(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    arns: &[String],
) -> Result<Vec<TagDescription>, StepError> {
    let mut described = Vec::new();
    for chunk in arns.chunks(20) {
        let call = elb.describe_tags().set_resource_arns(Some(chunk.to_vec()));
        described.extend(call.send().await.map_err(aws::fail("DescribeTags"))?.tag_descriptions().iter().cloned());
    }
    Ok(described)
}

/// A load balancer's listeners, every page.
pub(crate) async fn listeners(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    load_balancer_arn: &str,
) -> Result<Vec<Listener>, StepError> {
    let pages = elb.describe_listeners().load_balancer_arn(load_balancer_arn).into_paginator().send();
    let pages: Vec<_> = pages.collect::<Result<_, _>>().await.map_err(aws::fail("DescribeListeners"))?;
    Ok(pages.iter().flat_map(|page| page.listeners().iter().cloned()).collect())
}

/// Whether the listener forwards to the target group.
pub(crate) fn forwards_to(listener: &Listener, target_group_arn: &str) -> bool {
    listener.default_actions().iter().any(|a| a.target_group_arn() == Some(target_group_arn))
}

pub(crate) async fn find_load_balancer(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    name: &str,
) -> Result<Option<LoadBalancer>, StepError> {
    let answer = elb.describe_load_balancers().names(name).send().await;
    let out = aws::unless_code(answer, "LoadBalancerNotFound", "DescribeLoadBalancers")?;
    Ok(out.and_then(|out| out.load_balancers().first().cloned()))
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
            ownership.owns(tag_pairs(s.tags()))
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
    Ok(out.security_groups().iter().find(|g| ownership.owns(tag_pairs(g.tags()))).cloned())
}
