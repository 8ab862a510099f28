//! Who is calling. On the Unix socket: the uid and gid the kernel reports
//! for the peer (SO_PEERCRED), the user's name, and every group the user
//! belongs to (getgrouplist), by name; no passwords, the OS already knows
//! who it is. Over the network: the client certificate the TLS handshake
//! verified, read as Kubernetes reads one (CN the user, each O and OU a
//! group), so IAM statements name the same groups either way.

use std::ffi::{CStr, CString};

use anyhow::Context as _;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The user name, or the uid as text when the user has no passwd entry.
    pub user: String,
    /// Group names (primary first), or gids as text where a group has no name.
    pub groups: Vec<String>,
    /// How the caller proved who it is (audit records keep it).
    #[serde(flatten)]
    pub credential: Credential,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Credential {
    /// The Unix socket's peer.
    Peer { uid: u32, gid: u32 },
    /// A client certificate verified against `zpr serve --client-ca`.
    Certificate { certificate: CertificateName },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateName {
    /// As `openssl x509 -subject` prints it (`CN=alice, O=zpr-admins`).
    pub subject: String,
    /// Hex, as `openssl x509 -serial` prints it: what a revocation names.
    pub serial: String,
}

impl Principal {
    /// The principal for a peer's uid and gid, looked up in the OS user
    /// and group databases.
    pub fn from_ids(uid: u32, gid: u32) -> Principal {
        let user = user_name(uid);
        let mut gids = match &user {
            Some(name) => group_list(name, gid),
            None => vec![gid],
        };
        if let Some(primary) = gids.iter().position(|&g| g == gid) {
            gids.swap(0, primary);
        }
        Principal {
            user: user.unwrap_or_else(|| uid.to_string()),
            groups: gids
                .into_iter()
                .map(|g| group_name(g).unwrap_or_else(|| g.to_string()))
                .collect(),
            credential: Credential::Peer { uid, gid },
        }
    }

    /// The principal a verified client certificate (DER) names: its CN is
    /// the user, its O and OU values the groups. A certificate without a
    /// CN names nobody and is refused.
    pub fn from_certificate(der: &[u8]) -> anyhow::Result<Principal> {
        let (_, certificate) = x509_parser::parse_x509_certificate(der)
            .map_err(|error| anyhow::anyhow!("the client certificate does not parse: {error}"))?;
        let subject = certificate.subject();
        let text = |attribute: &x509_parser::x509::AttributeTypeAndValue| {
            attribute.as_str().map(str::to_owned).ok()
        };
        let user = subject
            .iter_common_name()
            .find_map(text)
            .context("the client certificate's subject has no CN (CN names the user)")?;
        let groups = subject
            .iter_organization()
            .chain(subject.iter_organizational_unit())
            .filter_map(text)
            .collect();
        Ok(Principal {
            user,
            groups,
            credential: Credential::Certificate {
                certificate: CertificateName {
                    subject: x509_parser::x509::X509Name::to_string_with_registry(
                        subject,
                        x509_parser::objects::oid_registry(),
                    )
                    .unwrap_or_else(|_| subject.to_string()),
                    serial: certificate
                        .raw_serial_as_string()
                        .replace(':', "")
                        .to_uppercase(),
                },
            },
        })
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|own| own == group)
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let groups = self.groups.join(", ");
        match &self.credential {
            Credential::Peer { uid, .. } => {
                write!(f, "user {} (uid {uid}; groups {groups})", self.user)
            }
            Credential::Certificate { certificate } => write!(
                f,
                "user {} (certificate {} serial {}; groups {groups})",
                self.user, certificate.subject, certificate.serial
            ),
        }
    }
}

/// A buffer size for the reentrant database calls, grown on ERANGE.
const INITIAL_BUFFER: usize = 1024;

fn user_name(uid: u32) -> Option<String> {
    lookup_name(
        // SAFETY: the pointers are valid for the sizes given.
        |entry, buffer, size, result| unsafe { libc::getpwuid_r(uid, entry, buffer, size, result) },
        |entry: &libc::passwd| entry.pw_name,
    )
}

fn group_name(gid: u32) -> Option<String> {
    lookup_name(
        // SAFETY: the pointers are valid for the sizes given.
        |entry, buffer, size, result| unsafe { libc::getgrgid_r(gid, entry, buffer, size, result) },
        |entry: &libc::group| entry.gr_name,
    )
}

/// Runs a reentrant name-database lookup (`getpwuid_r`, `getgrgid_r`),
/// growing the buffer on ERANGE; `name` picks the name out of the entry.
fn lookup_name<Entry>(
    call: impl Fn(*mut Entry, *mut libc::c_char, usize, *mut *mut Entry) -> libc::c_int,
    name: impl Fn(&Entry) -> *const libc::c_char,
) -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; INITIAL_BUFFER];
    loop {
        // SAFETY: all-zero is a valid passwd or group (null pointers, zero ids).
        let mut entry: Entry = unsafe { std::mem::zeroed() };
        let mut result = std::ptr::null_mut();
        let code = call(&mut entry, buffer.as_mut_ptr(), buffer.len(), &mut result);
        if code == libc::ERANGE {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        if code != 0 || result.is_null() {
            return None;
        }
        // SAFETY: the name points into `buffer`, NUL-terminated.
        return Some(
            unsafe { CStr::from_ptr(name(&entry)) }
                .to_string_lossy()
                .into_owned(),
        );
    }
}

/// Every group of `user`, `gid` included.
fn group_list(user: &str, gid: u32) -> Vec<u32> {
    let Ok(name) = CString::new(user) else {
        return vec![gid];
    };
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    loop {
        let mut count = groups.len() as libc::c_int;
        // SAFETY: `groups` holds `count` entries; getgrouplist writes at most
        // that many and says how many it needs.
        let found =
            unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if found >= 0 {
            groups.truncate(count as usize);
            return groups;
        }
        groups.resize((count as usize).max(groups.len() * 2), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_root_with_its_group() {
        let root = Principal::from_ids(0, 0);
        assert_eq!(root.user, "root");
        assert_eq!(root.groups.first().map(String::as_str), Some("root"));
    }

    #[test]
    fn unknown_ids_are_numbers() {
        let nobody = Principal::from_ids(4_000_000_001, 4_000_000_002);
        assert_eq!(nobody.user, "4000000001");
        assert_eq!(nobody.groups, ["4000000002"]);
    }
}
