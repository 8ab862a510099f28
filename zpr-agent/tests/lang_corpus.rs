//! Every row of shared/corpus/statements.tsv: valid rows parse, validate and
//! survive `fmt`; invalid rows are rejected with a message naming the problem.

use std::path::PathBuf;

use zpr_agent::lang::{Diagnostic, format_policy, parse};

/// For each invalid statement, a phrase its diagnostics must contain
/// (message, label or help).
const EXPECTED_PROBLEMS: &[(&str, &str)] = &[
    (
        "in app:fin-network VCN allow all-endpoints to connect to all-endpoints",
        "cannot both be all-endpoints",
    ),
    (
        "in app:fin-network VCN allow 'osn-services-ip-addresses' to connect to '10.0.0.0/16'",
        "cannot both be addresses",
    ),
    (
        "in '10.0.0.0/16' VCN allow app:web endpoints to connect to app:store endpoints",
        "location must be a security attribute, not an IP address",
    ),
    (
        "in app:fin-network VCN deny app:web endpoints to connect to app:store endpoints",
        "there is no 'deny'",
    ),
    (
        "in app:fin-network VCN allow app:web endpoints to access app:store endpoints",
        "did you mean 'connect to'?",
    ),
    (
        "in app:fin-network VCN allow app:web endpoints to connect to app:store endpoints with protocol='ssh'",
        "use 'tcp/22'",
    ),
    (
        "in app:fin network VCN allow app:web endpoints to connect to app:store endpoints",
        "quote the value: 'app:fin network'",
    ),
    (
        "in app:fin-network VCN allow my.corp.biz:hr endpoints to connect to app:store endpoints",
        "key of 'my.corp.biz:hr' would contain '.'",
    ),
    (
        "in app:fin-network VCN allow app$:web endpoints to connect to app:store endpoints",
        "'$' is not allowed in the key",
    ),
    (
        "app:web endpoints to connect to app:store endpoints",
        "missing location and command",
    ),
    (
        "allow app:web endpoints in net:a VCN to connect to db:x endpoints",
        "missing the destination's VCN",
    ),
    (
        "allow app:web endpoints in net:a to connect to db:x endpoints in net:b VCN",
        "missing 'VCN' after the location",
    ),
    (
        "in net:a VCN allow app:web endpoints connect to db:x endpoints",
        "missing 'to' before 'connect'",
    ),
    (
        "allow '10.0.0.0/16' in net:a VCN to connect to db:x endpoints in net:b VCN",
        "cross-VCN form connects security-attribute endpoints only, not an IP address",
    ),
    (
        "allow app:web endpoints in net:a VCN to connect to 'osn-services-ip-addresses' in net:b VCN",
        "cross-VCN form connects security-attribute endpoints only, not osn-services-ip-addresses",
    ),
    (
        "in net:a VCN allow app:web endpoints to connect to db:x endpoints with protocol='tcp/1521' in net:b VCN",
        "has no second location",
    ),
    (
        "in net:a VCN allow app:web endpoints to connect to db:x endpoints with",
        "expected a filter after 'with'",
    ),
    (
        "in net:a VCN allow app:web endpoints to connect to db:x endpoints with protocol=tcp/22",
        "write protocol='tcp/22'",
    ),
    (
        "in net:a VCN allow app:web endpoints to connect to db:x endpoints with protocol='tcp/65536'",
        "port 65536 is out of range",
    ),
    (
        "in net:a VCN allow app:web endpoints to connect to db:x endpoints with protocol='tcp/'",
        "missing port after 'tcp/'",
    ),
    (
        "in net:a VCN allow app:web endpoints to connect to db:x endpoints with protocol='tcp/22', protocol.icmp.type='8'",
        "'protocol.icmp.type' needs protocol='icmp'",
    ),
    (
        "in net:a VCN allow app:web endpoints to connect to db:x endpoints with connection-state='established'",
        "unknown connection-state 'established'",
    ),
    (
        "in net:a VCN allow app:web endpoints to connect to '10.0.0.0/33'",
        "'/33' is not a valid prefix length",
    ),
    (
        "in net:a VCN allow all-endpoints to connect to \u{2019}osn-services-ip-addresses\u{2019} with protocol='tcp/443'",
        "use the ASCII apostrophe",
    ),
    (
        "in net:a VCN allow app:web endpoints to connect to 'my-corp.biz:dev db endpoints",
        "unterminated quote",
    ),
    (
        "in :a VCN allow app:web endpoints to connect to db:x endpoints",
        "the key of ':a' is empty",
    ),
    (
        "in net VCN allow app:web endpoints to connect to db:x endpoints",
        "expected a security attribute, found 'net'",
    ),
    (
        "in net:a VCN allow app:web endpoints to connect to db:x endpoints please",
        "unexpected 'please' after the end of the statement",
    ),
    (
        "in net:a VCN allow app:web endpoints and app:api endpoints to connect to db:x endpoints",
        "exactly one source",
    ),
    (
        "in net:a VCN allow app:web endpoints to connect to ns.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk:v endpoints",
        "key of this attribute is 101 characters long",
    ),
];

