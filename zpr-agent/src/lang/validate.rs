//! From the grammar's raw statement to the AST: interprets each target
//! (attribute, IP, OSN, all-endpoints) and enforces rules 2-6 of the
//! dialect's section 6, each with its own message. (Rule 1, the command and
//! the verb, is the grammar's; its messages come from `syntax_error`.)

use crate::lang::address::parse_prefix;
use std::sync::Arc;

use crate::lang::ast::{
    Attribute, Endpoint, Scope, Span, Spanned, Statement, StatementBody, StatementId,
};
use crate::lang::attribute::{Written, parse_attribute_interned};
use crate::lang::cst::{RawEndpoint, RawForm, RawStatement, RawTarget, TargetKind};
use crate::lang::diagnostic::Diagnostic;
use crate::lang::filter::lower_filters;
use crate::lang::lexer::{OSN_KEYWORD, Tok, classify_word, quoted_content};
use crate::lang::names::Names;

/// Builds the statement, whose line starts at byte `line_start`, or `None`
/// when any error was reported.
pub fn lower_statement(
    raw: &RawStatement,
    id: StatementId,
    line_start: usize,
    source: &str,
    names: &mut Names,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Statement> {
    let reported_before = diagnostics.len();
    let mut lowering = Lowering {
        source,
        names,
        diagnostics,
    };
    let scope = match &raw.form {
        RawForm::SameVcn { location } => lowering
            .location(location)
            .map(|vcn| Scope::SameVcn { vcn }),
        RawForm::CrossVcn {
            source_location,
            destination_location,
        } => {
            let source_vcn = lowering.location(source_location);
            let destination_vcn = lowering.location(destination_location);
            source_vcn
                .zip(destination_vcn)
                .map(|(source_vcn, destination_vcn)| Scope::CrossVcn {
                    source_vcn,
                    destination_vcn,
                })
        }
    };
    let endpoints = lowering
        .endpoint(&raw.source)
        .zip(lowering.endpoint(&raw.destination));
    if let Some((source_endpoint, destination)) = &endpoints {
        lowering.check_endpoints(&raw.form, source_endpoint, destination);
    }
    let filters = lower_filters(&raw.filters, source, lowering.diagnostics);

    let (scope, (source_endpoint, destination)) = scope.zip(endpoints)?;
    let new_errors = diagnostics[reported_before..]
        .iter()
        .any(Diagnostic::is_error);
    (!new_errors).then(|| Statement {
        id,
        line_start,
        body: Arc::new(
            StatementBody {
                span: raw.span,
                scope,
                source: source_endpoint,
                destination,
                filters,
            }
            .counted_from(line_start),
        ),
    })
}

struct Lowering<'a> {
    source: &'a str,
    names: &'a mut Names,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Lowering<'_> {
    fn report<T>(&mut self, result: Result<T, Diagnostic>) -> Option<T> {
        result
            .map_err(|diagnostic| self.diagnostics.push(diagnostic))
            .ok()
    }

    /// Rule 2: the location is exactly one security attribute.
    fn location(&mut self, target: &RawTarget) -> Option<Spanned<Attribute>> {
        match self.target(target)? {
            Endpoint::Attribute(attribute) => Some(Spanned {
                node: attribute,
                span: target.span,
            }),
            other => {
                self.diagnostics.push(
                    Diagnostic::error(
                        format!(
                            "the location must be a security attribute, not {}",
                            describe(&other)
                        ),
                        target.span,
                    )
                    .with_label("not a security attribute")
                    .with_help(
                        "a VCN is named by the security attribute it carries, e.g. \
                         'in net:prod VCN'; addresses go in the source or destination",
                    ),
                );
                None
            }
        }
    }

    fn endpoint(&mut self, endpoint: &RawEndpoint) -> Option<Spanned<Endpoint>> {
        self.target(&endpoint.target).map(|node| Spanned {
            node,
            span: endpoint.span,
        })
    }

    /// What a target names; `None` after reporting why it names nothing.
    fn target(&mut self, target: &RawTarget) -> Option<Endpoint> {
        let text = &self.source[target.span.start..target.span.end];
        let span = target.span;
        match target.kind {
            TargetKind::AllEndpoints => Some(Endpoint::AllEndpoints),
            TargetKind::Osn => Some(Endpoint::OsnServices),
            TargetKind::Attribute => self.attribute(text, Written::Bare, span),
            TargetKind::BareIp => self.bare_address(text, span),
            TargetKind::Quoted => self.quoted_target(&quoted_content(text), span),
        }
    }

    /// Bare IPv4 addresses are accepted (Oracle's FAQ writes them); bare
    /// CIDRs were rejected by Oracle's service, and bare IPv6 reads like an
    /// attribute, so both must be quoted.
    fn bare_address(&mut self, text: &str, span: Span) -> Option<Endpoint> {
        if text.contains(':') || text.contains('/') {
            let what = if text.contains(':') {
                "an IPv6 address"
            } else {
                "a CIDR"
            };
            self.diagnostics.push(
                Diagnostic::error(format!("{what} must be quoted"), span)
                    .with_help(format!("write '{text}'")),
            );
            return None;
        }
        self.prefix(text, span)
    }

    fn quoted_target(&mut self, content: &str, span: Span) -> Option<Endpoint> {
        if content.eq_ignore_ascii_case(OSN_KEYWORD) {
            return Some(Endpoint::OsnServices);
        }
        match classify_word(content) {
            Tok::BareIp => self.prefix(content, span),
            Tok::Attribute | Tok::Word => self.attribute(content, Written::Quoted, span),
            _keyword => {
                self.diagnostics.push(
                    Diagnostic::error(format!("'{content}' is a keyword, not a value"), span)
                        .with_help(format!("write it without quotes: {content}")),
                );
                None
            }
        }
    }

    fn attribute(&mut self, text: &str, written: Written, span: Span) -> Option<Endpoint> {
        let parsed =
            parse_attribute_interned(text, written, span, &mut |name| self.names.get(name));
        self.report(parsed).map(Endpoint::Attribute)
    }

    fn prefix(&mut self, text: &str, span: Span) -> Option<Endpoint> {
        let parsed = self.report(parse_prefix(text, span))?;
        self.diagnostics.extend(parsed.warning);
        Some(Endpoint::Prefix(parsed.prefix))
    }

    /// Rules 3, 4 and 5: which endpoint kinds may meet in one statement.
    fn check_endpoints(
        &mut self,
        form: &RawForm,
        source: &Spanned<Endpoint>,
        destination: &Spanned<Endpoint>,
    ) {
        if matches!(form, RawForm::CrossVcn { .. }) {
            for endpoint in [source, destination] {
                if !matches!(endpoint.node, Endpoint::Attribute(_)) {
                    self.diagnostics.push(
                        Diagnostic::error(
                            format!(
                                "the cross-VCN form connects security-attribute endpoints only, \
                                 not {}",
                                describe(&endpoint.node)
                            ),
                            endpoint.span,
                        )
                        .with_label("not a security attribute")
                        .with_help(
                            "name the endpoint by its security attribute, or use the same-VCN \
                             form: in <vcn-attribute> VCN allow ... to connect to ...",
                        ),
                    );
                }
            }
            return;
        }
        let is_address = |e: &Endpoint| matches!(e, Endpoint::Prefix(_) | Endpoint::OsnServices);
        if source.node == Endpoint::AllEndpoints && destination.node == Endpoint::AllEndpoints {
            self.diagnostics.push(
                Diagnostic::error(
                    "source and destination cannot both be all-endpoints",
                    destination.span,
                )
                .with_label("all-endpoints on both sides")
                .with_help(
                    "name one side by a security attribute, an IP address or \
                     osn-services-ip-addresses",
                ),
            );
        } else if is_address(&source.node) && is_address(&destination.node) {
            self.diagnostics.push(
                Diagnostic::error(
                    format!(
                        "source and destination cannot both be addresses: the source is {} \
                         and the destination is {}",
                        describe(&source.node),
                        describe(&destination.node)
                    ),
                    destination.span,
                )
                .with_label("address on both sides")
                .with_help(
                    "IP and OSN endpoints stand on one side only; name the other side by a \
                     security attribute (or all-endpoints)",
                ),
            );
        }
    }
}

/// An endpoint kind for messages ("not an IP address").
fn describe(endpoint: &Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Attribute(_) => "a security attribute",
        Endpoint::Prefix(_) => "an IP address",
        Endpoint::AllEndpoints => "all-endpoints",
        Endpoint::OsnServices => "osn-services-ip-addresses",
    }
}
