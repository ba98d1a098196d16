//! Turning a `test` block into timed Segment calls and expectations.

use chrono::{DateTime, SecondsFormat, Utc};
use nudge_bytecode::{Bundle, SchemaKind};
use nudge_diagnostics::SourceFile;
use nudge_syntax::Span;
use nudge_syntax::ast::{EventRef, ExpectKind, Prop, TestCall, TestDecl, TestStmtKind, TestTime};
use serde_json::{Map, Value as Json};

use crate::Failure;
use crate::eval::{FileConditions, to_json};

/// When a test starts if it names no absolute instant: Monday 2026-01-05,
/// 00:00 UTC, in seconds since the epoch.
pub const DEFAULT_START: i64 = 1_767_571_200;

const DAY: i64 = 86_400;

/// A test ready to run.
pub(crate) struct Scenario<'a> {
    pub name: String,
    pub file: String,
    pub line: usize,
    pub start: i64,
    /// The clock runs through this instant before expectations are checked.
    pub end: i64,
    /// In the order they happen.
    pub calls: Vec<Step>,
    pub expects: Vec<Expect<'a>>,
    /// Statements that could not be turned into calls.
    pub problems: Vec<Failure>,
    /// `alias FROM to TO` pairs: FROM's records belong to TO.
    pub aliases: Vec<(String, String)>,
    /// The compiled `where` conditions of the test's file.
    pub conditions: FileConditions<'a>,
}

/// One call at its time.
pub(crate) struct Step {
    pub at: i64,
    /// When the call reaches the engine: `at`, unless written `arrives` later.
    pub arrives: i64,
    /// The call as the JSON line a tracking library would send, read by
    /// the same decoder as every other host's calls.
    pub call: String,
    /// The statement as written.
    pub text: String,
    pub line: usize,
    /// The customer ids the call names.
    pub customers: Vec<String>,
}

/// One expectation with where it was written.
pub(crate) struct Expect<'a> {
    pub negated: bool,
    pub kind: &'a ExpectKind,
    pub text: String,
    pub line: usize,
}

/// Reads a test block; statements that cannot be run become problems.
pub(crate) fn build<'a>(
    t: &'a TestDecl,
    src: &SourceFile,
    bundle: &Bundle,
    conditions: FileConditions<'a>,
) -> Scenario<'a> {
    let start = start_of(t);
    let text = |span: Span| src.text[span.range()].trim().to_string();
    let line = |span: Span| src.line_col(span.start).line as usize;
    let mut sc = Scenario {
        name: t.name.value.clone(),
        file: src.path.clone(),
        line: line(t.span),
        start,
        end: start,
        calls: Vec::new(),
        expects: Vec::new(),
        problems: Vec::new(),
        aliases: Vec::new(),
        conditions,
    };
    // The clock as the statements so far leave it: `run` counts from here.
    let mut clock = start;
    for stmt in &t.stmts {
        let problem = |reason: String| Failure {
            expected: text(stmt.span),
            line: line(stmt.span),
            actual: vec![reason],
            timelines: Vec::new(),
        };
        match &stmt.kind {
            TestStmtKind::Given { customer, props } => match object(props) {
                Ok(traits) => sc.calls.push(Step {
                    at: start,
                    arrives: start,
                    call: call(
                        "identify",
                        &[("traits", Json::Object(traits))],
                        false,
                        &customer.value,
                        start,
                    ),
                    text: text(stmt.span),
                    line: line(stmt.span),
                    customers: vec![customer.value.clone()],
                }),
                Err(e) => sc.problems.push(problem(e)),
            },
            TestStmtKind::At {
                at,
                call: c,
                arrives,
            } => {
                let at = instant(at, start);
                let arrival = arrives.as_ref().map_or(at, |a| instant(a, start));
                if arrival < at {
                    sc.problems.push(problem(format!(
                        "the call arrives at {} before it happens at {}; a late call arrives after",
                        nudge_bytecode::format_instant(arrival),
                        nudge_bytecode::format_instant(at)
                    )));
                    continue;
                }
                clock = clock.max(arrival);
                match make_call(c, at, bundle) {
                    Ok((call, customers)) => {
                        if let TestCall::Alias { from, to } = c {
                            sc.aliases.push((from.value.clone(), to.value.clone()));
                        }
                        sc.calls.push(Step {
                            at,
                            arrives: arrival,
                            call,
                            text: text(stmt.span),
                            line: line(stmt.span),
                            customers,
                        })
                    }
                    Err(e) => sc.problems.push(problem(e)),
                }
            }
            TestStmtKind::Run(d) => clock += d.seconds.max(0),
            TestStmtKind::Expect(x) => sc.expects.push(Expect {
                negated: x.negated,
                kind: &x.kind,
                text: text(stmt.span),
                line: line(stmt.span),
            }),
            TestStmtKind::Error => sc.problems.push(problem(
                "this statement could not be read; `nudge check` explains why".into(),
            )),
        }
    }
    // Calls reach the engine in order of arrival (a late call after the
    // calls that overtook it); given profiles come first at the start, and
    // calls arriving at the same second keep their written order.
    sc.calls.sort_by_key(|s| s.arrives);
    sc.end = clock;
    sc
}

