//! Step 2, plan zones: where the load balancer is enabled. TiDB Cloud's endpoints can only reach it
//! in availability zones both sides share, matched by AZ ID (zone names differ between accounts),
//! and it routes only to targets in its own zones: so every zone of the DB subnet group (the
//! database's, and where a Multi-AZ failover can move it) plus every zone shared with TiDB Cloud,
//! of which there must be at least one. One subnet of the database's VPC per zone, preferring the
//! DB subnet group's. TiDB Cloud's account and zones come from its API when a cluster is linked,
//! else from the stack's parameters.

use std::collections::{BTreeMap, BTreeSet};

use aws_config::SdkConfig;
use tracing::info;

use crate::payload::{Database, PlannedSubnet, VpcSubnet, ZonePlan};
use crate::tidb_cloud::TiDBCloud;
use crate::{Settings, Step, StepError};

#[derive(Debug, serde::Deserialize)]
pub struct Input {
    pub database: Database,
}

pub struct PlanZones {
    tidb_cloud: Option<TiDBCloud>,
    settings: Settings,
}

impl Step for PlanZones {
    type Input = Input;
    type Output = ZonePlan;

    fn new(sdk: &SdkConfig, settings: &Settings) -> Result<Self, StepError> {
        Ok(Self { tidb_cloud: settings.tidb_cloud(sdk)?, settings: settings.clone() })
    }

    async fn run(&self, input: Input) -> Result<ZonePlan, StepError> {
        let database = input.database;
        let (account_id, az_ids) = self.tidb_cloud_side(database.tidb_cloud_cluster_id.as_deref()).await?;
        let planned = plan(&database.vpc_id, &database.vpc_subnets, &az_ids, &database.subnet_ids)?;
        let zones = |keep: fn(&PlannedSubnet) -> bool| {
            planned.iter().filter(|s| keep(s)).map(|s| s.availability_zone_id.as_str()).collect::<Vec<_>>()
        };
        info!(
            db_instance = %database.identifier,
            zones = ?zones(|_| true),
            shared_with_tidb_cloud = ?zones(|s| s.shared_with_tidb_cloud),
            database_zones = ?zones(|s| s.database_zone),
            subnets = ?planned.iter().map(|s| s.subnet_id.as_str()).collect::<Vec<_>>(),
            "zones planned"
        );
        Ok(ZonePlan { tidb_cloud_account_id: account_id, subnets: planned })
    }
}

impl PlanZones {
    /// TiDB Cloud's AWS account and availability zone IDs.
    async fn tidb_cloud_side(&self, cluster_id: Option<&str>) -> Result<(String, Vec<String>), StepError> {
        match (cluster_id, &self.tidb_cloud) {
            (Some(cluster), Some(api)) => {
                let zones = api.availability_zones(cluster).await?;
                info!(cluster, account = %zones.account_id, zones = ?zones.az_ids, "TiDB Cloud's zones read from its API");
                Ok((crate::settings::account_id(&zones.account_id)?, zones.az_ids))
            }
            (Some(cluster), None) => Err(StepError::Misconfigured(format!(
                "TiDB Cloud cluster {cluster} is to be linked, but the stack has no TiDB Cloud API key (TiDBCloudApiKeySecretArn)"
            ))),
            (None, _) => {
                Ok((self.settings.tidb_cloud_account_id()?.to_owned(), self.settings.tidb_cloud_az_ids.clone()))
            }
        }
    }
}

