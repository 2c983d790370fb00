//! The binary every function of the stack runs. Lambda gives the process its function's Handler
//! (template.yaml) as `_HANDLER`; the Handler names the step, and the function builds only that
//! step's clients, which its role bounds. One binary means one release link for `sam build`
//! instead of one per function (README, "Build").
//!
//! Each arm below is a step; scripts/check_definitions.py holds them against the template's
//! Handlers, both ways.

use tidb_privatelink::acceptor::AcceptConnections;
use tidb_privatelink::notify::Notify;
use tidb_privatelink::steps::endpoint_service::CreateEndpointService;
use tidb_privatelink::steps::health_check::CheckTargetHealth;
use tidb_privatelink::steps::inspect_database::InspectDatabase;
use tidb_privatelink::steps::load_balancer::CreateLoadBalancer;
use tidb_privatelink::steps::plan_zones::PlanZones;
use tidb_privatelink::steps::security_groups::CreateSecurityGroups;
use tidb_privatelink::steps::target_group::CreateTargetGroup;
use tidb_privatelink::steps::tidb_cloud_connection::ConnectTiDBCloud;
use tidb_privatelink::sync_targets::SyncTargets;
use tidb_privatelink::teardown::endpoint_service::RemoveEndpointService;
use tidb_privatelink::teardown::load_balancer::RemoveLoadBalancer;
use tidb_privatelink::teardown::security_groups::RemoveSecurityGroups;
use tidb_privatelink::teardown::target_group::RemoveTargetGroup;
use tidb_privatelink::teardown::tidb_cloud_connection::RemoveTiDBCloudConnection;
use tidb_privatelink::turn::AwaitTurn;
use tidb_privatelink_lambda::{acceptor, serve_step, serve_step_adapted, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let handler = std::env::var("_HANDLER").unwrap_or_default();
    match handler.as_str() {
        // The provisioning, in the order the state machine runs it.
        "await-turn" => serve_step::<AwaitTurn>().await,
        "inspect-database" => serve_step::<InspectDatabase>().await,
        "plan-zones" => serve_step::<PlanZones>().await,
        "target-group" => serve_step::<CreateTargetGroup>().await,
        "security-groups" => serve_step::<CreateSecurityGroups>().await,
        "load-balancer" => serve_step::<CreateLoadBalancer>().await,
        "target-health" => serve_step::<CheckTargetHealth>().await,
        "endpoint-service" => serve_step::<CreateEndpointService>().await,
        "connect-tidb-cloud" => serve_step::<ConnectTiDBCloud>().await,
        // The teardown.
        "remove-tidb-cloud-connection" => serve_step::<RemoveTiDBCloudConnection>().await,
        "remove-endpoint-service" => serve_step::<RemoveEndpointService>().await,
        "remove-load-balancer" => serve_step::<RemoveLoadBalancer>().await,
        "remove-target-group" => serve_step::<RemoveTargetGroup>().await,
        "remove-security-groups" => serve_step::<RemoveSecurityGroups>().await,
        // Driven by events.
        "accept-connections" => serve_step_adapted::<AcceptConnections, _>(acceptor::trigger).await,
        "sync-targets" => serve_step::<SyncTargets>().await,
        "notify" => serve_step::<Notify>().await,
        _ => Err(format!("UnknownHandler: the function's Handler {handler:?} names no step of this binary").into()),
    }
}
