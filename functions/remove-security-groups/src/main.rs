//! Lambda function for teardown step 4, the security groups: wiring only; the step is
//! `tidb_privatelink::teardown::security_groups`.

use tidb_privatelink::teardown::security_groups::RemoveSecurityGroups;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<RemoveSecurityGroups>().await
}