struct Row {
    line: usize,
    valid: bool,
    statement: String,
    note: String,
}

fn corpus() -> Vec<Row> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/statements.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "the statement corpus must exist at {}: {err}",
            path.display()
        )
    });
    let rows: Vec<Row> = text
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert!(
                fields.len() >= 2,
                "line {}: malformed row {line:?}",
                index + 1
            );
            let valid = match fields[0] {
                "valid" => true,
                "invalid" => false,
                other => panic!("line {}: unknown verdict {other:?}", index + 1),
            };
            Row {
                line: index + 1,
                valid,
                statement: fields[1].to_owned(),
                note: fields.get(2).copied().unwrap_or_default().to_owned(),
            }
        })
        .collect();
    assert!(
        rows.len() >= 68,
        "the corpus has {} rows, expected at least 68",
        rows.len()
    );
    rows
}

fn all_text(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| {
            format!(
                "{} | {} | {}",
                d.message,
                d.label.as_deref().unwrap_or(""),
                d.help.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn valid_rows_parse_validate_and_reformat_to_the_same_statement() {
    let mut checked = 0;
    for row in corpus().iter().filter(|row| row.valid) {
        let parsed = parse("corpus", &row.statement).unwrap_or_else(|diagnostics| {
            panic!(
                "line {} ({}) must be valid:\n{}",
                row.line,
                row.note,
                all_text(&diagnostics)
            )
        });
        assert_eq!(parsed.policy.statements.len(), 1, "line {}", row.line);
        let formatted = format_policy(&parsed.policy);
        let reparsed = parse("corpus", &formatted).unwrap_or_else(|d| {
            panic!(
                "line {}: fmt output {formatted:?} fails:\n{}",
                row.line,
                all_text(&d)
            )
        });
        assert_eq!(
            reparsed.policy, parsed.policy,
            "line {}: fmt changed the meaning",
            row.line
        );
        checked += 1;
    }
    assert!(checked >= 37, "only {checked} valid rows");
}

#[test]
fn invalid_rows_are_rejected_with_a_message_naming_the_problem() {
    let rows = corpus();
    for row in rows.iter().filter(|row| !row.valid) {
        let (_, expected) = EXPECTED_PROBLEMS
            .iter()
            .find(|(statement, _)| *statement == row.statement)
            .unwrap_or_else(|| {
                panic!(
                    "line {}: no expected message for {:?}",
                    row.line, row.statement
                )
            });
        let diagnostics = match parse("corpus", &row.statement) {
            Ok(_) => panic!("line {} ({}) must be rejected", row.line, row.note),
            Err(diagnostics) => diagnostics,
        };
        let text = all_text(&diagnostics);
        assert!(
            text.contains(expected),
            "line {} ({}): expected {expected:?} in:\n{text}",
            row.line,
            row.note
        );
    }
    for (statement, _) in EXPECTED_PROBLEMS {
        assert!(
            rows.iter()
                .any(|row| !row.valid && row.statement == *statement),
            "stale expectation for {statement:?}"
        );
    }
}

#[test]
fn corpus_warnings_are_the_documented_ones() {
    let host_bits = corpus()
        .into_iter()
        .find(|row| row.statement.contains("'1.2.3.4/16'"))
        .expect("the host-bits row");
    let parsed = parse("corpus", &host_bits.statement).expect("valid with a warning");
    assert_eq!(parsed.warnings.len(), 1);
    assert!(
        parsed.warnings[0]
            .message
            .contains("host bits are set in '1.2.3.4/16'")
    );
    assert_eq!(
        parsed.warnings[0].help.as_deref(),
        Some("write '1.2.0.0/16'")
    );
}
