//! Constant values and content conditions written in tests.
//!
//! Values in a test are literals, turned into the JSON a Segment call would
//! carry so that the engine decodes them exactly as in a replay. Conditions
//! over a sent message's content are compiled by the compiler and run on the
//! VM against the rendered content, which is all text.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use nudge_bytecode::{Bundle, Record, Value, civil_from_days, format_instant};
use nudge_compiler::{Analysis, Project, TestConditions};
use nudge_diagnostics::{FileId, FileSpan};
use nudge_syntax::ast::{Expr, ExprKind, StrPart, UnaryOp};
use nudge_vm::{Host, Scope, UnitRef, Vm};
use rust_decimal::Decimal;
use serde_json::{Map, Value as Json};

/// A literal expression as JSON: money and numbers as numbers, times as
/// RFC 3339 strings, durations as whole seconds.
pub(crate) fn to_json(e: &Expr) -> Result<Json, String> {
    Ok(match &e.kind {
        ExprKind::Int(i) => Json::from(*i),
        ExprKind::Decimal(d) | ExprKind::Money(d) | ExprKind::Percent(d) => number(*d)?,
        ExprKind::Duration(s) => Json::from(*s),
        ExprKind::Instant(t) => Json::String(format_instant(*t)),
        ExprKind::Date(d) => {
            let (y, m, d) = civil_from_days(i64::from(*d));
            Json::String(format!("{y:04}-{m:02}-{d:02}"))
        }
        ExprKind::TimeOfDay(m) => Json::String(format!("{:02}:{:02}", m / 60, m % 60)),
        ExprKind::Str(parts) => Json::String(text(parts)?),
        ExprKind::Bool(b) => Json::Bool(*b),
        ExprKind::None => Json::Null,
        ExprKind::List(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        ExprKind::Record(fields) => {
            let mut m = Map::new();
            for p in fields {
                m.insert(p.key.name.clone(), to_json(&p.value)?);
            }
            Json::Object(m)
        }
        ExprKind::Unary {
            op: UnaryOp::Neg,
            expr,
        } => match &expr.kind {
            ExprKind::Int(i) => Json::from(-*i),
            ExprKind::Decimal(d) | ExprKind::Money(d) | ExprKind::Percent(d) => number(-*d)?,
            ExprKind::Duration(s) => Json::from(-*s),
            _ => return Err(not_literal()),
        },
        _ => return Err(not_literal()),
    })
}

fn not_literal() -> String {
    "a test can only use literal values here (numbers, money, text, times, lists, records)".into()
}

/// A decimal as a JSON number. A JSON number here is a binary float, so a
/// literal with more digits than one holds is refused rather than rounded.
fn number(d: Decimal) -> Result<Json, String> {
    let text = d.normalize().to_string();
    let json: Json = serde_json::from_str(&text).map_err(|_| format!("{d} is not a number"))?;
    let back = json
        .as_f64()
        .and_then(|f| Decimal::from_str(&Json::from(f).to_string()).ok());
    match (json.is_f64(), back) {
        (false, _) => Ok(json),
        (true, Some(b)) if b == d => Ok(json),
        _ => Err(format!(
            "{d} has more digits than a test event can carry: write at most 15 significant digits"
        )),
    }
}

fn text(parts: &[StrPart]) -> Result<String, String> {
    let mut s = String::new();
    for p in parts {
        match p {
            StrPart::Text(t, _) => s.push_str(t),
            StrPart::Interp(_) => {
                return Err("a test's text cannot interpolate `{...}`; write the value out".into());
            }
        }
    }
    Ok(s)
}

/// The `where` conditions of a project's tests, compiled by the compiler on
/// first use and run on the VM, so a condition means what the same
/// expression means in a flow.
pub(crate) struct Conditions<'p> {
    project: &'p Project,
    analysis: &'p Analysis,
    compiled: OnceLock<Result<TestConditions, String>>,
}

impl<'p> Conditions<'p> {
    /// The conditions of this project's tests, from its analysis; nothing
    /// is compiled until one is checked.
    pub(crate) fn new(project: &'p Project, analysis: &'p Analysis) -> Self {
        Conditions {
            project,
            analysis,
            compiled: OnceLock::new(),
        }
    }

    /// The conditions of one of the project's files.
    pub(crate) fn of_file(&self, file: FileId) -> FileConditions<'_> {
        FileConditions { all: self, file }
    }

    fn compiled(&self) -> Result<&TestConditions, String> {
        let compiled = self.compiled.get_or_init(|| {
            nudge_compiler::lower_test_conditions(self.project, self.analysis)
                .map_err(|e| e.render(&self.project.sources))
        });
        compiled.as_ref().map_err(Clone::clone)
    }
}

