//! The acceptor against the emulator: TiDB Cloud's account (and only it) gets its endpoint
//! connection accepted; another account's request is rejected even when someone allowed it by
//! hand; services the stack does not manage are left alone; a repeated notification is harmless.

mod common;

use aws_sdk_ec2::types::Filter;
use common::*;
use tidb_privatelink::acceptor::{AcceptConnections, Awaited, Notification, Trigger};
use tidb_privatelink::naming::TIDB_CLOUD_ENDPOINT_TAG;
use tidb_privatelink::Step;

/// The connection notification of fixtures/sns-connection-notification.json, as the acceptor's
/// Lambda layer reads it.
fn notification() -> Trigger {
    Trigger::Notified(vec![Notification {
        message_id: "95df01b4-ee98-5cb9-9903-4c221d41eb5e".into(),
        topic_arn: "arn:aws:sns:us-east-1:123456789012:tidb-privatelink-ConnectionTopic-1A2B3C4D5E6F".into(),
    }])
}

/// Runs the acceptor once, as one notification's delivery would; returns (endpoint, accepted) pairs.
async fn accept(network: &Network) -> Vec<(String, bool)> {
    let acceptor = AcceptConnections::new(&network.sdk, &network.settings()).unwrap();
    let decisions = acceptor.run(notification()).await.unwrap();
    decisions.decisions.into_iter().map(|d| (d.vpc_endpoint_id, d.accepted)).collect()
}

/// The endpoint's state as its owner sees it.
async fn endpoint_state(consumer: &aws_config::SdkConfig, endpoint_id: &str) -> String {
    let out =
        aws_sdk_ec2::Client::new(consumer).describe_vpc_endpoints().vpc_endpoint_ids(endpoint_id).send().await.unwrap();
    out.vpc_endpoints()[0].state().unwrap().as_str().to_owned()
}

async fn provisioned_service(network: &Network) -> (String, String) {
    provisioned_service_of(network, "orders-db").await
}

async fn provisioned_service_of(network: &Network, identifier: &str) -> (String, String) {
    let id = network.database(identifier, "mysql", false).await;
    let document = provision(network, &network.settings(), &id).await.unwrap();
    (
        str_of(&document, "/endpoint_service/service_id").to_owned(),
        str_of(&document, "/endpoint_service/service_name").to_owned(),
    )
}

#[tokio::test]
async fn tidb_clouds_request_is_accepted_and_a_repeat_changes_nothing() {
    let network = Network::new().await;
    let (_, service_name) = provisioned_service(&network).await;
    let tidb_cloud = account(TIDB_CLOUD_ACCOUNT).await;
    let endpoint = request_connection(&tidb_cloud, &service_name).await;

    // Accepted: AWS shows the connection `pending` before `available`.
    assert_eq!(accept(&network).await, [(endpoint.clone(), true)]);
    assert_eq!(endpoint_state(&tidb_cloud, &endpoint).await, "pending");

    // The same notification again (SNS delivers at least once), or a late one: nothing to do.
    assert_eq!(accept(&network).await, []);
    assert_eq!(endpoint_state(&tidb_cloud, &endpoint).await, "pending");
}

#[tokio::test]
async fn another_accounts_request_is_rejected_even_when_allowed_by_hand() {
    let network = Network::new().await;
    let (service_id, service_name) = provisioned_service(&network).await;
    let intruder = fresh_account().await;
    let intruder_id = aws_sdk_sts::Client::new(&intruder).get_caller_identity().send().await.unwrap();
    aws_sdk_ec2::Client::new(&network.sdk)
        .modify_vpc_endpoint_service_permissions()
        .service_id(&service_id)
        .add_allowed_principals(format!("arn:aws:iam::{}:root", intruder_id.account().unwrap()))
        .send()
        .await
        .unwrap();
    let endpoint = request_connection(&intruder, &service_name).await;

    assert_eq!(accept(&network).await, [(endpoint.clone(), false)]);
    assert_eq!(endpoint_state(&intruder, &endpoint).await, "rejected");
}

