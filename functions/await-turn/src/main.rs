//! Lambda function, first state of both workflows: one workflow at a time per RDS instance.
//! Wiring only; the logic is `tidb_privatelink::turn`.

use tidb_privatelink::turn::AwaitTurn;
use tidb_privatelink_lambda::serve_step;

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step::<AwaitTurn>().await
}
