//! Rendering message content: code blocks and Jinja templates.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::Value as Jv;
use nudge_bytecode::{Bundle, ContentValue, Escape, Record, Template, Value};

use crate::{Host, Rendered, Scope, UnitRef, Vm, VmError, VmErrorKind, bad};

/// A value as templates see it.
///
/// Records become maps keyed by field name, lists sequences; strings, ints and
/// bools stay themselves. Everything else becomes its text (`to_text`): money
/// as shoppers read it (`$12.50`, `€12.50`), decimals and percents exactly
/// rather than as floats, instants in RFC 3339.
///
/// Money is written in `currency`, the store's; a record with a `currency`
/// field holding an ISO 4217 code (an order, a checkout) writes its own
/// amounts, and those of the records inside it (its products), in that one.
pub(crate) fn to_jinja(bundle: &Bundle, v: &Value, currency: Option<&str>) -> Jv {
    match v {
        Value::None => Jv::from(()),
        Value::Bool(b) => Jv::from(*b),
        Value::Int(i) => Jv::from(*i),
        Value::Str(s) => Jv::from(s.to_string()),
        Value::List(items) => Jv::from(
            items
                .iter()
                .map(|x| to_jinja(bundle, x, currency))
                .collect::<Vec<_>>(),
        ),
        Value::Record(r) => record(bundle, r, currency),
        other => Jv::from(other.to_text_in(currency)),
    }
}

fn record(bundle: &Bundle, r: &Record, currency: Option<&str>) -> Jv {
    let fields = bundle
        .schemas
        .get(r.schema as usize)
        .map(|s| s.fields.as_slice())
        .unwrap_or_default();
    let own = fields.iter().zip(&r.fields).find_map(|(f, v)| match v {
        Value::Str(c) if f.name == "currency" => {
            let code = c.trim().to_ascii_uppercase();
            nudge_stdlib::format::is_currency_code(&code).then_some(code)
        }
        _ => None,
    });
    let currency = own.as_deref().or(currency);
    let mut map = BTreeMap::new();
    for (f, v) in fields.iter().zip(&r.fields) {
        // Unset fields with a default read as the default, as in flow code.
        let v = match (v, &f.default) {
            (Value::None, Some(d)) => d,
            _ => v,
        };
        map.insert(f.name.clone(), to_jinja(bundle, v, currency));
    }
    Jv::from(map)
}

/// How templates print values: `none` as nothing (as in string
/// interpolation), and every other value escaped for the context the
/// template lands in (see [`auto_escape`]), unless marked `|safe`. In HTML
/// only `& < > " '` are escaped, so links stay readable (`/` is left alone).
pub(crate) fn formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &Jv,
) -> Result<(), minijinja::Error> {
    if value.is_none() || value.is_undefined() {
        return Ok(());
    }
    let escape = match state.auto_escape() {
        minijinja::AutoEscape::Html => Some(Escape::Html),
        minijinja::AutoEscape::Custom(name) => Escape::from_name(name),
        _ => None,
    };
    let Some(escape) = escape.filter(|_| !value.is_safe()) else {
        return minijinja::escape_formatter(out, state, value);
    };
    out.write_str(&escape.apply(&value.to_string()))
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()))
}

/// The auto-escape setting of a template, from the context prefix of the
/// name it is registered under (`html:3/0/templates/x.html`).
pub(crate) fn auto_escape(name: &str) -> minijinja::AutoEscape {
    match name.split_once(':').and_then(|(p, _)| Escape::from_name(p)) {
        Some(Escape::Html) => minijinja::AutoEscape::Html,
        Some(e) => minijinja::AutoEscape::Custom(e.name()),
        None => minijinja::AutoEscape::None,
    }
}

fn template_error(t: &Template, e: &minijinja::Error) -> VmError {
    // The plain message names the template and line; the alternate form adds source excerpts.
    VmError::new(VmErrorKind::Template(format!("{}: {e}", t.path)))
}

impl Vm<'_> {
    pub(crate) fn render_message(
        &self,
        message: u32,
        args: &[Value],
        host: &mut dyn Host,
    ) -> Result<Rendered, VmError> {
        let m = self
            .bundle
            .messages
            .get(message as usize)
            .ok_or_else(|| bad(format!("no message {message}")))?;
        if args.len() != m.params.len() {
            return Err(bad(format!(
                "message `{}` takes {} arguments, given {}",
                m.name,
                m.params.len(),
                args.len()
            )));
        }
        let mut content = Vec::with_capacity(m.content.len());
        for (i, c) in m.content.iter().enumerate() {
            let text = match &c.value {
                ContentValue::Code(block) => {
                    let mut locals = args.to_vec();
                    let v = self.eval_block(
                        UnitRef::Message(message),
                        *block,
                        &mut locals,
                        &Scope::default(),
                        host,
                    )?;
                    self.text(&v)
                }
                ContentValue::Template(t) => self.render_template(message, i, t, args, host)?,
            };
            content.push((c.key.clone(), text));
        }
        Ok(Rendered { content })
    }

    fn render_template(
        &self,
        message: u32,
        index: usize,
        t: &Template,
        args: &[Value],
        host: &mut dyn Host,
    ) -> Result<String, VmError> {
        let m = self
            .bundle
            .messages
            .get(message as usize)
            .ok_or_else(|| bad(format!("no message {message}")))?;
        let mut ctx: BTreeMap<String, Jv> = BTreeMap::new();
        let profile = Value::Record(Arc::new(host.profile().into_owned()));
        let currency = self.currency();
        ctx.insert("profile".into(), to_jinja(self.bundle, &profile, currency));
        // The email plugin puts the signed links in place of their marks; a
        // let or parameter of the same name shadows them.
        for (name, mark) in nudge_bytecode::LINK_NAMES {
            ctx.insert(name.into(), Jv::from(mark));
        }
        for (name, n) in &t.lets {
            let v = self.let_value(*n, host)?;
            ctx.insert(name.clone(), to_jinja(self.bundle, &v, currency));
        }
        // Parameters go last so they shadow a let of the same name.
        for (p, v) in m.params.iter().zip(args) {
            ctx.insert(p.name.clone(), to_jinja(self.bundle, v, currency));
        }
        // Relative paths of different files may coincide, so the name is made
        // unique per content field. Its prefix is the escaping the content's
        // place calls for (HTML for an email body, whatever the file's
        // extension; JSON for a webhook payload; ...).
        let escape = m
            .content
            .get(index)
            .map_or(Escape::Line, |c| Escape::of(m.channel, &c.key));
        let name = format!("{}:{message}/{index}/{}", escape.name(), t.path);
        // A panic elsewhere while holding the lock leaves the cache usable: it only adds templates.
        let mut env = self
            .templates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if env.get_template(&name).is_err() {
            env.add_template_owned(name.clone(), t.source.clone())
                .map_err(|e| template_error(t, &e))?;
        }
        let tmpl = env.get_template(&name).map_err(|e| template_error(t, &e))?;
        tmpl.render(Jv::from(ctx))
            .map_err(|e| template_error(t, &e))
    }
}
