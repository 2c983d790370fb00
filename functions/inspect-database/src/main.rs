//! Lambda function for provisioning step 1, inspect the database: wiring only; the step is
//! `tidb_privatelink::steps::inspect_database`.

use tidb_privatelink::runtime::serve_step;
use tidb_privatelink::steps::inspect_database::InspectDatabase;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<InspectDatabase>().await
}
