//! A throwaway certificate authority, for `herald bench --secure` and the
//! tests: a CA, a server certificate for `localhost` and `127.0.0.1`, and
//! client certificates naming a principal.
//!
//! CLI layer, over `rcgen`. Nothing here is meant for production keys:
//! real deployments bring their own certificates (see the README).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

impl Pem {
    /// Writes `<name>.pem` and `<name>.key` into `dir`; returns their paths.
    ///
    /// # Errors
    /// Writing failed.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert).with_context(|| format!("writing {}", cert.display()))?;
        std::fs::write(&key, &self.key).with_context(|| format!("writing {}", key.display()))?;
        Ok((cert, key))
    }
}

/// What a client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A DNS subject alternative name.
    Dns(String),
    /// A URI subject alternative name (e.g. a SPIFFE id).
    Uri(String),
    /// An email subject alternative name.
    Email(String),
    /// Only a subject common name, no SAN.
    CommonName(String),
}

/// A certificate authority that signs server and client certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert: String,
}

impl Authority {
    /// A new CA called `name`.
    ///
    /// # Errors
    /// Key generation or signing failed.
    pub fn new(name: &str) -> Result<Authority> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?.pem();
        Ok(Authority {
            issuer: Issuer::new(params, key),
            cert,
        })
    }

    /// A server certificate for `localhost` and `127.0.0.1`, with
    /// `common_name` (to tell two apart).
    ///
    /// # Errors
    /// Key generation or signing failed.
    pub fn server(&self, common_name: &str) -> Result<Pem> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?.pem();
        Ok(Pem {
            cert,
            key: key.serialize_pem(),
        })
    }

    /// A client certificate naming `subject`.
    ///
    /// # Errors
    /// Key generation or signing failed.
    pub fn client(&self, subject: &Subject) -> Result<Pem> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.distinguished_name.push(DnType::CommonName, "client");
        match subject {
            Subject::Dns(name) => {
                params.subject_alt_names = vec![SanType::DnsName(name.as_str().try_into()?)]
            }
            Subject::Uri(uri) => {
                params.subject_alt_names = vec![SanType::URI(uri.as_str().try_into()?)]
            }
            Subject::Email(mail) => {
                params.subject_alt_names = vec![SanType::Rfc822Name(mail.as_str().try_into()?)]
            }
            Subject::CommonName(cn) => {
                params.distinguished_name = rcgen::DistinguishedName::new();
                params
                    .distinguished_name
                    .push(DnType::CommonName, cn.as_str());
            }
        }
        let cert = params.signed_by(&key, &self.issuer)?.pem();
        Ok(Pem {
            cert,
            key: key.serialize_pem(),
        })
    }
}
