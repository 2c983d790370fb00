//! One module per teardown step, in the order the `deprovision` state machine runs them (the
//! reverse of provisioning, in an order AWS accepts). Every step finds this stack's resources for
//! the instance by name and tags, removes what exists, and succeeds when there is nothing left,
//! so running the teardown twice, or on a half-provisioned instance, is safe. Nothing without the
//! stack's tags is touched.

pub mod endpoint_service;
pub mod load_balancer;
pub mod security_groups;
pub mod target_group;
pub mod tidb_cloud_connection;

use aws_config::SdkConfig;

use crate::naming::{db_instance_identifier, Ownership};
use crate::payload::DbInstanceRequest;
use crate::{Settings, StepError};

/// The SDK clients and ownership every teardown step starts from.
fn ownership(settings: &Settings, request: &DbInstanceRequest) -> Result<Ownership, StepError> {
    Ok(Ownership::new(&settings.stack_name, &db_instance_identifier(&request.db_instance_identifier)?))
}

/// Teardown steps keep the settings and one client per service they call.
struct Clients {
    settings: Settings,
    ec2: aws_sdk_ec2::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

impl Clients {
    fn new(sdk: &SdkConfig, settings: &Settings) -> Self {
        Self {
            settings: settings.clone(),
            ec2: aws_sdk_ec2::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
        }
    }
}
