//! Lambda function for provisioning step 2, plan zones: wiring only; the step is
//! `tidb_privatelink::steps::plan_zones`.

use tidb_privatelink::runtime::serve_step;
use tidb_privatelink::steps::plan_zones::PlanZones;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<PlanZones>().await
}
