//! Teardown step 3: the target group, once no load balancer uses it.

use aws_config::SdkConfig;
use tracing::info;

use super::{ownership, Clients};
use crate::naming::resource_name;
use crate::payload::{DbInstanceRequest, Removal};
use crate::resources::{ensure_elb_owned, find_target_group};
use crate::runtime::Step;
use crate::{aws, Settings, StepError};

pub struct RemoveTargetGroup(Clients);

impl Step for RemoveTargetGroup {
    type Input = DbInstanceRequest;
    type Output = Removal;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        Ok(Self(Clients::new(sdk, settings)))
    }

    async fn run(&self, request: DbInstanceRequest) -> Result<Removal, StepError> {
        let elb = &self.0.elb;
        let ownership = ownership(&self.0.settings, &request)?;
        let name = resource_name(&ownership.identifier);
        let Some(group) = find_target_group(elb, &name).await? else {
            return Ok(Removal { removed: vec![], done: true });
        };
        let arn = group.target_group_arn().unwrap_or_default().to_owned();
        ensure_elb_owned(elb, &ownership, "target group", &name, &arn).await?;
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
