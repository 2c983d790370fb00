//! Lambda function for provisioning step 1, inspect the database: wiring only; the step is
//! `tidb_privatelink::steps::inspect_database`.

use tidb_privatelink::steps::inspect_database::InspectDatabase;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<InspectDatabase>().await
}
