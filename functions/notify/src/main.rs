//! Lambda function on Step Functions' execution status changes: tells the stack's notification
//! topic how each workflow ended. Wiring only; the logic is `tidb_privatelink::notify`.

use tidb_privatelink::notify::Notify;
use tidb_privatelink::runtime::serve_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<Notify>().await
}
