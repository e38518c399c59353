//! TLS and mutual TLS over real gRPC, with certificates made at test time:
//! the handshake, client certificates required and rejected, the principal
//! a certificate names, certificate reloads (by file watch and by SIGHUP)
//! that leave open streams running, and the connection machinery (handshake
//! timeout, connection limit) over TLS.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::secure::{PrincipalSpec, Protection, SecureServer, plain_channel, write_auth_file};
use herald::cli::pki::{Authority, Subject};
use herald::proto;
use herald::proto::admin_service_client::AdminServiceClient;
use herald::proto::publisher_service_client::PublisherServiceClient;
use herald::proto::subscriber_service_client::SubscriberServiceClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tonic::Code;

/// A call that failed in the transport (TLS), never reaching a handler:
/// tonic reports it as UNKNOWN or UNAVAILABLE; `cause` is part of its error
/// chain.
fn assert_transport_failure(err: &tonic::Status, cause: &str) {
    assert!(
        matches!(err.code(), Code::Unknown | Code::Unavailable),
        "{err:?}"
    );
    let mut chain = String::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        chain.push_str(&format!("{e:?} "));
        source = e.source();
    }
    assert!(chain.contains(cause), "{cause:?} not in {chain}");
}

/// A TLS client config trusting `ca_pem`.
fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Whether the server closes `stream` within `within` (reads hit EOF or
/// an error); `false` if it is still open then.
async fn closed_within(stream: &mut (impl tokio::io::AsyncRead + Unpin), within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn the_handshake_timeout_and_the_connection_limit_hold_over_tls() {
    let server = SecureServer::start(
        Protection {
            tls: true,
            ..Default::default()
        },
        |c| {
            c.server.handshake_timeout = Duration::from_millis(300);
            c.server.max_connections = 3;
        },
    )
    .await;
    let addr = server.addr();
    // Silent before the TLS handshake: closed at the handshake timeout.
    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // TLS done but no HTTP/2 preface: closed too.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(client_config(&server.ca.cert))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    assert!(closed_within(&mut tls, Duration::from_secs(5)).await);
    // The limit counts TLS connections: with 3 open, a 4th is closed at once.
    let mut held = Vec::new();
    for _ in 0..3 {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        held.push(tcp);
    }
    let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut over, Duration::from_millis(200)).await,
        "closed before its handshake timeout"
    );
    drop(held);
    // Slots come back once those close (at their handshake timeout).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ch = server.channel(None, None).await.expect("connects again");
    PublisherServiceClient::new(ch)
        .publish(proto::PublishRequest {
            topic: "t".into(),
            events: vec![common::event("e")],
        })
        .await
        .expect("served");
    server.stop().await;
}

/// The common name of the certificate a new TLS connection to `addr` is
/// served, verified against `ca_pem`.
async fn served_cn(addr: std::net::SocketAddr, ca_pem: &str) -> std::io::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, x509) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    let cn = x509.subject().iter_common_name().next().unwrap();
    Ok(cn.as_str().unwrap().to_string())
}

