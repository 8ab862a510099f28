//! Splits policy source into tokens. Hand-written because the language's
//! shapes do not fit a regular lexer: quoted clauses with `''` escapes (and
//! their typographic look-alikes, which must be reported, not choked on),
//! bare IPv4 addresses, attribute values that contain `:`, and keywords that
//! match case-insensitively.

use std::borrow::Cow;
use std::net::Ipv6Addr;

use crate::lang::ast::Span;
use crate::lang::diagnostic::Diagnostic;

/// A token kind. Tokens carry no text: the parser and validator read it from
/// the source through the token's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    In,
    Allow,
    To,
    Connect,
    Vcn,
    Endpoints,
    With,
    And,
    AllEndpoints,
    /// Unquoted `osn-services-ip-addresses` or `osn-services-ip-endpoints`.
    Osn,
    Comma,
    Equals,
    /// A bare word containing `:`: `ns.key:value`.
    Attribute,
    /// A bare word shaped like an IP address: `10.0.0.5`, `10.0.0.0/8`, `2001:db8::1`.
    BareIp,
    Quoted(QuoteStyle),
    /// Any other bare word: a filter name, or a mistake the parser reports.
    Word,
}

/// Which characters opened a quoted token; anything but `Ascii` is an error
/// already reported by the lexer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteStyle {
    Ascii,
    Typographic,
    Double,
    /// The line ended before the closing quote.
    Unterminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
    /// 1-based line of the token's first character.
    pub line: u32,
}

/// A `#` comment: its span runs from `#` to the end of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comment {
    pub span: Span,
    pub line: u32,
}

pub struct Lexed {
    pub tokens: Vec<Token>,
    pub comments: Vec<Comment>,
    /// Quoting mistakes; the tokens are still produced so parsing goes on.
    pub diagnostics: Vec<Diagnostic>,
}

const KEYWORDS: &[(&str, Tok)] = &[
    ("in", Tok::In),
    ("allow", Tok::Allow),
    ("to", Tok::To),
    ("connect", Tok::Connect),
    ("vcn", Tok::Vcn),
    ("endpoints", Tok::Endpoints),
    ("with", Tok::With),
    ("and", Tok::And),
    ("all-endpoints", Tok::AllEndpoints),
    (OSN_KEYWORD, Tok::Osn),
    ("osn-services-ip-endpoints", Tok::Osn),
];

/// The documented spelling of the OSN endpoint, also accepted in quotes.
pub const OSN_KEYWORD: &str = "osn-services-ip-addresses";

#[cfg(test)]
pub fn lex(source: &str) -> Lexed {
    lex_from(source, 0, 1)
}

/// Lexes `source` from byte `start`, which begins line `line`, to its end;
/// spans are offsets into the whole of `source`.
pub fn lex_from(source: &str, start: usize, line: u32) -> Lexed {
    let mut lexer = Lexer {
        source,
        at: start,
        line,
        out: Lexed {
            // About one token per five bytes of a typical statement.
            tokens: Vec::with_capacity((source.len() - start) / 4),
            comments: Vec::new(),
            diagnostics: Vec::new(),
        },
    };
    lexer.run();
    lexer.out
}

/// The token a bare word stands for.
pub fn classify_word(word: &str) -> Tok {
    if let Some(&(_, tok)) = KEYWORDS
        .iter()
        .find(|(keyword, _)| keyword.eq_ignore_ascii_case(word))
    {
        tok
    } else if word.contains(':') {
        if looks_like_ipv6(word) {
            Tok::BareIp
        } else {
            Tok::Attribute
        }
    } else if looks_like_ipv4(word) {
        Tok::BareIp
    } else {
        Tok::Word
    }
}

fn looks_like_ipv4(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_digit())
        && word.contains('.')
        && word
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '/')
}

