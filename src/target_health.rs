//! A target's health as its load balancer reports it (DescribeTargetHealth). Shared by the
//! provisioning's wait for a healthy database target and by the target sync, which must not
//! remove a working address in favour of one that cannot become healthy.

use aws_sdk_elasticloadbalancingv2::Client;

use crate::{aws, StepError};

/// The states AWS reports (`TargetHealthStateEnum`).
pub const HEALTHY: &str = "healthy";
pub const INITIAL: &str = "initial";
pub const UNHEALTHY: &str = "unhealthy";
pub const UNUSED: &str = "unused";

/// One registered target and its health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetState {
    /// The target's ID: an IP address for the product's target groups.
    pub id: String,
    pub port: Option<u16>,
    /// `initial`, `healthy`, `unhealthy`, `unused`, `draining`, `unavailable`.
    pub state: String,
    /// AWS's reason code (`Elb.RegistrationInProgress`, `Target.NotInUse`,
    /// `Target.FailedHealthChecks`, ...); none when healthy.
    pub reason: Option<String>,
    pub description: Option<String>,
}

impl TargetState {
    pub fn is_healthy(&self) -> bool {
        self.state == HEALTHY
    }

    /// The load balancer's verdict is that it cannot use the target: its health checks fail, or
    /// the target is outside the load balancer's zones (or its group has no listener).
    pub fn is_failing(&self) -> bool {
        self.state == UNHEALTHY || self.state == UNUSED
    }
}

/// Every target registered in the target group, with its health.
pub async fn describe_targets(elb: &Client, target_group_arn: &str) -> Result<Vec<TargetState>, StepError> {
    let out = elb
        .describe_target_health()
        .target_group_arn(target_group_arn)
        .send()
        .await
        .map_err(aws::fail("DescribeTargetHealth"))?;
    Ok(out
        .target_health_descriptions()
        .iter()
        .filter_map(|d| {
            let target = d.target()?;
            let health = d.target_health();
            Some(TargetState {
                id: target.id()?.to_owned(),
                port: target.port().and_then(|p| u16::try_from(p).ok()),
                state: health.and_then(|h| h.state()).map(|s| s.as_str().to_owned()).unwrap_or_default(),
                reason: health.and_then(|h| h.reason()).map(|r| r.as_str().to_owned()),
                description: health.and_then(|h| h.description()).map(str::to_owned),
            })
        })
        .collect())
}

/// The health of target `id`:`port`, or `None` when the group does not hold it.
pub async fn target_state(
    elb: &Client,
    target_group_arn: &str,
    id: &str,
    port: u16,
) -> Result<Option<TargetState>, StepError> {
    let targets = describe_targets(elb, target_group_arn).await?;
    Ok(targets.into_iter().find(|t| t.id == id && t.port == Some(port)))
}
