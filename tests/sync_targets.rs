//! Following the database through a failover against the emulator, whose RDS moves a Multi-AZ
//! instance to a new address (and its DNS with it) on a forced-failover reboot.

mod common;

use common::*;
use serde_json::{json, Value};
use tidb_privatelink::sync_targets::SyncTargets;
use tidb_privatelink::Step;

fn failover_event() -> Value {
    fixture("rds-failover")
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join(format!("tests/fixtures/events/{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn targets(network: &Network, target_group_arn: &str) -> Vec<String> {
    let health = aws_sdk_elasticloadbalancingv2::Client::new(&network.sdk)
        .describe_target_health()
        .target_group_arn(target_group_arn)
        .send()
        .await
        .unwrap();
    let mut ips: Vec<String> =
        health.target_health_descriptions().iter().filter_map(|d| d.target()?.id().map(str::to_owned)).collect();
    ips.sort();
    ips
}

/// A forced failover of the Multi-AZ instance; its new address.
async fn fail_over(network: &Network, identifier: &str) -> String {
    aws_sdk_rds::Client::new(&network.sdk)
        .reboot_db_instance()
        .db_instance_identifier(identifier)
        .force_failover(true)
        .send()
        .await
        .unwrap();
    network.database_interface_ip().await
}

async fn sync(network: &Network, event: Value) -> Value {
    let step = SyncTargets::new(&network.sdk, &network.settings()).unwrap();
    serde_json::to_value(step.run(event).await.unwrap()).unwrap()
}

#[tokio::test]
async fn after_a_failover_the_target_group_holds_exactly_the_new_address() {
    let network = Network::new().await;
    // The fixture's failover event is about "orders-db".
    let id = network.multi_az_database("orders-db").await;
    let document = provision(&network, &network.settings(), &id).await.unwrap();
    let tg = str_of(&document, "/target_group/arn").to_owned();
    let old_ip = str_of(&document, "/database/ip_address").to_owned();
    assert_eq!(targets(&network, &tg).await, [old_ip.clone()]);

    let new_ip = fail_over(&network, &id).await;
    assert_ne!(new_ip, old_ip);

    // The failover event: the new address is registered first, the old one kept for now.
    let first = sync(&network, failover_event()).await;
    assert_eq!(first["instances"][0]["registered"], json!([new_ip]));
    assert_eq!(first["instances"][0]["deregistered"], json!([]));
    let mut both = vec![old_ip.clone(), new_ip.clone()];
    both.sort();
    assert_eq!(targets(&network, &tg).await, both);

    // The next run finds the new target healthy and removes the old one.
    let second = sync(&network, json!({"detail-type": "Scheduled Event", "detail": {}})).await;
    assert_eq!(second["instances"][0]["deregistered"], json!([old_ip]));
    assert_eq!(targets(&network, &tg).await, [new_ip.clone()]);

    // And a run with nothing new changes nothing.
    let third = sync(&network, json!({"detail-type": "Scheduled Event", "detail": {}})).await;
    assert_eq!(third["instances"][0]["registered"], json!([]));
    assert_eq!(third["instances"][0]["deregistered"], json!([]));
    assert_eq!(targets(&network, &tg).await, [new_ip]);
    // Each move is counted in CloudWatch, whatever the functions' log level.
    assert_eq!(metrics(&network, &id).await, ["TargetsDeregistered", "TargetsRegistered"]);
}

#[tokio::test]
async fn an_event_about_another_instance_touches_nothing() {
    let network = Network::new().await;
    let id = network.database("billing-db", "mysql", false).await;
    provision(&network, &network.settings(), &id).await.unwrap();
    let report = sync(&network, failover_event()).await;
    assert_eq!(report["instances"], json!([]));
}

/// The metrics CloudWatch holds for the instance, by name.
async fn metrics(network: &Network, identifier: &str) -> Vec<String> {
    metrics_by(network, "DBInstance", identifier).await
}

/// The metrics CloudWatch holds with dimension `dimension` = `value`, by name.
async fn metrics_by(network: &Network, dimension: &str, value: &str) -> Vec<String> {
    let out = aws_sdk_cloudwatch::Client::new(&network.sdk)
        .list_metrics()
        .namespace(tidb_privatelink::metrics::NAMESPACE)
        .send()
        .await
        .unwrap();
    let mut names: Vec<String> = out
        .metrics()
        .iter()
        .filter(|m| m.dimensions().iter().any(|d| d.name() == Some(dimension) && d.value() == Some(value)))
        .filter_map(|m| m.metric_name().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_public_address_is_reported_by_name_and_never_registered() {
    let network = Network::new().await;
    let id = network.multi_az_database("orders-db").await;
    let document = provision(&network, &network.settings(), &id).await.unwrap();
    let tg = str_of(&document, "/target_group/arn").to_owned();
    let private_ip = str_of(&document, "/database/ip_address").to_owned();
    // Made publicly accessible after provisioning: from outside the VPC its endpoint now
    // resolves to its public address.
    aws_sdk_rds::Client::new(&network.sdk)
        .modify_db_instance()
        .db_instance_identifier(&id)
        .publicly_accessible(true)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();

    let report = sync(&network, failover_event()).await;
    let instance = &report["instances"][0];
    assert_eq!(instance["registered"], json!([]), "{report}");
    let problem = instance["problem"].as_str().unwrap_or_default();
    assert!(problem.starts_with("DatabaseAddressOutsideVpc:") && problem.contains("publicly accessible"), "{report}");
    assert_eq!(targets(&network, &tg).await, [private_ip]);
    assert_eq!(metrics(&network, &id).await, ["AddressOutsideVpc"]);
}

#[tokio::test]
async fn a_new_address_the_load_balancer_cannot_reach_is_reported_and_the_old_target_kept() {
    let network = Network::new().await;
    let id = network.multi_az_database("orders-db").await;
    let document = provision(&network, &network.settings(), &id).await.unwrap();
    let tg = str_of(&document, "/target_group/arn").to_owned();
    let old_ip = str_of(&document, "/database/ip_address").to_owned();
    let nlb_group = str_of(&document, "/security_groups/nlb_security_group_id").to_owned();
    let db_group = str_of(&document, "/database/security_group_ids/0").to_owned();
    // Someone removes the rule that lets the load balancer reach the database.
    let ec2 = aws_sdk_ec2::Client::new(&network.sdk);
    let groups = ec2.describe_security_groups().group_ids(&db_group).send().await.unwrap();
    let from_nlb: Vec<_> = groups.security_groups()[0]
        .ip_permissions()
        .iter()
        .filter(|p| p.user_id_group_pairs().iter().any(|g| g.group_id() == Some(nlb_group.as_str())))
        .cloned()
        .collect();
    assert_eq!(from_nlb.len(), 1, "{groups:?}");
    ec2.revoke_security_group_ingress().group_id(&db_group).set_ip_permissions(Some(from_nlb)).send().await.unwrap();
    let new_ip = fail_over(&network, &id).await;

    let mut report = sync(&network, failover_event()).await;
    assert_eq!(report["instances"][0]["registered"], json!([new_ip]));
    for _ in 0..5 {
        if report["instances"][0]["problem"].is_string() {
            break;
        }
        report = sync(&network, json!({"detail-type": "Scheduled Event", "detail": {}})).await;
    }
    let problem = report["instances"][0]["problem"].as_str().unwrap_or_default();
    assert!(problem.starts_with("TargetNotHealthy:") && problem.contains("Target.FailedHealthChecks"), "{report}");
    assert_eq!(report["instances"][0]["deregistered"], json!([]));
    let mut both = vec![old_ip, new_ip];
    both.sort();
    assert_eq!(targets(&network, &tg).await, both);
    assert!(metrics(&network, &id).await.contains(&"TargetNotHealthy".to_owned()));
}

#[tokio::test]
async fn after_a_cluster_failover_the_target_follows_the_writer_within_one_sync() {
    let network = Network::new().await;
    // The fixtures' cluster events are about "orders-cluster".
    let key = network.aurora_cluster("orders-cluster").await;
    let document = provision(&network, &network.settings(), &key).await.unwrap();
    let tg = str_of(&document, "/target_group/arn").to_owned();
    let (old_writer, new_writer) =
        (network.interface_ip_in_zone("us-east-1b").await, network.interface_ip_in_zone("us-east-1a").await);
    assert_eq!(targets(&network, &tg).await, [old_writer.clone()]);

    aws_sdk_rds::Client::new(&network.sdk)
        .failover_db_cluster()
        .db_cluster_identifier("orders-cluster")
        .send()
        .await
        .unwrap();
    // The failover's first event: the new writer is registered, the old one (now a reader,
    // still healthy) kept until the new target is healthy.
    let first = sync(&network, fixture("rds-cluster-event-0073-failover-started")).await;
    assert_eq!(first["instances"][0]["db_instance_identifier"], key);
    assert_eq!(first["instances"][0]["registered"], json!([new_writer]));
    assert_eq!(first["instances"][0]["deregistered"], json!([]));
    let mut both = vec![old_writer.clone(), new_writer.clone()];
    both.sort();
    assert_eq!(targets(&network, &tg).await, both);
    // The next events and runs remove the old writer once the new target is healthy (the
    // emulator's `initial` lasts one DescribeTargetHealth answer).
    let mut removed = json!([]);
    for event in [fixture("rds-cluster-event-0071-failover-completed"), json!({"detail-type": "Scheduled Event"})] {
        let report = sync(&network, event).await;
        assert_eq!(report["instances"][0]["registered"], json!([]));
        removed = report["instances"][0]["deregistered"].clone();
        if removed != json!([]) {
            break;
        }
    }
    assert_eq!(removed, json!([old_writer]));
    assert_eq!(targets(&network, &tg).await, [new_writer]);
    assert_eq!(metrics_by(&network, "DBCluster", "orders-cluster").await, ["TargetsDeregistered", "TargetsRegistered"]);
    // An instance event of the same name is about another database.
    let instance_event = json!({"detail": {"SourceType": "DB_INSTANCE", "SourceIdentifier": "rds:orders-cluster"}});
    assert_eq!(sync(&network, instance_event).await["instances"], json!([]));
}
