//! Lambda function on Step Functions' execution status changes: tells the stack's notification
//! topic how each workflow ended. Wiring only; the logic is `tidb_privatelink::notify`.

use tidb_privatelink::notify::Notify;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<Notify>().await
}
