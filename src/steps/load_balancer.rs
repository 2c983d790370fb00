//! Step 5, load balancer: an internal network load balancer in the planned subnets, with the
//! security group of step 4 (which can only be attached at creation), cross-zone load balancing
//! on, PrivateLink traffic exempt from the inbound rules, and a TCP listener forwarding the
//! database port to the target group. A load balancer from an earlier run that lacks a planned
//! zone (the DB subnet group or TiDB Cloud's zones grew) gets it added.
//!
//! The step is idempotent and reports the load balancer's state, so the state machine polls by
//! running it again until the state is `active`.

use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, EnforceSecurityGroupInboundRulesOnPrivateLinkTrafficEnum as Enforce, IpAddressType,
    Listener, LoadBalancer as ElbLoadBalancer, LoadBalancerAttribute, LoadBalancerSchemeEnum, LoadBalancerTypeEnum,
    ProtocolEnum,
};
use aws_sdk_elasticloadbalancingv2::Client;
use tracing::info;

use crate::naming::{resource_name, vpc_load_balancer_key, Ownership, MAX_LOAD_BALANCERS_PER_VPC};
use crate::payload::{Database, LoadBalancer, PlannedSubnet, SecurityGroups, TargetGroup, ZonePlan};
use crate::resources::vpc_load_balancers;
use crate::resources::{elb_tags, ensure_elb_owned, find_load_balancer, forwards_to, listeners, load_balancer_arn};
use crate::settings::Sharing;
use crate::{aws, Settings, Step, StepError};

#[derive(Debug, serde::Deserialize)]
pub struct Input {
    pub database: Database,
    pub zones: ZonePlan,
    pub target_group: TargetGroup,
    pub security_groups: SecurityGroups,
    /// This step's answer from its previous run in the same execution, when the state machine
    /// polls: that run made or checked everything but the state.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancer>,
}

/// AWS's quota of listeners per Network Load Balancer, which cannot be raised.
const LISTENERS_PER_LOAD_BALANCER: usize = 50;

const CROSS_ZONE: &str = "load_balancing.cross_zone.enabled";

pub struct CreateLoadBalancer {
    elb: Client,
    settings: Settings,
}

impl Step for CreateLoadBalancer {
    type Input = Input;
    type Output = LoadBalancer;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        Ok(Self { elb: Client::new(sdk), settings: settings.clone() })
    }

    async fn run(&self, input: Input) -> Result<LoadBalancer, StepError> {
        let db = &input.database;
        let ownership = Ownership::new(&self.settings.stack_name, &db.identifier);
        let (owner, found, known_listeners) = self.place(&input).await?;
        let shared = Ownership::new(&self.settings.stack_name, &owner);
        let name = resource_name(&owner);
        // A poll reads the state alone, so each poll costs one call.
        if let (Some(lb), Some(previous)) = (&found, &input.load_balancer) {
            if lb.load_balancer_arn() == Some(previous.arn.as_str()) {
                let state = state_code(lb);
                info!(db_instance = %db.identifier, load_balancer = %previous.arn, state = %state, "load balancer polled");
                return Ok(LoadBalancer { state, owner, ..previous.clone() });
            }
        }
        // A load balancer this run created has AWS's defaults and no listener: nothing to read.
        let (lb, created) = match found {
            Some(lb) => {
                ensure_elb_owned(&self.elb, &shared, "load balancer", &name, load_balancer_arn(&lb)?).await?;
                self.add_missing_zones(&lb, &input.zones).await?;
                (lb, false)
            }
            None => (self.create(&name, &input, &shared).await?, true),
        };
        let arn = load_balancer_arn(&lb)?.to_owned();
        self.enable_cross_zone(&arn, created).await?;
        if lb.enforce_security_group_inbound_rules_on_private_link_traffic() != Some("off") {
            self.exempt_private_link_traffic(&arn, &input.security_groups.nlb_security_group_id).await?;
        }
        let (listener_arn, port) = self.ensure_listener(&arn, &input, &ownership, known_listeners, created).await?;
        let state = state_code(&lb);
        info!(db_instance = %db.identifier, load_balancer = %arn, state = %state, "load balancer checked");
        let dns_name = aws::required(lb.dns_name(), "a load balancer's DNSName")?.to_owned();
        Ok(LoadBalancer { arn, name, dns_name, state, listener_arn, owner, port })
    }
}

