//! Policy files as a whole: statements over several lines, comments, blank
//! lines, statement identities, recovery after errors, `fmt` with comments,
//! JSON diagnostics, and rule 7 against an inventory.

use zpr_agent::inputs::check_against_inventory;
use zpr_agent::inventory::Inventory;
use zpr_agent::lang::{Diagnostic, Severity, SourceFile, format_source, parse};

fn errors(source: &str) -> Vec<Diagnostic> {
    parse("p", source).expect_err("the source has errors")
}

#[test]
fn statements_continue_while_incomplete_and_are_named_by_their_first_line() {
    let source = "# header\n\
                  \n\
                  in net:prod VCN allow app:web endpoints   # why\n\
                  \tto connect to\n\
                  app:db endpoints with protocol='tcp/1521'\n\
                  allow app:a endpoints in net:x VCN to connect to app:b endpoints\n\
                  \x20 with protocol='udp/53'\n\
                  \x20 in net:y VCN with connection-state='stateless'\n\
                  In NET:A vcn ALLOW all-endpoints TO CONNECT TO 10.0.0.1\n";
    let parsed = parse("three-tier", source).unwrap_or_else(|e| panic!("{e:#?}"));
    let ids: Vec<String> = parsed
        .policy
        .statements
        .iter()
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(ids, ["three-tier:3", "three-tier:6", "three-tier:9"]);
    assert!(parsed.policy.statements[1].is_stateless());
    assert_eq!(parsed.policy.name, "three-tier");
}

#[test]
fn every_broken_statement_of_a_file_is_reported() {
    let source = "in net:a VCN deny app:web endpoints to connect to app:db endpoints\n\
                  in net:a VCN allow app:web endpoints to connect to app:db endpoints\n\
                  in net:a VCN allow app:web endpoints to access app:db endpoints\n\
                  in net:a VCN allow app:web endpoints to connect to app:db endpoints with protocol='ssh'\n\
                  in net:a VCN allow all-endpoints to connect to all-endpoints\n";
    let diagnostics = errors(source);
    let file = SourceFile::new("p.zpr", source);
    let lines: Vec<usize> = diagnostics
        .iter()
        .map(|d| file.position(d.span.start).line)
        .collect();
    assert_eq!(lines, [1, 3, 4, 5], "{diagnostics:#?}");
}

#[test]
fn one_statement_can_have_several_errors() {
    let diagnostics = errors(
        "in '10.0.0.0/8' VCN allow app$:x endpoints to connect to app:db endpoints with protocol='tcp/0'\n",
    );
    let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[0].contains("location must be a security attribute"));
    assert!(messages[1].contains("'$' is not allowed"));
    assert!(messages[2].contains("port 0 is out of range"));
}

#[test]
fn one_line_never_holds_two_statements() {
    let diagnostics = errors(
        "in net:a VCN allow app:a endpoints to connect to app:b endpoints in net:a VCN allow app:c endpoints to connect to app:d endpoints\n",
    );
    assert_eq!(diagnostics.len(), 1);
    assert!(
        diagnostics[0].message.contains("no second location"),
        "{diagnostics:#?}"
    );
    let diagnostics = errors(
        "allow app:a endpoints in net:a VCN to connect to app:b endpoints in net:b VCN allow app:c endpoints\n",
    );
    assert!(
        diagnostics[0]
            .message
            .contains("after the end of the statement")
    );
    assert!(
        diagnostics[0]
            .help
            .as_deref()
            .is_some_and(|h| h.contains("one line holds one statement"))
    );
}

#[test]
fn an_incomplete_statement_does_not_swallow_the_next_one() {
    let source = "in net:a VCN allow app:web endpoints to connect\n\
                  in net:a VCN allow app:api endpoints to connect to app:db endpoints\n\
                  allow app:x endpoints in net:a VCN to connect to app:y endpoints\n\
                  in net:b VCN allow app:z endpoints to connect to app:db endpoints\n";
    let diagnostics = errors(source);
    assert_eq!(diagnostics.len(), 2, "{diagnostics:#?}");
    assert!(diagnostics[0].message.contains("incomplete statement"));
    assert!(
        diagnostics[1]
            .message
            .contains("missing the destination's VCN")
    );
    // The statements after each incomplete one were read on their own.
    let valid = "in net:a VCN allow app:api endpoints to connect to app:db endpoints\n\
                 in net:b VCN allow app:z endpoints to connect to app:db endpoints\n";
    assert_eq!(
        parse("p", valid).map(|p| p.policy.statements.len()).ok(),
        Some(2)
    );
}

