//! Lambda function on RDS instance events and a schedule: keeps each target group on its
//! database's current address. Wiring only; the logic is `tidb_privatelink::sync_targets`.

use tidb_privatelink::sync_targets::SyncTargets;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<SyncTargets>().await
}
