//! Lambda function for provisioning step 3, target group: wiring only; the step is
//! `tidb_privatelink::steps::target_group`.

use tidb_privatelink::runtime::serve_step;
use tidb_privatelink::steps::target_group::CreateTargetGroup;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<CreateTargetGroup>().await
}
