//! Lambda function for teardown step 1, the endpoint service: wiring only; the step is
//! `tidb_privatelink::teardown::endpoint_service`.

use tidb_privatelink::runtime::serve_step;
use tidb_privatelink::teardown::endpoint_service::RemoveEndpointService;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<RemoveEndpointService>().await
}
