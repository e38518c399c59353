//! Connection limits and timeouts: silent connections are closed after the
//! handshake timeout, idle ones after the idle timeout (an open stream is
//! not idle), dead peers by HTTP/2 keepalive; connections over the limit
//! are closed at once; at the open-file limit the accept loop backs off
//! instead of spinning; shutdown does not wait for silent connections.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use herald::proto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const LIST_TOPICS: &str = "/herald.v1.AdminService/ListTopics";

/// Reads (and drops) whatever the server sends until it closes the
/// connection; returns the bytes read, or `None` if it is still open after
/// `within`.
async fn read_until_closed(tcp: &mut TcpStream, within: Duration) -> Option<usize> {
    let mut total = 0;
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .ok()
}

/// A ListTopics call on `conn` succeeds.
async fn assert_serves(conn: &mut raw::RawConn) {
    let response = conn
        .call(
            LIST_TOPICS,
            raw::encode(&proto::ListTopicsRequest::default()),
        )
        .await;
    let (code, message) = response.code().await;
    assert_eq!(code, Code::Ok, "{message}");
}

async fn publish_one(addr: SocketAddr, topic: &str, id: &str) {
    let channel = connect(addr).await;
    proto::publisher_service_client::PublisherServiceClient::new(channel)
        .publish(proto::PublishRequest {
            topic: topic.into(),
            events: vec![event(id)],
        })
        .await
        .expect("publish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_the_handshake_timeout_without_blocking_others() {
    let handshake = Duration::from_secs(2);
    let server = TestServer::start_with(|c| c.server.handshake_timeout = handshake).await;
    let addr = server.addr();
    let mut handshaken = raw::connect(addr).await;

    // Hundreds of connections that never send the preface; some stop
    // half-way through it.
    let opened = Instant::now();
    let mut silent = Vec::new();
    for i in 0..300 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        if i % 10 == 0 {
            tcp.write_all(&PREFACE[..16]).await.unwrap();
        }
        silent.push(tcp);
    }
    // Meanwhile a normal client is served.
    publish_one(addr, "t", "a").await;
    assert_serves(&mut handshaken).await;
    assert!(
        opened.elapsed() < handshake,
        "the checks above ran while the silent connections were open"
    );

    let closing: Vec<_> = silent
        .into_iter()
        .map(|mut tcp| {
            tokio::spawn(async move {
                read_until_closed(&mut tcp, Duration::from_secs(10))
                    .await
                    .map(|_| Instant::now())
            })
        })
        .collect();
    let mut closed_at = Vec::new();
    for task in closing {
        closed_at.push(
            task.await
                .unwrap()
                .expect("a silent connection was left open"),
        );
    }
    let first = *closed_at.iter().min().unwrap() - opened;
    assert!(
        first >= handshake.mul_f32(0.9),
        "closed after the timeout, not before ({first:?})"
    );
    // A connection that completed its handshake is not affected.
    assert!(!handshaken.is_closed());
    assert_serves(&mut handshaken).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_at_once_while_the_others_keep_working() {
    let server = TestServer::start_with(|c| c.server.max_connections = 4).await;
    let addr = server.addr();
    // The harness's own channel holds one connection; three more fill the limit.
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(raw::connect(addr).await);
    }
    for conn in &mut conns {
        assert_serves(conn).await;
    }

    // Over the limit: closed without a byte of HTTP/2 (an accepted
    // connection would get the server's SETTINGS at once).
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let read = read_until_closed(&mut tcp, Duration::from_secs(3)).await;
        assert_eq!(read, Some(0), "refused: closed before any HTTP/2 frame");
    }

    // The admitted connections keep working.
    for conn in &mut conns {
        assert_serves(conn).await;
    }
    server.publish_n("t", "a", 1).await;

    // A closed connection frees its slot.
    drop(conns.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(PREFACE).await.unwrap();
        let mut byte = [0u8; 1];
        if let Ok(Ok(1)) =
            tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut byte)).await
        {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_but_not_one_with_an_open_stream() {
    let idle = Duration::from_secs(1);
    let server = TestServer::start_with(|c| {
        c.server.idle_timeout = idle;
        // Pings are traffic, not calls: they must not keep a connection open.
        c.server.keepalive_interval = Duration::from_millis(200);
    })
    .await;
    let addr = server.addr();

    // A: one call, then nothing.
    let mut a = raw::connect(addr).await;
    assert_serves(&mut a).await;
    // B: a Subscribe stream that waits longer than the idle timeout.
    let mut b = raw::connect(addr).await;
    let request = proto::SubscribeRequest {
        topic: "t".into(),
        group: "g".into(),
        consumer: "b".into(),
        ..Default::default()
    };
    let mut deliveries = b
        .call(
            "/herald.v1.SubscriberService/Subscribe",
            raw::encode(&request),
        )
        .await;

    tokio::time::sleep(idle / 3).await;
    assert!(!a.is_closed(), "closed before the idle timeout");
    assert!(a.closed_within(idle * 4).await, "idle connection left open");

    tokio::time::sleep(idle * 2).await;
    assert!(
        !b.is_closed(),
        "a connection with an open stream was closed"
    );
    publish_one(addr, "t", "late").await;
    let message = tokio::time::timeout(Duration::from_secs(5), deliveries.message())
        .await
        .expect("a delivery in time")
        .expect("the stream is open");
    let batch = <proto::SubscribeResponse as prost::Message>::decode(message).unwrap();
    assert_eq!(ids(&batch.deliveries), vec!["late".to_string()]);

    // Once the stream is cancelled, B is idle too.
    drop(deliveries);
    assert!(
        b.closed_within(idle * 4).await,
        "left open after its stream ended"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_pings_is_disconnected() {
    let server = TestServer::start_with(|c| {
        c.server.idle_timeout = Duration::ZERO;
        c.server.keepalive_interval = Duration::from_millis(300);
        c.server.keepalive_timeout = Duration::from_millis(300);
    })
    .await;
    // A complete handshake (preface and SETTINGS), then never a PING ack.
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(PREFACE).await.unwrap();
    tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let started = Instant::now();
    let read = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(read.is_some(), "a dead peer was never disconnected");
    assert!(started.elapsed() >= Duration::from_millis(300));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_connections_in_their_handshake() {
    let server =
        TestServer::start_with(|c| c.server.handshake_timeout = Duration::from_secs(60)).await;
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(TcpStream::connect(server.addr()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown waited {:?} for silent connections",
        started.elapsed()
    );
}

/// CPU time (user + system) of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 of the whole line, in clock ticks (100 per second).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_open_file_limit_the_server_backs_off_and_lets_clients_in_again() {
    let dir = tempfile::tempdir().unwrap();
    // 128 open files, soft and hard, so the server cannot raise it.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 128 && exec "$0" --log-format json serve --listen 127.0.0.1:0 --data-dir "$1""#)
        .arg(env!("CARGO_BIN_EXE_herald"))
        .arg(dir.path())
        .env("HERALD_SERVER__HANDSHAKE_TIMEOUT", "2s")
        .env("HERALD_HTTP__ENABLED", "false")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald");
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("server printed its address").unwrap();
        if line.contains("herald is serving") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            break v["fields"]["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });

    // More silent connections than the server has file descriptors.
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (cpu, wall) = (cpu_time(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy = (cpu_time(pid) - cpu).as_secs_f64() / wall.elapsed().as_secs_f64();
    let backing_off = |log: &[String]| {
        log.iter()
            .filter(|l| l.contains("accepting connections failed; backing off"))
            .count()
    };
    assert!(
        busy < 0.3,
        "the accept loop spins: {:.0}% CPU",
        busy * 100.0
    );

    // Silent connections time out and free their descriptors: a client gets in.
    let served = tokio::time::timeout(Duration::from_secs(20), publish_one(addr, "t", "in")).await;
    assert!(served.is_ok(), "a client was locked out");
    let warnings = backing_off(&log.lock().unwrap());
    assert!(warnings >= 1, "the server reached its open-file limit");
    assert!(warnings <= 3, "the backoff warning is rate-limited");
    drop(silent);
    child.kill().unwrap();
    child.wait().unwrap();
}
