//! Lambda function for teardown step 2, the load balancer: wiring only; the step is
//! `tidb_privatelink::teardown::load_balancer`.

use tidb_privatelink::runtime::serve_step;
use tidb_privatelink::teardown::load_balancer::RemoveLoadBalancer;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<RemoveLoadBalancer>().await
}
