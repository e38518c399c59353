//! Connecting to Herald from the command line and `herald bench`: TLS
//! (`--tls-ca`), a client certificate for mutual TLS (`--tls-cert`,
//! `--tls-key`) and a bearer token (`--token`, env `HERALD_TOKEN`) sent in
//! the `authorization` metadata of every call.
//!
//! CLI layer. TLS is on when the server URL is `https://`, or when any TLS
//! flag is given (a bare `host:port` then gets `https://`). Without
//! `--tls-ca`, the system's trusted roots verify the server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// The TLS and token flags of client commands.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientAuth {
    /// PEM CA certificate(s) the server's certificate must chain to; turns TLS on.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Client options"
    )]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate, for servers that require mutual TLS (with --tls-key).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        requires = "tls_key",
        help_heading = "Client options"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        requires = "tls_cert",
        help_heading = "Client options"
    )]
    pub tls_key: Option<PathBuf>,
    /// Bearer token sent with every call (made by `herald auth token create`).
    #[arg(
        long,
        global = true,
        env = "HERALD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        help_heading = "Client options"
    )]
    pub token: Option<String>,
}

impl ClientAuth {
    /// Whether a TLS flag was given.
    pub fn wants_tls(&self) -> bool {
        self.tls_ca.is_some() || self.tls_cert.is_some()
    }
}

/// Adds the bearer token to every call.
#[derive(Debug, Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// The interceptor of `token`, if any.
    ///
    /// # Errors
    /// The token contains characters that cannot travel in metadata.
    pub fn new(token: Option<&str>) -> Result<Bearer> {
        let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(Bearer(None));
        };
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| anyhow!("--token holds characters that cannot be sent as metadata"))?;
        Ok(Bearer(Some(value)))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// What the generated clients of the CLI and bench run over.
pub type Transport = InterceptedService<Channel, Bearer>;

/// The URL to dial: `host:port` gets `https://` with TLS flags, else
/// `http://`.
///
/// # Errors
/// An `http://` URL with TLS flags.
pub fn server_url(server: &str, auth: &ClientAuth) -> Result<String> {
    if server.contains("://") {
        if auth.wants_tls() && server.starts_with("http://") {
            bail!("{server} is plain HTTP but TLS flags were given; use https://");
        }
        return Ok(server.to_string());
    }
    let scheme = if auth.wants_tls() { "https" } else { "http" };
    Ok(format!("{scheme}://{server}"))
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))
}

/// An endpoint for `url` with TLS as the flags say (timeouts are the
/// caller's to add).
///
/// # Errors
/// A malformed URL, or unreadable TLS files.
pub fn endpoint(url: &str, auth: &ClientAuth) -> Result<Endpoint> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| anyhow!("invalid server address {url:?}: {e}"))?
        .tcp_nodelay(true);
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let mut tls = ClientTlsConfig::new();
    tls = match &auth.tls_ca {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(read("--tls-ca", ca)?)),
        None => tls.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&auth.tls_cert, &auth.tls_key) {
        tls = tls.identity(Identity::from_pem(
            read("--tls-cert", cert)?,
            read("--tls-key", key)?,
        ));
    }
    endpoint
        .tls_config(tls)
        .map_err(|e| anyhow!("TLS settings for {url}: {e}"))
}

/// Connects now to `url` and wraps the channel with the token.
///
/// # Errors
/// As [`endpoint`], or the connection failed (the error chain says why).
pub async fn connect(url: &str, auth: &ClientAuth, timeout: Option<Duration>) -> Result<Transport> {
    let mut endpoint = endpoint(url, auth)?;
    if let Some(t) = timeout {
        endpoint = endpoint.connect_timeout(t);
    }
    let bearer = Bearer::new(auth.token.as_deref())?;
    let channel = endpoint.connect().await?;
    Ok(InterceptedService::new(channel, bearer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_flags_choose_https() {
        let plain = ClientAuth::default();
        let tls = ClientAuth {
            tls_ca: Some("ca.pem".into()),
            ..ClientAuth::default()
        };
        assert_eq!(server_url("h:1", &plain).unwrap(), "http://h:1");
        assert_eq!(server_url("h:1", &tls).unwrap(), "https://h:1");
        assert_eq!(server_url("https://h:1", &plain).unwrap(), "https://h:1");
        assert!(server_url("http://h:1", &tls).is_err());
    }

    #[test]
    fn the_token_goes_in_the_authorization_metadata() {
        let mut bearer = Bearer::new(Some(" hrd_x ")).unwrap();
        let request = bearer.call(Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer hrd_x"
        );
        let mut none = Bearer::new(None).unwrap();
        assert!(none.call(Request::new(())).unwrap().metadata().is_empty());
        assert!(Bearer::new(Some("bad\ntoken")).is_err());
    }
}
