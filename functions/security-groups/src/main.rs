//! Lambda function for provisioning step 4, security groups: wiring only; the step is
//! `tidb_privatelink::steps::security_groups`.

use tidb_privatelink::steps::security_groups::CreateSecurityGroups;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<CreateSecurityGroups>().await
}
