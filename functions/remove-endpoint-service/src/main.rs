//! Lambda function for teardown step 1, the endpoint service: wiring only; the step is
//! `tidb_privatelink::teardown::endpoint_service`.

use tidb_privatelink::teardown::endpoint_service::RemoveEndpointService;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<RemoveEndpointService>().await
}