/// The compiled conditions of the tests in one file.
#[derive(Clone, Copy)]
pub(crate) struct FileConditions<'c> {
    all: &'c Conditions<'c>,
    file: FileId,
}

impl FileConditions<'_> {
    /// Whether `pred` holds for a sent message's `content`, with the clock at `now`
    /// (seconds since the epoch).
    pub(crate) fn holds(
        &self,
        pred: &Expr,
        content: &Map<String, Json>,
        now: i64,
    ) -> Result<bool, String> {
        let compiled = self.all.compiled()?;
        let at = FileSpan::new(self.file, pred.span);
        let cond = match compiled.by_span.get(&at) {
            Some(Ok(cond)) => cond,
            Some(Err(e)) => return Err(e.render(&self.all.project.sources)),
            None => return Err("the condition was not compiled".into()),
        };
        let bundle = &compiled.bundle;
        let schema = bundle
            .schemas
            .get(cond.content as usize)
            .ok_or("the condition has no content record")?;
        // Rendered content is text; a key the message did not render is none.
        let fields = schema
            .fields
            .iter()
            .map(|f| match content.get(&f.name) {
                None | Some(Json::Null) => Value::None,
                Some(Json::String(s)) => Value::str(s),
                Some(other) => Value::str(&other.to_string()),
            })
            .collect();
        let record = Value::Record(Arc::new(Record {
            schema: cond.content,
            fields,
        }));
        let mut host = ContentHost::new(bundle, now);
        let vm = Vm::new(bundle);
        let mut locals = vec![record];
        let unit = UnitRef::Segment(cond.segment);
        match vm.eval(unit, 0, &mut locals, &Scope::default(), &mut host) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("the condition gave {other}, not true or false")),
            Err(e) => Err(e.display(bundle).to_string()),
        }
    }
}

/// What a condition may ask of the world: the clock, and otherwise an empty
/// profile and no events, since it reads only the sent content.
struct ContentHost {
    profile: Record,
    now: i64,
}

impl ContentHost {
    fn new(bundle: &Bundle, now: i64) -> Self {
        let fields = bundle
            .schemas
            .get(bundle.profile as usize)
            .map_or_else(Vec::new, |s| s.fields.iter().map(|_| Value::None).collect());
        ContentHost {
            profile: Record {
                schema: bundle.profile,
                fields,
            },
            now,
        }
    }
}