/// Where a database's listener goes: the owner's key, its load balancer if it exists, and that
/// load balancer's listeners if they were read to choose it.
type Placement = (String, Option<ElbLoadBalancer>, Option<Vec<Listener>>);

impl CreateLoadBalancer {
    /// The database's own load balancer; on a poll, the one the first run chose; with `per-vpc`
    /// sharing, the VPC's load balancer that holds the database's listener, else the first with
    /// room for one, else a new one.
    async fn place(&self, input: &Input) -> Result<Placement, StepError> {
        let db = &input.database;
        let owner = match &input.load_balancer {
            Some(previous) if !previous.owner.is_empty() => previous.owner.clone(),
            _ if self.settings.sharing == Sharing::PerDatabase => db.identifier.clone(),
            _ => return self.place_in_vpc(input).await,
        };
        let found = find_load_balancer(&self.elb, &resource_name(&owner)).await?;
        Ok((owner, found, None))
    }

    async fn place_in_vpc(&self, input: &Input) -> Result<Placement, StepError> {
        let vpc_id = &input.database.vpc_id;
        let series = vpc_load_balancers(&self.elb, vpc_id).await?;
        let mut room = None;
        for (key, lb) in &series {
            let found = listeners(&self.elb, load_balancer_arn(lb)?).await?;
            if found.iter().any(|l| forwards_to(l, &input.target_group.arn)) {
                return Ok((key.clone(), Some(lb.clone()), Some(found)));
            }
            if room.is_none() && found.len() < LISTENERS_PER_LOAD_BALANCER {
                room = Some((key.clone(), Some(lb.clone()), Some(found)));
            }
        }
        if let Some(placement) = room {
            return Ok(placement);
        }
        let next = (1..=MAX_LOAD_BALANCERS_PER_VPC)
            .map(|n| vpc_load_balancer_key(vpc_id, n))
            .find(|key| !series.iter().any(|(taken, _)| taken == key));
        let next = next.ok_or_else(|| {
            StepError::InvalidInput(format!(
                "VPC {vpc_id}'s {MAX_LOAD_BALANCERS_PER_VPC} shared load balancers hold {LISTENERS_PER_LOAD_BALANCER} listeners each; link more databases with LoadBalancerSharing per-database"
            ))
        })?;
        info!(db_instance = %input.database.identifier, owner = %next, "the VPC's load balancers are full: a new one");
        Ok((next, None, None))
    }

    async fn create(&self, name: &str, input: &Input, ownership: &Ownership) -> Result<ElbLoadBalancer, StepError> {
        let out = self
            .elb
            .create_load_balancer()
            .name(name)
            .r#type(LoadBalancerTypeEnum::Network)
            .scheme(LoadBalancerSchemeEnum::Internal)
            .ip_address_type(IpAddressType::Ipv4)
            .set_subnets(Some(input.zones.subnets.iter().map(|s| s.subnet_id.clone()).collect()))
            .security_groups(&input.security_groups.nlb_security_group_id)
            .set_tags(Some(elb_tags(ownership)))
            .send()
            .await
            .map_err(aws::fail("CreateLoadBalancer"))?;
        let lb = aws::required(out.load_balancers().first().cloned(), "CreateLoadBalancer's load balancer")?;
        info!(db_instance = %input.database.identifier, owner = %ownership.identifier, load_balancer = load_balancer_arn(&lb)?, "load balancer created");
        Ok(lb)
    }

