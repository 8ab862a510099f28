//! Diagnostics: what went wrong, where, and how to fix it; rendered like
//! rustc's (`error: ...`, ` --> file:line:col`, source line, carets, help)
//! or as JSON for tools.

use serde::Serialize;

use crate::lang::ast::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding about a policy file. Spans are byte ranges into the file's
/// source text; an empty span points at the position between two characters
/// (used for "something is missing here").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    /// Short text printed beside the carets.
    pub label: Option<String>,
    /// A concrete way to fix the problem.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic::new(Severity::Error, message, span)
    }

    pub fn warning(message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic::new(Severity::Warning, message, span)
    }

    fn new(severity: Severity, message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic {
            severity,
            message: message.into(),
            span,
            label: None,
            help: None,
        }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = Some(label.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The rustc-like text of this diagnostic. To render many diagnostics of
    /// one file, build a [`SourceFile`] once and use [`SourceFile::render`].
    pub fn render(&self, file: &str, source: &str) -> String {
        SourceFile::new(file, source).render(self)
    }

    /// The machine-readable form of this diagnostic.
    pub fn to_json(&self, file: &str, source: &str) -> JsonDiagnostic {
        SourceFile::new(file, source).to_json(self)
    }
}

/// `zpr check --output json` form of a diagnostic. Lines and columns are
/// 1-based; columns count characters; `end_col` is one past the last
/// character of the span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JsonDiagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub end_line: usize,
    pub end_col: usize,
    pub severity: Severity,
    pub message: String,
    pub help: Option<String>,
}

/// How much of a source line a diagnostic quotes, in characters, and how
/// many of them come before the problem.
const EXCERPT_CHARS: usize = 160;
const EXCERPT_CONTEXT: usize = 60;
/// The longest message, label or help a diagnostic prints, in characters.
const MESSAGE_CHARS: usize = 300;

/// `text`, cut to [`MESSAGE_CHARS`] characters (for anything that echoes
/// input back: diagnostics, logs, the audit log).
pub fn bounded(text: &str) -> String {
    match text.char_indices().nth(MESSAGE_CHARS) {
        Some((at, _)) => format!("{}… ({} bytes in all)", &text[..at], text.len()),
        None => text.to_owned(),
    }
}

/// A source text with its line starts indexed, so positions of many
/// diagnostics are found without rescanning the file.
pub struct SourceFile<'a> {
    name: &'a str,
    text: &'a str,
    line_starts: Vec<usize>,
}

/// A 1-based line and character column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub col: usize,
}

