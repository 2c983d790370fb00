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
use crate::{Settings, Step, StepError};

/// What differs between teardown steps: the clients each needs (only those its role may call),
/// and removing its part for one database.
pub trait Removes: Sized + Send + Sync {
    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError>;

    fn remove(&self, ownership: &Ownership) -> impl Future<Output = Result<Removal, StepError>> + Send;
}

/// A teardown step as a Lambda step: input `{"db_instance_identifier": ...}`, output a [`Removal`].
pub struct Teardown<R> {
    stack_name: String,
    step: R,
}

impl<R: Removes> Step for Teardown<R> {
    type Input = DbInstanceRequest;
    type Output = Removal;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        Ok(Self { stack_name: settings.stack_name.clone(), step: R::new(sdk, settings)? })
    }

    async fn run(&self, request: DbInstanceRequest) -> Result<Removal, StepError> {
        let database = DatabaseRef::parse(&request.db_instance_identifier)?;
        self.step.remove(&Ownership::new(&self.stack_name, &database.key())).await
    }
}

impl Removal {
    /// Nothing of this step's was there (any more).
    pub fn nothing() -> Self {
        Removal { removed: vec![], done: true }
    }
}