/// Midnight UTC of the earliest absolute instant a call names, else the default.
fn start_of(t: &TestDecl) -> i64 {
    t.stmts
        .iter()
        .filter_map(|s| match &s.kind {
            TestStmtKind::At {
                at: TestTime::Instant(i),
                ..
            } => Some(i.unix_seconds),
            _ => None,
        })
        .min()
        .map_or(DEFAULT_START, |t| t.div_euclid(DAY) * DAY)
}

/// The instant a test time stands for.
pub(crate) fn instant(at: &TestTime, start: i64) -> i64 {
    match at {
        TestTime::TimeOfDay(t) => start + i64::from(t.hour) * 3600 + i64::from(t.minute) * 60,
        TestTime::Instant(i) => i.unix_seconds,
        TestTime::Offset(d) => start + d.seconds,
    }
}

/// One call as a JSON line: its type, then `fields` (already JSON), the
/// customer's id and the time, in the order Segment's libraries write them.
fn call(kind: &str, fields: &[(&str, Json)], anonymous: bool, id: &str, at: i64) -> String {
    let mut line = format!("{{\"type\":{}", Json::from(kind));
    for (key, value) in fields {
        line.push_str(&format!(",{}:{value}", Json::from(*key)));
    }
    let id_key = if anonymous { "anonymousId" } else { "userId" };
    let time = DateTime::<Utc>::from_timestamp(at, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    line.push_str(&format!(
        ",{}:{},\"timestamp\":{}}}",
        Json::from(id_key),
        Json::from(id),
        Json::from(time)
    ));
    line
}

fn make_call(c: &TestCall, at: i64, bundle: &Bundle) -> Result<(String, Vec<String>), String> {
    Ok(match c {
        TestCall::Track {
            anonymous,
            customer,
            event,
            props,
        } => {
            let event = match event {
                EventRef::Wire(w) => w.value.clone(),
                EventRef::Name(n) => bundle
                    .schemas
                    .iter()
                    .find(|s| s.kind == SchemaKind::Event && s.name == n.name)
                    .and_then(|s| s.wire.clone())
                    .ok_or_else(|| format!("there is no event `{}`", n.name))?,
            };
            let fields = [
                ("event", Json::from(event)),
                ("properties", Json::Object(object(props)?)),
            ];
            (
                call("track", &fields, *anonymous, &customer.value, at),
                vec![customer.value.clone()],
            )
        }
        TestCall::Identify {
            anonymous,
            customer,
            props,
        } => {
            let fields = [("traits", Json::Object(object(props)?))];
            (
                call("identify", &fields, *anonymous, &customer.value, at),
                vec![customer.value.clone()],
            )
        }
        TestCall::Alias { from, to } => {
            let fields = [("previousId", Json::from(from.value.as_str()))];
            (
                call("alias", &fields, false, &to.value, at),
                vec![from.value.clone(), to.value.clone()],
            )
        }
        TestCall::Page {
            anonymous,
            customer,
            name,
            props,
        } => {
            let mut fields = Vec::with_capacity(2);
            if let Some(n) = name {
                fields.push(("name", Json::from(n.value.as_str())));
            }
            fields.push(("properties", Json::Object(object(props)?)));
            (
                call("page", &fields, *anonymous, &customer.value, at),
                vec![customer.value.clone()],
            )
        }
    })
}

/// A props block as a JSON object, the way Segment would carry it.
fn object(props: &[Prop]) -> Result<Map<String, Json>, String> {
    let mut m = Map::new();
    for p in props {
        m.insert(p.key.name.clone(), to_json(&p.value)?);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_start_is_a_monday_at_midnight_utc() {
        let t = DateTime::<Utc>::from_timestamp(DEFAULT_START, 0).expect("in range");
        assert_eq!(t.to_rfc3339(), "2026-01-05T00:00:00+00:00");
        assert_eq!(t.format("%A").to_string(), "Monday");
    }
}
