//! Following the database's address. A failover, reboot, class change, maintenance or stop/start
//! can move an RDS instance to a new private IP; DNS follows within minutes and so must the target
//! group. On each RDS event that can move the address, and on a schedule as a backstop, every
//! instance this stack manages is resolved again: a new address is registered first, and the old
//! ones are removed only once the new target is healthy, so one stale DNS answer cannot take away a
//! good target (the flap guard). An address outside the instance's VPC (the instance was made
//! publicly accessible) is never registered: it is reported by name, logged and counted.
//!
//! Two outcomes are told to the notification topic: a completed move (`target-moved`, once the old
//! addresses are removed) and a current address the load balancer cannot use
//! (`target-not-healthy`). The latter is told on the transition only: the target group's
//! `tidb-privatelink:target-not-healthy` tag keeps what was last told, a run that finds the same
//! problem says nothing, and the tag goes once the current address is healthy again.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::types::{Tag, TargetDescription};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::address::{address_in_vpc, Endpoint};
use crate::database::describe;
use crate::dns::Resolver;
use crate::metrics::Metrics;
use crate::naming::{
    DatabaseRef, DB_CLUSTER_TAG, DB_INSTANCE_TAG, MANAGED_BY_TAG, NAME_PREFIX, TARGET_NOT_HEALTHY_TAG,
};
use crate::notify::{tell, Notifier};
use crate::resources::{describe_elb_tags, tag_value};
use crate::target_health::{describe_targets, TargetState};
use crate::{aws, Settings, Step, StepError};

/// What to change in a target group whose database now resolves to `resolved`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TargetChanges {
    pub register: Option<String>,
    pub deregister: Vec<String>,
}

/// Register the resolved address if it is missing; once its target is healthy, remove the others.
pub fn plan_changes(resolved: Ipv4Addr, targets: &[TargetState]) -> TargetChanges {
    let resolved = resolved.to_string();
    match targets.iter().find(|t| t.id == resolved) {
        None => TargetChanges { register: Some(resolved), deregister: vec![] },
        Some(current) if current.is_healthy() => TargetChanges {
            register: None,
            deregister: targets.iter().filter(|t| t.id != resolved).map(|t| t.id.clone()).collect(),
        },
        Some(_) => TargetChanges::default(),
    }
}

/// What to do about the current address's health, given the problem found now and the one the
/// target group's tag says was told last.
#[derive(Debug, PartialEq, Eq)]
pub enum Transition {
    /// A new problem: tell it, then tag it.
    Tell(String),
    /// The told problem is gone: remove the tag.
    Clear,
    Nothing,
}

pub fn unhealthy_transition(current: Option<&str>, told: Option<&str>) -> Transition {
    match (current, told) {
        (Some(now), Some(before)) if now == before => Transition::Nothing,
        (Some(now), _) => Transition::Tell(now.to_owned()),
        (None, Some(_)) => Transition::Clear,
        (None, None) => Transition::Nothing,
    }
}