/// An IPv6 address (or prefix) written bare. Values may contain `:`, so only
/// words that really parse as IPv6 count; `::` marks the malformed ones.
fn looks_like_ipv6(word: &str) -> bool {
    let address = word.split_once('/').map_or(word, |(address, _)| address);
    // Attribute words are the common case: most have a letter past 'f'.
    if !address
        .chars()
        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    {
        return false;
    }
    address.parse::<Ipv6Addr>().is_ok()
        || (address.contains("::")
            && address
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.'))
}

fn is_word_char(c: char) -> bool {
    !(c.is_whitespace() || matches!(c, ',' | '=' | '#') || quote_style(c).is_some())
}

/// Where the word starting at byte `from` ends. Bytes of ASCII are tested
/// as they are: decoding a character for each is most of lexing a word.
fn word_end(source: &str, from: usize) -> usize {
    let mut at = from;
    while let Some(&byte) = source.as_bytes().get(at) {
        let c = match byte.is_ascii() {
            true => char::from(byte),
            false => source[at..].chars().next().unwrap_or_default(),
        };
        if !is_word_char(c) {
            break;
        }
        at += c.len_utf8();
    }
    at
}

fn quote_style(c: char) -> Option<QuoteStyle> {
    match c {
        '\'' => Some(QuoteStyle::Ascii),
        '\u{2018}' | '\u{2019}' => Some(QuoteStyle::Typographic),
        '"' | '\u{201C}' | '\u{201D}' => Some(QuoteStyle::Double),
        _ => None,
    }
}

struct Lexer<'a> {
    source: &'a str,
    at: usize,
    line: u32,
    out: Lexed,
}

impl Lexer<'_> {
    fn run(&mut self) {
        while let Some(c) = self.peek() {
            let start = self.at;
            match c {
                '\n' => {
                    self.at += 1;
                    self.line += 1;
                }
                c if c.is_whitespace() => self.at += c.len_utf8(),
                '#' => {
                    self.skip_to_line_end();
                    let span = Span::new(start, self.at);
                    self.out.comments.push(Comment {
                        span,
                        line: self.line,
                    });
                }
                ',' => self.single(Tok::Comma),
                '=' => self.single(Tok::Equals),
                c => match quote_style(c) {
                    Some(style) => self.quoted(style),
                    None => {
                        self.at = word_end(self.source, self.at);
                        let tok = classify_word(&self.source[start..self.at]);
                        self.push(tok, start);
                    }
                },
            }
        }
    }

    fn peek(&self) -> Option<char> {
        self.source[self.at..].chars().next()
    }

    fn single(&mut self, tok: Tok) {
        let start = self.at;
        self.at += 1;
        self.push(tok, start);
    }

    fn push(&mut self, tok: Tok, start: usize) {
        self.out.tokens.push(Token {
            tok,
            span: Span::new(start, self.at),
            line: self.line,
        });
    }

    fn skip_to_line_end(&mut self) {
        self.at = self.source[self.at..]
            .find('\n')
            .map_or(self.source.len(), |offset| self.at + offset);
    }

    /// A quoted token. ASCII quotes close only on `'` (`''` is an escaped
    /// apostrophe); look-alike quotes close on any quote of their family so
    /// the rest of the line still parses.
    fn quoted(&mut self, style: QuoteStyle) {
        let start = self.at;
        let opening = self.peek().unwrap_or('\'');
        self.at += opening.len_utf8();
        loop {
            match self.peek() {
                None | Some('\n') => {
                    // A `\r` of a CRLF line end is not part of the token.
                    let end = self.source[..self.at].trim_end_matches('\r').len();
                    self.at = end;
                    self.unterminated(start, opening);
                    return;
                }
                Some('\'') if style == QuoteStyle::Ascii => {
                    self.at += 1;
                    if self.peek() == Some('\'') {
                        self.at += 1;
                    } else {
                        break;
                    }
                }
                Some(c) if style != QuoteStyle::Ascii && quote_style(c).is_some() => {
                    self.at += c.len_utf8();
                    break;
                }
                Some(c) => self.at += c.len_utf8(),
            }
        }
        self.push(Tok::Quoted(style), start);
        let span = Span::new(start, self.at);
        // Only for a mistake: every statement's filters are quoted.
        let corrected = || format!("'{}'", quoted_content(&self.source[start..self.at]));
        match style {
            QuoteStyle::Typographic => self.out.diagnostics.push(
                Diagnostic::error(
                    format!("typographic quote '{opening}' is not a quote in ZPR policies"),
                    span,
                )
                .with_label("typographic quotes")
                .with_help(format!(
                    "use the ASCII apostrophe ' (often changed by word processors): {}",
                    corrected()
                )),
            ),
            QuoteStyle::Double => self.out.diagnostics.push(
                Diagnostic::error(
                    "ZPR policies quote with ' only, not with double quotes",
                    span,
                )
                .with_label("double quotes")
                .with_help(format!("use single quotes: {}", corrected())),
            ),
            QuoteStyle::Ascii | QuoteStyle::Unterminated => {}
        }
    }

    fn unterminated(&mut self, start: usize, opening: char) {
        self.push(Tok::Quoted(QuoteStyle::Unterminated), start);
        let text = &self.source[start + opening.len_utf8()..self.at];
        let trimmed = text.trim_end();
        let help = match trimmed
            .len()
            .checked_sub(" endpoints".len())
            .filter(|&cut| trimmed.is_char_boundary(cut))
            .map(|cut| trimmed.split_at(cut))
        {
            Some((inside, keyword)) if keyword.eq_ignore_ascii_case(" endpoints") => {
                format!("close the quote before 'endpoints': '{inside}'{keyword}")
            }
            _ => "close the quote with ' on the same line (write an apostrophe inside a value \
                  as '')"
                .to_owned(),
        };
        self.out.diagnostics.push(
            Diagnostic::error("unterminated quote", Span::new(start, self.at))
                .with_label("this quote is never closed")
                .with_help(help),
        );
    }
}

