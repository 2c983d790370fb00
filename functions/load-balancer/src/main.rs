//! Lambda function for provisioning step 5, load balancer: wiring only; the step is
//! `tidb_privatelink::steps::load_balancer`.

use tidb_privatelink::steps::load_balancer::CreateLoadBalancer;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<CreateLoadBalancer>().await
}
