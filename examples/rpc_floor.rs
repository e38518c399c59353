//! The cost of a unary gRPC call itself, with nothing behind it: TASKS
//! tasks (16), each on a connection of its own, call the standard health
//! check (`grpc.health.v1.Health/Check`) CALLS times in all (100,000), the
//! client shape of peerbench's `pub-conc` scenario. `scripts/publish-cpu.sh`
//! runs it against the same server before the publishes, so the server's
//! CPU per health check, the floor under any unary RPC, is printed beside
//! its CPU per one-event Publish.
//!
//! ```text
//! cargo run --release --example rpc_floor -- HOST:PORT [CALLS] [TASKS]
//! ```

use std::time::Instant;

use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .ok_or("usage: rpc_floor HOST:PORT [CALLS] [TASKS]")?;
    let calls: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let tasks: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(16);
    let mut clients = Vec::new();
    for _ in 0..tasks {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        clients.push(HealthClient::new(channel));
    }
    let started = Instant::now();
    let mut running = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        // The calls split as evenly as they go; the first tasks take the rest.
        let mine = calls / tasks + u64::from((i as u64) < calls % tasks);
        running.push(tokio::spawn(async move {
            for _ in 0..mine {
                client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for task in running {
        task.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{calls} health checks over {tasks} connections in {secs:.2} s: {:.0} calls/s",
        calls as f64 / secs
    );
    Ok(())
}