/// The database an RDS event is about, as its key (`SourceArn` `arn:...:db:<id>` or
/// `arn:...:cluster:<id>`, or `SourceIdentifier`, sometimes prefixed `rds:`, of `SourceType`
/// `CLUSTER` for a cluster); `None` for a scheduled run, which syncs every managed database.
pub fn event_instance(event: &Value) -> Option<String> {
    let detail = event.get("detail")?;
    let from_arn = detail.get("SourceArn").and_then(Value::as_str).and_then(DatabaseRef::from_arn);
    let from_id = detail.get("SourceIdentifier").and_then(Value::as_str).map(|id| {
        let id = id.trim_start_matches("rds:").to_ascii_lowercase();
        match detail.get("SourceType").and_then(Value::as_str) {
            Some("CLUSTER") => DatabaseRef::Cluster(id),
            _ => DatabaseRef::Instance(id),
        }
    });
    from_arn.or(from_id).map(|database| database.key())
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSync {
    pub db_instance_identifier: String,
    pub resolved_ip: Option<String>,
    pub registered: Vec<String>,
    pub deregistered: Vec<String>,
    /// Why the targets were left as they are, as a named error (`DatabaseAddressOutsideVpc: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    pub instances: Vec<InstanceSync>,
}

pub struct SyncTargets {
    rds: aws_sdk_rds::Client,
    ec2: aws_sdk_ec2::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    metrics: Metrics,
    notifier: Option<Notifier>,
    resolver: Resolver,
    stack_name: String,
}

/// One of this stack's target groups.
struct ManagedGroup {
    arn: String,
    /// The unhealthy target last told (its `TARGET_NOT_HEALTHY_TAG`).
    told_unhealthy: Option<String>,
}

/// What sync needs to know of the instance now.
struct Instance {
    address: String,
    port: i32,
    vpc_id: String,
    publicly_accessible: bool,
}

impl Step for SyncTargets {
    type Input = Value;
    type Output = SyncReport;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        Ok(Self {
            rds: aws_sdk_rds::Client::new(sdk),
            ec2: aws_sdk_ec2::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
            metrics: Metrics::new(sdk),
            notifier: Notifier::from_settings(sdk, settings),
            resolver: Resolver::new(settings.dns_resolver).map_err(StepError::Misconfigured)?,
            stack_name: settings.stack_name.clone(),
        })
    }

    async fn run(&self, event: Value) -> Result<SyncReport, StepError> {
        let only = event_instance(&event);
        let mut report = SyncReport::default();
        for (identifier, group) in self.managed_target_groups().await? {
            if only.as_ref().is_some_and(|id| *id != identifier) {
                continue;
            }
            report.instances.push(self.sync(&identifier, &group).await?);
        }
        Ok(report)
    }
}