/// The text inside a closed quoted token, with `''` unescaped.
pub fn quoted_content(token_text: &str) -> Cow<'_, str> {
    let mut chars = token_text.chars();
    chars.next();
    chars.next_back();
    let content = chars.as_str();
    match content.contains("''") {
        true => Cow::Owned(content.replace("''", "'")),
        false => Cow::Borrowed(content),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<Tok> {
        lex(source).tokens.iter().map(|t| t.tok).collect()
    }

    #[test]
    fn words_are_classified() {
        use Tok::*;
        assert_eq!(
            kinds("In app:x vcn ALLOW 10.0.0.5 With protocol = 'tcp/22', and All-Endpoints"),
            [
                In,
                Attribute,
                Vcn,
                Allow,
                BareIp,
                With,
                Word,
                Equals,
                Quoted(QuoteStyle::Ascii),
                Comma,
                And,
                AllEndpoints
            ]
        );
        assert_eq!(
            kinds("networks:net1:App1 2001:db8::/32 osn-services-ip-endpoints"),
            [Attribute, BareIp, Osn]
        );
    }

    #[test]
    fn quotes_escape_and_comments_end_lines() {
        let lexed = lex("'hr.team:o''brien' # it's a comment\nallow");
        let spans: Vec<_> = lexed.tokens.iter().map(|t| (t.tok, t.line)).collect();
        assert_eq!(
            spans,
            [(Tok::Quoted(QuoteStyle::Ascii), 1), (Tok::Allow, 2)]
        );
        assert_eq!(quoted_content("'hr.team:o''brien'"), "hr.team:o'brien");
        assert_eq!(lexed.comments.len(), 1);
        assert!(lexed.diagnostics.is_empty());
    }

    #[test]
    fn look_alike_quotes_are_reported_and_recovered() {
        let lexed = lex("to ’osn-services-ip-addresses’ with \"x\"");
        assert_eq!(
            lexed.tokens.iter().map(|t| t.tok).collect::<Vec<_>>(),
            [
                Tok::To,
                Tok::Quoted(QuoteStyle::Typographic),
                Tok::With,
                Tok::Quoted(QuoteStyle::Double)
            ]
        );
        assert_eq!(lexed.diagnostics.len(), 2);
        assert!(
            lexed.diagnostics[0]
                .help
                .as_deref()
                .is_some_and(|help| help.ends_with("'osn-services-ip-addresses'"))
        );
    }

    #[test]
    fn unterminated_look_alike_quote_is_reported() {
        let lexed = lex("to \u{2019}app:x endpoints");
        assert_eq!(lexed.tokens[1].tok, Tok::Quoted(QuoteStyle::Unterminated));
        assert_eq!(
            lexed.diagnostics[0].help.as_deref(),
            Some("close the quote before 'endpoints': 'app:x' endpoints")
        );
    }

    #[test]
    fn unterminated_quote_stops_at_line_end() {
        let lexed = lex("to 'my-corp.biz:dev db endpoints\r\nallow");
        assert_eq!(lexed.tokens[1].tok, Tok::Quoted(QuoteStyle::Unterminated));
        assert_eq!(lexed.tokens[2].tok, Tok::Allow);
        assert_eq!(
            lexed.diagnostics[0].help.as_deref(),
            Some("close the quote before 'endpoints': 'my-corp.biz:dev db' endpoints")
        );
    }
}
