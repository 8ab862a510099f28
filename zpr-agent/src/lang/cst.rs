//! What the grammar recognises: the shape of a statement with the spans of
//! its parts, before any part is interpreted. `validate` turns it into the
//! AST, so that every rule can report its own error and a statement can carry
//! several.

use crate::lang::ast::Span;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawStatement {
    pub span: Span,
    pub form: RawForm,
    pub source: RawEndpoint,
    pub destination: RawEndpoint,
    /// Every filter in written order, wherever it stood.
    pub filters: Vec<RawFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawForm {
    SameVcn {
        location: RawTarget,
    },
    CrossVcn {
        source_location: RawTarget,
        destination_location: RawTarget,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEndpoint {
    pub target: RawTarget,
    /// The target plus a following `endpoints`, if any.
    pub span: Span,
}

/// Something that names endpoints or a VCN, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTarget {
    pub kind: TargetKind,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Attribute,
    BareIp,
    Quoted,
    AllEndpoints,
    Osn,
}

/// `name = 'value'`; `value` spans the quoted token, quotes included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFilter {
    pub name: Span,
    pub value: Span,
    pub span: Span,
}

impl RawTarget {
    pub fn new(kind: TargetKind, start: usize, end: usize) -> RawTarget {
        RawTarget {
            kind,
            span: Span::new(start, end),
        }
    }
}
