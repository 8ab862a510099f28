//! Names for the addresses of kernel events (`zpr monitor`). The kernel
//! reports the UID an address resolved to, and a UID is shared by every
//! address no selector tells apart: the internet and an untagged jump host
//! both match only `'0.0.0.0/0'`, say. Naming an address by the first
//! endpoint of its identity would call an internet source `jump`; it is
//! named by what it is instead: the endpoint that declares it, else the
//! prefix it fell in, with the endpoints sharing that identity.

use std::net::IpAddr;

use super::plan::Identity;
use crate::inventory::prefix;
use crate::lang::address::format_prefix;

/// Endpoints named after a prefix; more are counted, not listed.
const NAMED_ENDPOINTS: usize = 3;

impl Identity {
    /// `address` (which resolved to this identity), as an operator knows
    /// it: `db` for an endpoint's address, `0.0.0.0/0 (jump)` for an
    /// address in a prefix whose identity the jump host shares, `10.9.0.0/16`
    /// for one no endpoint shares.
    pub fn name_of(&self, address: IpAddr) -> String {
        if let Some(member) = self.members.iter().find(|m| m.address == address) {
            return member.endpoint.clone();
        }
        let prefix = self
            .prefixes
            .iter()
            .filter(|prefix| prefix::contains(prefix, address))
            .max_by_key(|prefix| prefix.len);
        let endpoints = self.endpoint_names();
        match (prefix, endpoints) {
            (Some(prefix), None) => format_prefix(prefix),
            (Some(prefix), Some(endpoints)) => format!("{} ({endpoints})", format_prefix(prefix)),
            // Resolved by a Plan other than this one (the event is older
            // than a reload): the identity is all that can be said.
            (None, Some(endpoints)) => format!("uid {} ({endpoints})", self.uid),
            (None, None) => format!("uid {}", self.uid),
        }
    }

    /// The endpoints holding this identity, the first few by name.
    fn endpoint_names(&self) -> Option<String> {
        let mut names: Vec<&str> = self.members.iter().map(|m| m.endpoint.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let more = names.len().saturating_sub(NAMED_ENDPOINTS);
        names.truncate(NAMED_ENDPOINTS);
        match (names.is_empty(), more) {
            (true, _) => None,
            (false, 0) => Some(names.join(", ")),
            (false, more) => Some(format!("{}, and {more} more", names.join(", "))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::IdentityMember;
    use crate::lang::IpPrefix;

    fn prefix(text: &str) -> IpPrefix {
        crate::lang::address::parse_prefix(text, crate::lang::Span::new(0, 0))
            .unwrap()
            .prefix
    }

    fn outside() -> Identity {
        Identity {
            uid: 1,
            members: vec![
                IdentityMember {
                    endpoint: "jump".to_owned(),
                    address: "192.0.2.7".parse().unwrap(),
                },
                IdentityMember {
                    endpoint: "external".to_owned(),
                    address: "192.0.2.8".parse().unwrap(),
                },
            ],
            prefixes: vec![prefix("0.0.0.0/0"), prefix("10.9.0.0/16")],
            selectors: vec!["'0.0.0.0/0'".to_owned()],
        }
    }

    #[test]
    fn an_endpoint_address_is_named_by_its_endpoint() {
        assert_eq!(outside().name_of("192.0.2.7".parse().unwrap()), "jump");
    }

    #[test]
    fn another_address_is_named_by_its_longest_prefix_and_the_endpoints_sharing_it() {
        let identity = outside();
        assert_eq!(
            identity.name_of("198.51.100.10".parse().unwrap()),
            "0.0.0.0/0 (external, jump)"
        );
        assert_eq!(
            identity.name_of("10.9.1.1".parse().unwrap()),
            "10.9.0.0/16 (external, jump)"
        );
        let alone = Identity {
            members: Vec::new(),
            ..identity
        };
        assert_eq!(alone.name_of("10.9.1.1".parse().unwrap()), "10.9.0.0/16");
    }

    #[test]
    fn many_endpoints_are_counted_not_listed() {
        let identity = Identity {
            members: (0..5)
                .map(|n| IdentityMember {
                    endpoint: format!("host-{n}"),
                    address: IpAddr::from([192, 0, 2, n]),
                })
                .collect(),
            ..outside()
        };
        assert_eq!(
            identity.name_of("203.0.113.1".parse().unwrap()),
            "0.0.0.0/0 (host-0, host-1, host-2, and 2 more)"
        );
    }

    #[test]
    fn an_address_of_another_plan_gets_the_uid() {
        let identity = Identity {
            prefixes: vec![prefix("10.9.0.0/16")],
            ..outside()
        };
        assert_eq!(
            identity.name_of("203.0.113.1".parse().unwrap()),
            "uid 1 (external, jump)"
        );
    }
}
