//! `--quarantine`: which vNICs get the deny-all programs. A vNIC whose
//! name one of the globs matches, present in the agent's network
//! namespace, and that no endpoint is registered for on this node, passes
//! nothing but ARP and IPv6 neighbour discovery (and DHCP with
//! `--quarantine-allow-dhcp`) until its registration arrives. Decided
//! from the live Plan and the link list only: never from reaching the
//! store, so a VM that boots while the store is down is closed too.

use std::{collections::BTreeSet, fmt, str::FromStr};

use crate::datapath::InterfaceIndexes;

/// The longest interface name Linux takes (IFNAMSIZ less the NUL).
const INTERFACE_NAME_MAX: usize = 15;

/// What `--quarantine` takes, for the messages that refuse the rest.
const EXPECTED: &str = "expected comma-separated interface-name globs, such as 'vnet*,tap*': \
                        letters, digits and . _ - @ +, with * for any run of characters and ? \
                        for one character";

/// `--quarantine`'s interface-name globs; none means quarantine is off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quarantine {
    globs: Vec<Glob>,
}

impl Quarantine {
    pub fn is_on(&self) -> bool {
        !self.globs.is_empty()
    }

    /// The globs as given, for the status.
    pub fn globs(&self) -> Vec<String> {
        self.globs.iter().map(ToString::to_string).collect()
    }

    /// Whether a vNIC of this name is quarantined when unregistered.
    pub fn matches(&self, interface: &str) -> bool {
        self.globs.iter().any(|glob| glob.matches(interface))
    }

    /// Of the `present` interfaces (ifindex, name), those to quarantine:
    /// matched, and not `registered` to an endpoint of this node.
    pub fn unregistered(
        &self,
        present: &[(u32, String)],
        registered: &BTreeSet<String>,
    ) -> InterfaceIndexes {
        present
            .iter()
            .filter(|(_, name)| self.matches(name) && !registered.contains(name))
            .map(|(ifindex, name)| (name.clone(), *ifindex))
            .collect()
    }
}

impl FromStr for Quarantine {
    type Err = String;

    fn from_str(text: &str) -> Result<Quarantine, String> {
        let globs = text
            .split(',')
            .map(str::trim)
            .map(str::parse)
            .collect::<Result<Vec<Glob>, String>>()?;
        Ok(Quarantine { globs })
    }
}

/// One interface-name glob: `*` any run of characters, `?` one.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Glob(String);

impl FromStr for Glob {
    type Err = String;

    fn from_str(text: &str) -> Result<Glob, String> {
        if text.is_empty() {
            return Err(format!("an empty glob; {EXPECTED}"));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._-@+*?".contains(*c)))
        {
            return Err(format!("'{text}' holds {bad:?}; {EXPECTED}"));
        }
        // Every `*` may match nothing: the rest must still fit in a name.
        if text.chars().filter(|c| *c != '*').count() > INTERFACE_NAME_MAX {
            return Err(format!(
                "'{text}' matches no interface: names are at most {INTERFACE_NAME_MAX} \
                 characters; {EXPECTED}"
            ));
        }
        Ok(Glob(text.to_owned()))
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Glob {
    fn matches(&self, name: &str) -> bool {
        matches_from(self.0.as_bytes(), name.as_bytes())
    }
}

/// Glob matching with backtracking to the last `*` only: linear enough
/// for interface names, and no recursion.
fn matches_from(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // The last `*` seen, and where in the name it was tried up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quarantine(text: &str) -> Quarantine {
        text.parse().expect("valid globs")
    }

    #[test]
    fn globs_match_whole_names() {
        let q = quarantine("vnet*,tap?,*-vm");
        for name in ["vnet0", "vnet", "vnet123", "tap1", "web-vm", "-vm"] {
            assert!(q.matches(name), "{name}");
        }
        for name in ["xvnet0", "tap", "tap12", "web-vm0", "eth0", ""] {
            assert!(!q.matches(name), "{name}");
        }
        assert!(quarantine("a*b*c").matches("axxbyyc"));
        assert!(!quarantine("a*b*c").matches("axxbyy"));
        assert!(quarantine("*").matches("anything"));
    }

    #[test]
    fn bad_globs_are_refused_with_what_was_expected() {
        for (text, says) in [
            ("vnet*,", "an empty glob"),
            ("vnet[0-9]", "holds '['"),
            ("tap 0", "holds ' '"),
            ("vnet/0", "holds '/'"),
            ("a-name-far-too-long*", "at most 15 characters"),
        ] {
            let err = text.parse::<Quarantine>().expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
            assert!(err.contains("expected comma-separated"), "{text}: {err}");
        }
    }

    #[test]
    fn only_present_unregistered_matching_vnics_are_quarantined() {
        let q = quarantine("vnet*");
        let present = vec![
            (2, "eth0".to_owned()),
            (7, "vnet0".to_owned()),
            (8, "vnet1".to_owned()),
        ];
        let registered = BTreeSet::from(["vnet1".to_owned(), "vnet9".to_owned()]);
        let quarantined = q.unregistered(&present, &registered);
        assert_eq!(
            quarantined,
            InterfaceIndexes::from([("vnet0".to_owned(), 7)])
        );
        assert!(
            Quarantine::default()
                .unregistered(&present, &BTreeSet::new())
                .is_empty()
        );
    }
}
