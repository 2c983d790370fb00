//! Lambda function for teardown step 0, the TiDB Cloud connection: wiring only; the step is
//! `tidb_privatelink::teardown::tidb_cloud_connection`.

use tidb_privatelink::runtime::serve_step;
use tidb_privatelink::teardown::tidb_cloud_connection::RemoveTiDBCloudConnection;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<RemoveTiDBCloudConnection>().await
}