impl SyncTargets {
    /// This stack's target groups, by the key of the database they serve.
    async fn managed_target_groups(&self) -> Result<BTreeMap<String, ManagedGroup>, StepError> {
        let mut arns = Vec::new();
        let mut pages = self.elb.describe_target_groups().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws::fail("DescribeTargetGroups"))?;
            arns.extend(
                page.target_groups()
                    .iter()
                    .filter(|g| g.target_group_name().is_some_and(|n| n.starts_with(NAME_PREFIX)))
                    .filter_map(|g| g.target_group_arn().map(str::to_owned)),
            );
        }
        let mut managed = BTreeMap::new();
        for description in &describe_elb_tags(&self.elb, &arns).await? {
            let tag = |key: &str| tag_value(description.tags(), key);
            let database = tag(DB_INSTANCE_TAG)
                .map(|id| DatabaseRef::Instance(id.to_owned()))
                .or_else(|| tag(DB_CLUSTER_TAG).map(|id| DatabaseRef::Cluster(id.to_owned())));
            if let (Some(stack), Some(database), Some(arn)) =
                (tag(MANAGED_BY_TAG), database, description.resource_arn())
            {
                if stack == self.stack_name {
                    let told_unhealthy = tag(TARGET_NOT_HEALTHY_TAG).map(str::to_owned);
                    managed.insert(database.key(), ManagedGroup { arn: arn.to_owned(), told_unhealthy });
                }
            }
        }
        Ok(managed)
    }

    async fn sync(&self, identifier: &str, group: &ManagedGroup) -> Result<InstanceSync, StepError> {
        let target_group_arn = group.arn.as_str();
        let mut sync = InstanceSync { db_instance_identifier: identifier.to_owned(), ..Default::default() };
        let Some(instance) = self.instance(identifier).await? else {
            info!(db_instance = identifier, "instance has no endpoint now; targets left as they are");
            return Ok(sync);
        };
        let endpoint = Endpoint {
            identifier,
            address: &instance.address,
            vpc_id: &instance.vpc_id,
            publicly_accessible: instance.publicly_accessible,
        };
        let resolved = match address_in_vpc(&self.resolver, &self.ec2, &endpoint).await {
            Ok((ip, _)) => ip,
            Err(error @ StepError::DatabaseEndpointUnresolved { .. }) => {
                warn!(db_instance = identifier, error = error.name(), "{error}; targets left as they are");
                return Ok(sync);
            }
            Err(error @ StepError::DatabaseAddressOutsideVpc { .. }) => {
                warn!(db_instance = identifier, error = error.name(), "{error}; targets left as they are");
                self.metrics.count("AddressOutsideVpc", identifier).await;
                sync.problem = Some(format!("{}: {error}", error.name()));
                return Ok(sync);
            }
            Err(error) => return Err(error),
        };
        let port = instance.port;
        sync.resolved_ip = Some(resolved.to_string());
        let targets = describe_targets(&self.elb, target_group_arn).await?;
        let mut unhealthy = None;
        if let Some(failing) = targets.iter().find(|t| t.id == resolved.to_string() && t.is_failing()) {
            // The load balancer cannot use the database's current address: the older targets stay
            // (one of them may still answer) and the link needs a person or a new provisioning.
            let reason = failing.reason.as_deref().unwrap_or("no reason given");
            let problem = format!(
                "TargetNotHealthy: the database's address {resolved} is {} ({reason}){}",
                failing.state,
                failing.description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
            );
            warn!(db_instance = identifier, ip = %resolved, state = %failing.state, reason, "{problem}; check the load balancer's zones and the security groups, or run the provisioning again");
            self.metrics.count("TargetNotHealthy", identifier).await;
            unhealthy = Some((format!("{resolved} {} {reason}", failing.state), problem.clone()));
            sync.problem = Some(problem);
        }
        let current = unhealthy.as_ref().map(|(key, _)| key.as_str());
        match unhealthy_transition(current, group.told_unhealthy.as_deref()) {
            Transition::Clear => self.untag_unhealthy(target_group_arn).await?,
            Transition::Tell(key) => {
                let problem = unhealthy.as_ref().map(|(_, p)| p.as_str()).unwrap_or_default();
                let fields = json!({"db_instance_identifier": identifier, "target_group_arn": target_group_arn,
                    "address": resolved.to_string(), "problem": problem});
                tell(
                    &self.notifier,
                    "target-not-healthy",
                    &format!("TiDB Cloud link target not healthy: {identifier}"),
                    fields,
                )
                .await;
                self.tag_unhealthy(target_group_arn, &key).await?;
            }
            Transition::Nothing => {}
        }
        let changes = plan_changes(resolved, &targets);
        let target = |ip: &str| TargetDescription::builder().id(ip).port(port).build();
        if let Some(ip) = changes.register {
            self.elb
                .register_targets()
                .target_group_arn(target_group_arn)
                .targets(target(&ip))
                .send()
                .await
                .map_err(aws::fail("RegisterTargets"))?;
            info!(db_instance = identifier, ip = %ip, "new database address registered");
            self.metrics.count("TargetsRegistered", identifier).await;
            sync.registered.push(ip);
        }
        if !changes.deregister.is_empty() {
            self.elb
                .deregister_targets()
                .target_group_arn(target_group_arn)
                .set_targets(Some(changes.deregister.iter().map(|ip| target(ip)).collect()))
                .send()
                .await
                .map_err(aws::fail("DeregisterTargets"))?;
            info!(db_instance = identifier, ips = ?changes.deregister, "old database addresses deregistered");
            self.metrics.count("TargetsDeregistered", identifier).await;
            let fields = json!({"db_instance_identifier": identifier, "target_group_arn": target_group_arn,
                "old_addresses": changes.deregister, "new_address": resolved.to_string()});
            tell(&self.notifier, "target-moved", &format!("TiDB Cloud link target moved: {identifier}"), fields).await;
            sync.deregistered = changes.deregister;
        }
        Ok(sync)
    }

    async fn tag_unhealthy(&self, target_group_arn: &str, told: &str) -> Result<(), StepError> {
        let tag = Tag::builder().key(TARGET_NOT_HEALTHY_TAG).value(told).build();
        self.elb.add_tags().resource_arns(target_group_arn).tags(tag).send().await.map_err(aws::fail("AddTags"))?;
        Ok(())
    }

    async fn untag_unhealthy(&self, target_group_arn: &str) -> Result<(), StepError> {
        self.elb
            .remove_tags()
            .resource_arns(target_group_arn)
            .tag_keys(TARGET_NOT_HEALTHY_TAG)
            .send()
            .await
            .map_err(aws::fail("RemoveTags"))?;
        info!(target_group = target_group_arn, "the database's address is a usable target again");
        Ok(())
    }

    /// The database's address now: an instance's endpoint, a cluster's writer endpoint.
    async fn instance(&self, key: &str) -> Result<Option<Instance>, StepError> {
        let Some(described) = describe(&self.rds, &DatabaseRef::parse(key)?).await? else {
            return Ok(None);
        };
        let (Some(address), Some(port)) = (described.address.clone(), described.port) else {
            return Ok(None);
        };
        Ok(described.network(&self.rds).await?.map(|network| Instance {
            address,
            port: i32::from(port),
            vpc_id: network.vpc_id,
            publicly_accessible: described.publicly_accessible,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(ip: &str, health: &str) -> TargetState {
        TargetState { id: ip.into(), port: Some(3306), state: health.into(), reason: None, description: None }
    }

    #[test]
    fn a_new_address_is_registered_before_anything_is_removed() {
        let changes = plan_changes("10.0.2.9".parse().unwrap(), &[target("10.0.1.5", "healthy")]);
        assert_eq!(changes, TargetChanges { register: Some("10.0.2.9".into()), deregister: vec![] });
    }

    #[test]
    fn old_addresses_go_once_the_new_target_is_healthy() {
        let targets = [target("10.0.1.5", "unhealthy"), target("10.0.2.9", "initial")];
        assert_eq!(plan_changes("10.0.2.9".parse().unwrap(), &targets), TargetChanges::default());
        let targets = [target("10.0.1.5", "unhealthy"), target("10.0.2.9", "healthy")];
        assert_eq!(plan_changes("10.0.2.9".parse().unwrap(), &targets).deregister, ["10.0.1.5"]);
    }

    #[test]
    fn a_stale_answer_cannot_remove_the_good_target() {
        // DNS briefly answers the old address: it is registered again, and nothing is removed,
        // because the old address never becomes healthy.
        let good = [target("10.0.2.9", "healthy")];
        let stale = plan_changes("10.0.1.5".parse().unwrap(), &good);
        assert_eq!(stale, TargetChanges { register: Some("10.0.1.5".into()), deregister: vec![] });
        let both = [target("10.0.2.9", "healthy"), target("10.0.1.5", "unhealthy")];
        assert_eq!(plan_changes("10.0.1.5".parse().unwrap(), &both), TargetChanges::default());
        // The next correct answer removes the stale one.
        assert_eq!(plan_changes("10.0.2.9".parse().unwrap(), &both).deregister, ["10.0.1.5"]);
    }

    #[test]
    fn an_unhealthy_target_is_told_on_the_transition_only() {
        let problem = "10.0.2.9 unhealthy Target.FailedHealthChecks";
        assert_eq!(unhealthy_transition(Some(problem), None), Transition::Tell(problem.into()));
        assert_eq!(unhealthy_transition(Some(problem), Some(problem)), Transition::Nothing);
        let other = "10.0.2.9 unused Target.NotInUse";
        assert_eq!(unhealthy_transition(Some(other), Some(problem)), Transition::Tell(other.into()));
        assert_eq!(unhealthy_transition(None, Some(problem)), Transition::Clear);
        assert_eq!(unhealthy_transition(None, None), Transition::Nothing);
    }

    #[test]
    fn events_name_their_instance() {
        let failover: Value = serde_json::from_str(include_str!("../tests/fixtures/events/rds-failover.json")).unwrap();
        assert_eq!(event_instance(&failover).as_deref(), Some("orders-db"));
        let prefixed = serde_json::json!({"detail": {"SourceIdentifier": "rds:Orders-DB"}});
        assert_eq!(event_instance(&prefixed).as_deref(), Some("orders-db"));
        for name in ["rds-cluster-event-0073-failover-started", "rds-cluster-event-0071-failover-completed"] {
            let text =
                std::fs::read_to_string(format!("{}/tests/fixtures/events/{name}.json", env!("CARGO_MANIFEST_DIR")));
            let event: Value = serde_json::from_str(&text.unwrap()).unwrap();
            assert_eq!(event_instance(&event).as_deref(), Some("cluster:orders-cluster"), "{name}");
        }
        let by_id = serde_json::json!({"detail": {"SourceType": "CLUSTER", "SourceIdentifier": "rds:Orders"}});
        assert_eq!(event_instance(&by_id).as_deref(), Some("cluster:orders"));
        let scheduled = serde_json::json!({"detail-type": "Scheduled Event", "detail": {}});
        assert_eq!(event_instance(&scheduled), None);
    }
}