#[test]
fn an_unfinished_statement_at_the_end_of_the_file_is_reported() {
    let diagnostics = errors("in net:a VCN allow app:web endpoints\n   # nothing more\n");
    assert_eq!(diagnostics.len(), 1);
    assert!(
        diagnostics[0]
            .message
            .contains("incomplete statement: expected")
    );
}

#[test]
fn fmt_keeps_comments_on_their_own_lines_and_paragraphs() {
    let source = "# Front end\n\
                  \n\
                  \n\
                  IN net:prod VCN ALLOW app:web   to connect to\n\
                  \x20   app:db with protocol = 'TCP/1521' # SQL*Net\n\
                  # Back end\n\
                  allow app:a in net:x VCN to connect to app:b with connection-state='stateless' in net:y VCN with protocol='udp/53'\n\
                  in 'net:dev and test' VCN allow 10.0.0.5 endpoints to connect to 'hr.team:o''brien' endpoints\n\
                  in net:x VCN allow app:a to connect to 'app:plain' with protocol='tcp/22' and protocol.icmp.type='3'\n";
    // The last statement is invalid (ICMP type with TCP): fmt refuses.
    assert!(format_source("p", source).is_err());
    let source = source.replace(" and protocol.icmp.type='3'", "");
    let formatted = format_source("p", &source).expect("valid");
    assert_eq!(
        formatted,
        "# Front end\n\
         \n\
         # SQL*Net\n\
         in net:prod VCN allow app:web endpoints to connect to app:db endpoints with protocol='tcp/1521'\n\
         # Back end\n\
         allow app:a endpoints in net:x VCN to connect to app:b endpoints with connection-state='stateless', protocol='udp/53' in net:y VCN\n\
         in 'net:dev and test' VCN allow '10.0.0.5' to connect to 'hr.team:o''brien' endpoints\n\
         in net:x VCN allow app:a endpoints to connect to app:plain endpoints with protocol='tcp/22'\n"
    );
    assert_eq!(format_source("p", &formatted).as_ref(), Ok(&formatted));
}

#[test]
fn json_diagnostics_have_positions_and_severity() {
    let source = "\nin net:a VCN allow '1.2.3.4/16' to connect to app:db endpoints\n";
    let warnings = parse("p", source).expect("valid").warnings;
    let json = SourceFile::new("p.zpr", source).to_json(&warnings[0]);
    let value = serde_json::to_value(&json).expect("serializable");
    assert_eq!(
        value,
        serde_json::json!({
            "file": "p.zpr", "line": 2, "col": 20, "end_line": 2, "end_col": 32,
            "severity": "warning", "message": "host bits are set in '1.2.3.4/16'",
            "help": "write '1.2.0.0/16'"
        })
    );
}

const INVENTORY: &str = "
namespaces:
  - name: corp
    attributes:
      - { key: net, type: list, values: [prod, dev] }
      - { key: app, type: freeform }
vcns:
  - name: prod-vcn
    cidrs: [10.0.0.0/16]
    security-attribute: corp.net:prod
endpoints:
  - name: web
    vcn: prod-vcn
    addresses: [10.0.0.10]
    security-attributes: [corp.app:web]
";

#[test]
fn rule_7_checks_attributes_against_the_inventory() {
    let inventory = Inventory::from_yaml_str(INVENTORY).unwrap_or_else(|e| panic!("{e}"));
    let source = "in corp.net:prod VCN allow corp.app:web endpoints to connect to corp.app:db endpoints\n\
                  in corp.net:test VCN allow corp.ap:web endpoints to connect to crop.app:web endpoints\n";
    let policy = parse("p", source).expect("valid").policy;

    let found = check_against_inventory(&policy, &inventory, &mut Default::default());
    // Each at the text it names, on the second line too (a statement's
    // spans count from its line).
    let found: Vec<(Severity, &str, Option<&str>, &str)> = found
        .iter()
        .map(|d| {
            let text = &source[d.span.start..d.span.end];
            (d.severity, d.message.as_str(), d.help.as_deref(), text)
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                Severity::Warning,
                "no VCN or endpoint in the inventory carries 'corp.app:db'",
                Some("this statement can never match until something carries the attribute"),
                "corp.app:db endpoints"
            ),
            (
                Severity::Error,
                "'test' is not one of the values of 'corp.net'",
                Some("the inventory's values: prod, dev"),
                "corp.net:test"
            ),
            (
                Severity::Error,
                "namespace 'corp' has no attribute 'ap'",
                Some("did you mean 'app'?"),
                "corp.ap:web endpoints"
            ),
            (
                Severity::Error,
                "unknown namespace 'crop' in 'crop.app:web'",
                Some("did you mean 'corp'?"),
                "crop.app:web endpoints"
            ),
        ]
    );
}