    /// SetSubnets replaces the enabled subnets, so it names every current subnet plus the new
    /// ones; a zone is never removed (the endpoint service's connections may use it).
    async fn add_missing_zones(&self, lb: &ElbLoadBalancer, zones: &ZonePlan) -> Result<(), StepError> {
        let current: Vec<(String, String)> = lb
            .availability_zones()
            .iter()
            .filter_map(|z| Some((z.zone_name()?.to_owned(), z.subnet_id()?.to_owned())))
            .collect();
        let Some(subnets) = subnets_with_missing_zones(&current, &zones.subnets) else {
            return Ok(());
        };
        let arn = load_balancer_arn(lb)?;
        self.elb
            .set_subnets()
            .load_balancer_arn(arn)
            .set_subnets(Some(subnets.clone()))
            .send()
            .await
            .map_err(aws::fail("SetSubnets"))?;
        info!(load_balancer = arn, subnets = ?subnets, "load balancer enabled in the planned zones it lacked");
        Ok(())
    }

    /// Off by default on NLBs; a single-AZ database behind endpoints in other zones needs it. Read
    /// first on a load balancer found, as the state machine's polls run this step again and again.
    async fn enable_cross_zone(&self, arn: &str, created: bool) -> Result<(), StepError> {
        if !created {
            let current = self
                .elb
                .describe_load_balancer_attributes()
                .load_balancer_arn(arn)
                .send()
                .await
                .map_err(aws::fail("DescribeLoadBalancerAttributes"))?;
            if current.attributes().iter().any(|a| a.key() == Some(CROSS_ZONE) && a.value() == Some("true")) {
                return Ok(());
            }
        }
        self.elb
            .modify_load_balancer_attributes()
            .load_balancer_arn(arn)
            .attributes(LoadBalancerAttribute::builder().key(CROSS_ZONE).value("true").build())
            .send()
            .await
            .map_err(aws::fail("ModifyLoadBalancerAttributes"))?;
        Ok(())
    }

    /// With a security group attached, an NLB applies its inbound rules to PrivateLink traffic
    /// too and silently drops TiDB Cloud's connections; exempt that traffic.
    async fn exempt_private_link_traffic(&self, arn: &str, group_id: &str) -> Result<(), StepError> {
        self.elb
            .set_security_groups()
            .load_balancer_arn(arn)
            .security_groups(group_id)
            .enforce_security_group_inbound_rules_on_private_link_traffic(Enforce::Off)
            .send()
            .await
            .map_err(aws::fail("SetSecurityGroups"))?;
        info!(load_balancer = arn, "inbound rules no longer applied to PrivateLink traffic");
        Ok(())
    }

    /// The database's listener and its port. On a load balancer of its own, the listener on the
    /// database's port; on a shared one, the listener forwarding to its target group, or a new
    /// one on the database's port if no listener holds it, else on the lowest free port of the
    /// stack's range (the VPC's workflows take turns, so no other workflow picks a port meanwhile).
    async fn ensure_listener(
        &self,
        arn: &str,
        input: &Input,
        ownership: &Ownership,
        known: Option<Vec<Listener>>,
        created: bool,
    ) -> Result<(String, u16), StepError> {
        let (db, target_group_arn) = (&input.database, input.target_group.arn.as_str());
        let per_vpc = self.settings.sharing == Sharing::PerVpc;
        let listeners = match (known, created) {
            (Some(known), _) => known,
            (None, true) => vec![],
            (None, false) => listeners(&self.elb, arn).await?,
        };
        let ours = |l: &&Listener| match per_vpc {
            true => forwards_to(l, target_group_arn),
            false => l.port() == Some(i32::from(db.port)),
        };
        if let Some(listener) = listeners.iter().find(ours) {
            let port = listener.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(db.port);
            return Ok((aws::required(listener.listener_arn(), "a listener's ListenerArn")?.to_owned(), port));
        }
        let port = match per_vpc {
            true => {
                let taken: Vec<u16> = listeners.iter().filter_map(|l| u16::try_from(l.port()?).ok()).collect();
                listener_port(&taken, db.port, self.settings.listener_ports).ok_or_else(|| {
                    StepError::InvalidInput(format!(
                        "every listener port of {arn} in {:?} is taken; widen the stack's ListenerPortRange",
                        self.settings.listener_ports
                    ))
                })?
            }
            false => db.port,
        };
        let forward = Action::builder().r#type(ActionTypeEnum::Forward).target_group_arn(target_group_arn).build();
        let out = self
            .elb
            .create_listener()
            .load_balancer_arn(arn)
            .protocol(ProtocolEnum::Tcp)
            .port(i32::from(port))
            .default_actions(forward)
            .set_tags(Some(elb_tags(ownership)))
            .send()
            .await
            .map_err(aws::fail("CreateListener"))?;
        let listener_arn = out.listeners().first().and_then(|l| l.listener_arn());
        let listener_arn = aws::required(listener_arn, "CreateListener's ListenerArn")?.to_owned();
        info!(db_instance = %db.identifier, load_balancer = arn, listener = %listener_arn, port, "listener created");
        Ok((listener_arn, port))
    }
}

