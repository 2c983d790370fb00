//! Lambda function on the stack's connection topic: accepts TiDB Cloud's endpoint connection
//! requests and rejects all others. Wiring only; the logic is `tidb_privatelink::acceptor`, its events
//! are read by `tidb_privatelink_lambda::acceptor`.

use tidb_privatelink::acceptor::AcceptConnections;
use tidb_privatelink_lambda::{acceptor, serve_step_adapted};

#[tokio::main]
async fn main() -> Result<(), tidb_privatelink_lambda::Error> {
    serve_step_adapted::<AcceptConnections, _>(acceptor::trigger).await
}
