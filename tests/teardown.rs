//! The teardown steps against the emulator, in the order `statemachine/deprovision.asl.json` runs
//! them: everything provisioning created goes, in an order AWS accepts, and nothing else; running
//! it twice, on a half-provisioned instance, after the instance is gone, or with TiDB Cloud
//! connected, ends with nothing of ours left.

mod common;

use common::*;
use serde_json::json;
use tidb_privatelink::steps::inspect_database::InspectDatabase;
use tidb_privatelink::steps::security_groups::CreateSecurityGroups;
use tidb_privatelink::steps::target_group::CreateTargetGroup;

#[test]
fn the_teardown_runs_in_an_order_aws_accepts() {
    let order: Vec<String> = workflow_tasks("deprovision").into_iter().map(|(placeholder, _)| placeholder).collect();
    assert_eq!(
        order,
        [
            "RemoveTiDBCloudConnectionFunctionArn",
            "RemoveEndpointServiceFunctionArn",
            "RemoveLoadBalancerFunctionArn",
            "RemoveSecurityGroupsFunctionArn",
            // Last: while anything of the database's is left, its target group names its VPC.
            "RemoveTargetGroupFunctionArn"
        ]
    );
}

#[tokio::test]
async fn teardown_removes_everything_provisioning_created_and_nothing_else() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let keep = network.database("billing-db", "mysql", false).await;
    provision(&network, &network.settings(), &id).await.unwrap();
    let kept_document = provision(&network, &network.settings(), &keep).await.unwrap();
    let before = managed_resources(&network).await;
    assert_eq!(before.len(), 12, "{before:#?}");

    let removed = deprovision(&network, &network.settings(), &id).await.unwrap();
    let removed_count: usize =
        removed.as_object().unwrap().values().map(|r| r["removed"].as_array().unwrap().len()).sum();
    // service, listener + NLB, target group, DB rule + NLB security group
    assert_eq!(removed_count, 6, "{removed:#}");

    // What is left is exactly the other instance's resources.
    let after = managed_resources(&network).await;
    assert_eq!(after.len(), 6, "{after:#?}");
    let kept_arns = [str_of(&kept_document, "/load_balancer/arn"), str_of(&kept_document, "/target_group/arn")];
    for arn in kept_arns {
        assert!(after.iter().any(|r| r.contains(arn)), "{arn} should remain: {after:#?}");
    }
    // And the customer's own security group is still there, without our rule for this instance.
    let ec2 = aws_sdk_ec2::Client::new(&network.sdk);
    let db_group = ec2.describe_security_groups().group_ids(&network.db_security_group_id).send().await.unwrap();
    let sources: Vec<&str> = db_group.security_groups()[0]
        .ip_permissions()
        .iter()
        .flat_map(|p| p.user_id_group_pairs())
        .filter_map(|g| g.group_id())
        .collect();
    assert_eq!(sources, [str_of(&kept_document, "/security_groups/nlb_security_group_id")]);
}

#[tokio::test]
async fn teardown_twice_and_after_the_instance_is_gone_is_clean() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    provision(&network, &network.settings(), &id).await.unwrap();
    aws_sdk_rds::Client::new(&network.sdk)
        .delete_db_instance()
        .db_instance_identifier(&id)
        .skip_final_snapshot(true)
        .send()
        .await
        .unwrap();
    deprovision(&network, &network.settings(), &id).await.unwrap();
    assert!(managed_resources(&network).await.is_empty());
    let again = deprovision(&network, &network.settings(), &id).await.unwrap();
    assert!(again.as_object().unwrap().values().all(|r| r["removed"].as_array().unwrap().is_empty()), "{again:#}");
}

#[tokio::test]
async fn teardown_of_a_half_provisioned_instance_is_clean() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let settings = network.settings();
    let mut document = json!({"db_instance_identifier": id});
    run_step::<InspectDatabase>(&settings, &network.sdk, &mut document, "database").await.unwrap();
    run_step::<CreateTargetGroup>(&settings, &network.sdk, &mut document, "target_group").await.unwrap();
    run_step::<CreateSecurityGroups>(&settings, &network.sdk, &mut document, "security_groups").await.unwrap();
    assert_eq!(managed_resources(&network).await.len(), 3);
    deprovision(&network, &settings, &id).await.unwrap();
    assert!(managed_resources(&network).await.is_empty());
}

#[tokio::test]
async fn teardown_disconnects_tidb_cloud_first() {
    let network = Network::new().await;
    let id = network.database("orders-db", "mysql", false).await;
    let document = provision(&network, &network.settings(), &id).await.unwrap();
    let tidb_cloud = account(TIDB_CLOUD_ACCOUNT).await;
    let consumer = aws_sdk_ec2::Client::new(&tidb_cloud);
    let endpoint_id = &request_connection(&tidb_cloud, str_of(&document, "/endpoint_service/service_name")).await;
    aws_sdk_ec2::Client::new(&network.sdk)
        .accept_vpc_endpoint_connections()
        .service_id(str_of(&document, "/endpoint_service/service_id"))
        .vpc_endpoint_ids(endpoint_id)
        .send()
        .await
        .unwrap();

    deprovision(&network, &network.settings(), &id).await.unwrap();
    assert!(managed_resources(&network).await.is_empty());
    let state = consumer.describe_vpc_endpoints().vpc_endpoint_ids(endpoint_id).send().await.unwrap();
    assert_eq!(state.vpc_endpoints()[0].state().unwrap().as_str(), "rejected");
}
