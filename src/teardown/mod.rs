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

use aws_sdk_elasticloadbalancingv2::types::Listener;

use crate::naming::{resource_name, vpc_key, DatabaseRef, Ownership};
use crate::payload::{DbInstanceRequest, Removal};
use crate::resources::{find_load_balancer, find_target_group, forwards_to, listeners, load_balancer_arn};
use crate::resources::{target_group_arn, vpc_load_balancers};
use crate::settings::Sharing;
use crate::{Settings, Step, StepError};

/// What differs between teardown steps: the clients each needs (only those its role may call),
/// and removing its part for one database.
pub trait Removes: Sized + Send + Sync {
    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError>;

    fn remove(&self, parts: &Parts) -> impl Future<Output = Result<Removal, StepError>> + Send;
}

/// Whose parts a teardown removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    /// The database's own: its target group, its listener, its security-group rules.
    pub database: Ownership,
    /// The load balancer, its security group, the endpoint service and TiDB Cloud's connection:
    /// the database's own, or (`per-vpc` sharing) one of its VPC's (`vpc:<id>`, `vpc:<id>/<n>`).
    pub shared: Ownership,
    /// With `per-vpc` sharing, the VPC.
    pub vpc_id: Option<String>,
}

impl Parts {
    /// Whether the load balancer and what fronts it belong to a VPC, not to this database alone.
    pub fn is_shared(&self) -> bool {
        self.database != self.shared
    }

    /// With shared parts, whether another database still has a listener on the VPC's load
    /// balancer: the shared parts then stay. Workflows of one VPC take turns, so the answer holds
    /// until this teardown ends.
    pub async fn used_by_others(&self, elb: &aws_sdk_elasticloadbalancingv2::Client) -> Result<bool, StepError> {
        if !self.is_shared() {
            return Ok(false);
        }
        let Some(lb) = find_load_balancer(elb, &resource_name(&self.shared.identifier)).await? else {
            return Ok(false);
        };
        let (_, others) = self.listeners(elb, load_balancer_arn(&lb)?).await?;
        Ok(!others.is_empty())
    }

    /// The load balancer's listeners: this database's (on a load balancer of its own, all), and
    /// the others, those forwarding to another database's target group.
    pub async fn listeners(
        &self,
        elb: &aws_sdk_elasticloadbalancingv2::Client,
        load_balancer_arn: &str,
    ) -> Result<(Vec<Listener>, Vec<Listener>), StepError> {
        let group = match self.is_shared() {
            true => find_target_group(elb, &resource_name(&self.database.identifier)).await?,
            false => None,
        };
        let group_arn = group.as_ref().map(target_group_arn).transpose()?;
        let forwards_here = |l: &Listener| !self.is_shared() || group_arn.is_some_and(|arn| forwards_to(l, arn));
        Ok(listeners(elb, load_balancer_arn).await?.into_iter().partition(forwards_here))
    }
}

/// A teardown step as a Lambda step: input `{"db_instance_identifier": ..., "vpc_id": ...}`
/// (`vpc_id` from the turn, with `per-vpc` sharing), output a [`Removal`].
pub struct Teardown<R> {
    stack_name: String,
    sharing: Sharing,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    step: R,
}

impl<R: Removes> Step for Teardown<R> {
    type Input = DbInstanceRequest;
    type Output = Removal;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        Ok(Self {
            stack_name: settings.stack_name.clone(),
            sharing: settings.sharing,
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
            step: R::new(sdk, settings)?,
        })
    }

    /// The database's own parts first; with `per-vpc` sharing, then each of its VPC's load
    /// balancers' (the first one's key also owns their security group). The first pass also
    /// removes what a database provisioned before the stack shared load balancers had; the others
    /// remove, besides the database's listener, a load balancer no database uses any more.
    async fn run(&self, request: DbInstanceRequest) -> Result<Removal, StepError> {
        let database = Ownership::new(&self.stack_name, &DatabaseRef::parse(&request.db_instance_identifier)?.key());
        let own = Parts { database: database.clone(), shared: database.clone(), vpc_id: None };
        let mut removal = self.step.remove(&own).await?;
        let Some(vpc) = request.vpc_id.filter(|_| self.sharing == Sharing::PerVpc) else {
            return Ok(removal);
        };
        let mut owners = vec![vpc_key(&vpc)];
        for (key, _) in vpc_load_balancers(&self.elb, &vpc).await? {
            if !owners.contains(&key) {
                owners.push(key);
            }
        }
        for owner in owners {
            let shared = Ownership::new(&self.stack_name, &owner);
            let parts = Parts { database: database.clone(), shared, vpc_id: Some(vpc.clone()) };
            let more = self.step.remove(&parts).await?;
            removal.removed.extend(more.removed);
            removal.done &= more.done;
        }
        Ok(removal)
    }
}

impl Removal {
    /// Nothing of this step's was there (any more).
    pub fn nothing() -> Self {
        Removal { removed: vec![], done: true }
    }
}
