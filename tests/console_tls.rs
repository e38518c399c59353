//! The console's listener of a server with TLS and authentication: HTTPS
//! with the server's certificate (and its reloads), the same auth file as
//! gRPC, `Secure` cookies, and client certificates that log in under mutual
//! TLS. Spoken to with a plain HTTP/1.1 client over rustls.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::secure::{PrincipalSpec, Protection, SecureServer, write_auth_file};
use herald::cli::pki::{Pem, Subject};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server with TLS (mutual with `mutual`), an auth file with an admin
/// (`admin`) and a principal without rights (`nobody`), and its console
/// on a port of its own. Returns it with the tokens and the directory of
/// the auth file.
async fn start(
    mutual: bool,
) -> (
    SecureServer,
    std::collections::HashMap<String, String>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let tokens = write_auth_file(
        &file,
        &[
            PrincipalSpec {
                name: "admin",
                admin: true,
                rules: &[],
            },
            PrincipalSpec {
                name: "nobody",
                admin: false,
                rules: &[],
            },
        ],
    );
    let protection = Protection {
        tls: true,
        mutual,
        auth_file: Some(file.clone()),
    };
    let server = SecureServer::start(protection, |c| {
        c.http.enabled = true;
        c.http.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    (server, tokens, dir)
}

/// A TLS client trusting `ca`, speaking HTTP/1.1, with a client
/// certificate when given.
fn client(ca: &str, identity: Option<&Pem>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(pem) => {
            let chain = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// What one HTTPS request got: the whole response as text and the
/// server's leaf certificate.
struct Got {
    response: String,
    leaf: Vec<u8>,
}

impl Got {
    fn status(&self) -> u16 {
        self.response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {}", self.response))
    }

    fn header(&self, name: &str) -> Option<&str> {
        let head = self.response.split("\r\n\r\n").next().unwrap_or_default();
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// `GET path` over TLS, with a bearer token when given.
async fn get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<Got> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await?;
    let mut bytes = Vec::new();
    tls.read_to_end(&mut bytes).await?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    Ok(Got {
        response: String::from_utf8_lossy(&bytes).into_owned(),
        leaf,
    })
}

/// The DER of the first certificate in a PEM file.
fn der(path: &std::path::Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_serves_https_with_the_servers_certificate_and_its_auth() {
    let (server, tokens, _dir) = start(false).await;
    let addr = server.server().http_addr.expect("console on");
    let tls = client(&server.ca.cert, None);
    let cert = server.config.tls.cert.clone().unwrap();

    let login = get(addr, tls.clone(), "/", None).await.unwrap();
    assert_eq!(login.leaf, der(&cert), "the server's own certificate");
    assert_eq!(login.status(), 303, "{}", login.response);
    assert_eq!(login.header("location"), Some("/login?next=%2F"));
    let cookie = login.header("set-cookie").unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let metrics = get(addr, tls.clone(), "/metrics", None).await.unwrap();
    assert_eq!(metrics.status(), 401, "{}", metrics.response);
    // The gRPC auth file's tokens work here: the admin is in; a principal
    // without rights is authenticated but refused.
    let ok = get(addr, tls.clone(), "/topics", Some(&tokens["admin"]))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "{}", ok.response);
    let page = get(addr, tls.clone(), "/topics/t", Some(&tokens["nobody"]))
        .await
        .unwrap();
    assert_eq!(page.status(), 403, "{}", page.response);

    // Plain HTTP gets no answer from the TLS listener.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut bytes = Vec::new();
    let _ = plain.read_to_end(&mut bytes).await;
    assert!(!bytes.starts_with(b"HTTP/"), "{bytes:?}");

    // A new certificate, reloaded (as on SIGHUP): new connections get it.
    let next = server.ca.server("second").unwrap();
    next.write(server.dir.path(), "server").unwrap();
    server.server().reload();
    let after = get(addr, tls, "/metrics", None).await.unwrap();
    assert_eq!(after.leaf, der(&cert));
    assert_ne!(after.leaf, login.leaf, "the reloaded certificate");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_mutual_tls_a_client_certificate_logs_in() {
    let (server, _tokens, _dir) = start(true).await;
    let addr = server.server().http_addr.expect("console on");
    let admin = server.ca.client(&Subject::Dns("admin".into())).unwrap();
    let with_cert = client(&server.ca.cert, Some(&admin));
    let page = get(addr, with_cert, "/topics", None).await.unwrap();
    assert_eq!(page.status(), 200, "{}", page.response);
    assert!(page.response.contains("admin"), "who is shown");
    // Without a certificate there is no exchange at all (the handshake
    // fails, on the client's side at its first read under TLS 1.3).
    let without = client(&server.ca.cert, None);
    if let Ok(got) = get(addr, without, "/topics", None).await {
        assert!(!got.response.starts_with("HTTP/"), "{}", got.response);
    }
    server.stop().await;
}
