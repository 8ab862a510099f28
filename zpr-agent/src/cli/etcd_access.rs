//! How every command that takes `--store etcd://...` reaches etcd: the
//! same flags and environment variables as etcdctl's (`--cacert`,
//! `--cert`, `--key`), so a systemd `EnvironmentFile` can set them.

use std::path::PathBuf;

use crate::store::{EtcdAccess, EtcdLocation};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct EtcdArgs {
    /// The CA that signed etcd's server certificate (etcdctl's --cacert):
    /// the store is reached over TLS.
    #[arg(long, value_name = "FILE", env = "ZPR_ETCD_CACERT")]
    pub etcd_cacert: Option<PathBuf>,
    /// A client certificate for etcd's --client-cert-auth (its CN is the
    /// etcd user), with --etcd-key.
    #[arg(long, value_name = "FILE", env = "ZPR_ETCD_CERT")]
    pub etcd_cert: Option<PathBuf>,
    /// The client certificate's private key.
    #[arg(long, value_name = "FILE", env = "ZPR_ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,
    /// An etcd user, with --etcd-password-file.
    #[arg(long, value_name = "NAME", env = "ZPR_ETCD_USER")]
    pub etcd_user: Option<String>,
    /// The file holding the etcd user's password (never a flag: every
    /// local user can read a process's arguments).
    #[arg(long, value_name = "FILE", env = "ZPR_ETCD_PASSWORD_FILE")]
    pub etcd_password_file: Option<PathBuf>,
    /// Reach an etcd off loopback in plaintext (refused otherwise): anyone
    /// on the path can read and change the tenancy. Warned in the log
    /// and in `zpr status`.
    #[arg(long, env = "ZPR_ETCD_INSECURE")]
    pub etcd_insecure: bool,
}

impl EtcdArgs {
    pub fn access(&self) -> EtcdAccess {
        EtcdAccess {
            cacert: self.etcd_cacert.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
            user: self.etcd_user.clone(),
            password_file: self.etcd_password_file.clone(),
            insecure: self.etcd_insecure,
        }
    }

    /// `etcd://HOST:PORT[,...]/TENANCY`, reached as these flags say.
    pub fn location(&self, store: &str) -> anyhow::Result<EtcdLocation> {
        EtcdLocation::parse_with(store, self.access())
    }
}
