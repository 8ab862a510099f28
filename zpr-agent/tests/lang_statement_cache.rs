//! `parse_cached` gives exactly what `parse` gives, spans and diagnostics
//! included, for every text of random edit sequences carrying one cache
//! along: lines of every kind (statements, broken ones, statements split
//! over lines, comments, blanks, look-alike quotes, CRLF) inserted,
//! removed and replaced.

use proptest::prelude::*;
use zpr_agent::lang::{StatementCache, parse, parse_cached};

/// Lines of the diagnostics corpus (every kind of mistake) and of the
/// three-tier example, and pieces that only make sense together.
fn pool() -> Vec<String> {
    let mut lines: Vec<String> = [
        "",
        "   ",
        "# a comment",
        "in net:a VCN allow app:web endpoints to connect to app:db endpoints with protocol='tcp/22'",
        "  in net:a VCN allow app:web endpoints to connect to app:db endpoints  ",
        "in net:a VCN allow app:web endpoints to connect to app:db endpoints # trailing comment",
        "in net:a VCN allow app:web endpoints to connect to app:db endpoints\r",
        "in net:a VCN allow app:web endpoints",
        "  to connect to app:db endpoints",
        "  with protocol='udp/53'",
        "in net:a VCN",
        "allow app:jump endpoints to connect to app:db endpoints with protocol=\u{2018}tcp/22\u{2019}",
        "in net:a VCN allow app:web endpoints to connect to 'hr.team:o''brien' endpoints",
        "in net:a VCN allow '10.0.0.0/8' to connect to app:db endpoints with protocol='tcp/1-65535'",
        "in net:a VCN allow app:web endpoints to connect to app:db endpoints with protocol='tcp/22' and connection-state='stateless'",
        "allow",
    ]
    .map(str::to_owned)
    .to_vec();
    let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/diagnostics");
    let mut files: Vec<_> = std::fs::read_dir(corpus)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "zpr"))
        .collect();
    files.push(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/three-tier/three-tier.zpr"
        )
        .into(),
    );
    files.sort();
    for file in files {
        lines.extend(
            std::fs::read_to_string(file)
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
    }
    lines.sort();
    lines.dedup();
    lines
}

#[derive(Debug, Clone)]
enum Edit {
    Insert { at: usize, line: usize },
    Remove { at: usize },
    Replace { at: usize, line: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(at, line)| Edit::Insert { at, line }),
        any::<usize>().prop_map(|at| Edit::Remove { at }),
        (any::<usize>(), any::<usize>()).prop_map(|(at, line)| Edit::Replace { at, line }),
    ]
}

fn apply(lines: &mut Vec<String>, edit: &Edit, pool: &[String]) {
    let position = |at: usize, len: usize| at % len.max(1);
    match *edit {
        Edit::Insert { at, line } => {
            let at = position(at, lines.len() + 1);
            lines.insert(at, pool[line % pool.len()].clone());
        }
        Edit::Remove { at } if !lines.is_empty() => {
            lines.remove(position(at, lines.len()));
        }
        Edit::Replace { at, line } if !lines.is_empty() => {
            let at = position(at, lines.len());
            lines[at] = pool[line % pool.len()].clone();
        }
        Edit::Remove { .. } | Edit::Replace { .. } => {}
    }
}

/// Everything a parse gives, spans included (they take no part in `==`).
fn parsed_as_text(text: &str, cache: Option<&mut StatementCache>) -> String {
    match cache {
        Some(cache) => format!("{:#?}", parse_cached("p", text, cache)),
        None => format!("{:#?}", parse("p", text)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_cached_parse_is_the_parse(
        start in proptest::collection::vec(any::<usize>(), 0..30),
        edits in proptest::collection::vec(edit(), 1..12),
        final_line_end in any::<bool>(),
    ) {
        let pool = pool();
        let mut lines: Vec<String> = start.iter().map(|&i| pool[i % pool.len()].clone()).collect();
        let mut cache = StatementCache::default();
        let text = |lines: &[String]| {
            let mut text = lines.join("\n");
            if final_line_end {
                text.push('\n');
            }
            text
        };
        let first = text(&lines);
        prop_assert_eq!(parsed_as_text(&first, Some(&mut cache)), parsed_as_text(&first, None));
        for edit in &edits {
            apply(&mut lines, edit, &pool);
            let text = text(&lines);
            prop_assert_eq!(
                parsed_as_text(&text, Some(&mut cache)),
                parsed_as_text(&text, None),
                "after {:?}:\n{}", edit, text
            );
        }
    }
}

#[test]
fn the_cache_keeps_the_statement_lines_of_the_last_text_only() {
    let statement = |port: u32| {
        format!(
            "in net:a VCN allow app:web endpoints to connect to app:db endpoints with \
             protocol='tcp/{port}'"
        )
    };
    let lines: Vec<String> = (1..=100).map(statement).collect();
    let mut cache = StatementCache::default();
    let first = lines.join("\n");
    assert!(parse_cached("p", &first, &mut cache).is_ok());
    assert_eq!(cache.len(), 100);
    let mut changed = lines.clone();
    changed[50] = statement(9999);
    changed.insert(10, "# a comment".to_owned());
    let second = changed.join("\n");
    let parsed = parse_cached("p", &second, &mut cache).unwrap();
    assert_eq!(
        format!("{parsed:?}"),
        format!("{:?}", parse("p", &second).unwrap())
    );
    assert_eq!(parsed.policy.statements[50].id.line, 52);
    // The replaced line's statement is gone; the comment is no statement.
    assert_eq!(cache.len(), 100);
    assert!(parse_cached("p", "", &mut cache).is_ok());
    assert!(cache.is_empty());
}
