//! Lowering: from a checked project's typed program to a bytecode [`Bundle`].
//!
//! Lowering reads only the typed IR ([`crate::tir`]) that the checker built:
//! every name is already an index, a schema, a field or a slot, every
//! expression has its type, every count fits its field. So it neither looks
//! anything up nor refuses anything: a project without errors always
//! lowers. `test` blocks are not part of a bundle: `nudge test` runs them
//! from the sources, with their `where` conditions compiled by
//! [`lower_test_conditions`].

mod code;
mod conditions;

use std::fmt;

use nudge_bytecode::{self as bc, BlockKind, Bundle, Type};
use nudge_diagnostics::{FileSpan, SourceMap, Span};

use crate::analysis::Analysis;
use crate::project::Project;
use crate::tir;
use code::Gen;
pub use conditions::{TestCondition, TestConditions, lower_test_conditions};

/// Why a project is not lowered: it has errors (which the checker
/// reported), or, for a test condition, why that condition cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LowerError {
    /// Where, when the problem has a place in the source.
    pub at: Option<FileSpan>,
    /// What went wrong.
    pub message: String,
}

impl LowerError {
    fn new(at: Option<FileSpan>, message: impl Into<String>) -> Self {
        LowerError {
            at,
            message: message.into(),
        }
    }

    /// The refusal of a project whose analysis has errors.
    fn has_errors(analysis: &Analysis) -> Self {
        let n = analysis.diagnostics.iter().filter(|d| d.is_error()).count();
        LowerError::new(
            None,
            format!(
                "the project has {n} error{}; fix them before building",
                if n == 1 { "" } else { "s" }
            ),
        )
    }

    /// The error with its place as `path:line:col`, for people.
    pub fn render(&self, sources: &SourceMap) -> String {
        match self.at {
            Some(at) if (at.file.0 as usize) < sources.len() => {
                let file = sources.get(at.file);
                let lc = file.line_col(at.span.start);
                format!("{}:{}:{}: {}", file.path, lc.line, lc.col, self.message)
            }
            _ => self.message.clone(),
        }
    }
}

impl fmt::Display for LowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LowerError {}

/// The text of a stdlib file by its path in a bundle (`<stdlib>/events.flow`),
/// so listings can quote stdlib lines without the files on disk.
pub fn stdlib_text(path: &str) -> Option<&'static str> {
    let name = path.strip_prefix("<stdlib>/")?;
    nudge_stdlib::file(name).map(|f| f.source)
}

/// Lowers a checked project to a bundle. Refuses a project whose analysis
/// has errors, which is the only refusal: see [`lower_program`]. The result
/// is the same, byte for byte, for the same sources.
pub fn lower(project: &Project, analysis: &Analysis) -> Result<Bundle, LowerError> {
    // Errors added after the check (a language server adds `nudge.toml`'s)
    // refuse the project too.
    match analysis.program() {
        Some(program) if !analysis.has_errors() => Ok(lower_program(project, program)),
        _ => Err(LowerError::has_errors(analysis)),
    }
}

/// Lowers a typed program (what [`crate::check`] gives a project without
/// errors, [`Analysis::program`]) to a bundle. It cannot fail.
pub fn lower_program(project: &Project, program: &tir::Program) -> Bundle {
    Lower::new(project, program).bundle()
}

struct Lower<'a> {
    project: &'a Project,
    program: &'a tir::Program,
}

impl<'a> Lower<'a> {
    fn new(project: &'a Project, program: &'a tir::Program) -> Self {
        Lower { project, program }
    }

    fn pos(&self, file: nudge_diagnostics::FileId, span: Span) -> bc::Pos {
        let src = self.project.sources.get(file);
        let lc = src.line_col(span.start);
        bc::Pos {
            file: file.0,
            line: lc.line,
            col: lc.col,
            start: span.start,
            end: span.end,
        }
    }

    // ------------------------------------------------------------ the bundle

