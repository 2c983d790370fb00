//! Lambda function for provisioning step 6, endpoint service: wiring only; the step is
//! `tidb_privatelink::steps::endpoint_service`.

use tidb_privatelink::steps::endpoint_service::CreateEndpointService;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<CreateEndpointService>().await
}
