//! Mutual TLS for the management API over the network (rustls, ring): the
//! server proves itself with its certificate and accepts only clients whose
//! certificate `--client-ca` signed and that is in its validity period; the
//! CLI checks the server against `--cacert` and shows its own certificate.
//! Both sides read their files when they start, and the server again when
//! they change, so a renewed certificate needs no restart.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::inputs::open::{FileStamps, file_stamps};
use anyhow::{Context as _, bail};
use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};

/// The server's certificate, key and the CA its clients' certificates
/// must chain to.
#[derive(Clone, Debug)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// The server's TLS configuration, rebuilt when its files change.
pub struct ServerTls {
    files: ServerFiles,
    stamp: FileStamps,
    config: Arc<ServerConfig>,
}

impl ServerTls {
    /// Reads the files now: a server that cannot serve TLS must not start.
    pub fn load(files: ServerFiles) -> anyhow::Result<ServerTls> {
        let stamp = file_stamps(files.paths());
        let config = files.config()?;
        Ok(ServerTls {
            files,
            stamp,
            config,
        })
    }

    /// The configuration for a new connection: the files' current one, or
    /// the last good one while a renewal is half written (and logged).
    pub fn current(&mut self) -> Arc<ServerConfig> {
        let now = file_stamps(self.files.paths());
        if now != self.stamp {
            self.stamp = now;
            match self.files.config() {
                Ok(config) => {
                    tracing::info!("the API's TLS files changed: new connections use them");
                    self.config = config;
                }
                Err(error) => tracing::warn!(
                    "the API's TLS files changed but cannot be used ({error:#}); still \
                     serving the ones read before"
                ),
            }
        }
        self.config.clone()
    }
}

impl ServerFiles {
    fn paths(&self) -> [&Path; 3] {
        [&self.cert, &self.key, &self.client_ca]
    }

    fn config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let provider = provider();
        let clients = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots(&self.client_ca)?),
            provider.clone(),
        )
        .build()
        .context("the client CA")?;
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(clients)
            .with_single_cert(certificates(&self.cert)?, private_key(&self.key)?)
            .with_context(|| {
                format!(
                    "{} and {} do not make a server identity",
                    self.cert.display(),
                    self.key.display()
                )
            })?;
        Ok(Arc::new(config))
    }
}

/// The CLI's side: trusts the servers `cacert` signed, and shows `cert`.
pub fn client_config(cacert: &Path, cert: &Path, key: &Path) -> anyhow::Result<ClientConfig> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(cacert)?)
        .with_client_auth_cert(certificates(cert)?, private_key(key)?)
        .with_context(|| {
            format!(
                "{} and {} do not make a client identity",
                cert.display(),
                key.display()
            )
        })
}

/// ring, as the etcd client's TLS uses: one crypto library in the binary
/// (aws-lc-rs, which has post-quantum key exchange, needs a C toolchain
/// and cmake to build).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path)? {
        roots
            .add(certificate)
            .with_context(|| format!("{}: a certificate is not a usable CA", path.display()))?;
    }
    Ok(roots)
}

fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let found = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("reading certificates from {}", path.display()))?;
    if found.is_empty() {
        bail!("{}: no PEM certificate in it", path.display());
    }
    Ok(found)
}

/// A private key, refused when others may read it.
fn private_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(&crate::private_file::read_secret(path, "private key")?)
        .with_context(|| format!("reading a PEM private key from {}", path.display()))
}
