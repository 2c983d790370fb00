//! Lambda function for provisioning step 5's health wait, target health: wiring only; the step is
//! `tidb_privatelink::steps::health_check`.

use tidb_privatelink::runtime::serve_step;
use tidb_privatelink::steps::health_check::CheckTargetHealth;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<CheckTargetHealth>().await
}
