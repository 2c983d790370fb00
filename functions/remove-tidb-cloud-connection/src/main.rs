//! Lambda function for teardown step 0, the TiDB Cloud connection: wiring only; the step is
//! `tidb_privatelink::teardown::tidb_cloud_connection`.

use tidb_privatelink::teardown::tidb_cloud_connection::RemoveTiDBCloudConnection;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<RemoveTiDBCloudConnection>().await
}
