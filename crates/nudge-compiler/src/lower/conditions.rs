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

use super::{Lower, LowerError, code::Gen};
use crate::analysis::Analysis;
use crate::project::Project;
use crate::tir;

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
    let program = analysis
        .program()
        .filter(|_| !analysis.has_errors())
        .ok_or_else(|| LowerError::has_errors(analysis))?;
    let l = Lower::new(project, program);
    let mut bundle = l.bundle();
    let mut by_span = HashMap::new();
    for c in &program.conditions {
        let global = condition(&l, c);
        let compiled = match reads_the_customer(&global.unit, c.file) {
            Some(e) => Err(e),
            None => {
                // Segments are numbered by `u32`; a bundle holds far fewer.
                let segment = bundle.segments.len() as u32;
                bundle.segments.push(global);
                Ok(TestCondition {
                    segment,
                    content: c.content,
                })
            }
        };
        by_span.insert(FileSpan::new(c.file, c.predicate.span), compiled);
    }
    Ok(TestConditions { bundle, by_span })
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

/// One condition as a segment named after its statement.
fn condition(l: &Lower<'_>, c: &tir::Condition) -> bc::Global {
    let mut g = Gen::new(l, c.file, c.slots, Some(BlockKind::Expr));
    g.main_expr(&c.predicate, None);
    let (unit, _) = g.finish();
    let line = l.pos(c.file, c.predicate.span).line;
    bc::Global {
        name: format!("expect send {} where … (line {line})", c.message),
        ty: Type::Bool,
        unit,
    }
}
