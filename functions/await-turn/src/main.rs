//! Lambda function, first state of both workflows: one workflow at a time per RDS instance.
//! Wiring only; the logic is `tidb_privatelink::turn`.

use tidb_privatelink::runtime::serve_step;
use tidb_privatelink::turn::AwaitTurn;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<AwaitTurn>().await
}