impl Host for ContentHost {
    fn profile(&self) -> std::borrow::Cow<'_, Record> {
        std::borrow::Cow::Borrowed(&self.profile)
    }

    fn set_profile(&mut self, _field: u16, _value: Value) {}

    fn now(&self) -> i64 {
        self.now
    }

    fn timezone(&self) -> chrono_tz::Tz {
        chrono_tz::UTC
    }

    fn for_each_event(&self, _schema: u32, _since: i64, _f: &mut dyn FnMut(&Value) -> bool) {}

    fn customer_key(&self) -> &str {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_syntax::ast::Item;

    /// The first prop value of `given profile u { x: VALUE }`.
    fn value(src: &str) -> Expr {
        let text = format!("test \"t\" {{\n  given profile u {{ x: {src} }}\n}}\n");
        let parsed = nudge_syntax::parse(nudge_syntax::FileId(0), &text);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let Item::Test(t) = &parsed.file.items[0] else {
            panic!("not a test")
        };
        match &t.stmts[0].kind {
            nudge_syntax::ast::TestStmtKind::Given { props, .. } => props[0].value.clone(),
            _ => panic!("not a given"),
        }
    }

    #[test]
    fn literals_become_segment_json() {
        assert_eq!(to_json(&value("$12.50")), Ok(serde_json::json!(12.5)));
        assert_eq!(to_json(&value("-3")), Ok(serde_json::json!(-3)));
        assert_eq!(
            to_json(&value("$1234567890123.45")),
            Ok(serde_json::json!(1234567890123.45))
        );
        assert_eq!(
            to_json(&value("$12345678901234567.89")),
            Err(
                "12345678901234567.89 has more digits than a test event can carry: \
                 write at most 15 significant digits"
                    .into()
            )
        );
        assert_eq!(to_json(&value("2h")), Ok(serde_json::json!(7200)));
        assert_eq!(
            to_json(&value("2026-01-05T10:00:00Z")),
            Ok(serde_json::json!("2026-01-05T10:00:00Z"))
        );
        assert_eq!(
            to_json(&value("[\"a\", \"b\"]")),
            Ok(serde_json::json!(["a", "b"]))
        );
        assert_eq!(
            to_json(&value("{ email: true, sms: false }")),
            Ok(serde_json::json!({ "email": true, "sms": false }))
        );
    }

    #[test]
    fn names_are_not_literals() {
        assert!(to_json(&value("other")).is_err());
    }

    /// A project whose one test expects `thanks` sent with each condition,
    /// and the conditions' expressions in order.
    fn conditions(conds: &[&str]) -> (Project, Vec<Expr>) {
        let mut src = String::from(
            "let vip_word = \"VIP\"\n\
             message thanks(order: order_completed) {\n  channel email\n  purpose transactional\n  \
             subject \"Thanks for order {order.order_id}\"\n  body \"We got it.\"\n}\n\
             flow thank_you {\n  trigger order_completed\n  send thanks(trigger)\n}\n\
             test \"t\" {\n",
        );
        for c in conds {
            src.push_str(&format!("  expect send thanks where {c}\n"));
        }
        src.push_str("}\n");
        let parsed = nudge_syntax::parse(FileId(0), &src);
        let Item::Test(t) = parsed.file.items.last().expect("items") else {
            panic!("not a test")
        };
        let preds = t
            .stmts
            .iter()
            .map(|s| match &s.kind {
                nudge_syntax::ast::TestStmtKind::Expect(x) => match &x.kind {
                    nudge_syntax::ast::ExpectKind::Send {
                        predicate: Some(p), ..
                    } => p.clone(),
                    _ => panic!("not a send"),
                },
                _ => panic!("not an expect"),
            })
            .collect();
        let p = Project::from_sources(vec![("a.flow".into(), src)]);
        (p, preds)
    }

    #[test]
    fn conditions_run_on_the_vm_against_the_content() {
        let (project, preds) = conditions(&[
            "contains(content.subject, \"o1\") and not (content.body == \"x\")",
            "upper(content.subject) == \"THANKS FOR ORDER O1\"",
            "starts_with(content.subject, vip_word)",
            "len([content.subject, content.body]) == 2 and ends_with(trim(content.body), \".\")",
        ]);
        let analysis = nudge_compiler::check(&project);
        let all = Conditions::new(&project, &analysis);
        let file = all.of_file(FileId(0));
        let mut content = Map::new();
        content.insert("subject".into(), Json::String("Thanks for order o1".into()));
        content.insert("body".into(), Json::String("We got it. ".into()));
        let results: Vec<_> = preds.iter().map(|p| file.holds(p, &content, 0)).collect();
        assert_eq!(results, vec![Ok(true), Ok(true), Ok(false), Ok(true)]);
        content.insert("subject".into(), Json::String("VIP: order o2".into()));
        assert_eq!(file.holds(&preds[0], &content, 0), Ok(false));
        assert_eq!(file.holds(&preds[2], &content, 0), Ok(true));
    }

    #[test]
    fn a_condition_that_fails_at_run_time_says_why_and_where() {
        let (project, preds) = conditions(&["contains(content.subject, \"o1\")"]);
        let analysis = nudge_compiler::check(&project);
        let all = Conditions::new(&project, &analysis);
        let file = all.of_file(FileId(0));
        // A key the message did not render is none, which `contains` cannot read.
        let err = file.holds(&preds[0], &Map::new(), 0).unwrap_err();
        assert!(err.contains("expected a string, found none"), "{err}");
        assert!(err.contains("a.flow:"), "{err}");
    }

    #[test]
    fn a_condition_reading_the_customer_is_refused_at_its_place() {
        let (project, preds) = conditions(&[
            "profile.first_name == \"Ana\"",
            "any_event(order_completed, o => true)",
            "contains(content.subject, \"o1\")",
        ]);
        let analysis = nudge_compiler::check(&project);
        let all = Conditions::new(&project, &analysis);
        let file = all.of_file(FileId(0));
        let mut content = Map::new();
        content.insert("subject".into(), Json::String("Thanks for order o1".into()));
        let results: Vec<_> = preds.iter().map(|p| file.holds(p, &content, 0)).collect();
        assert_eq!(
            results,
            vec![
                Err(
                    "a.flow:13:36: a condition on a send reads only its `content`, not the profile"
                        .into()
                ),
                Err(
                    "a.flow:14:28: a condition on a send reads only its `content`, \
                     not this customer's events"
                        .into()
                ),
                Ok(true),
            ]
        );
    }

    #[test]
    fn a_project_with_errors_has_no_conditions() {
        let (project, preds) = conditions(&["contains(content.subjet, \"o1\")"]);
        let analysis = nudge_compiler::check(&project);
        let all = Conditions::new(&project, &analysis);
        let err = all
            .of_file(FileId(0))
            .holds(&preds[0], &Map::new(), 0)
            .unwrap_err();
        assert!(err.contains("the project has 1 error"), "{err}");
    }
}
