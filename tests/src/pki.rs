//! A certificate authority for one test, made with rcgen (nothing is
//! checked in): etcd's and the API's server certificates, one client
//! certificate per etcd user (its CN is the user, as etcd's
//! `--client-cert-auth` reads it), and the API's client certificates (CN
//! the user, O and OU the groups; a serial and validity of the test's
//! choosing).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber, date_time_ymd,
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
        self.issue_as(&Subject::named(common_name), addresses)
    }

    /// A client certificate for `subject`.
    pub fn issue_client(&self, subject: &Subject) -> anyhow::Result<Credentials> {
        self.issue_as(subject, &[])
    }

    fn issue_as(&self, subject: &Subject, addresses: &[&str]) -> anyhow::Result<Credentials> {
        let names: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, &subject.common_name);
        if let Some(organization) = &subject.organization {
            params
                .distinguished_name
                .push(DnType::OrganizationName, organization);
        }
        if let Some(unit) = &subject.unit {
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, unit);
        }
        params.serial_number = subject.serial.as_deref().map(SerialNumber::from_slice);
        if subject.expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let common_name = &subject.common_name;
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

/// Who a certificate names.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    pub common_name: String,
    pub organization: Option<String>,
    pub unit: Option<String>,
    pub serial: Option<Vec<u8>>,
    /// Valid in 2020 only.
    pub expired: bool,
}

impl Subject {
    pub fn named(common_name: &str) -> Subject {
        Subject {
            common_name: common_name.to_owned(),
            ..Subject::default()
        }
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
