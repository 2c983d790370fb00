//! Lambda function for teardown step 3, the target group: wiring only; the step is
//! `tidb_privatelink::teardown::target_group`.

use tidb_privatelink::teardown::target_group::RemoveTargetGroup;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<RemoveTargetGroup>().await
}
