//! IP address and CIDR endpoints (section 4 of the dialect).

use std::net::IpAddr;

use crate::lang::ast::{IpPrefix, Span};
use crate::lang::diagnostic::Diagnostic;

/// A prefix as written: host bits set in a CIDR are masked, with a warning.
pub struct ParsedPrefix {
    pub prefix: IpPrefix,
    pub warning: Option<Diagnostic>,
}

fn full_length(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

/// Parses `10.0.0.5`, `10.0.0.0/16`, `2001:db8::/32`. `span` is where the
/// text stands, for diagnostics.
pub fn parse_prefix(text: &str, span: Span) -> Result<ParsedPrefix, Diagnostic> {
    let (address_text, length_text) = match text.split_once('/') {
        Some((address, length)) => (address, Some(length)),
        None => (text, None),
    };
    let address: IpAddr = address_text.parse().map_err(|_| {
        Diagnostic::error(format!("'{address_text}' is not a valid IP address"), span).with_help(
            "write an IPv4 address like '10.0.0.5' or an IPv6 address like '2001:db8::5'",
        )
    })?;
    let max = full_length(address);
    let len = match length_text {
        None => max,
        Some(length) => length
            .parse::<u8>()
            .ok()
            .filter(|&len| len <= max)
            .ok_or_else(|| {
                Diagnostic::error(format!("'/{length}' is not a valid prefix length"), span)
                    .with_label(format!("must be 0..{max}"))
                    .with_help(format!(
                        "an {} prefix length is a number from 0 to {max}",
                        if address.is_ipv4() { "IPv4" } else { "IPv6" }
                    ))
            })?,
    };
    let prefix = IpPrefix {
        addr: masked(address, len),
        len,
    };
    let warning = (prefix.addr != address).then(|| {
        let canonical = format_prefix(&prefix);
        Diagnostic::warning(format!("host bits are set in '{text}'"), span)
            .with_label(format!("means {canonical}"))
            .with_help(format!("write '{canonical}'"))
    });
    Ok(ParsedPrefix { prefix, warning })
}

fn masked(address: IpAddr, len: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// `10.0.0.5` for a single address, `10.0.0.0/16` for a shorter prefix.
pub fn format_prefix(prefix: &IpPrefix) -> String {
    if prefix.len == full_length(prefix.addr) {
        prefix.addr.to_string()
    } else {
        format!("{}/{}", prefix.addr, prefix.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(String, bool), String> {
        parse_prefix(text, Span::default())
            .map(|parsed| (format_prefix(&parsed.prefix), parsed.warning.is_some()))
            .map_err(|diagnostic| diagnostic.message)
    }

    #[test]
    fn prefixes() {
        assert_eq!(parse("10.0.0.5"), Ok(("10.0.0.5".into(), false)));
        assert_eq!(parse("0.0.0.0/0"), Ok(("0.0.0.0/0".into(), false)));
        assert_eq!(parse("1.2.3.4/16"), Ok(("1.2.0.0/16".into(), true)));
        assert_eq!(parse("2001:db8::1/32"), Ok(("2001:db8::/32".into(), true)));
        assert_eq!(parse("::/0"), Ok(("::/0".into(), false)));
        assert!(parse("10.0.0.0/33").unwrap_err().contains("prefix length"));
        assert!(
            parse("10.0.0.300")
                .unwrap_err()
                .contains("not a valid IP address")
        );
        assert!(
            parse("2001:db8::/129")
                .unwrap_err()
                .contains("prefix length")
        );
    }
}
