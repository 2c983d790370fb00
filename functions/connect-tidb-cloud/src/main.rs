//! Lambda function for provisioning steps 7 and 8, the TiDB Cloud connection: wiring only; the step is
//! `tidb_privatelink::steps::tidb_cloud_connection`.

use tidb_privatelink::runtime::serve_step;
use tidb_privatelink::steps::tidb_cloud_connection::ConnectTiDBCloud;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<ConnectTiDBCloud>().await
}
