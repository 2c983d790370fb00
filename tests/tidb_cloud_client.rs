//! The TiDB Cloud client against the TiDB Cloud double (`tests/tidb_cloud_double/`), which acts as
//! TiDB Cloud's AWS account in the emulator: the key pair comes from Secrets Manager, digest
//! authentication is answered, and a connection goes CREATING -> PENDING_ACCEPTANCE -> ACTIVE when
//! the service owner accepts TiDB Cloud's endpoint, then DELETING -> gone.

mod common;

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_elasticloadbalancingv2::types::{LoadBalancerSchemeEnum, LoadBalancerTypeEnum};
use common::*;
use tidb_privatelink::tidb_cloud::{ClientOptions, ConnectionState, TiDBCloud};

/// A fresh account holding the key pair as the stack's secret; `None` keeps the right one.
async fn account_with_secret(private_key: Option<&str>) -> SdkConfig {
    let sdk = fresh_account().await;
    store_api_key(&sdk, private_key.unwrap_or(PRIVATE_KEY)).await;
    sdk
}

fn options() -> ClientOptions {
    ClientOptions {
        base_url: tidb_cloud_double().to_owned(),
        timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

/// An NLB in the network's three zones and an endpoint service on it that requires acceptance and
/// allows TiDB Cloud's account: what the provisioning builds, made directly.
async fn endpoint_service(network: &Network) -> (String, String) {
    let subnets: Vec<String> = network.subnets.iter().map(|s| s.0.clone()).collect();
    let nlb = aws_sdk_elasticloadbalancingv2::Client::new(&network.sdk)
        .create_load_balancer()
        .name("orders-nlb")
        .r#type(LoadBalancerTypeEnum::Network)
        .scheme(LoadBalancerSchemeEnum::Internal)
        .set_subnets(Some(subnets))
        .send()
        .await
        .unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&network.sdk);
    let service = ec2
        .create_vpc_endpoint_service_configuration()
        .network_load_balancer_arns(nlb.load_balancers()[0].load_balancer_arn().unwrap())
        .acceptance_required(true)
        .send()
        .await
        .unwrap();
    let service = service.service_configuration().unwrap();
    let id = service.service_id().unwrap().to_owned();
    ec2.modify_vpc_endpoint_service_permissions()
        .service_id(&id)
        .add_allowed_principals(format!("arn:aws:iam::{TIDB_CLOUD_ACCOUNT}:root"))
        .send()
        .await
        .unwrap();
    (id, service.service_name().unwrap().to_owned())
}

#[tokio::test]
async fn a_connection_goes_from_creating_to_active_once_accepted() {
    let network = Network::new().await;
    let sdk = account_with_secret(None).await;
    let tidb = TiDBCloud::with_secret(&sdk, SECRET_NAME, options()).unwrap();
    let (service_id, service_name) = endpoint_service(&network).await;

    let zones = tidb.availability_zones(CLUSTER).await.unwrap();
    assert_eq!(zones.account_id, TIDB_CLOUD_ACCOUNT);
    assert_eq!(zones.az_ids, TIDB_CLOUD_AZ_IDS);

    let created = tidb.create_private_link_connection(CLUSTER, "orders-db", &service_name).await.unwrap();
    assert_eq!(created.state, ConnectionState::Creating);
    let id = created.private_link_connection_id;
    let pending = tidb.get_private_link_connection(CLUSTER, &id).await.unwrap();
    assert_eq!(pending.state, ConnectionState::PendingAcceptance);
    let endpoint = pending.endpoint_id().expect("TiDB Cloud's endpoint").to_owned();
    assert_eq!(
        tidb.find_private_link_connection(CLUSTER, &service_name, None).await.unwrap().unwrap().endpoint_id(),
        Some(endpoint.as_str())
    );

    // The service owner sees exactly that endpoint, from TiDB Cloud's account, and accepts it.
    let ec2 = aws_sdk_ec2::Client::new(&network.sdk);
    let connections = ec2.describe_vpc_endpoint_connections().send().await.unwrap();
    let [connection] = connections.vpc_endpoint_connections() else { panic!("{connections:?}") };
    assert_eq!(connection.vpc_endpoint_id(), Some(endpoint.as_str()));
    assert_eq!(connection.vpc_endpoint_owner(), Some(TIDB_CLOUD_ACCOUNT));
    ec2.accept_vpc_endpoint_connections().service_id(&service_id).vpc_endpoint_ids(&endpoint).send().await.unwrap();
    // Accepted, the endpoint is `pending` for a while: TiDB Cloud still waits, then is ACTIVE.
    assert_eq!(tidb.get_private_link_connection(CLUSTER, &id).await.unwrap().state, ConnectionState::PendingAcceptance);
    let mut state = ConnectionState::PendingAcceptance;
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        state = tidb.get_private_link_connection(CLUSTER, &id).await.unwrap().state;
        if state != ConnectionState::PendingAcceptance {
            break;
        }
    }
    assert_eq!(state, ConnectionState::Active);

    tidb.delete_private_link_connection(CLUSTER, &id).await.unwrap();
    let gone = tidb.get_private_link_connection(CLUSTER, &id).await.unwrap_err();
    assert_eq!(gone.name(), "TiDBCloudNotFound", "{gone}");
    assert!(tidb
        .list_private_link_connections(CLUSTER)
        .await
        .unwrap()
        .iter()
        .all(|c| c.private_link_connection_id != id));
}

