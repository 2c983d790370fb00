//! Lambda function on RDS instance events and a schedule: keeps each target group on its
//! database's current address. Wiring only; the logic is `tidb_privatelink::sync_targets`.

use tidb_privatelink::runtime::serve_step;
use tidb_privatelink::sync_targets::SyncTargets;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<SyncTargets>().await
}
