//! Lambda function for teardown step 4, the security groups: wiring only; the step is
//! `tidb_privatelink::teardown::security_groups`.

use tidb_privatelink::runtime::serve_step;
use tidb_privatelink::teardown::security_groups::RemoveSecurityGroups;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<RemoveSecurityGroups>().await
}