/// One subnet per zone (by AZ ID) that is shared with TiDB Cloud or holds a subnet of the DB
/// subnet group (`db_subnets`), ordered by AZ ID: a subnet of the group when the zone has one, else
/// the zone's lowest subnet ID, so that planning is deterministic. At least one zone must be
/// shared with TiDB Cloud.
pub fn plan(
    vpc_id: &str,
    subnets: &[VpcSubnet],
    tidb_cloud_az_ids: &[String],
    db_subnets: &[String],
) -> Result<Vec<PlannedSubnet>, StepError> {
    if tidb_cloud_az_ids.is_empty() {
        return Err(StepError::Misconfigured(
            "TiDB Cloud's availability zone IDs (TIDB_CLOUD_AZ_IDS) are not set".into(),
        ));
    }
    let shared: BTreeSet<&str> = tidb_cloud_az_ids.iter().map(String::as_str).collect();
    let in_group = |s: &VpcSubnet| db_subnets.contains(&s.subnet_id);
    let database: BTreeSet<&str> =
        subnets.iter().filter(|s| in_group(s)).map(|s| s.availability_zone_id.as_str()).collect();
    if !subnets.iter().any(|s| shared.contains(s.availability_zone_id.as_str())) {
        let ours: BTreeSet<&str> = subnets.iter().map(|s| s.availability_zone_id.as_str()).collect();
        return Err(StepError::NoCommonAvailabilityZone {
            vpc_id: vpc_id.to_owned(),
            ours: ours.into_iter().collect::<Vec<_>>().join(", "),
            tidb_cloud: shared.into_iter().collect::<Vec<_>>().join(", "),
        });
    }
    let mut best: BTreeMap<&str, &VpcSubnet> = BTreeMap::new();
    let wanted = |s: &&VpcSubnet| {
        shared.contains(s.availability_zone_id.as_str()) || database.contains(s.availability_zone_id.as_str())
    };
    for subnet in subnets.iter().filter(wanted) {
        let rank = |s: &VpcSubnet| (!in_group(s), s.subnet_id.clone());
        best.entry(subnet.availability_zone_id.as_str())
            .and_modify(|current| {
                if rank(subnet) < rank(current) {
                    *current = subnet;
                }
            })
            .or_insert(subnet);
    }
    Ok(best
        .into_values()
        .map(|s| PlannedSubnet {
            subnet_id: s.subnet_id.clone(),
            availability_zone_id: s.availability_zone_id.clone(),
            availability_zone: s.availability_zone.clone(),
            shared_with_tidb_cloud: shared.contains(s.availability_zone_id.as_str()),
            database_zone: database.contains(s.availability_zone_id.as_str()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(id: &str, az: &str) -> VpcSubnet {
        let (subnet_id, availability_zone_id, availability_zone) = (id.into(), az.into(), format!("name-of-{az}"));
        VpcSubnet { subnet_id, availability_zone_id, availability_zone, cidr_block: "10.0.0.0/24".into() }
    }

    fn summary(planned: &[PlannedSubnet]) -> Vec<(&str, &str, bool, bool)> {
        planned
            .iter()
            .map(|s| (s.subnet_id.as_str(), s.availability_zone_id.as_str(), s.shared_with_tidb_cloud, s.database_zone))
            .collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_subnet_per_shared_zone_preferring_the_db_subnet_group() {
        let subnets = [
            subnet("subnet-a2", "use1-az1"),
            subnet("subnet-a1", "use1-az1"),
            subnet("subnet-b9", "use1-az2"),
            subnet("subnet-b1", "use1-az2"),
            subnet("subnet-c1", "use1-az6"),
        ];
        let planned =
            plan("vpc-1", &subnets, &strings(&["use1-az2", "use1-az1", "use1-az4"]), &strings(&["subnet-b9"])).unwrap();
        assert_eq!(summary(&planned), [("subnet-a1", "use1-az1", true, false), ("subnet-b9", "use1-az2", true, true)]);
        assert_eq!(planned[1].availability_zone, "name-of-use1-az2");
    }

    #[test]
    fn every_zone_of_the_db_subnet_group_is_planned_too() {
        // The database in use1-az6, which TiDB Cloud does not use: the load balancer must be
        // enabled there as well, or its target is never used.
        let subnets = [
            subnet("subnet-a1", "use1-az1"),
            subnet("subnet-c1", "use1-az6"),
            subnet("subnet-c2", "use1-az6"),
            subnet("subnet-d1", "use1-az3"),
        ];
        let planned =
            plan("vpc-1", &subnets, &strings(&["use1-az1", "use1-az2"]), &strings(&["subnet-c2", "subnet-a1"]))
                .unwrap();
        assert_eq!(summary(&planned), [("subnet-a1", "use1-az1", true, true), ("subnet-c2", "use1-az6", false, true)]);
    }

    #[test]
    fn no_shared_zone_names_both_sides() {
        let subnets = [subnet("subnet-1", "use1-az6"), subnet("subnet-2", "use1-az3")];
        // The database's zones alone are not enough: TiDB Cloud could not reach the load balancer.
        let err = plan("vpc-9", &subnets, &strings(&["use1-az1", "use1-az2"]), &strings(&["subnet-1"])).unwrap_err();
        assert_eq!(err.name(), "NoCommonAvailabilityZone");
        let message = err.to_string();
        assert!(message.contains("[use1-az3, use1-az6]") && message.contains("[use1-az1, use1-az2]"), "{message}");
        assert!(message.contains("vpc-9"), "{message}");
    }

    #[test]
    fn missing_tidb_cloud_zones_is_a_configuration_error() {
        let err = plan("vpc-1", &[subnet("subnet-1", "use1-az1")], &[], &[]).unwrap_err();
        assert_eq!(err.name(), "Misconfigured");
    }
}
