//! What flows between the provisioning states. The state machine keeps one JSON document and each
//! step writes its result under its own key (`ResultPath`), so every step reads the typed parts it
//! needs and ignores the rest.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// The input of a workflow started by hand: which RDS instance to provision or tear down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbInstanceRequest {
    pub db_instance_identifier: String,
    /// With `per-vpc` sharing, the database's VPC, whose shared parts a teardown may remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
}

/// Step 1: what the workflow needs to know about the RDS instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    pub identifier: String,
    pub arn: String,
    pub engine: String,
    pub endpoint_address: String,
    pub port: u16,
    /// The private address the endpoint resolved to; the load balancer's target.
    pub ip_address: Ipv4Addr,
    pub vpc_id: String,
    /// The VPC's subnets, read once at inspection: the address must lie in one, and the zone plan
    /// picks the load balancer's from them.
    pub vpc_subnets: Vec<VpcSubnet>,
    /// Subnets of the DB subnet group, preferred for the load balancer.
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    /// The TiDB Cloud cluster to link, from the opt-in tag or the stack; none leaves the TiDB
    /// Cloud side to the user.
    #[serde(default)]
    pub tidb_cloud_cluster_id: Option<String>,
}

/// A subnet of the database's VPC, as far as placing the address and planning zones care.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcSubnet {
    pub subnet_id: String,
    pub availability_zone_id: String,
    pub availability_zone: String,
    pub cidr_block: String,
}

/// Step 2: where the load balancer goes, and whom the endpoint service admits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZonePlan {
    pub tidb_cloud_account_id: String,
    /// One subnet per availability zone the load balancer is enabled in, ordered by AZ ID: every
    /// zone of the DB subnet group (a load balancer routes only to targets in its own zones, and a
    /// Multi-AZ failover moves the database to another zone of the group) and every zone shared
    /// with TiDB Cloud (at least one).
    pub subnets: Vec<PlannedSubnet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedSubnet {
    pub subnet_id: String,
    pub availability_zone_id: String,
    /// The zone's name in this account (`us-east-1a`), as ELBv2 reports a load balancer's zones.
    pub availability_zone: String,
    /// TiDB Cloud's endpoints can reach the load balancer in this zone.
    pub shared_with_tidb_cloud: bool,
    /// The DB subnet group has a subnet in this zone: the database is, or can fail over, here.
    pub database_zone: bool,
}

/// Step 3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroup {
    pub arn: String,
    pub name: String,
    pub registered_ip: Ipv4Addr,
}

/// Step 4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroups {
    pub nlb_security_group_id: String,
    /// The customer's DB security group that now admits the load balancer.
    pub db_security_group_id: String,
}

/// Step 5. `state` is the load balancer's state code (`provisioning`, `active`, `failed`, ...),
/// which the state machine polls until `active`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub arn: String,
    pub name: String,
    pub dns_name: String,
    pub state: String,
    pub listener_arn: String,
    /// The key owning the load balancer and its endpoint service: the database's, or with
    /// `per-vpc` sharing its VPC's (`vpc:<id>`, `vpc:<id>/<n>`); empty from a run before sharing.
    #[serde(default)]
    pub owner: String,
    /// The listener's port: TiDB Cloud reaches the database at the endpoint's address and this
    /// port (the database's own, unless a shared load balancer gave it another).
    pub port: u16,
}

impl LoadBalancer {
    /// The key owning the load balancer; for a document from before it was recorded, the one
    /// the stack's sharing mode gives the database.
    pub fn owner(&self, settings: &crate::Settings, database: &Database) -> String {
        match self.owner.is_empty() {
            true => settings.shared_key(&database.identifier, &database.vpc_id),
            false => self.owner.clone(),
        }
    }
}

/// Step 5, continued: the database target's health as the load balancer reports it, polled
/// until `healthy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealth {
    /// The target's address and port.
    pub target: String,
    /// `initial`, `healthy`, `unhealthy`, `unused`, `draining`, `unavailable`; `unregistered`
    /// when the target group does not hold the target.
    pub state: String,
    /// AWS's reason code (`Elb.RegistrationInProgress`, `Target.NotInUse`, ...); none when healthy.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Consecutive polls that found the target `unhealthy` or `unused`.
    #[serde(default)]
    pub failed_polls: u32,
}

/// Step 6: the name the user gives TiDB Cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointService {
    pub service_id: String,
    /// `com.amazonaws.vpce.<region>.vpce-svc-...`
    pub service_name: String,
    pub allowed_principal: String,
    pub connection_notification_id: String,
}

/// What a teardown step did. `done` is false while AWS still needs time (the load balancer is
/// still being deleted); the state machine then waits and runs the step again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    pub removed: Vec<String>,
    pub done: bool,
}

/// Steps 7 and 8: the private link connection in TiDB Cloud, polled until `ACTIVE`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TiDBCloudConnection {
    /// False when no TiDB Cloud cluster is configured: the workflow ends after step 6.
    pub configured: bool,
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub connection_id: Option<String>,
    /// TiDB Cloud's state: `CREATING`, `PENDING_ACCEPTANCE`, `ACTIVE`, `FAILED`, `DELETING`.
    #[serde(default)]
    pub state: Option<String>,
    /// The endpoint TiDB Cloud created: the only one the acceptor accepts for this service.
    #[serde(default)]
    pub endpoint_id: Option<String>,
    /// Whether a failed connection was already deleted and created again once.
    #[serde(default)]
    pub recreated: bool,
}
