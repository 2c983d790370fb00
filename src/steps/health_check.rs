//! Step 5, continued: the database target must be `healthy` before anyone is told the endpoint
//! service works. A new target is `initial` for a while (on AWS registration often takes minutes);
//! the state machine polls this step until the target is `healthy`. A target the load balancer
//! cannot use (`unhealthy`: its health checks fail; `unused`: its zone is not enabled on the load
//! balancer) on two polls in a row ends provisioning with `TargetNotHealthy`, AWS's reason code
//! and what to check; one such poll is forgiven, as AWS may report a state in passing.

use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::Client;
use tracing::{info, warn};

use crate::payload::{Database, LoadBalancer, SecurityGroups, TargetGroup, TargetHealth, ZonePlan};
use crate::target_health::{target_state, TargetState, UNUSED};
use crate::{Settings, Step, StepError};

#[derive(Debug, serde::Deserialize)]
pub struct Input {
    pub database: Database,
    pub zones: ZonePlan,
    pub target_group: TargetGroup,
    pub security_groups: SecurityGroups,
    pub load_balancer: LoadBalancer,
    /// This step's result on the previous poll, if any.
    #[serde(default)]
    pub target_health: Option<TargetHealth>,
}

/// Consecutive `unhealthy`/`unused` polls after which the target is given up on.
pub const FAILED_POLLS_TO_GIVE_UP: u32 = 2;

pub struct CheckTargetHealth {
    elb: Client,
}

impl Step for CheckTargetHealth {
    type Input = Input;
    type Output = TargetHealth;

    fn new(sdk: &SdkConfig, _settings: &Settings) -> Result<Self, StepError> {
        Ok(Self { elb: Client::new(sdk) })
    }

    async fn run(&self, input: Input) -> Result<TargetHealth, StepError> {
        let db = &input.database;
        let ip = db.ip_address.to_string();
        // What AWS answers for a target the group does not hold.
        let state = target_state(&self.elb, &input.target_group.arn, &ip, db.port).await?.unwrap_or(TargetState {
            id: ip.clone(),
            port: Some(db.port),
            state: UNUSED.into(),
            reason: Some("Target.NotRegistered".into()),
            description: Some("Target is not registered to the target group".into()),
        });
        let previous = input.target_health.as_ref().map_or(0, |h| h.failed_polls);
        let health = TargetHealth {
            target: format!("{ip}:{}", db.port),
            failed_polls: if state.is_failing() { previous + 1 } else { 0 },
            state: state.state,
            reason: state.reason,
            description: state.description,
        };
        if health.failed_polls >= FAILED_POLLS_TO_GIVE_UP {
            warn!(db_instance = %db.identifier, target = %health.target, state = %health.state, reason = ?health.reason, "database target is not healthy");
            return Err(not_healthy(&input, &health));
        }
        info!(db_instance = %db.identifier, target = %health.target, state = %health.state, reason = ?health.reason, "database target health read");
        Ok(health)
    }
}

/// The error for a target the load balancer cannot use, saying what to check for its reason.
pub fn not_healthy(input: &Input, health: &TargetHealth) -> StepError {
    let reason = health.reason.clone().unwrap_or_else(|| "none".into());
    let (lb, tg) = (&input.load_balancer.name, &input.target_group.name);
    let (nlb_sg, db_sg, port) = (
        &input.security_groups.nlb_security_group_id,
        &input.security_groups.db_security_group_id,
        input.database.port,
    );
    let zones: Vec<&str> = input.zones.subnets.iter().map(|s| s.availability_zone.as_str()).collect();
    let check = match reason.as_str() {
        "Target.NotInUse" => format!(
            "check that the database's availability zone is enabled on the load balancer (it is planned in {}; the \
             workflow enables every zone of the DB subnet group) and that a listener of {lb} forwards to target group {tg}",
            zones.join(", ")
        ),
        "Target.FailedHealthChecks" | "Target.Timeout" => format!(
            "check the security groups: {nlb_sg} (the load balancer's) must allow outbound TCP {port} to {db_sg} (the \
             database's), and {db_sg} must admit TCP {port} from {nlb_sg}; check also that the database listens on \
             {} and that the subnets' network ACLs allow the traffic",
            health.target
        ),
        "Target.NotRegistered" => {
            format!("the target group {tg} no longer holds the database's address; run the workflow again")
        }
        _ => format!("check target group {tg}'s targets in the EC2 console"),
    };
    StepError::TargetNotHealthy {
        target: health.target.clone(),
        load_balancer: lb.clone(),
        state: health.state.clone(),
        reason,
        description: health.description.clone().unwrap_or_default(),
        check,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Input {
        serde_json::from_str(include_str!("../../tests/fixtures/provision-document.json")).unwrap()
    }

    fn health(state: &str, reason: &str) -> TargetHealth {
        TargetHealth {
            target: "10.42.2.57:3306".into(),
            state: state.into(),
            reason: Some(reason.into()),
            description: Some("Target is in an Availability Zone that is not enabled for the load balancer".into()),
            failed_polls: FAILED_POLLS_TO_GIVE_UP,
        }
    }

    #[test]
    fn a_target_not_in_use_points_at_the_load_balancers_zones() {
        let input = input();
        let error = not_healthy(&input, &health("unused", "Target.NotInUse"));
        assert_eq!(error.name(), "TargetNotHealthy");
        let message = error.to_string();
        for part in [
            "10.42.2.57:3306",
            "'unused'",
            "Target.NotInUse",
            "not enabled for the load balancer",
            "us-east-1b, us-east-1c, us-east-1a",
            "tidbpl-orders-db-6f1c0e2a9b",
        ] {
            assert!(message.contains(part), "'{message}' should mention '{part}'");
        }
    }

    #[test]
    fn failing_health_checks_point_at_both_security_groups() {
        let message = not_healthy(&input(), &health("unhealthy", "Target.FailedHealthChecks")).to_string();
        for part in ["sg-0fedcba9876543210", "sg-0123456789abcdef0", "outbound TCP 3306", "admit TCP 3306"] {
            assert!(message.contains(part), "'{message}' should mention '{part}'");
        }
    }
}
