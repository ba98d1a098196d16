//! The SARIF 2.1.0 format, read by code-scanning services such as GitHub's.

use serde::Serialize;

use super::{Resolved, resolve};
use crate::{CODES, Diagnostic, FileId, Fix, Severity, SourceMap};

/// The schema every log names.
const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// Renders a SARIF 2.1.0 log with one run of the `nudge` tool: a rule for
/// every diagnostic code and a result for every diagnostic. Columns count
/// Unicode code points; regions also carry byte offsets. Pretty-printed,
/// with a trailing newline.
pub fn sarif(sources: &SourceMap, diags: &[Diagnostic], tool_version: &str) -> String {
    let log = Log {
        schema: SCHEMA,
        version: "2.1.0",
        runs: [Run {
            tool: Tool {
                driver: Driver {
                    name: "nudge",
                    version: tool_version,
                    rules: CODES
                        .iter()
                        .map(|c| Rule {
                            id: c.id,
                            name: c.name,
                            short_description: Text { text: c.summary },
                            default_configuration: DefaultConfiguration {
                                level: level(c.severity),
                            },
                        })
                        .collect(),
                },
            },
            column_kind: "unicodeCodePoints",
            results: diags.iter().map(|d| result(sources, d)).collect(),
        }],
    };
    // Serialising plain structs of strings and numbers cannot fail.
    let mut text = serde_json::to_string_pretty(&log).unwrap_or_default();
    text.push('\n');
    text
}

/// SARIF's name for a severity.
fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}

fn result<'a>(sources: &SourceMap, d: &'a Diagnostic) -> SarifResult<'a> {
    let mut text = d.title.clone();
    if let Some(help) = &d.help {
        text.push_str("\n\n");
        text.push_str(help);
    }
    SarifResult {
        rule_id: d.code.id,
        rule_index: CODES.iter().position(|c| c.id == d.code.id),
        level: level(d.severity),
        message: Text { text },
        locations: vec![location(
            &resolve(sources, d.primary),
            d.primary_label.as_deref(),
            None,
        )],
        related_locations: d
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| location(&resolve(sources, l.at), Some(&l.message), Some(i)))
            .collect(),
        fixes: d.fix.as_ref().map(|f| [fix(sources, f)]),
    }
}

fn fix<'a>(sources: &SourceMap, fix: &'a Fix) -> SarifFix<'a> {
    // SARIF groups replacements by the file they change.
    let mut files: Vec<FileId> = Vec::new();
    for edit in &fix.edits {
        if !files.contains(&edit.at.file) {
            files.push(edit.at.file);
        }
    }
    let artifact_changes = files
        .into_iter()
        .map(|file| {
            let edits: Vec<_> = fix.edits.iter().filter(|e| e.at.file == file).collect();
            let resolved: Vec<Resolved> = edits.iter().map(|e| resolve(sources, e.at)).collect();
            ArtifactChange {
                artifact_location: ArtifactLocation {
                    uri: uri(resolved.first().map_or("", |r| r.path.as_str())),
                },
                replacements: edits
                    .iter()
                    .zip(&resolved)
                    .map(|(e, r)| Replacement {
                        deleted_region: ByteRegion {
                            byte_offset: r.span.start,
                            byte_length: r.span.len(),
                        },
                        inserted_content: Text {
                            text: e.replacement.as_str(),
                        },
                    })
                    .collect(),
            }
        })
        .collect();
    SarifFix {
        description: Text {
            text: fix.message.as_str(),
        },
        artifact_changes,
    }
}

/// A SARIF location for a resolved span, with an optional message and id.
fn location<'a>(r: &Resolved, message: Option<&'a str>, id: Option<usize>) -> Location<'a> {
    Location {
        id,
        physical_location: PhysicalLocation {
            artifact_location: ArtifactLocation { uri: uri(&r.path) },
            region: Region {
                start_line: r.start.line,
                start_column: r.start.col,
                end_line: r.end.line,
                end_column: r.end.col,
                byte_offset: r.span.start,
                byte_length: r.span.len(),
            },
        },
        message: message.map(|text| Text { text }),
    }
}

// The types below mirror the parts of the SARIF 2.1.0 object model that
// the log uses; field names follow the specification through serde.

#[derive(Serialize)]
struct Log<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: [Run<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Run<'a> {
    tool: Tool<'a>,
    column_kind: &'static str,
    results: Vec<SarifResult<'a>>,
}

#[derive(Serialize)]
struct Tool<'a> {
    driver: Driver<'a>,
}

#[derive(Serialize)]
struct Driver<'a> {
    name: &'static str,
    version: &'a str,
    rules: Vec<Rule>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: &'static str,
    name: &'static str,
    short_description: Text<&'static str>,
    default_configuration: DefaultConfiguration,
}

#[derive(Serialize)]
struct DefaultConfiguration {
    level: &'static str,
}

#[derive(Serialize)]
struct Text<T> {
    text: T,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult<'a> {
    rule_id: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_index: Option<usize>,
    level: &'static str,
    message: Text<String>,
    locations: Vec<Location<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    related_locations: Vec<Location<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fixes: Option<[SarifFix<'a>; 1]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<usize>,
    physical_location: PhysicalLocation,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Text<&'a str>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
    region: Region,
}

#[derive(Serialize)]
struct ArtifactLocation {
    uri: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: u32,
    start_column: u32,
    end_line: u32,
    end_column: u32,
    byte_offset: u32,
    byte_length: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifFix<'a> {
    description: Text<&'a str>,
    artifact_changes: Vec<ArtifactChange<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactChange<'a> {
    artifact_location: ArtifactLocation,
    replacements: Vec<Replacement<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Replacement<'a> {
    deleted_region: ByteRegion,
    inserted_content: Text<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ByteRegion {
    byte_offset: u32,
    byte_length: usize,
}

/// Turns a display path into a URI reference: forward slashes, characters
/// that URIs do not allow percent-encoded, and absolute paths as `file:` URIs.
fn uri(path: &str) -> String {
    let path = path.replace('\\', "/");
    let mut out = String::new();
    let bytes = path.as_bytes();
    if path.starts_with('/') {
        out.push_str("file://");
    } else if bytes.len() >= 3 && bytes[0].is_ascii_alphabetic() && &bytes[1..3] == b":/" {
        out.push_str("file:///");
    }
    for (i, &b) in bytes.iter().enumerate() {
        let keep = b.is_ascii_alphanumeric()
            || b"-._~/!$&'()*+,;=@".contains(&b)
            // The colon of a drive letter stays; elsewhere it could be read
            // as a scheme.
            || (b == b':' && i == 1 && out.starts_with("file:"));
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::uri;

    #[test]
    fn uris_use_forward_slashes_and_escape_what_uris_forbid() {
        assert_eq!(uri("flows\\cart.flow"), "flows/cart.flow");
        assert_eq!(uri("my flows/été.flow"), "my%20flows/%C3%A9t%C3%A9.flow");
        assert_eq!(uri("/srv/shop/a.flow"), "file:///srv/shop/a.flow");
        assert_eq!(uri("C:\\shop\\a.flow"), "file:///C:/shop/a.flow");
        assert_eq!(uri("a:b.flow"), "a%3Ab.flow");
    }
}
