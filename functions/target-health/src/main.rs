//! Lambda function for provisioning step 5's health wait, target health: wiring only; the step is
//! `tidb_privatelink::steps::health_check`.

use tidb_privatelink::steps::health_check::CheckTargetHealth;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<CheckTargetHealth>().await
}
