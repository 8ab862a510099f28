//! The policy language's abstract syntax: what a statement says, with the
//! source spans diagnostics need. Spans never take part in equality, so a
//! statement re-parsed from `zpr fmt` output equals the original.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// Byte range in the source file. Equality ignores spans (see module doc).
#[derive(Debug, Clone, Copy, Default, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl PartialEq for Span {
    fn eq(&self, _: &Span) -> bool {
        true
    }
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
}

/// A value together with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub node: T,
    pub span: Span,
}

/// The namespace used when an attribute names none.
pub const DEFAULT_NAMESPACE: &str = "oracle-zpr";

/// `namespace.key:value`. Namespace and key compare case-insensitively,
/// the value exactly; [`Attribute::same_as`] implements that rule.
/// Equality and hashing compare the written form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribute {
    /// `None` when the statement left it out (then it is [`DEFAULT_NAMESPACE`]).
    pub namespace: Option<Arc<str>>,
    pub key: Arc<str>,
    pub value: Arc<str>,
}

impl Attribute {
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }

    /// True when both name the same attribute under the language's rules.
    pub fn same_as(&self, other: &Attribute) -> bool {
        self.namespace().eq_ignore_ascii_case(other.namespace())
            && self.key.eq_ignore_ascii_case(&other.key)
            && self.value == other.value
    }
}

/// An address prefix; host bits are already masked off. A single address
/// has the full length (32 or 128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpPrefix {
    pub addr: IpAddr,
    pub len: u8,
}

/// Source or destination of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `ns.key:value [endpoints]`
    Attribute(Attribute),
    /// `'10.0.0.0/16'`, `'10.0.0.5'`, `'2001:db8::/32'`, bare `10.0.0.5`
    Prefix(IpPrefix),
    /// `all-endpoints`
    AllEndpoints,
    /// `osn-services-ip-addresses` (any accepted spelling)
    OsnServices,
}

/// Where the statement applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `in <vcn> VCN allow ...`: both endpoints in VCNs carrying `vcn`.
    SameVcn { vcn: Spanned<Attribute> },
    /// `allow A in <src> VCN to connect to B in <dst> VCN`.
    CrossVcn {
        source_vcn: Spanned<Attribute>,
        destination_vcn: Spanned<Attribute>,
    },
}

/// An inclusive port range, 1..=65535, `low <= high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

/// The value of `protocol='...'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// `ports` empty means every port.
    Tcp {
        ports: Vec<PortRange>,
    },
    Udp {
        ports: Vec<PortRange>,
    },
    Icmp,
    Icmpv6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Stateful,
    Stateless,
}

/// One `name='value'` filter, already typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Protocol(Protocol),
    IcmpType(u8),
    IcmpCode(u8),
    ConnectionState(ConnectionState),
}

/// `policy-name:line`, the statement's identity for provenance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatementId {
    pub policy: Arc<str>,
    /// 1-based line where the statement starts.
    pub line: u32,
}

impl fmt::Display for StatementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.policy, self.line)
    }
}

/// One `allow` statement: where it stands in its file, and what it says.
/// What it says is shared: a file read again gives each unchanged line's
/// statement from the [`StatementCache`](super::StatementCache) as one
/// reference count, and holds it once however many readings keep it.
/// Equality ignores where the statement stands, as it does spans.
#[derive(Debug, Clone, Eq)]
pub struct Statement {
    pub id: StatementId,
    /// Byte offset of the start of the statement's (first) line: the
    /// body's spans count from there.
    pub line_start: usize,
    pub body: Arc<StatementBody>,
}

impl PartialEq for Statement {
    fn eq(&self, other: &Statement) -> bool {
        self.id == other.id && self.body == other.body
    }
}

impl std::ops::Deref for Statement {
    type Target = StatementBody;

    fn deref(&self) -> &StatementBody {
        &self.body
    }
}

impl Statement {
    /// A statement built as syntax rather than read (generated policies,
    /// tests): it spans nothing.
    pub fn built(
        id: StatementId,
        scope: Scope,
        source: Endpoint,
        destination: Endpoint,
        filters: Vec<Filter>,
    ) -> Statement {
        Statement {
            id,
            line_start: 0,
            body: Arc::new(StatementBody {
                span: Span::default(),
                scope,
                source: Spanned {
                    node: source,
                    span: Span::default(),
                },
                destination: Spanned {
                    node: destination,
                    span: Span::default(),
                },
                filters: filters
                    .into_iter()
                    .map(|node| Spanned {
                        node,
                        span: Span::default(),
                    })
                    .collect(),
            }),
        }
    }

    /// `span`, one of the body's (counted from the statement's line),
    /// counted from the start of the file.
    pub fn in_file(&self, span: Span) -> Span {
        Span::new(span.start + self.line_start, span.end + self.line_start)
    }
}

/// What a statement says, with its spans counted from the start of its
/// line: the same line gives the same body wherever it stands. Filters keep
/// their written order; wherever they stood, they all restrict the
/// connection as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementBody {
    pub span: Span,
    pub scope: Scope,
    pub source: Spanned<Endpoint>,
    pub destination: Spanned<Endpoint>,
    pub filters: Vec<Spanned<Filter>>,
}

impl StatementBody {
    /// The body with every span moved back by `from` bytes: spans of the
    /// file made spans of the line starting at `from`.
    pub(super) fn counted_from(mut self, from: usize) -> StatementBody {
        let moved = |span: &mut Span| {
            span.start -= from;
            span.end -= from;
        };
        moved(&mut self.span);
        match &mut self.scope {
            Scope::SameVcn { vcn } => moved(&mut vcn.span),
            Scope::CrossVcn {
                source_vcn,
                destination_vcn,
            } => {
                moved(&mut source_vcn.span);
                moved(&mut destination_vcn.span);
            }
        }
        moved(&mut self.source.span);
        moved(&mut self.destination.span);
        for filter in &mut self.filters {
            moved(&mut filter.span);
        }
        self
    }

    pub fn protocol(&self) -> Option<&Protocol> {
        self.filters.iter().find_map(|f| match &f.node {
            Filter::Protocol(p) => Some(p),
            _ => None,
        })
    }

    pub fn icmp_type(&self) -> Option<u8> {
        self.filters.iter().find_map(|f| match f.node {
            Filter::IcmpType(t) => Some(t),
            _ => None,
        })
    }

    pub fn icmp_code(&self) -> Option<u8> {
        self.filters.iter().find_map(|f| match f.node {
            Filter::IcmpCode(c) => Some(c),
            _ => None,
        })
    }

    pub fn is_stateless(&self) -> bool {
        self.filters
            .iter()
            .any(|f| f.node == Filter::ConnectionState(ConnectionState::Stateless))
    }
}

/// One policy file: named by its file name without `.zpr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub statements: Vec<Statement>,
}