    fn bundle(&self) -> Bundle {
        let p = self.program;
        let files = self
            .project
            .sources
            .iter()
            .map(|(_, f)| f.path.clone())
            .collect();
        let mut bundle = Bundle {
            files,
            builtins: builtin_names(),
            schemas: p.schemas.clone(),
            enums: p.enums.clone(),
            profile: p.profile,
            lets: p.lets.iter().map(|d| self.let_global(d)).collect(),
            segments: p.segments.iter().map(|d| self.segment_global(d)).collect(),
            messages: p.messages.iter().map(|d| self.message_def(d)).collect(),
            flows: p.flows.iter().map(|d| self.flow(d)).collect(),
            policy: p.policy.clone(),
            retention: Default::default(),
            change_points: self.change_points(),
        };
        bundle.compute_versions();
        // Read off the lowered code, so it covers every way the rules look back.
        bundle.retention = bc::Retention::derive(&bundle);
        bundle
    }

    /// Code for when the segments `trigger entering` flows name can change
    /// with time alone (see [`crate::clock`]).
    fn change_points(&self) -> Vec<bc::ChangePoints> {
        let p = self.program;
        let mut segments: Vec<u32> = p
            .flows
            .iter()
            .filter_map(|f| match f.trigger {
                tir::Trigger::Entering { segment, .. } => Some(segment),
                _ => None,
            })
            .collect();
        segments.sort_unstable();
        segments.dedup();
        let mut clock = crate::clock::Clock::new(p);
        segments
            .into_iter()
            .filter_map(|s| {
                let points = clock.change_points(s).ok()?;
                let d = p.segments.get(s as usize)?;
                if points.is_empty() {
                    return None;
                }
                let mut g = Gen::new(self, d.file, d.slots, None);
                for e in &points {
                    g.expr_block(e, None);
                }
                let (unit, _) = g.finish();
                Some(bc::ChangePoints { segment: s, unit })
            })
            .collect()
    }

    fn let_global(&self, d: &tir::Let) -> bc::Global {
        let mut g = Gen::new(self, d.file, d.slots, Some(BlockKind::Expr));
        g.main_expr(&d.value, Some(&d.ty));
        let (unit, _) = g.finish();
        bc::Global {
            name: d.name.clone(),
            ty: d.bc_ty.clone(),
            unit,
        }
    }

    fn segment_global(&self, d: &tir::Segment) -> bc::Global {
        let mut g = Gen::new(self, d.file, d.slots, Some(BlockKind::Expr));
        g.main_expr(&d.predicate, None);
        let (unit, _) = g.finish();
        bc::Global {
            name: d.name.clone(),
            ty: Type::Bool,
            unit,
        }
    }

    fn message_def(&self, d: &tir::Message) -> bc::Message {
        let mut g = Gen::new(self, d.file, d.slots, None);
        let mut params = Vec::with_capacity(d.params.len());
        for p in &d.params {
            let default = p.default.as_ref().map(|e| g.expr_block(e, Some(&p.ty)));
            params.push(bc::Param {
                name: p.name.clone(),
                ty: p.bc_ty.clone(),
                default,
            });
        }
        let content = d
            .content
            .iter()
            .map(|c| bc::Content {
                key: c.key.clone(),
                value: match &c.value {
                    tir::ContentValue::Code { expr, escape } => {
                        bc::ContentValue::Code(g.content_block(expr, *escape))
                    }
                    tir::ContentValue::Template(t) => bc::ContentValue::Template(t.clone()),
                },
            })
            .collect();
        let (unit, _) = g.finish();
        bc::Message {
            name: d.name.clone(),
            channel: d.channel,
            purpose: d.purpose,
            params,
            content,
            unit,
        }
    }

    fn rule(g: &mut Gen, r: &tir::Rule) -> bc::EventRule {
        bc::EventRule {
            event: r.event,
            predicate: r.predicate.as_ref().map(|p| g.expr_block(p, None)),
        }
    }

