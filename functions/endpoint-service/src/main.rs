//! Lambda function for provisioning step 6, endpoint service: wiring only; the step is
//! `tidb_privatelink::steps::endpoint_service`.

use tidb_privatelink::runtime::serve_step;
use tidb_privatelink::steps::endpoint_service::CreateEndpointService;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<CreateEndpointService>().await
}
