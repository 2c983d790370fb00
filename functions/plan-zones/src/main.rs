//! Lambda function for provisioning step 2, plan zones: wiring only; the step is
//! `tidb_privatelink::steps::plan_zones`.

use tidb_privatelink::steps::plan_zones::PlanZones;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<PlanZones>().await
}