#[tokio::test]
async fn services_the_stack_does_not_manage_are_left_alone() {
    let network = Network::new().await;
    provisioned_service(&network).await;
    // A service of the customer's own, on a load balancer of their own, that also allows TiDB Cloud.
    let ec2 = aws_sdk_ec2::Client::new(&network.sdk);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&network.sdk);
    let lb = elb
        .create_load_balancer()
        .name("customer-nlb")
        .r#type(aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum::Network)
        .scheme(aws_sdk_elasticloadbalancingv2::types::LoadBalancerSchemeEnum::Internal)
        .subnets(&network.subnets[1].0)
        .send()
        .await
        .unwrap();
    let service = ec2
        .create_vpc_endpoint_service_configuration()
        .acceptance_required(true)
        .network_load_balancer_arns(lb.load_balancers()[0].load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    let service = service.service_configuration().unwrap();
    ec2.modify_vpc_endpoint_service_permissions()
        .service_id(service.service_id().unwrap())
        .add_allowed_principals(format!("arn:aws:iam::{TIDB_CLOUD_ACCOUNT}:root"))
        .send()
        .await
        .unwrap();
    let tidb_cloud = account(TIDB_CLOUD_ACCOUNT).await;
    let endpoint = request_connection(&tidb_cloud, service.service_name().unwrap()).await;

    assert_eq!(accept(&network).await, []);
    assert_eq!(endpoint_state(&tidb_cloud, &endpoint).await, "pendingAcceptance");
    let connections = ec2
        .describe_vpc_endpoint_connections()
        .filters(Filter::builder().name("service-id").values(service.service_id().unwrap()).build())
        .send()
        .await
        .unwrap();
    assert_eq!(connections.vpc_endpoint_connections()[0].vpc_endpoint_state().unwrap().as_str(), "pendingAcceptance");
}

#[tokio::test]
async fn a_known_endpoint_id_is_the_only_one_accepted() {
    let network = Network::new().await;
    let (service_id, service_name) = provisioned_service(&network).await;
    let tidb_cloud = account(TIDB_CLOUD_ACCOUNT).await;
    let expected = request_connection(&tidb_cloud, &service_name).await;
    let stray = request_connection(&tidb_cloud, &service_name).await;
    aws_sdk_ec2::Client::new(&network.sdk)
        .create_tags()
        .resources(&service_id)
        .tags(aws_sdk_ec2::types::Tag::builder().key(TIDB_CLOUD_ENDPOINT_TAG).value(&expected).build())
        .send()
        .await
        .unwrap();

    let mut decisions = accept(&network).await;
    decisions.sort();
    let mut want = vec![(expected.clone(), true), (stray.clone(), false)];
    want.sort();
    assert_eq!(decisions, want);
    assert_eq!(endpoint_state(&tidb_cloud, &expected).await, "pending");
    assert_eq!(endpoint_state(&tidb_cloud, &stray).await, "rejected");
}

#[tokio::test]
async fn an_announced_wait_answers_its_own_service_alone() {
    let network = Network::new().await;
    let (service_id, service_name) = provisioned_service_of(&network, "orders-db").await;
    let (_, other_service_name) = provisioned_service_of(&network, "billing-db").await;
    let tidb_cloud = account(TIDB_CLOUD_ACCOUNT).await;
    let endpoint = request_connection(&tidb_cloud, &service_name).await;
    let other_endpoint = request_connection(&tidb_cloud, &other_service_name).await;

    // A wave announces a hundred waits at once: each looks at its own service, not at all of them.
    let acceptor = AcceptConnections::new(&network.sdk, &network.settings()).unwrap();
    let awaited = Awaited { service_id, endpoint_id: endpoint.clone(), task_token: "token-of-no-execution".into() };
    let decisions = acceptor.run(Trigger::Awaited(awaited)).await.unwrap();
    let decided: Vec<_> = decisions.decisions.into_iter().map(|d| (d.vpc_endpoint_id, d.accepted)).collect();
    assert_eq!(decided, [(endpoint.clone(), true)]);
    assert_eq!(endpoint_state(&tidb_cloud, &endpoint).await, "pending");
    assert_eq!(endpoint_state(&tidb_cloud, &other_endpoint).await, "pendingAcceptance");

    // A notification still answers every service that has a request waiting.
    assert_eq!(accept(&network).await, [(other_endpoint.clone(), true)]);
    assert_eq!(endpoint_state(&tidb_cloud, &other_endpoint).await, "pending");
}
