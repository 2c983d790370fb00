//! The zero-touch flow with TiDB Cloud's API (its double, acting as TiDB Cloud's AWS account in
//! the emulator): the stack knows only the cluster and the API key's secret, not TiDB Cloud's
//! account or zones. Provisioning reads those from the API, creates the private link connection,
//! the acceptor accepts exactly TiDB Cloud's endpoint, and the connection turns ACTIVE; teardown
//! deletes it first. Wrong keys and a failing connection end with named errors.

mod common;

use aws_config::SdkConfig;
use common::*;
use serde_json::{json, Value};
use tidb_privatelink::acceptor::{AcceptConnections, Awaited, Trigger};
use tidb_privatelink::steps::tidb_cloud_connection::ConnectTiDBCloud;
use tidb_privatelink::Settings;
use tidb_privatelink::Step;

/// Stores the key pair as the stack's secret and returns settings that link `CLUSTER` through the
/// API (at `api_url`): no TiDB Cloud account or zones configured.
async fn api_settings(network: &Network, private_key: &str, api_url: &str) -> Settings {
    let secret_arn = store_api_key(&network.sdk, private_key).await;
    Settings {
        tidb_cloud_account_id: None,
        tidb_cloud_az_ids: vec![],
        tidb_cloud_cluster_id: Some(CLUSTER.into()),
        tidb_cloud_api_key_secret_arn: Some(secret_arn),
        tidb_cloud_api_url: Some(api_url.to_owned()),
        ..network.settings()
    }
}

async fn double_state() -> Value {
    let url = format!("{}/_double/state", tidb_cloud_double());
    let reply = tokio::task::spawn_blocking(move || http_get_url(&url)).await.unwrap();
    serde_json::from_str(&reply).unwrap()
}

async fn set_fault(double: &str, faults: Value) {
    let url = format!("{double}/_double/faults");
    tokio::task::spawn_blocking(move || http_post_url(&url, &faults.to_string())).await.unwrap();
}

/// Runs the connection step again, as the state machine's poll does (every second here), until
/// `until` holds. An accepted endpoint stays `pending` for a few seconds before TiDB Cloud sees it.
async fn poll(settings: &Settings, sdk: &SdkConfig, document: &mut Value, until: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..30 {
        let connection = run_step::<ConnectTiDBCloud>(settings, sdk, document, "tidb_cloud").await.unwrap();
        if until(&connection) {
            return connection;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    panic!("the connection never reached the state: {}", document["tidb_cloud"]);
}

/// The acceptor, triggered by the provisioning's announcement that it awaits the acceptance.
async fn announce_wait(network: &Network, settings: &Settings, document: &Value) -> Value {
    let awaited = Awaited {
        service_id: document["endpoint_service"]["service_id"].as_str().unwrap().to_owned(),
        endpoint_id: document["tidb_cloud"]["endpoint_id"].as_str().unwrap().to_owned(),
        task_token: "token-of-an-execution-the-emulator-does-not-run".into(),
    };
    let acceptor = AcceptConnections::new(&network.sdk, settings).unwrap();
    serde_json::to_value(acceptor.run(Trigger::Awaited(awaited)).await.unwrap()).unwrap()
}

#[tokio::test]
async fn tagging_is_the_only_act_from_the_api_to_active_and_back() {
    let network = Network::new().await;
    let settings = api_settings(&network, PRIVATE_KEY, tidb_cloud_double()).await;
    let id = network.database("orders-db", "mysql", false).await;
    let requests_before = double_state().await["requests"].as_u64().unwrap();

    let mut document = provision(&network, &settings, &id).await.unwrap();
    // TiDB Cloud's account and zones came from the API.
    assert_eq!(document["zones"]["tidb_cloud_account_id"], TIDB_CLOUD_ACCOUNT);
    assert_eq!(document["endpoint_service"]["allowed_principal"], format!("arn:aws:iam::{TIDB_CLOUD_ACCOUNT}:root"));
    assert_eq!(document["tidb_cloud"]["configured"], true);

    let pending = poll(&settings, &network.sdk, &mut document, |c| c["state"] == "PENDING_ACCEPTANCE").await;
    let endpoint = pending["endpoint_id"].as_str().unwrap().to_owned();

    let decisions = announce_wait(&network, &settings, &document).await;
    assert_eq!(decisions["decisions"][0]["vpc_endpoint_id"], endpoint);
    assert_eq!(decisions["decisions"][0]["accepted"], true);
    // Accepted (the connection is `pending` now, `available` only later), so the waiting
    // execution is resumed at once (the emulator's Step Functions takes any token; the local
    // stack's end-to-end test resumes a real one).
    assert_eq!(decisions["resumed"], true);
    // A repeated announcement finds nothing pending and resumes again harmlessly.
    let again = announce_wait(&network, &settings, &document).await;
    assert_eq!(again["decisions"], json!([]));

    poll(&settings, &network.sdk, &mut document, |c| c["state"] == "ACTIVE").await;
    let requests = double_state().await["requests"].as_u64().unwrap() - requests_before;
    println!("requests to TiDB Cloud for one provisioning: {requests}");

    let removed = deprovision(&network, &settings, &id).await.unwrap();
    assert_eq!(removed["tidb_cloud_connection"]["removed"], json!([document["tidb_cloud"]["connection_id"]]));
    assert!(managed_resources(&network).await.is_empty());
    let connections = double_state().await["connections"].clone();
    assert!(
        !connections.to_string().contains(document["tidb_cloud"]["connection_id"].as_str().unwrap()),
        "{connections}"
    );
}

#[tokio::test]
async fn wrong_keys_fail_clearly_before_anything_is_created() {
    let network = Network::new().await;
    let settings = api_settings(&network, "not-the-private-key", tidb_cloud_double()).await;
    let id = network.database("orders-db", "mysql", false).await;
    let error = provision(&network, &settings, &id).await.unwrap_err();
    assert_eq!(error.name(), "TiDBCloudUnauthorized", "{error}");
    assert!(!error.to_string().contains("not-the-private-key"), "{error}");
    assert!(managed_resources(&network).await.is_empty());
}

#[tokio::test]
async fn a_failed_connection_is_created_once_more_then_fails_with_tidb_clouds_message() {
    let network = Network::new().await;
    let double = start_tidb_cloud_double();
    let settings = api_settings(&network, PRIVATE_KEY, &double).await;
    let id = network.database("orders-db", "mysql", false).await;
    set_fault(&double, json!({"fail_next_create": "endpoint service is not ready"})).await;
    let mut document = provision(&network, &settings, &id).await.unwrap();
    let first = document["tidb_cloud"]["connection_id"].clone();

    let retried = poll(&settings, &network.sdk, &mut document, |c| c["recreated"] == true).await;
    assert_eq!(retried["state"], "DELETING");
    set_fault(&double, json!({"fail_next_create": "endpoint service is not ready"})).await;
    let mut error = None;
    for _ in 0..10 {
        match run_step::<ConnectTiDBCloud>(&settings, &network.sdk, &mut document, "tidb_cloud").await {
            Ok(connection) => {
                assert_ne!(connection["connection_id"], first, "a new connection once the failed one is gone")
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let error = error.expect("the second failure ends the workflow");
    assert_eq!(error.name(), "TiDBCloudConnectionFailed", "{error}");
    assert!(error.to_string().contains("endpoint service is not ready"), "{error}");
}