    fn flow(&self, d: &tir::Flow) -> bc::Flow {
        let mut g = Gen::new(self, d.file, d.slots, Some(BlockKind::Steps));
        let mut exit_on = Vec::new();
        let mut exit_if = Vec::new();
        let mut suppress = Vec::new();
        let mut goal = None;
        // Blocks are numbered as they are written: the header clauses in
        // source order, the trigger's among them.
        let mut clauses = |g: &mut Gen, list: &[tir::Clause]| {
            for c in list {
                match c {
                    tir::Clause::ExitOn(r) => exit_on.push(Self::rule(g, r)),
                    tir::Clause::ExitIf(e) => exit_if.push(g.expr_block(e, None)),
                    tir::Clause::Suppress(e) => suppress.push(g.expr_block(e, None)),
                    tir::Clause::Goal { rule, within } => {
                        goal = Some(bc::Goal {
                            rule: Self::rule(g, rule),
                            within: *within,
                        })
                    }
                }
            }
        };
        clauses(&mut g, &d.before_trigger);
        let trigger = match &d.trigger {
            tir::Trigger::Event(r) => bc::Trigger::Event(Self::rule(&mut g, r)),
            tir::Trigger::Schedule {
                cadence,
                at,
                local,
                segment,
            } => bc::Trigger::Schedule {
                cadence: *cadence,
                at: *at,
                local: *local,
                segment: *segment,
            },
            tir::Trigger::DateProperty {
                offset,
                field,
                yearly,
                at,
                grace,
            } => bc::Trigger::DateProperty {
                offset: *offset,
                field: *field,
                yearly: *yearly,
                at: *at,
                grace: *grace,
            },
            tir::Trigger::Entering { segment, .. } => bc::Trigger::Entering { segment: *segment },
        };
        clauses(&mut g, &d.after_trigger);
        // The steps first, so that steps are numbered in source order.
        g.main_steps(&d.steps, d.end);
        let on_exit = d
            .on_exit
            .as_ref()
            .map(|(steps, end)| g.steps_block(steps, *end));
        let (unit, tables) = g.finish();
        bc::Flow {
            name: d.name.clone(),
            version: String::new(),
            trigger,
            entry: d.entry,
            exit_on,
            exit_if,
            suppress,
            quiet: d.quiet.clone(),
            caps: d.caps.clone(),
            goal,
            holdout: d.holdout,
            priority: d.priority,
            on_exit,
            locals: d.locals,
            local_names: d.local_names.clone(),
            waits: tables.waits,
            splits: tables.splits,
            steps: tables.steps,
            unit,
        }
    }
}

/// The bundle's builtin table: the stdlib's builtins in id order, so a
/// builtin's index is its id, then the internal ones that escape message
/// content (not callable from flows: their names have a colon).
fn builtin_names() -> Vec<String> {
    nudge_stdlib::BUILTINS
        .iter()
        .map(|b| b.name().to_string())
        .chain(bc::Escape::ALL.iter().map(|e| e.builtin().to_string()))
        .collect()
}

/// The index in [`builtin_names`] of the builtin escaping for `escape`.
fn escape_builtin(escape: bc::Escape) -> u16 {
    let nth = match escape {
        bc::Escape::Html => 0,
        bc::Escape::Json => 1,
        bc::Escape::Url => 2,
        bc::Escape::Line => 3,
    };
    // Builtin ids are `u16`s (`Builtin::id`), so the table and the four
    // escapes after it stay far below the limit.
    (nudge_stdlib::BUILTINS.len() + nth) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_escape_calls_the_builtin_of_its_name() {
        let names = builtin_names();
        for e in bc::Escape::ALL {
            assert_eq!(
                names
                    .get(usize::from(escape_builtin(e)))
                    .map(String::as_str),
                Some(e.builtin())
            );
        }
    }
}
