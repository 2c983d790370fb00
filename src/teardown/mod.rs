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

use std::future::Future;

use aws_config::SdkConfig;

use crate::naming::{DatabaseRef, Ownership};
use crate::payload::{DbInstanceRequest, Removal};
use crate::tidb_cloud::TiDBCloud;
use crate::{Settings, Step, StepError};

/// What every teardown step works with.
pub struct Clients {
    pub settings: Settings,
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    /// Present when the stack has a TiDB Cloud API key.
    pub tidb_cloud: Option<TiDBCloud>,
}

/// What differs between teardown steps: removing their part for one instance.
pub trait Removes: Default + Send + Sync {
    fn remove(
        &self,
        clients: &Clients,
        ownership: &Ownership,
    ) -> impl Future<Output = Result<Removal, StepError>> + Send;
}

/// A teardown step as a Lambda step: input `{"db_instance_identifier": ...}`, output a [`Removal`].
pub struct Teardown<R> {
    clients: Clients,
    step: R,
}

impl<R: Removes> Step for Teardown<R> {
    type Input = DbInstanceRequest;
    type Output = Removal;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        let clients = Clients {
            settings: settings.clone(),
            ec2: aws_sdk_ec2::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
            tidb_cloud: settings.tidb_cloud(sdk)?,
        };
        Ok(Self { clients, step: R::default() })
    }

    async fn run(&self, request: DbInstanceRequest) -> Result<Removal, StepError> {
        let database = DatabaseRef::parse(&request.db_instance_identifier)?;
        let ownership = Ownership::new(&self.clients.settings.stack_name, &database.key());
        self.step.remove(&self.clients, &ownership).await
    }
}

impl Removal {
    /// Nothing of this step's was there (any more).
    pub fn nothing() -> Self {
        Removal { removed: vec![], done: true }
    }
}
