//! The report as one self-contained HTML page: inline CSS and inline SVG,
//! so it can be mailed or archived and still open without a network. Every
//! number a chart shows is also in a table on the page.

use std::fmt::Write;

use crate::money::{self, Amounts};
use crate::report::{FlowReport, Funnel, Report, SendCounts, rate_text};

const BAR_WIDTH: f64 = 420.0;
const LABEL_WIDTH: f64 = 150.0;
const ROW_HEIGHT: f64 = 30.0;

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1f2933;background:#fff}\
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2.5rem;border-bottom:1px solid #d9e2ec;padding-bottom:.3rem}h3{font-size:1rem}\
table{border-collapse:collapse;margin:.8rem 0}th,td{padding:.25rem .7rem;border-bottom:1px solid #e4e7eb;text-align:right}\
th{background:#f5f7fa}td.l,th.l{text-align:left}tr.total td{font-weight:600;border-top:2px solid #9aa5b1}.summary{color:#52606d}\
svg text{font-size:12px;fill:#1f2933}.bar{fill:#3e7bfa}.ctl{fill:#9aa5b1}.none{fill:#e4e7eb}.ci{stroke:#1f2933;stroke-width:1.5}";

/// One bar of a chart: its label, its length and the number written beside it.
struct Bar {
    label: String,
    value: Option<f64>,
    shown: String,
    class: &'static str,
}

/// The page for a report; `title` heads it (a project path, say).
pub fn page(report: &Report, title: &str) -> String {
    let mut out = String::new();
    let cur = report.currency.as_deref();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Nudge report: {t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>Nudge report: {t}</h1>\n<p class=\"summary\">Period: {p}.</p>\n",
        t = escape(title),
        p = escape(&report.period()),
    );
    for note in report.notes() {
        let _ = writeln!(out, "<p class=\"summary\">Note: {}.</p>", escape(&note));
    }
    if !report.feedback_seen {
        out.push_str("<p class=\"summary\">The trace holds no channel feedback, so delivery is unknown.</p>\n");
    }
    overview(&mut out, report, cur);
    revenue_chart(&mut out, report, cur);
    for f in &report.flows {
        flow_section(&mut out, f, cur);
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// The table of every flow, the unattributed orders and the totals.
fn overview(out: &mut String, report: &Report, cur: Option<&str>) {
    out.push_str("<h2>All flows</h2>\n<p class=\"summary\">Customers columns count distinct treated customers; sends count messages; each order is credited to one flow or left unattributed.</p>\n");
    out.push_str("<table>\n<tr><th class=\"l\">flow</th><th>entered</th><th>messaged</th><th>delivered</th><th>clicked</th><th>converted</th><th>sends</th><th>orders</th><th>revenue</th></tr>\n");
    let row = |out: &mut String,
               class: &str,
               name: &str,
               u: Option<&Funnel>,
               sends: Option<u64>,
               orders: u64,
               revenue: &Amounts| {
        let cell = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
        let _ = writeln!(
            out,
            "<tr{class}><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{orders}</td><td>{}</td></tr>",
            escape(name),
            cell(u.map(|u| u.entered)),
            cell(u.map(|u| u.messaged)),
            cell(u.and_then(|u| u.delivered)),
            cell(u.map(|u| u.clicked)),
            cell(u.map(|u| u.converted)),
            cell(sends),
            escape(&revenue.text(cur)),
        );
    };
    for f in &report.flows {
        row(
            out,
            "",
            &f.flow,
            Some(&f.funnel),
            Some(f.sends.sent),
            f.attributed.orders,
            &f.attributed.revenue,
        );
    }
    row(
        out,
        "",
        "unattributed",
        None,
        None,
        report.unattributed.orders,
        &report.unattributed.revenue,
    );
    row(
        out,
        " class=\"total\"",
        "total",
        Some(&report.funnel),
        Some(report.sends.sent),
        report.total.orders,
        &report.total.revenue,
    );
    out.push_str("</table>\n");
}

/// Revenue per flow and unattributed, one chart per currency.
fn revenue_chart(out: &mut String, report: &Report, cur: Option<&str>) {
    for m in report.total.revenue.list() {
        let c = m.currency.as_deref().or(cur);
        let mut rows: Vec<(&str, &Amounts)> = report
            .flows
            .iter()
            .map(|f| (f.flow.as_str(), &f.attributed.revenue))
            .collect();
        rows.push(("unattributed", &report.unattributed.revenue));
        let bars: Vec<Bar> = rows
            .into_iter()
            .map(|(name, a)| {
                let amount = a.get(m.currency.as_deref());
                Bar {
                    label: name.to_string(),
                    value: Some(to_f64(amount)),
                    shown: money::format(amount, c),
                    class: "bar",
                }
            })
            .collect();
        let name = m.currency.as_deref().unwrap_or("revenue");
        let _ = writeln!(out, "<h3>Revenue ({})</h3>", escape(name));
        chart(out, &format!("Revenue by flow ({name})"), &bars, None);
    }
}

fn flow_section(out: &mut String, f: &FlowReport, cur: Option<&str>) {
    let _ = writeln!(out, "<section>\n<h2>{}</h2>", escape(&f.flow));
    let _ = writeln!(
        out,
        "<p class=\"summary\">Instances: started {} (holdout {}); not entered {}; completed {}; exited {}; errors {}. \
         Orders credited: {} from {} customer(s), revenue {}.</p>",
        f.instances,
        f.instances_holdout,
        f.not_entered,
        f.completed,
        f.exited,
        f.errors,
        f.attributed.orders,
        f.attributed.customers,
        escape(&f.attributed.revenue.text(cur)),
    );
    out.push_str("<h3>Funnel (customers)</h3>\n");
    let u = &f.funnel;
    let n = |v: u64| Some(v as f64);
    let bars = [
        ("entered", n(u.entered), u.entered.to_string()),
        ("messaged", n(u.messaged), u.messaged.to_string()),
        (
            "delivered",
            u.delivered.map(|d| d as f64),
            u.delivered
                .map_or("unknown: no feedback".into(), |d| d.to_string()),
        ),
        ("clicked", n(u.clicked), u.clicked.to_string()),
        ("converted", n(u.converted), u.converted.to_string()),
    ]
    .map(|(label, value, shown)| Bar {
        label: label.into(),
        value,
        shown,
        class: "bar",
    });
    chart(out, &format!("Funnel of {}", f.flow), &bars, None);
    holdout(out, f, cur);
    arms(out, f);
    steps(out, f);
    out.push_str("</section>\n");
}

/// The treated and control groups: a table, and their rates as bars with
/// the difference's interval written out.
fn holdout(out: &mut String, f: &FlowReport, cur: Option<&str>) {
    let h = &f.holdout;
    out.push_str("<h3>Holdout</h3>\n");
    if h.control.entered == 0 {
        out.push_str("<p class=\"summary\">No holdout group.</p>\n");
        return;
    }
    out.push_str("<table>\n<tr><th class=\"l\">group</th><th>entered</th><th>reached the goal</th><th>rate</th><th>revenue</th></tr>\n");
    for (name, g) in [("treated", &h.treated), ("control", &h.control)] {
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            g.entered,
            g.converted,
            rate_text(g.rate),
            escape(&g.revenue.text(cur)),
        );
    }
    out.push_str("</table>\n");
    let bars = [
        ("treated", &h.treated, "bar"),
        ("control", &h.control, "ctl"),
    ]
    .map(|(name, g, class)| Bar {
        label: name.into(),
        value: g.rate.map(to_f64),
        shown: format!("{} ({} of {})", rate_text(g.rate), g.converted, g.entered),
        class,
    });
    chart(out, &format!("Holdout of {}", f.flow), &bars, Some(1.0));
    let _ = writeln!(
        out,
        "<p class=\"summary\">Difference in goal rate: {}.</p>",
        escape(&h.text())
    );
}

/// The split arms: a table and their rates as bars.
fn arms(out: &mut String, f: &FlowReport) {
    if f.arms.is_empty() {
        return;
    }
    out.push_str("<h3>Split arms</h3>\n");
    if let Some(o) = &f.optimised {
        let _ = writeln!(
            out,
            "<p>The split optimises the goal (floor {}): {}.</p>",
            escape(&o.floor),
            o.settled_text()
        );
    }
    let best = f.optimised.is_some();
    out.push_str("<table>\n<tr><th class=\"l\">arm</th><th>entered</th><th>reached the goal</th><th>rate</th>");
    if best {
        out.push_str("<th>probability best</th>");
    }
    out.push_str("</tr>\n");
    for a in &f.arms {
        let _ = write!(
            out,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td>",
            escape(&a.variant),
            a.entered,
            a.converted,
            rate_text(a.rate)
        );
        if best {
            let p = a
                .probability_best
                .map(crate::report::percent_text)
                .unwrap_or_default();
            let _ = write!(out, "<td>{p}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    let bars: Vec<Bar> = f
        .arms
        .iter()
        .map(|a| Bar {
            label: a.variant.clone(),
            value: a.rate.map(to_f64),
            shown: format!("{} ({} of {})", rate_text(a.rate), a.converted, a.entered),
            class: "bar",
        })
        .collect();
    chart(out, &format!("Split arms of {}", f.flow), &bars, Some(1.0));
}

/// The send table, one row per step and a totals row.
fn steps(out: &mut String, f: &FlowReport) {
    if f.steps.is_empty() {
        out.push_str("<p class=\"summary\">No sends.</p>\n");
        return;
    }
    // Failed and unknown deliveries show for a trace that records them.
    let outcomes = f.sends.failed.is_some();
    out.push_str("<h3>Sends by step (messages, not customers)</h3>\n<table>\n<tr><th>step</th><th class=\"l\">message</th><th class=\"l\">channel</th><th>sent</th><th>delivered</th>");
    if outcomes {
        out.push_str("<th>failed</th><th>unknown</th>");
    }
    out.push_str("<th>bounced</th><th>clicked</th><th>converted (orders)</th><th class=\"l\">held by reason</th></tr>\n");
    let row = |out: &mut String,
               class: &str,
               step: &str,
               message: &str,
               channel: &str,
               c: &SendCounts,
               orders: u64| {
        let held: Vec<String> = c
            .held
            .iter()
            .map(|(k, n)| format!("{} {n}", escape(k)))
            .collect();
        let _ = writeln!(
            out,
            "<tr{class}><td>{step}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td>{}<td>{}</td><td>{}</td><td>{orders}</td><td class=\"l\">{}</td></tr>",
            escape(message),
            escape(channel),
            c.sent,
            c.delivered.map_or("-".into(), |d| d.to_string()),
            if outcomes {
                format!(
                    "<td>{}</td><td>{}</td>",
                    c.failed.unwrap_or(0),
                    c.unknown.unwrap_or(0)
                )
            } else {
                String::new()
            },
            c.bounced,
            c.clicked,
            if held.is_empty() {
                "-".into()
            } else {
                held.join(", ")
            },
        );
    };
    for s in &f.steps {
        row(
            out,
            "",
            &s.step.to_string(),
            &s.message,
            &s.channel,
            &s.counts,
            s.orders,
        );
    }
    row(
        out,
        " class=\"total\"",
        "all",
        "",
        "",
        &f.sends,
        f.steps.iter().map(|s| s.orders).sum(),
    );
    out.push_str("</table>\n");
}

/// Horizontal bars on one scale: `max` when given (1 for rates), else the largest value.
fn chart(out: &mut String, name: &str, bars: &[Bar], max: Option<f64>) {
    let max = max
        .unwrap_or_else(|| bars.iter().filter_map(|b| b.value).fold(0.0, f64::max))
        .max(f64::MIN_POSITIVE);
    let height = ROW_HEIGHT * bars.len() as f64 + 10.0;
    let width = LABEL_WIDTH + BAR_WIDTH + 200.0;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">",
        escape(name)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = 5.0 + ROW_HEIGHT * i as f64;
        let text_y = y + ROW_HEIGHT / 2.0 + 4.0;
        let label = escape(&b.label);
        let shown = escape(&b.shown);
        let _ = writeln!(out, "<text x=\"0\" y=\"{text_y}\">{label}</text>");
        match b.value {
            Some(v) => {
                let w = (BAR_WIDTH * v / max).max(if v > 0.0 { 2.0 } else { 0.0 });
                let _ = writeln!(
                    out,
                    "<rect class=\"{}\" x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\"><title>{label}: {shown}</title></rect>\n<text x=\"{:.1}\" y=\"{text_y}\">{shown}</text>",
                    b.class,
                    ROW_HEIGHT - 8.0,
                    LABEL_WIDTH + w + 6.0
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "<rect class=\"none\" x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{BAR_WIDTH}\" height=\"{}\"></rect>\n<text x=\"{}\" y=\"{text_y}\">{shown}</text>",
                    ROW_HEIGHT - 8.0,
                    LABEL_WIDTH + 6.0
                );
            }
        }
    }
    out.push_str("</svg>\n");
}

/// A bar's length only: the exact figure is written beside it.
fn to_f64(d: rust_decimal::Decimal) -> f64 {
    use rust_decimal::prelude::ToPrimitive;
    d.to_f64().unwrap_or(0.0)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
