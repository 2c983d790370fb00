//! Lambda function for teardown step 3, the target group: wiring only; the step is
//! `tidb_privatelink::teardown::target_group`.

use tidb_privatelink::runtime::serve_step;
use tidb_privatelink::teardown::target_group::RemoveTargetGroup;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<RemoveTargetGroup>().await
}
