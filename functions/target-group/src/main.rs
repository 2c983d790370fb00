//! Lambda function for provisioning step 3, target group: wiring only; the step is
//! `tidb_privatelink::steps::target_group`.

use tidb_privatelink::steps::target_group::CreateTargetGroup;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<CreateTargetGroup>().await
}
