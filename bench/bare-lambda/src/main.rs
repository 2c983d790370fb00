//! The cold-start baseline of scripts/bench: what any Rust Lambda with these SDK clients pays
//! (the runtime, aws-config's credential and region chain, an RDS and an EC2 client, as
//! inspect-database builds them), and, per invocation, the one DescribeDBInstances call that
//! inspect-database starts with; so that the functions' own cost shows beside it.

use aws_config::BehaviorVersion;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
// The functions' HTTP client (rustls on ring) and logging, so that the baseline carries the same
// TLS stack and subscriber.
use tidb_privatelink::tls::aws_http_client;
use tidb_privatelink_lambda::init_logging;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let sdk = aws_config::defaults(BehaviorVersion::latest()).http_client(aws_http_client()).load().await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    let _ec2 = aws_sdk_ec2::Client::new(&sdk);
    let rds = &rds;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let identifier = event.payload["db_instance_identifier"].as_str().unwrap_or_default().to_owned();
        let found = rds.describe_db_instances().db_instance_identifier(identifier).send().await;
        Ok::<Value, Error>(json!({"found": found.is_ok()}))
    }))
    .await
}
