//! Lambda function for provisioning steps 7 and 8, the TiDB Cloud connection: wiring only; the step is
//! `tidb_privatelink::steps::tidb_cloud_connection`.

use tidb_privatelink::steps::tidb_cloud_connection::ConnectTiDBCloud;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<ConnectTiDBCloud>().await
}
