//! Guesses at what the writer meant: closest names by edit distance and the
//! well-known mistakes (other tools' verbs, service names for ports).

/// Edit distance counting a swap of neighbours as one typo (optimal string
/// alignment), ASCII-case-insensitive.
pub fn edit_distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(&a.to_ascii_lowercase(), &b.to_ascii_lowercase())
}

/// The candidate closest to `word`, if it is close enough to be a typo:
/// at most a third of the candidate's length away (and at least one edit).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|&(distance, candidate)| distance <= (candidate.len() / 3).max(1))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Words other policy languages use to refuse traffic.
pub fn is_deny_word(word: &str) -> bool {
    [
        "deny", "block", "drop", "reject", "refuse", "forbid", "disallow",
    ]
    .iter()
    .any(|deny| deny.eq_ignore_ascii_case(word))
}

/// Words other policy languages use where ZPR says `allow`.
pub fn is_allow_synonym(word: &str) -> bool {
    ["permit", "accept", "grant", "pass", "allows", "allowed"]
        .iter()
        .any(|allow| allow.eq_ignore_ascii_case(word))
}

/// Words people write where ZPR's verb is `connect to`.
pub fn is_verb_synonym(word: &str) -> bool {
    [
        "access",
        "reach",
        "talk",
        "communicate",
        "call",
        "send",
        "connects",
        "contact",
        "use",
        "open",
        "read",
        "write",
        "ssh",
    ]
    .iter()
    .any(|verb| verb.eq_ignore_ascii_case(word))
}

/// The `protocol` value that stands for a well-known service name.
pub fn protocol_for_service(name: &str) -> Option<&'static str> {
    const SERVICES: &[(&str, &str)] = &[
        ("ssh", "tcp/22"),
        ("sftp", "tcp/22"),
        ("scp", "tcp/22"),
        ("telnet", "tcp/23"),
        ("ftp", "tcp/21"),
        ("smtp", "tcp/25"),
        ("dns", "udp/53"),
        ("http", "tcp/80"),
        ("https", "tcp/443"),
        ("tls", "tcp/443"),
        ("ntp", "udp/123"),
        ("ldap", "tcp/389"),
        ("ldaps", "tcp/636"),
        ("snmp", "udp/161"),
        ("sqlnet", "tcp/1521"),
        ("sql*net", "tcp/1521"),
        ("oracle", "tcp/1521"),
        ("mysql", "tcp/3306"),
        ("rdp", "tcp/3389"),
        ("postgres", "tcp/5432"),
        ("postgresql", "tcp/5432"),
        ("redis", "tcp/6379"),
        ("kafka", "tcp/9092"),
        ("ping", "icmp"),
    ];
    SERVICES
        .iter()
        .find(|(service, _)| service.eq_ignore_ascii_case(name))
        .map(|&(_, protocol)| protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_and_closest() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("crop", "corp"), 1);
        assert_eq!(edit_distance("PROTOCOL", "protocol"), 0);
        assert_eq!(
            closest("protocl", ["protocol", "connection-state"]),
            Some("protocol")
        );
        assert_eq!(
            closest("connection-stat", ["protocol", "connection-state"]),
            Some("connection-state")
        );
        assert_eq!(closest("port", ["protocol", "connection-state"]), None);
    }

    #[test]
    fn tables() {
        assert!(is_deny_word("DENY"));
        assert!(is_verb_synonym("access"));
        assert_eq!(protocol_for_service("SSH"), Some("tcp/22"));
        assert_eq!(protocol_for_service("tcp"), None);
    }
}
