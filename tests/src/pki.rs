//! A certificate authority for one test, made with rcgen (nothing is
//! checked in): etcd's server certificate and one client certificate per
//! etcd user (its CN is the user, as etcd's `--client-cert-auth` reads it).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

pub struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA, written to `<dir>/ca.pem`.
    pub fn new(dir: &Path) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "zpr test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        std::fs::write(dir.join("ca.pem"), ca.pem())?;
        Ok(Pki {
            dir: dir.to_owned(),
            ca,
        })
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `common_name`, valid for `addresses` too (a
    /// server's), for servers and clients alike.
    pub fn issue(&self, common_name: &str, addresses: &[&str]) -> anyhow::Result<Credentials> {
        let names: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        let credentials = Credentials {
            cert: self.dir.join(format!("{common_name}.pem")),
            key: self.dir.join(format!("{common_name}-key.pem")),
        };
        std::fs::write(&credentials.cert, cert.pem())?;
        write_private(&credentials.key, key.serialize_pem().as_bytes())?;
        Ok(credentials)
    }
}

/// Written with mode 0600, as a private key must be.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)?;
    Ok(())
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
