//! Signed store states: an API server signs every state it commits with
//! an Ed25519 key, and agents with trusted keys apply only states whose
//! signature verifies, so a store written behind the API's back opens
//! nothing.
//!
//! A signature covers the digest of the tenancy's whole state (every
//! record but the signature itself), a sequence number one past the
//! signed state it was based on, and that state's digest: the signed
//! states form a chain. An agent refuses a state that is unsigned, signed
//! by a key it does not trust, whose digest does not match, or whose
//! sequence is behind the one it enforces (an old state replayed).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::Tenancy;
use crate::inputs::open::Symlinks;
use crate::inputs::text::read_bytes;

/// The signature record (`state/signature`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateSignature {
    /// Which key signed (see [`key_id`]).
    pub key_id: String,
    /// One past the sequence of the signed state this one was based on.
    pub sequence: u64,
    /// The digest of that state ("" for the first).
    pub previous: String,
    /// [`Tenancy::signed_digest`] of this state.
    pub digest: String,
    /// Ed25519 over [`message`], hex.
    pub signature: String,
}

/// What a signature signs.
fn message(digest: &str, sequence: u64, previous: &str) -> Vec<u8> {
    format!("zpr signed state v1\n{digest}\n{sequence}\n{previous}\n").into_bytes()
}

/// A key's id: the first 8 bytes of the SHA-256 of its public key, hex.
pub fn key_id(key: &VerifyingKey) -> String {
    use sha2::Digest as _;
    to_hex(&sha2::Sha256::digest(key.as_bytes())[..8])
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn from_hex<const N: usize>(text: &str, what: &str) -> anyhow::Result<[u8; N]> {
    let text = text.trim();
    if text.len() != 2 * N || !text.is_ascii() {
        bail!("{what} is not {N} bytes of hex");
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).expect("ASCII");
        *byte = u8::from_str_radix(pair, 16).with_context(|| format!("{what} is not hex"))?;
    }
    Ok(bytes)
}

/// A key file as `zpr key generate` writes it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyFile {
    key_id: String,
    /// The public key, hex.
    public: String,
    /// The private key's seed, hex (private key files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

/// An API server's signing key (`zpr serve --signing-key FILE`).
pub struct Signer {
    key: SigningKey,
    id: String,
}

impl Signer {
    /// Reads a private key file; refused when others may read it.
    pub fn read(path: &Path) -> anyhow::Result<Signer> {
        let file: KeyFile =
            serde_json::from_slice(&crate::private_file::read_secret(path, "signing key")?)
                .with_context(|| {
                    format!("{}: not a key file of `zpr key generate`", path.display())
                })?;
        let secret = file
            .secret
            .with_context(|| format!("{}: a public key, not a signing key", path.display()))?;
        let key = SigningKey::from_bytes(&from_hex::<32>(&secret, "the secret key")?);
        let id = key_id(&key.verifying_key());
        Ok(Signer { key, id })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Signs `after` as the successor of `base` (the state it was based on).
    pub fn sign(&self, base: &Tenancy, after: &mut Tenancy) -> anyhow::Result<()> {
        let (sequence, previous) = match &base.signature {
            Some(signed) => (signed.sequence + 1, signed.digest.clone()),
            None => (1, String::new()),
        };
        after.signature = None;
        let digest = after.signed_digest()?;
        let signature = self.key.sign(&message(&digest, sequence, &previous));
        after.signature = Some(StateSignature {
            key_id: self.id.clone(),
            sequence,
            previous,
            digest,
            signature: to_hex(&signature.to_bytes()),
        });
        Ok(())
    }
}

/// Writes a new key pair: `PREFIX.key` (private, mode 0600) and
/// `PREFIX.pub`; returns the key id.
pub fn generate(prefix: &Path) -> anyhow::Result<String> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut seed))
        .context("reading /dev/urandom")?;
    let key = SigningKey::from_bytes(&seed);
    let public = key.verifying_key();
    let id = key_id(&public);
    let file = |secret: Option<String>| KeyFile {
        key_id: id.clone(),
        public: to_hex(public.as_bytes()),
        secret,
    };
    let private = with_extension(prefix, "key");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private)
        .with_context(|| format!("creating {} (it must not exist)", private.display()))?;
    out.write_all(&serde_json::to_vec_pretty(&file(Some(to_hex(&seed))))?)?;
    let public_path = with_extension(prefix, "pub");
    std::fs::write(&public_path, serde_json::to_vec_pretty(&file(None))?)
        .with_context(|| format!("writing {}", public_path.display()))?;
    Ok(id)
}

