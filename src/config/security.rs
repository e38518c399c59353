//! The `[tls]` and `[auth]` sections, and the start-up rule that keeps an
//! open server off the network: without TLS and authentication, Herald only
//! listens on a loopback address unless `server.allow_insecure` says so.
//! The rule holds for the console's `http.listen` too: it serves with the
//! same TLS and the same authentication.
//!
//! Config layer: plain data and validation; the files named here are read
//! by `grpc::tls` and [`crate::auth`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[tls]`: the server's certificate, and client certificates (mutual TLS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. TLS is on when this is set.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert`.
    pub key: Option<PathBuf>,
    /// PEM CA certificates: when set, every client must present a
    /// certificate signed by one of them (mutual TLS), and the certificate
    /// names the caller's principal.
    pub client_ca: Option<PathBuf>,
    /// How often the files are checked for changes (they are also reloaded
    /// on SIGHUP); `0s` = only on SIGHUP.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            client_ca: None,
            reload_interval: Duration::from_secs(5),
        }
    }
}

impl TlsConfig {
    /// Whether the server speaks TLS.
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }
}

/// Whether calls must carry a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every caller may do everything (loopback listen addresses only,
    /// unless `server.allow_insecure`).
    Off,
    /// Every call to a Herald service needs a valid bearer token or client
    /// certificate, and a permission for what it does.
    Required,
}

/// `[auth]`: principals, tokens and permissions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `off` or `required`.
    pub mode: AuthMode,
    /// The TOML file of principals, token hashes and rules (see the README).
    pub file: Option<PathBuf>,
    /// How often the file is checked for changes (it is also reloaded on
    /// SIGHUP); `0s` = only on SIGHUP.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Most verified tokens remembered, so a call does not hash its token
    /// again; emptied whenever the file is reloaded.
    pub cache_size: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Off,
            file: None,
            reload_interval: Duration::from_secs(5),
            cache_size: 10_000,
        }
    }
}

/// Checks the `[tls]` and `[auth]` sections against each other and against
/// the listen address.
///
/// # Errors
/// A message naming the key that is wrong, or saying what an exposed
/// server lacks.
pub fn validate(
    listen: SocketAddr,
    allow_insecure: bool,
    tls: &TlsConfig,
    auth: &AuthConfig,
) -> anyhow::Result<()> {
    use anyhow::bail;
    match (&tls.cert, &tls.key) {
        (Some(_), None) => bail!("tls.cert is set but tls.key is not"),
        (None, Some(_)) => bail!("tls.key is set but tls.cert is not"),
        _ => {}
    }
    if tls.client_ca.is_some() && !tls.enabled() {
        bail!("tls.client_ca needs tls.cert and tls.key (mutual TLS is TLS first)");
    }
    if !tls.reload_interval.is_zero() && tls.reload_interval < Duration::from_millis(10) {
        bail!("tls.reload_interval must be 0s (SIGHUP only) or at least 10ms");
    }
    if !auth.reload_interval.is_zero() && auth.reload_interval < Duration::from_millis(10) {
        bail!("auth.reload_interval must be 0s (SIGHUP only) or at least 10ms");
    }
    if auth.mode == AuthMode::Required && auth.file.is_none() {
        bail!("auth.mode = \"required\" needs auth.file (the principals and their permissions)");
    }
    if auth.cache_size == 0 {
        bail!("auth.cache_size must be positive");
    }
    exposure("listen", listen, allow_insecure, tls, auth)
}

/// The loopback rule for one listen address (`key` names it: `listen`, or
/// `http.listen` for the console, which uses the same TLS and auth).
///
/// # Errors
/// What an exposed server lacks.
pub fn exposure(
    key: &str,
    listen: SocketAddr,
    allow_insecure: bool,
    tls: &TlsConfig,
    auth: &AuthConfig,
) -> anyhow::Result<()> {
    use anyhow::bail;
    if listen.ip().is_loopback() || allow_insecure {
        return Ok(());
    }
    if !tls.enabled() {
        bail!(
            "{key} = {listen} is not a loopback address and TLS is off: anyone on the network could \
             read and forge traffic. Set tls.cert and tls.key, or set server.allow_insecure = true \
             (flag --allow-insecure) to serve in the clear anyway"
        );
    }
    if auth.mode == AuthMode::Off {
        bail!(
            "{key} = {listen} is not a loopback address and auth.mode is \"off\": anyone who can \
             connect could publish, consume and delete. Set auth.mode = \"required\" with \
             auth.file, or set server.allow_insecure = true (flag --allow-insecure) to serve \
             without authentication anyway"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secured() -> (TlsConfig, AuthConfig) {
        let tls = TlsConfig {
            cert: Some("c.pem".into()),
            key: Some("k.pem".into()),
            ..TlsConfig::default()
        };
        let auth = AuthConfig {
            mode: AuthMode::Required,
            file: Some("auth.toml".into()),
            ..AuthConfig::default()
        };
        (tls, auth)
    }

    #[test]
    fn an_open_server_listens_on_loopback_only_unless_told_otherwise() {
        let open = (TlsConfig::default(), AuthConfig::default());
        let loopback: SocketAddr = "127.0.0.1:50051".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        let v6: SocketAddr = "[::]:50051".parse().unwrap();
        assert!(validate(loopback, false, &open.0, &open.1).is_ok());
        assert!(validate("[::1]:1".parse().unwrap(), false, &open.0, &open.1).is_ok());
        for addr in [any, v6] {
            let err = validate(addr, false, &open.0, &open.1).unwrap_err();
            assert!(err.to_string().contains("TLS is off"), "{err}");
            assert!(validate(addr, true, &open.0, &open.1).is_ok());
        }
        // TLS alone is not enough: nobody is authenticated.
        let (tls, _) = secured();
        let err = validate(any, false, &tls, &AuthConfig::default()).unwrap_err();
        assert!(err.to_string().contains("auth.mode"), "{err}");
        let (tls, auth) = secured();
        assert!(validate(any, false, &tls, &auth).is_ok());
        // Tokens over plaintext on the network are refused too.
        let err = validate(any, false, &TlsConfig::default(), &auth).unwrap_err();
        assert!(err.to_string().contains("TLS is off"), "{err}");
        // The console's address is held to the same rule, under its key.
        let open = AuthConfig::default();
        let err = exposure("http.listen", any, false, &tls, &open).unwrap_err();
        assert!(
            err.to_string().starts_with("http.listen = 0.0.0.0:50051"),
            "{err}"
        );
        assert!(exposure("http.listen", any, false, &tls, &auth).is_ok());
        assert!(exposure("http.listen", any, true, &tls, &open).is_ok());
    }

    #[test]
    fn incomplete_sections_are_named() {
        let lo: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let tls = TlsConfig {
            cert: Some("c.pem".into()),
            ..TlsConfig::default()
        };
        let err = validate(lo, false, &tls, &AuthConfig::default()).unwrap_err();
        assert!(err.to_string().contains("tls.key"), "{err}");
        let tls = TlsConfig {
            client_ca: Some("ca.pem".into()),
            ..TlsConfig::default()
        };
        let err = validate(lo, false, &tls, &AuthConfig::default()).unwrap_err();
        assert!(err.to_string().contains("tls.client_ca"), "{err}");
        let auth = AuthConfig {
            mode: AuthMode::Required,
            ..AuthConfig::default()
        };
        let err = validate(lo, false, &TlsConfig::default(), &auth).unwrap_err();
        assert!(err.to_string().contains("auth.file"), "{err}");
    }
}