/// The port for a new listener on a shared load balancer: the database's own when no listener
/// holds it, else the lowest free port of `range`; `None` when all are taken.
pub fn listener_port(taken: &[u16], own: u16, (first, last): (u16, u16)) -> Option<u16> {
    std::iter::once(own).chain(first..=last).find(|port| !taken.contains(port))
}

fn state_code(lb: &ElbLoadBalancer) -> String {
    lb.state().and_then(|s| s.code()).map_or_else(|| "unknown".into(), |c| c.as_str().to_owned())
}

/// The subnets to give SetSubnets so that every planned zone is enabled: the current subnets (by
/// zone name) plus a planned subnet for each zone the load balancer lacks; `None` when none lacks.
pub fn subnets_with_missing_zones(current: &[(String, String)], planned: &[PlannedSubnet]) -> Option<Vec<String>> {
    let missing: Vec<String> = planned
        .iter()
        .filter(|p| !current.iter().any(|(zone, _)| *zone == p.availability_zone))
        .map(|p| p.subnet_id.clone())
        .collect();
    if missing.is_empty() {
        return None;
    }
    Some(current.iter().map(|(_, subnet)| subnet.clone()).chain(missing).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(subnet: &str, zone: &str) -> PlannedSubnet {
        PlannedSubnet {
            subnet_id: subnet.into(),
            availability_zone_id: format!("id-of-{zone}"),
            availability_zone: zone.into(),
            shared_with_tidb_cloud: true,
            database_zone: false,
        }
    }

    #[test]
    fn a_listener_takes_the_databases_port_when_free_else_the_lowest_free_one() {
        assert_eq!(listener_port(&[], 3306, (3306, 3999)), Some(3306));
        assert_eq!(listener_port(&[3306, 3307, 3309], 3306, (3306, 3999)), Some(3308));
        // The database's own port, even outside the range.
        assert_eq!(listener_port(&[3306], 5432, (3306, 3307)), Some(5432));
        assert_eq!(listener_port(&[3306, 3307], 3306, (3306, 3307)), None);
    }

    #[test]
    fn missing_zones_are_added_to_all_current_subnets() {
        let current = [("us-east-1b".to_owned(), "subnet-b".to_owned()), ("us-east-1c".into(), "subnet-c".into())];
        let plan = [planned("subnet-a", "us-east-1a"), planned("subnet-b2", "us-east-1b")];
        // us-east-1b keeps its current subnet (a zone's subnet is never swapped), 1a is added.
        assert_eq!(
            subnets_with_missing_zones(&current, &plan),
            Some(vec!["subnet-b".into(), "subnet-c".into(), "subnet-a".into()])
        );
        assert_eq!(subnets_with_missing_zones(&current, &plan[1..]), None);
    }
}