#[tokio::test]
async fn a_service_that_does_not_allow_tidb_cloud_fails_with_tidb_clouds_message() {
    let sdk = account_with_secret(None).await;
    let tidb = TiDBCloud::with_secret(&sdk, SECRET_NAME, options()).unwrap();
    let name = "com.amazonaws.vpce.us-east-1.vpce-svc-0000000000000000f";
    let created = tidb.create_private_link_connection(CLUSTER, "nowhere", name).await.unwrap();
    let failed = tidb.get_private_link_connection(CLUSTER, &created.private_link_connection_id).await.unwrap();
    assert_eq!(failed.state, ConnectionState::Failed);
    assert!(failed.message.unwrap_or_default().contains("does not exist or does not allow"));
    tidb.delete_private_link_connection(CLUSTER, &created.private_link_connection_id).await.unwrap();
}

#[tokio::test]
async fn a_wrong_key_in_the_secret_is_unauthorized_and_not_shown() {
    let wrong = "wrong-private-key-77aa";
    let sdk = account_with_secret(Some(wrong)).await;
    let tidb = TiDBCloud::with_secret(&sdk, SECRET_NAME, options()).unwrap();
    let error = tidb.availability_zones(CLUSTER).await.unwrap_err();
    assert_eq!(error.name(), "TiDBCloudUnauthorized");
    assert!(!format!("{error} {error:?}").contains(wrong), "{error}");

    // Once the secret is fixed, the same client (a warm Lambda) reads it again and gets through.
    let right = serde_json::json!({"public_key": PUBLIC_KEY, "private_key": PRIVATE_KEY}).to_string();
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    secrets.put_secret_value().secret_id(SECRET_NAME).secret_string(right).send().await.unwrap();
    assert_eq!(tidb.availability_zones(CLUSTER).await.unwrap().account_id, TIDB_CLOUD_ACCOUNT);
}

#[tokio::test]
async fn a_missing_secret_or_an_unknown_cluster_is_named() {
    let sdk = fresh_account().await;
    let tidb = TiDBCloud::with_secret(&sdk, "no-such-secret", options()).unwrap();
    let error = tidb.availability_zones(CLUSTER).await.unwrap_err();
    assert_eq!(error.name(), "Misconfigured", "{error}");
    assert!(error.to_string().contains("no-such-secret"), "{error}");

    let sdk = account_with_secret(None).await;
    let tidb = TiDBCloud::with_secret(&sdk, SECRET_NAME, options()).unwrap();
    let error = tidb.availability_zones("999").await.unwrap_err();
    assert_eq!(error.name(), "TiDBCloudNotFound", "{error}");
}
