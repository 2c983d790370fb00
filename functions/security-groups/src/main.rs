//! Lambda function for provisioning step 4, security groups: wiring only; the step is
//! `tidb_privatelink::steps::security_groups`.

use tidb_privatelink::runtime::serve_step;
use tidb_privatelink::steps::security_groups::CreateSecurityGroups;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<CreateSecurityGroups>().await
}