fn with_extension(prefix: &Path, extension: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

/// The public keys an agent trusts (`zpr run --trusted-keys FILE|DIR`: a
/// `.pub` file, or a directory of them, read again when they change).
pub struct TrustedKeys {
    path: PathBuf,
    keys: Vec<(String, VerifyingKey)>,
    /// When the files were read (the newest modification time seen).
    read_at: Option<std::time::SystemTime>,
}

impl TrustedKeys {
    pub fn read(path: &Path) -> anyhow::Result<TrustedKeys> {
        let mut trusted = TrustedKeys {
            path: path.to_owned(),
            keys: Vec::new(),
            read_at: None,
        };
        trusted.reload()?;
        Ok(trusted)
    }

    fn files(&self) -> anyhow::Result<Vec<PathBuf>> {
        if !self.path.is_dir() {
            return Ok(vec![self.path.clone()]);
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.path)
            .with_context(|| format!("reading {}", self.path.display()))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "pub"))
            .collect();
        files.sort();
        Ok(files)
    }

    /// The newest modification time among the files (and the directory).
    fn changed_at(&self) -> Option<std::time::SystemTime> {
        let mut paths = self.files().ok()?;
        paths.push(self.path.clone());
        paths
            .iter()
            .filter_map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
            .max()
    }

    fn reload(&mut self) -> anyhow::Result<()> {
        let mut keys = Vec::new();
        for path in self.files()? {
            let file: KeyFile =
                serde_json::from_slice(&read_bytes(&path, "trusted key", Symlinks::Followed)?)
                    .with_context(|| {
                        format!("{}: not a key file of `zpr key generate`", path.display())
                    })?;
            let key = VerifyingKey::from_bytes(&from_hex::<32>(&file.public, "the public key")?)
                .with_context(|| format!("{}: not an Ed25519 public key", path.display()))?;
            keys.push((key_id(&key), key));
        }
        if keys.is_empty() {
            bail!(
                "{}: no trusted public key (*.pub) there",
                self.path.display()
            );
        }
        self.keys = keys;
        self.read_at = self.changed_at();
        Ok(())
    }

    /// The trusted key ids, as read last.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// Reads the keys again when their files changed (a rotation needs no
    /// restart); a change that does not read keeps the keys read before.
    pub fn refresh(&mut self) -> Option<String> {
        if self.changed_at() == self.read_at {
            return None;
        }
        match self.reload() {
            Ok(()) => {
                tracing::info!(keys = ?self.ids(), "trusted keys read again");
                None
            }
            Err(error) => Some(format!(
                "the trusted keys changed and do not read, the ones read before stay: {error:#}"
            )),
        }
    }

    /// Why `tenancy` may not be applied by an agent that enforces the
    /// signed state `live` (if any): `None` when its signature verifies.
    pub fn refuse(&self, tenancy: &Tenancy, live: Option<&StateSignature>) -> Option<String> {
        let Some(signed) = &tenancy.signature else {
            return Some("it carries no signature".to_owned());
        };
        let Some((_, key)) = self.keys.iter().find(|(id, _)| *id == signed.key_id) else {
            return Some(format!(
                "it is signed by key {}, which is not trusted here (trusted: {})",
                signed.key_id,
                self.ids().join(", ")
            ));
        };
        let verified = from_hex::<64>(&signed.signature, "the signature")
            .map(|bytes| ed25519_dalek::Signature::from_bytes(&bytes))
            .is_ok_and(|signature| {
                key.verify_strict(
                    &message(&signed.digest, signed.sequence, &signed.previous),
                    &signature,
                )
                .is_ok()
            });
        if !verified {
            return Some(format!(
                "its signature by key {} does not verify",
                signed.key_id
            ));
        }
        match tenancy.signed_digest() {
            Ok(digest) if digest == signed.digest => {}
            _ => {
                return Some(format!(
                    "its records are not the ones key {} signed (sequence {}): they were \
                     written behind the API's back",
                    signed.key_id, signed.sequence
                ));
            }
        }
        if let Some(live) = live
            && (signed.sequence < live.sequence
                || (signed.sequence == live.sequence && signed.digest != live.digest))
        {
            return Some(format!(
                "it is signed state {} while state {} is enforced here: an older state \
                 replayed (a rollback)",
                signed.sequence, live.sequence
            ));
        }
        None
    }
}