impl<'a> SourceFile<'a> {
    pub fn new(name: &'a str, text: &'a str) -> SourceFile<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        SourceFile {
            name,
            text,
            line_starts,
        }
    }

    pub fn position(&self, offset: usize) -> Position {
        let offset = self.clamp(offset);
        let line = self.line_index(offset);
        let start = self.line_starts[line];
        Position {
            line: line + 1,
            col: self.text[start..offset].chars().count() + 1,
        }
    }

    /// rustc-style text. A long source line is quoted as an excerpt
    /// around the problem, and long messages are cut: a diagnostic stays a
    /// few lines however large the input (it goes to logs and status).
    pub fn render(&self, diagnostic: &Diagnostic) -> String {
        let start = self.clamp(diagnostic.span.start);
        let line = self.line_index(start);
        let line_text = self.line_text(line);
        let line_start = self.line_starts[line];
        let position = self.position(start);

        // The carets stop at the end of the first line of a multi-line span.
        let end = self
            .clamp(diagnostic.span.end)
            .clamp(start, line_start + line_text.len());
        let before: Vec<char> = self.text[line_start..start].chars().collect();
        let marked = self.text[start..end].chars().count().max(1);
        let after = line_text[start - line_start..].chars();
        // A line longer than EXCERPT_CHARS is quoted as an excerpt: up to
        // EXCERPT_CONTEXT characters before the problem, EXCERPT_CHARS in all.
        let long = line_text.chars().nth(EXCERPT_CHARS).is_some();
        let skipped = if long {
            before.len().saturating_sub(EXCERPT_CONTEXT)
        } else {
            0
        };
        let shown_before = &before[skipped..];
        let room = EXCERPT_CHARS.saturating_sub(shown_before.len());
        let rest: String = after.clone().take(room).collect();
        let cut_after = after.count() > room;
        let carets = marked.min(room.max(1));
        let mut excerpt = String::new();
        if skipped > 0 {
            excerpt.push('…');
        }
        excerpt.extend(shown_before);
        excerpt += &rest;
        if cut_after {
            excerpt.push('…');
        }
        // Tabs are kept in the padding so the carets line up under them.
        let padding: String = std::iter::repeat_n(' ', usize::from(skipped > 0))
            .chain(
                shown_before
                    .iter()
                    .map(|&c| if c == '\t' { '\t' } else { ' ' }),
            )
            .collect();

        let number = (line + 1).to_string();
        let gutter = " ".repeat(number.len());
        let mut out = format!(
            "{}: {}\n",
            diagnostic.severity.as_str(),
            bounded(&diagnostic.message)
        );
        out += &format!(
            "{gutter}--> {}:{}:{}\n",
            self.name, position.line, position.col
        );
        out += &format!("{gutter} |\n");
        out += &format!("{number} | {excerpt}\n");
        out += &format!("{gutter} | {padding}{}", "^".repeat(carets));
        if let Some(label) = &diagnostic.label {
            out += &format!(" {}", bounded(label));
        }
        out += "\n";
        if let Some(help) = &diagnostic.help {
            out += &format!("{gutter} |\n{gutter} = help: {}\n", bounded(help));
        }
        out
    }

    pub fn to_json(&self, diagnostic: &Diagnostic) -> JsonDiagnostic {
        let start = self.position(diagnostic.span.start);
        let end = self.position(diagnostic.span.end.max(diagnostic.span.start));
        JsonDiagnostic {
            file: self.name.to_owned(),
            line: start.line,
            col: start.col,
            end_line: end.line,
            end_col: end.col,
            severity: diagnostic.severity,
            message: bounded(&diagnostic.message),
            help: diagnostic.help.as_deref().map(bounded),
        }
    }

    /// 0-based index of the line holding `offset`.
    pub fn line_index(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset) - 1
    }

    /// Text of a 0-based line, without its line terminator.
    fn line_text(&self, line: usize) -> &'a str {
        let start = self.line_starts[line];
        let end = self
            .line_starts
            .get(line + 1)
            .map_or(self.text.len(), |next| next - 1);
        self.text[start..end].trim_end_matches('\r')
    }

    /// `offset` limited to the text and moved back onto a char boundary.
    fn clamp(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_rustc() {
        let source = "# comment\nin net:a to connect\n";
        let diagnostic = Diagnostic::error("expected 'VCN', found 'to'", Span::new(19, 21))
            .with_label("expected 'VCN'")
            .with_help("write 'in net:a VCN'");
        assert_eq!(
            diagnostic.render("p.zpr", source),
            "error: expected 'VCN', found 'to'\n \
             --> p.zpr:2:10\n  \
             |\n\
             2 | in net:a to connect\n  \
             |          ^^ expected 'VCN'\n  \
             |\n  \
             = help: write 'in net:a VCN'\n"
        );
    }

    #[test]
    fn empty_span_gets_one_caret_and_columns_count_characters() {
        let source = "in ’x’ VCN";
        let file = SourceFile::new("p.zpr", source);
        let at_x = source.find('x').unwrap();
        assert_eq!(file.position(at_x), Position { line: 1, col: 5 });
        let rendered = file.render(&Diagnostic::warning("w", Span::new(at_x, at_x)));
        assert!(rendered.contains("\n  |     ^\n"), "{rendered}");
    }

    #[test]
    fn a_long_line_is_quoted_as_an_excerpt_around_the_problem() {
        let source = format!("{}oops{}", "a".repeat(5000), "b".repeat(5000));
        let at = source.find("oops").unwrap();
        let diagnostic = Diagnostic::error("x".repeat(100_000), Span::new(at, at + 4));
        let rendered = SourceFile::new("p.zpr", &source).render(&diagnostic);
        assert!(rendered.len() < 1000, "{} bytes", rendered.len());
        assert!(rendered.contains("--> p.zpr:1:5001"), "{rendered}");
        let quoted = rendered.lines().find(|l| l.starts_with("1 | ")).unwrap();
        let carets = rendered.lines().find(|l| l.contains('^')).unwrap();
        assert!(
            quoted.starts_with("1 | …aaa") && quoted.ends_with("bbb…"),
            "{quoted}"
        );
        let column = |line: &str, found: usize| line[..found].chars().count();
        assert_eq!(
            column(quoted, quoted.find("oops").unwrap()),
            column(carets, carets.find('^').unwrap()),
            "the carets stand under the problem"
        );
        assert!(rendered.contains("(100000 bytes in all)"));
    }

    #[test]
    fn json_has_start_and_end() {
        let json = Diagnostic::error("m", Span::new(3, 6))
            .with_help("h")
            .to_json("f.zpr", "ab\ncdefg\n");
        assert_eq!(
            (json.line, json.col, json.end_line, json.end_col),
            (2, 1, 2, 4)
        );
        let text = serde_json::to_string(&json).unwrap();
        assert!(text.contains("\"severity\":\"error\""), "{text}");
    }
}
