//! Lambda function on the stack's connection topic: accepts TiDB Cloud's endpoint connection
//! requests and rejects all others. Wiring only; the logic is `tidb_privatelink::acceptor`.

use tidb_privatelink::acceptor::AcceptConnections;
use tidb_privatelink::runtime::serve_step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    serve_step::<AcceptConnections>().await
}
