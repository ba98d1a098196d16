//! The `where` conditions of `expect send` statements, compiled like any
//! other code so that `nudge test` runs them on the VM.
//!
//! A test block is not part of a bundle; its conditions are lowered on their
//! own, each into an extra segment of a copy of the project's bundle. The
//! condition's one name of its own, `content`, is local slot 0: a record of
//! the message's content keys, whose schema the checker made.

use std::collections::HashMap;

use nudge_bytecode::{self as bc, BlockKind, Bundle, Type};
use nudge_diagnostics::{FileId, FileSpan, Span};
use nudge_syntax::ast::{self, ExpectKind, Item, TestStmtKind};

use super::{Lower, LowerError, R, code::Gen, lower_checked};
use crate::analysis::Analysis;
use crate::project::Project;
use crate::types::RecordKind;

/// The compiled `where` conditions of a project's tests.
#[derive(Clone, Debug)]
pub struct TestConditions {
    /// The project's bundle with one extra segment per condition.
    pub bundle: Bundle,
    /// Each condition by the place of its expression in the sources, or why
    /// it cannot run (it reads the customer, not only the sent content).
    pub by_span: HashMap<FileSpan, Result<TestCondition, LowerError>>,
}

/// Where one compiled condition is and what it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestCondition {
    /// Its code: `TestConditions::bundle.segments[segment]`, block 0.
    pub segment: u32,
    /// The schema of the `content` record it reads from local slot 0.
    pub content: u32,
}

/// Lowers the `where` conditions of every `expect send` in the project's
/// tests. Refuses a project whose analysis has errors, as [`super::lower`] does.
pub fn lower_test_conditions(
    project: &Project,
    analysis: &Analysis,
) -> Result<TestConditions, LowerError> {
    lower_checked(project, analysis, |l| {
        let mut bundle = l.bundle()?;
        let mut by_span = HashMap::new();
        for (file, parsed) in l.parsed {
            for item in &parsed.file.items {
                let Item::Test(t) = item else { continue };
                for stmt in &t.stmts {
                    let TestStmtKind::Expect(x) = &stmt.kind else {
                        continue;
                    };
                    let ExpectKind::Send {
                        message,
                        predicate: Some(pred),
                        ..
                    } = &x.kind
                    else {
                        continue;
                    };
                    let segment = u32::try_from(bundle.segments.len())
                        .map_err(|_| LowerError::new(None, "too many test conditions"))?;
                    let (global, content) = condition(l, *file, message, pred)?;
                    let compiled = match reads_the_customer(&global.unit, *file) {
                        Some(e) => Err(e),
                        None => {
                            bundle.segments.push(global);
                            Ok(TestCondition { segment, content })
                        }
                    };
                    by_span.insert(FileSpan::new(*file, pred.span), compiled);
                }
            }
        }
        bundle
            .validate()
            .map_err(|e| LowerError::new(None, format!("internal error: {e}")))?;
        Ok(TestConditions { bundle, by_span })
    })
}

/// Why a condition's code cannot run in a test, if it reads the customer:
/// it is checked against a message already sent, with only its content at hand.
fn reads_the_customer(unit: &bc::Unit, file: FileId) -> Option<LowerError> {
    unit.blocks.iter().find_map(|b| {
        b.code.iter().zip(&b.pos).find_map(|(instr, pos)| {
            let what = match instr {
                bc::Instr::LoadProfile | bc::Instr::LoadProfileField(_) => "the profile",
                bc::Instr::EvalSegment(_) => "a segment",
                bc::Instr::CallEvent { .. } => "this customer's events",
                _ => return None,
            };
            Some(LowerError::new(
                Some(FileSpan::new(
                    file,
                    Span {
                        start: pos.start,
                        end: pos.end,
                    },
                )),
                format!("a condition on a send reads only its `content`, not {what}"),
            ))
        })
    })
}

/// One condition as a segment named after its statement, and its content schema.
fn condition(
    l: &Lower<'_>,
    file: FileId,
    message: &ast::Ident,
    pred: &ast::Expr,
) -> R<(bc::Global, u32)> {
    let at = FileSpan::new(file, message.span);
    // The checker gives every condition a record of the message's content
    // keys; those of one message are alike, so the first one serves.
    let record = format!("content of {}", message.name);
    let content =
        l.an.types
            .records
            .iter()
            .position(|r| r.kind == RecordKind::Synthetic && r.name == record)
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| LowerError::new(Some(at), format!("no {record} record")))?;
    let mut g = Gen::new(l, file, Some(BlockKind::Expr));
    // The checker declares `content` at the message's name.
    g.declare(&ast::Ident {
        name: "content".into(),
        span: message.span,
    })?;
    g.main_expr(pred, None)?;
    let (unit, _) = g.finish()?;
    let line = l.pos(file, pred.span).line;
    Ok((
        bc::Global {
            name: format!("expect send {} where … (line {line})", message.name),
            ty: Type::Bool,
            unit,
        },
        content,
    ))
}
