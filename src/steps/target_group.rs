//! Step 3, target group: an IP-type TCP target group on the database port in the database's VPC,
//! with the database's private address registered. Deregistration is immediate and closes
//! connections, so a failover (which moves the address) does not leave clients on a dead target.

use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::types::{
    ProtocolEnum, TargetDescription, TargetGroup as ElbTargetGroup, TargetGroupAttribute, TargetTypeEnum,
};
use aws_sdk_elasticloadbalancingv2::Client;
use tracing::info;

use crate::naming::{resource_name, Ownership, DB_SECURITY_GROUP_TAG};
use crate::payload::{Database, TargetGroup};
use crate::resources::{elb_tag, elb_tags, ensure_elb_owned, find_target_group, target_group_arn};
use crate::target_health::target_state;
use crate::{aws, Settings, Step, StepError};

#[derive(Debug, serde::Deserialize)]
pub struct Input {
    pub database: Database,
}

const KIND: &str = "target group";

/// Attributes set on every run, so a retried or repeated step converges on them.
const ATTRIBUTES: &[(&str, &str)] =
    &[("deregistration_delay.timeout_seconds", "0"), ("deregistration_delay.connection_termination.enabled", "true")];

pub struct CreateTargetGroup {
    elb: Client,
    stack_name: String,
}

impl Step for CreateTargetGroup {
    type Input = Input;
    type Output = TargetGroup;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        Ok(Self { elb: Client::new(sdk), stack_name: settings.stack_name.clone() })
    }

    async fn run(&self, input: Input) -> Result<TargetGroup, StepError> {
        let db = input.database;
        let ownership = Ownership::new(&self.stack_name, &db.identifier);
        let name = resource_name(&db.identifier);
        let (group, created) = match find_target_group(&self.elb, &name).await? {
            Some(group) => {
                let arn = target_group_arn(&group)?;
                ensure_elb_owned(&self.elb, &ownership, KIND, &name, arn).await?;
                ensure_matches(&group, &db, &name, &ownership)?;
                info!(db_instance = %db.identifier, target_group = arn, "target group exists");
                (group, false)
            }
            None => (self.create(&name, &db, &ownership).await?, true),
        };
        let arn = target_group_arn(&group)?.to_owned();
        self.set_attributes(&arn).await?;
        self.register(&arn, &db, created).await?;
        Ok(TargetGroup { arn, name, registered_ip: db.ip_address })
    }
}

impl CreateTargetGroup {
    async fn create(&self, name: &str, db: &Database, ownership: &Ownership) -> Result<ElbTargetGroup, StepError> {
        let mut tags = elb_tags(ownership);
        tags.extend(db.security_group_ids.first().map(|id| elb_tag(DB_SECURITY_GROUP_TAG, id)));
        let out = self
            .elb
            .create_target_group()
            .name(name)
            .protocol(ProtocolEnum::Tcp)
            .port(i32::from(db.port))
            .vpc_id(&db.vpc_id)
            .target_type(TargetTypeEnum::Ip)
            .health_check_protocol(ProtocolEnum::Tcp)
            .health_check_interval_seconds(10)
            .healthy_threshold_count(2)
            .unhealthy_threshold_count(2)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(aws::fail("CreateTargetGroup"))?;
        let group = aws::required(out.target_groups().first().cloned(), "CreateTargetGroup's target group")?;
        info!(db_instance = %db.identifier, target_group = target_group_arn(&group)?, "target group created");
        Ok(group)
    }

    async fn set_attributes(&self, arn: &str) -> Result<(), StepError> {
        let attributes = ATTRIBUTES.iter().map(|(k, v)| TargetGroupAttribute::builder().key(*k).value(*v).build());
        self.elb
            .modify_target_group_attributes()
            .target_group_arn(arn)
            .set_attributes(Some(attributes.collect()))
            .send()
            .await
            .map_err(aws::fail("ModifyTargetGroupAttributes"))?;
        Ok(())
    }

    /// Registers the database address unless it already is (a group this run created has no
    /// targets yet). Other targets are left alone: moving the target after a failover is the
    /// target sync's job, which registers before it removes.
    async fn register(&self, arn: &str, db: &Database, created: bool) -> Result<(), StepError> {
        let ip = db.ip_address.to_string();
        if !created && target_state(&self.elb, arn, &ip, db.port).await?.is_some() {
            return Ok(());
        }
        self.elb
            .register_targets()
            .target_group_arn(arn)
            .targets(TargetDescription::builder().id(&ip).port(i32::from(db.port)).build())
            .send()
            .await
            .map_err(aws::fail("RegisterTargets"))?;
        info!(db_instance = %db.identifier, ip = %ip, port = db.port, "database address registered");
        Ok(())
    }
}

/// A group of ours with another port or VPC is left from an earlier configuration of the
/// instance; reusing it would forward to the wrong place.
fn ensure_matches(group: &ElbTargetGroup, db: &Database, name: &str, ownership: &Ownership) -> Result<(), StepError> {
    let port = group.port().and_then(|p| u16::try_from(p).ok());
    if port == Some(db.port) && group.vpc_id() == Some(db.vpc_id.as_str()) {
        return Ok(());
    }
    Err(StepError::ResourceConflict {
        kind: KIND,
        name: name.to_owned(),
        identifier: ownership.database(),
        reason: format!(
            "it forwards to port {:?} in {:?}, the database listens on {} in {}; deprovision the instance first",
            port,
            group.vpc_id(),
            db.port,
            db.vpc_id
        ),
    })
}
