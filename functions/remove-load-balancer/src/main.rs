//! Lambda function for teardown step 2, the load balancer: wiring only; the step is
//! `tidb_privatelink::teardown::load_balancer`.

use tidb_privatelink::teardown::load_balancer::RemoveLoadBalancer;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<RemoveLoadBalancer>().await
}
