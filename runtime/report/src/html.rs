//! The report as one self-contained HTML page: inline CSS and inline SVG,
//! so it can be mailed or archived and still open without a network.

use std::fmt::Write;

use crate::money;
use crate::report::{FlowReport, Report, lift_text, rate_text};

const BAR_WIDTH: f64 = 420.0;
const LABEL_WIDTH: f64 = 110.0;
const ROW_HEIGHT: f64 = 30.0;

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1f2933;background:#fff}\
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2.5rem;border-bottom:1px solid #d9e2ec;padding-bottom:.3rem}\
table{border-collapse:collapse;margin:.8rem 0}th,td{padding:.25rem .7rem;border-bottom:1px solid #e4e7eb;text-align:right}\
th{background:#f5f7fa}td.l,th.l{text-align:left}.summary{color:#52606d}\
svg text{font-size:12px;fill:#1f2933}.bar{fill:#3e7bfa}.none{fill:#e4e7eb}";

/// The page for a report; `title` heads it (a project path, say).
pub fn page(report: &Report, title: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Nudge report: {t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>Nudge report: {t}</h1>\n",
        t = escape(title)
    );
    if report.flows.is_empty() {
        out.push_str("<p>No flow activity in the trace.</p>\n");
    }
    if !report.feedback_seen {
        out.push_str("<p class=\"summary\">The trace holds no channel feedback, so delivery is unknown.</p>\n");
    }
    for f in &report.flows {
        flow_section(&mut out, f);
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn flow_section(out: &mut String, f: &FlowReport) {
    let _ = writeln!(out, "<section>\n<h2>{}</h2>", escape(&f.flow));
    let _ = writeln!(
        out,
        "<p class=\"summary\">Entered {} (treated {}, holdout {}); completed {}; exited {}. \
         Conversions {} ({}), rate {}; holdout rate {}; lift {}.</p>",
        f.entered,
        f.entered_treated,
        f.entered_holdout,
        f.completed,
        f.exited,
        f.conversions,
        escape(&money::format(f.revenue)),
        rate_text(f.treated_rate),
        rate_text(f.holdout_rate),
        lift_text(f.lift),
    );
    funnel(out, f);
    if f.steps.is_empty() {
        return out.push_str("</section>\n");
    }
    out.push_str("<table>\n<tr><th>step</th><th class=\"l\">message</th><th class=\"l\">channel</th><th>sent</th><th>delivered</th><th>bounced</th><th>clicked</th><th class=\"l\">held by reason</th></tr>\n");
    for s in &f.steps {
        let held: Vec<String> = s
            .counts
            .held
            .iter()
            .map(|(k, n)| format!("{} {n}", escape(k)))
            .collect();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            s.step,
            escape(&s.message),
            escape(&s.channel),
            s.counts.sent,
            s.counts.delivered.map_or("-".into(), |d| d.to_string()),
            s.counts.bounced,
            s.counts.clicked,
            if held.is_empty() {
                "-".into()
            } else {
                held.join(", ")
            },
        );
    }
    out.push_str("</table>\n</section>\n");
}

/// Horizontal bars, entered → sent → delivered → clicked → converted, on one scale.
fn funnel(out: &mut String, f: &FlowReport) {
    let bars: [(&str, Option<u64>); 5] = [
        ("entered", Some(f.entered_treated)),
        ("sent", Some(f.total.sent)),
        ("delivered", f.total.delivered),
        ("clicked", Some(f.total.clicked)),
        ("converted", Some(f.conversions)),
    ];
    let max = bars
        .iter()
        .filter_map(|(_, v)| *v)
        .max()
        .unwrap_or(0)
        .max(1);
    let height = ROW_HEIGHT * bars.len() as f64 + 10.0;
    let width = LABEL_WIDTH + BAR_WIDTH + 120.0;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"Funnel of {}\">",
        escape(&f.flow)
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = 5.0 + ROW_HEIGHT * i as f64;
        let text_y = y + ROW_HEIGHT / 2.0 + 4.0;
        let _ = writeln!(out, "<text x=\"0\" y=\"{text_y}\">{label}</text>");
        match value {
            Some(v) => {
                let w = (BAR_WIDTH * *v as f64 / max as f64).max(if *v > 0 { 2.0 } else { 0.0 });
                let _ = writeln!(
                    out,
                    "<rect class=\"bar\" x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\"><title>{label}: {v}</title></rect>\n<text x=\"{:.1}\" y=\"{text_y}\">{v}</text>",
                    ROW_HEIGHT - 8.0,
                    LABEL_WIDTH + w + 6.0
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "<rect class=\"none\" x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{BAR_WIDTH}\" height=\"{}\"></rect>\n<text x=\"{}\" y=\"{text_y}\">unknown: no feedback</text>",
                    ROW_HEIGHT - 8.0,
                    LABEL_WIDTH + 6.0
                );
            }
        }
    }
    out.push_str("</svg>\n");
    if f.entered_holdout > 0 {
        let _ = writeln!(
            out,
            "<p class=\"summary\">Not in the funnel: the holdout group, {} entered and {} converted.</p>",
            f.entered_holdout, f.holdout_conversions
        );
    }
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