#[tokio::test]
async fn tls_serves_grpc_and_refuses_plaintext_and_strangers() {
    let server = SecureServer::start(
        Protection {
            tls: true,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let channel = server.channel(None, None).await.expect("TLS connects");
    let resp = PublisherServiceClient::new(channel)
        .publish(proto::PublishRequest {
            topic: "orders".into(),
            events: vec![common::event("e1")],
        })
        .await
        .expect("publish over TLS");
    assert_eq!(resp.into_inner().results[0].offset, 0);
    assert_eq!(
        served_cn(server.addr(), &server.ca.cert).await.unwrap(),
        "first"
    );

    // Plaintext HTTP/2 to a TLS port does not get through.
    if let Ok(ch) = plain_channel(server.addr()).await {
        let err = PublisherServiceClient::new(ch)
            .publish(proto::PublishRequest {
                topic: "plaintext".into(),
                events: vec![common::event("e1")],
            })
            .await
            .unwrap_err();
        assert_transport_failure(&err, "");
    }
    let ch = server.channel(None, None).await.unwrap();
    let topics = AdminServiceClient::new(ch)
        .list_topics(proto::ListTopicsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .topics;
    assert_eq!(topics.len(), 1, "the plaintext publish created nothing");
    // A client trusting another CA refuses the server's certificate.
    let other = Authority::new("other CA").unwrap();
    let err = served_cn(server.addr(), &other.cert).await.unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_certificate_from_the_client_ca() {
    let server = SecureServer::start(
        Protection {
            tls: true,
            mutual: true,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let info = async |ch: herald::cli::client::connect::Transport| {
        AdminServiceClient::new(ch)
            .get_server_info(proto::GetServerInfoRequest {})
            .await
    };
    // No certificate: the handshake fails, the call cannot go through.
    if let Ok(ch) = server.channel(None, None).await {
        let err = info(ch).await.unwrap_err();
        assert_transport_failure(&err, "CertificateRequired");
    }
    // A certificate from another CA: refused too.
    let stranger = Authority::new("stranger CA")
        .unwrap()
        .client(&Subject::Dns("svc.example.org".into()))
        .unwrap();
    if let Ok(ch) = server.channel(Some(&stranger), None).await {
        let err = info(ch).await.unwrap_err();
        assert_transport_failure(&err, "alert");
    }
    // A certificate from the client CA: served (auth is off).
    let good = server
        .ca
        .client(&Subject::Dns("svc.example.org".into()))
        .unwrap();
    let ch = server
        .channel(Some(&good), None)
        .await
        .expect("mTLS connects");
    info(ch).await.expect("served");
    server.stop().await;
}

#[tokio::test]
async fn the_certificate_names_the_principal() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.toml");
    let tokens = write_auth_file(
        &auth,
        &[
            PrincipalSpec {
                name: "svc.example.org",
                admin: false,
                rules: &[(&["publish"], &["orders"])],
            },
            PrincipalSpec {
                name: "ops",
                admin: true,
                rules: &[],
            },
        ],
    );
    let server = SecureServer::start(
        Protection {
            tls: true,
            mutual: true,
            auth_file: Some(auth),
        },
        |_| {},
    )
    .await;
    let publish = async |ch, topic: &str| {
        PublisherServiceClient::new(ch)
            .publish(proto::PublishRequest {
                topic: topic.into(),
                events: vec![common::event("x")],
            })
            .await
    };
    // Create the topic as ops (token over mTLS; the token wins).
    let ops = server
        .ca
        .client(&Subject::Dns("nobody.example.org".into()))
        .unwrap();
    let ch = server
        .channel(Some(&ops), Some(&tokens["ops"]))
        .await
        .unwrap();
    publish(ch, "orders")
        .await
        .expect("ops may publish anywhere");

    let svc = server
        .ca
        .client(&Subject::Dns("svc.example.org".into()))
        .unwrap();
    let ch = server.channel(Some(&svc), None).await.unwrap();
    publish(ch.clone(), "orders")
        .await
        .expect("the DNS SAN's rules apply");
    let err = publish(ch, "payroll").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("\"svc.example.org\""),
        "{}",
        err.message()
    );

    // URI and email SANs, and a bare CN, name principals too (here
    // unlisted ones: authenticated, but without any permission).
    for (subject, name) in [
        (
            Subject::Uri("spiffe://example.org/billing".into()),
            "spiffe://example.org/billing",
        ),
        (
            Subject::Email("alice@example.org".into()),
            "alice@example.org",
        ),
        (Subject::CommonName("legacy-client".into()), "legacy-client"),
    ] {
        let pem = server.ca.client(&subject).unwrap();
        let ch = server.channel(Some(&pem), None).await.unwrap();
        let err = AdminServiceClient::new(ch)
            .get_server_info(proto::GetServerInfoRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{subject:?}");
        assert!(
            err.message().contains(&format!("{name:?}")),
            "{}",
            err.message()
        );
    }
    server.stop().await;
}

/// Replaces the server's certificate files with a new certificate
/// (`common_name`) from the same CA, by writing a temp file and renaming
/// it, as certificate tools do.
fn rotate(server: &SecureServer, common_name: &str) {
    let pem = server.ca.server(common_name).unwrap();
    let (cert, key) = pem.write(server.dir.path(), "next").unwrap();
    std::fs::rename(key, server.config.tls.key.as_ref().unwrap()).unwrap();
    std::fs::rename(cert, server.config.tls.cert.as_ref().unwrap()).unwrap();
}

async fn wait_for_cn(server: &SecureServer, cn: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = served_cn(server.addr(), &server.ca.cert).await.unwrap();
        if now == cn {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still served {now:?}, waiting for {cn:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_certificate_reload_keeps_open_streams_and_serves_new_connections_the_new_one() {
    let server = SecureServer::start(
        Protection {
            tls: true,
            ..Default::default()
        },
        |c| {
            c.tls.reload_interval = Duration::from_millis(50);
        },
    )
    .await;
    let ch = server.channel(None, None).await.unwrap();
    let mut stream = SubscriberServiceClient::new(ch.clone())
        .subscribe(proto::SubscribeRequest {
            topic: "t".into(),
            group: "g".into(),
            consumer: "c".into(),
            max_in_flight: Some(100),
        })
        .await
        .expect("subscribe")
        .into_inner();
    let mut publisher = PublisherServiceClient::new(ch.clone());
    let mut publish = async |id: &str| {
        publisher
            .publish(proto::PublishRequest {
                topic: "t".into(),
                events: vec![common::event(id)],
            })
            .await
            .expect("publish on the old connection")
    };
    let next = async |stream: &mut tonic::Streaming<proto::SubscribeResponse>| {
        let batch = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a delivery in time")
            .expect("stream ok")
            .expect("stream open");
        batch.deliveries[0].event.as_ref().unwrap().id.clone()
    };
    publish("before").await;
    assert_eq!(next(&mut stream).await, "before");

    // The watch picks up the new files; new connections get them.
    rotate(&server, "second");
    wait_for_cn(&server, "second").await;
    // The open stream and its connection are untouched.
    publish("after").await;
    assert_eq!(next(&mut stream).await, "after");

    // A broken certificate file is logged and the previous one kept.
    std::fs::write(
        server.config.tls.cert.as_ref().unwrap(),
        "not a certificate",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        served_cn(server.addr(), &server.ca.cert).await.unwrap(),
        "second"
    );
    // So is a key that does not belong to the certificate.
    let other = server.ca.server("third").unwrap();
    let mismatched = server.ca.server("fourth").unwrap();
    std::fs::write(server.config.tls.cert.as_ref().unwrap(), &other.cert).unwrap();
    std::fs::write(server.config.tls.key.as_ref().unwrap(), &mismatched.key).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        served_cn(server.addr(), &server.ca.cert).await.unwrap(),
        "second"
    );
    publish("still").await;
    assert_eq!(next(&mut stream).await, "still");
    // Fixed files are picked up again.
    rotate(&server, "fifth");
    wait_for_cn(&server, "fifth").await;
    let fresh = server.channel(None, None).await.expect("new connection");
    PublisherServiceClient::new(fresh)
        .publish(proto::PublishRequest {
            topic: "t".into(),
            events: vec![common::event("fresh")],
        })
        .await
        .expect("publish on a new connection");
    assert_eq!(next(&mut stream).await, "fresh");
    server.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_certificate_of_a_running_herald() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new("test CA").unwrap();
    let (cert, key) = ca
        .server("first")
        .unwrap()
        .write(dir.path(), "server")
        .unwrap();
    let data = dir.path().join("data");
    let env = [
        ("HERALD_TLS__CERT", cert.to_str().unwrap()),
        ("HERALD_TLS__KEY", key.to_str().unwrap()),
        // No polling: only the signal reloads.
        ("HERALD_TLS__RELOAD_INTERVAL", "0s"),
    ];
    let child = common::child::ChildServer::start(&data, &env, &[]);
    let addr: std::net::SocketAddr = child.addr.parse().unwrap();
    assert_eq!(served_cn(addr, &ca.cert).await.unwrap(), "first");
    let next = ca.server("second").unwrap();
    std::fs::write(&cert, &next.cert).unwrap();
    std::fs::write(&key, &next.key).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        served_cn(addr, &ca.cert).await.unwrap(),
        "first",
        "no reload without the signal"
    );
    let pid = rustix::process::Pid::from_raw(child.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_cn(addr, &ca.cert).await.unwrap() != "second" {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the certificate"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
