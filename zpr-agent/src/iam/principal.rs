//! Who is calling: the uid and gid the kernel reports for the socket peer
//! (SO_PEERCRED), the user's name, and every group the user belongs to
//! (getgrouplist), by name. No passwords: the OS already knows who it is.

use std::ffi::{CStr, CString};

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub uid: u32,
    pub gid: u32,
    /// The user name, or the uid as text when the user has no passwd entry.
    pub user: String,
    /// Group names (primary first), or gids as text where a group has no name.
    pub groups: Vec<String>,
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
            uid,
            gid,
            user: user.unwrap_or_else(|| uid.to_string()),
            groups: gids
                .into_iter()
                .map(|g| group_name(g).unwrap_or_else(|| g.to_string()))
                .collect(),
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|own| own == group)
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "user {} (uid {}; groups {})",
            self.user,
            self.uid,
            self.groups.join(", ")
        )
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
