//! One module per provisioning step, in the order the `provision` state machine runs them, plus
//! the tagging helpers they share.

pub mod endpoint_service;
pub mod inspect_database;
pub mod load_balancer;
pub mod plan_zones;
pub mod security_groups;
pub mod target_group;

use aws_sdk_ec2::types::{ResourceType, Tag as Ec2Tag, TagSpecification};
use aws_sdk_elasticloadbalancingv2::types::Tag as ElbTag;

use crate::aws;
use crate::naming::Ownership;
use crate::StepError;

/// Tags for an EC2 resource created by a step, with a `Name` for the console.
fn ec2_tags(resource_type: ResourceType, ownership: &Ownership, name: &str) -> TagSpecification {
    let tags = ownership.tags().into_iter().chain([("Name", name)]);
    TagSpecification::builder()
        .resource_type(resource_type)
        .set_tags(Some(tags.map(|(k, v)| Ec2Tag::builder().key(k).value(v).build()).collect()))
        .build()
}

fn ec2_tag_pairs(tags: &[Ec2Tag]) -> impl Iterator<Item = (&str, &str)> {
    tags.iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
}

fn elb_tags(ownership: &Ownership) -> Vec<ElbTag> {
    ownership.tags().into_iter().map(|(k, v)| ElbTag::builder().key(k).value(v).build()).collect()
}

/// Fails with [`StepError::ResourceConflict`] unless the ELB resource at `arn` carries our tags:
/// a name is deterministic, so a resource with our name and other tags is someone else's.
async fn ensure_elb_owned(
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
            identifier: ownership.identifier.clone(),
            reason: ownership.mismatch(tags),
        })
    }
}
