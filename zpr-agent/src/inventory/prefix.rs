//! Address arithmetic on [`IpPrefix`]: containment and overlap, on the
//! address's bits left-aligned in a `u128` so both families share one code path.

use std::net::IpAddr;

use crate::lang::IpPrefix;

/// IPv4 or IPv6; a prefix never contains an address of the other family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(address: IpAddr) -> Family {
        if address.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    /// Bits in an address of this family.
    pub fn width(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// The address's bits, most significant first, left-aligned in a `u128`.
pub fn bits(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address of `family` whose left-aligned bits are `bits`.
pub fn address(family: Family, bits: u128) -> IpAddr {
    match family {
        // Truncation keeps exactly the 32 address bits shifted down.
        Family::V4 => IpAddr::V4(((bits >> 96) as u32).into()),
        Family::V6 => IpAddr::V6(bits.into()),
    }
}

/// Mask keeping the first `len` bits of a left-aligned address.
pub fn mask(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

pub fn contains(prefix: &IpPrefix, address: IpAddr) -> bool {
    Family::of(prefix.addr) == Family::of(address)
        && (bits(address) & mask(prefix.len)) == bits(prefix.addr)
}

/// True when one prefix contains the other (prefixes never partly overlap).
pub fn overlaps(a: &IpPrefix, b: &IpPrefix) -> bool {
    let shorter = a.len.min(b.len);
    Family::of(a.addr) == Family::of(b.addr)
        && (bits(a.addr) & mask(shorter)) == (bits(b.addr) & mask(shorter))
}

/// The single-address prefix of `address`.
pub fn host(address: IpAddr) -> IpPrefix {
    IpPrefix {
        addr: address,
        len: Family::of(address).width(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(text: &str) -> IpPrefix {
        let (addr, len) = text.split_once('/').unwrap();
        IpPrefix {
            addr: addr.parse().unwrap(),
            len: len.parse().unwrap(),
        }
    }

    #[test]
    fn containment_respects_family_and_length() {
        let net = prefix("10.0.0.0/16");
        assert!(contains(&net, "10.0.255.1".parse().unwrap()));
        assert!(!contains(&net, "10.1.0.1".parse().unwrap()));
        assert!(!contains(&prefix("0.0.0.0/0"), "::1".parse().unwrap()));
        assert!(contains(&prefix("::/0"), "fd00::1".parse().unwrap()));
        assert!(contains(
            &prefix("fd00:0:1::/48"),
            "fd00:0:1::10".parse().unwrap()
        ));
        assert!(!contains(
            &prefix("fd00:0:1::/48"),
            "fd00:0:2::10".parse().unwrap()
        ));
    }

    #[test]
    fn overlap_is_nesting() {
        assert!(overlaps(&prefix("10.0.0.0/8"), &prefix("10.1.0.0/16")));
        assert!(overlaps(&prefix("10.1.0.0/16"), &prefix("10.0.0.0/8")));
        assert!(!overlaps(&prefix("10.0.0.0/16"), &prefix("10.1.0.0/16")));
        assert!(!overlaps(&prefix("0.0.0.0/0"), &prefix("::/0")));
    }

    #[test]
    fn bits_round_trip() {
        for text in ["10.1.2.3", "255.255.255.255", "fd00::10", "::"] {
            let addr: IpAddr = text.parse().unwrap();
            assert_eq!(address(Family::of(addr), bits(addr)), addr);
        }
        assert_eq!(mask(0), 0);
        assert_eq!(mask(128), u128::MAX);
        assert_eq!(mask(8), 0xff << 120);
    }
}
