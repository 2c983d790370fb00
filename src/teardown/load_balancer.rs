//! Teardown step 2: the load balancer and its listeners. Deletion takes a while in AWS; the step
//! reports `done` only once the load balancer is gone, and the state machine polls it until then.

use tracing::info;

use aws_config::SdkConfig;

use super::{Parts, Removes, Teardown};
use crate::naming::resource_name;
use crate::payload::Removal;
use crate::resources::{ensure_elb_owned, find_load_balancer, load_balancer_arn};
use crate::{aws, Settings, StepError};

pub type RemoveLoadBalancer = Teardown<LoadBalancerRemoval>;

pub struct LoadBalancerRemoval {
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

impl Removes for LoadBalancerRemoval {
    fn new(sdk: &SdkConfig, _settings: &Settings) -> Result<Self, StepError> {
        Ok(Self { elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk) })
    }

    /// A database's own load balancer goes with all its listeners; a shared one loses this
    /// database's listener, and goes once no other database has one.
    async fn remove(&self, parts: &Parts) -> Result<Removal, StepError> {
        let elb = &self.elb;
        let name = resource_name(&parts.shared.identifier);
        let Some(lb) = find_load_balancer(elb, &name).await? else {
            return Ok(Removal::nothing());
        };
        let arn = load_balancer_arn(&lb)?.to_owned();
        ensure_elb_owned(elb, &parts.shared, "load balancer", &name, &arn).await?;
        let (listeners, others) = parts.listeners(elb, &arn).await?;
        let mut removed = Vec::new();
        for listener in listeners.iter().filter_map(|l| l.listener_arn()) {
            match elb.delete_listener().listener_arn(listener).send().await {
                Ok(_) => {}
                // A retried call whose first answer was lost finds it gone.
                Err(e) if aws::error_code(&e) == Some("ListenerNotFound") => {}
                Err(e) => return Err(aws::failure("DeleteListener", e)),
            }
            removed.push(listener.to_owned());
        }
        if !others.is_empty() {
            info!(db_instance = %parts.database.identifier, load_balancer = %name, "listener deleted; the load balancer stays for the VPC's other databases");
            return Ok(Removal { removed, done: true });
        }
        match elb.delete_load_balancer().load_balancer_arn(&arn).send().await {
            Ok(_) => {}
            // An endpoint service still uses it: the previous step's deletion has not finished.
            Err(e) if aws::error_code(&e) == Some("ResourceInUse") => {
                return Err(StepError::TeardownPending(format!("load balancer {name}")))
            }
            Err(e) => return Err(aws::failure("DeleteLoadBalancer", e)),
        }
        removed.push(arn);
        let done = find_load_balancer(elb, &name).await?.is_none();
        info!(db_instance = %parts.database.identifier, load_balancer = %name, done, "load balancer deleted");
        Ok(Removal { removed, done })
    }
}
