//! A server with TLS and/or authentication, certificates made at test time
//! (`herald::cli::pki`, over rcgen), an auth file with tokens, and
//! channels that carry a chosen credential.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use herald::auth::edit::{self, Editor, NewRule};
use herald::cli::client::connect::{Bearer, ClientAuth, Transport};
use herald::cli::pki::{Authority, Pem};
use herald::cli::serve::{RunningServer, start};
use herald::config::{AuthMode, Config};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// One principal of an auth file: (name, admin, rules as (actions, topics)).
pub struct PrincipalSpec<'a> {
    pub name: &'a str,
    pub admin: bool,
    pub rules: &'a [(&'a [&'a str], &'a [&'a str])],
}

/// Writes an auth file with these principals, each with one token;
/// returns the tokens by principal.
pub fn write_auth_file(
    path: &std::path::Path,
    principals: &[PrincipalSpec<'_>],
) -> HashMap<String, String> {
    let mut ed = Editor::open(&edit::new_file().unwrap()).unwrap();
    let mut tokens = HashMap::new();
    for p in principals {
        let rules: Vec<NewRule> = p
            .rules
            .iter()
            .map(|(actions, topics)| NewRule {
                actions: actions.iter().map(|s| s.to_string()).collect(),
                topics: topics.iter().map(|s| s.to_string()).collect(),
            })
            .collect();
        ed.add_principal(p.name, p.admin, &rules).unwrap();
        let t = ed.add_token(p.name, "test").unwrap();
        tokens.insert(p.name.to_string(), t.token);
    }
    edit::save(path, &ed.text()).unwrap();
    tokens
}

/// A server under test with optional TLS (a CA of its own) and auth.
pub struct SecureServer {
    pub running: Option<RunningServer>,
    pub dir: tempfile::TempDir,
    pub ca: Authority,
    pub config: Config,
}

/// What a test server should protect itself with.
#[derive(Default)]
pub struct Protection {
    pub tls: bool,
    /// Require client certificates signed by the server's CA.
    pub mutual: bool,
    /// The auth file (auth.mode = required).
    pub auth_file: Option<PathBuf>,
}

impl SecureServer {
    /// Starts a server on 127.0.0.1:0, tweaked by `tweak` last.
    pub async fn start(protection: Protection, tweak: impl FnOnce(&mut Config)) -> SecureServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = Authority::new("test CA").unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.groups.state_flush_interval = Duration::from_millis(20);
        // Tests that want the console turn it on (on a port of its own).
        config.http.enabled = false;
        if protection.tls {
            let (cert, key) = ca
                .server("first")
                .unwrap()
                .write(dir.path(), "server")
                .unwrap();
            config.tls.cert = Some(cert);
            config.tls.key = Some(key);
            if protection.mutual {
                let ca_path = dir.path().join("client-ca.pem");
                std::fs::write(&ca_path, &ca.cert).unwrap();
                config.tls.client_ca = Some(ca_path);
            }
        }
        if let Some(file) = protection.auth_file {
            config.auth.mode = AuthMode::Required;
            config.auth.file = Some(file);
        }
        tweak(&mut config);
        let running = start(config.clone()).await.expect("server starts");
        SecureServer {
            running: Some(running),
            dir,
            ca,
            config,
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.running.as_ref().expect("running").addr
    }

    pub fn server(&self) -> &RunningServer {
        self.running.as_ref().expect("running")
    }

    /// The URL, https when TLS is on.
    pub fn url(&self) -> String {
        let scheme = if self.config.tls.cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr())
    }

    /// A channel trusting the server's CA, with an optional client
    /// certificate and token.
    pub async fn channel(
        &self,
        client: Option<&Pem>,
        token: Option<&str>,
    ) -> Result<Transport, tonic::transport::Error> {
        let mut endpoint = Endpoint::from_shared(self.url()).unwrap();
        if self.config.tls.cert.is_some() {
            let mut tls =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca.cert));
            if let Some(pem) = client {
                tls = tls.identity(Identity::from_pem(&pem.cert, &pem.key));
            }
            endpoint = endpoint.tls_config(tls).unwrap();
        }
        let channel = endpoint.connect().await?;
        Ok(InterceptedService::new(
            channel,
            Bearer::new(token).unwrap(),
        ))
    }

    /// What the CLI needs to reach it.
    pub fn client_auth(&self, token: Option<&str>) -> ClientAuth {
        let ca = self.dir.path().join("ca-for-clients.pem");
        std::fs::write(&ca, &self.ca.cert).unwrap();
        ClientAuth {
            tls_ca: self.config.tls.cert.is_some().then_some(ca),
            token: token.map(str::to_string),
            ..ClientAuth::default()
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.running.take() {
            s.stop().await.expect("clean stop");
        }
    }
}

/// A plain channel (no TLS, no token) to `addr`.
pub async fn plain_channel(addr: std::net::SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
}
