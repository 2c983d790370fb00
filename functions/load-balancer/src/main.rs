//! Lambda function for provisioning step 5, load balancer: wiring only; the step is
//! `tidb_privatelink::steps::load_balancer`.

use tidb_privatelink::runtime::serve_step;
use tidb_privatelink::steps::load_balancer::CreateLoadBalancer;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<CreateLoadBalancer>().await
}
