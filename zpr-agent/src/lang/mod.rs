//! The ZPR policy language (see shared/docs/zpr-language.md).

pub mod ast;

pub use ast::*;
