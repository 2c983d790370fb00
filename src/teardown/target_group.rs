//! Teardown step 3: the target group, once no load balancer uses it.

use tracing::info;

use aws_config::SdkConfig;

use super::{Parts, Removes, Teardown};
use crate::naming::resource_name;
use crate::payload::Removal;
use crate::resources::{ensure_elb_owned, find_target_group, target_group_arn};
use crate::{aws, Settings, StepError};

pub type RemoveTargetGroup = Teardown<TargetGroupRemoval>;

pub struct TargetGroupRemoval {
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

impl Removes for TargetGroupRemoval {
    fn new(sdk: &SdkConfig, _settings: &Settings) -> Result<Self, StepError> {
        Ok(Self { elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk) })
    }

    async fn remove(&self, parts: &Parts) -> Result<Removal, StepError> {
        let (elb, ownership) = (&self.elb, &parts.database);
        if parts.is_shared() {
            // The first pass, the database's own parts, removed it.
            return Ok(Removal::nothing());
        }
        let name = resource_name(&ownership.identifier);
        let Some(group) = find_target_group(elb, &name).await? else {
            return Ok(Removal::nothing());
        };
        let arn = target_group_arn(&group)?.to_owned();
        ensure_elb_owned(elb, ownership, "target group", &name, &arn).await?;
        match elb.delete_target_group().target_group_arn(&arn).send().await {
            Ok(_) => {}
            Err(e) if aws::error_code(&e) == Some("ResourceInUse") => {
                return Err(StepError::TeardownPending(format!("target group {name}")))
            }
            Err(e) if aws::error_code(&e) == Some("TargetGroupNotFound") => {}
            Err(e) => return Err(aws::failure("DeleteTargetGroup", e)),
        }
        info!(db_instance = %ownership.identifier, target_group = %name, "target group deleted");
        Ok(Removal { removed: vec![arn], done: true })
    }
}
