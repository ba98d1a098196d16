//! The SARIF 2.1.0 format, read by code-scanning services such as GitHub's.
//!
//! One invocation is one run of one tool, so every project checked goes into
//! a single run: code-scanning services refuse logs with several runs of the
//! same tool and category. Artifact locations are relative to the
//! repository root (`%SRCROOT%`) when it is known, so the results line up
//! with the repository whatever directory the check ran from.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Resolved, file, resolve};
use crate::{Code, Diagnostic, FileId, Fix, Severity, SourceMap, codes};

/// The schema every log names.
const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// The base id artifact URIs are relative to.
pub const SRCROOT: &str = "%SRCROOT%";

/// The key of the fingerprint in `partialFingerprints`; the version changes
/// if what the fingerprint hashes ever does.
pub const FINGERPRINT_KEY: &str = "nudgeFingerprint/v1";

/// What a SARIF log says about where and how it was made.
#[derive(Clone, Debug, Default)]
pub struct SarifOptions<'a> {
    /// The `nudge` version, as `tool.driver.version`.
    pub tool_version: &'a str,
    /// The repository root (absolute); artifacts under it get URIs
    /// relative to `%SRCROOT%`. `None` leaves display paths as they are.
    pub source_root: Option<&'a Path>,
    /// The directory relative display paths start from (absolute): the
    /// working directory of the check.
    pub working_dir: Option<&'a Path>,
    /// `automationDetails.id`'s category, such as `nudge`; code scanning
    /// keeps the results of different categories apart.
    pub category: &'a str,
    /// Where the diagnostics reference lives (a URL ending before the
    /// anchor, such as `https://…/docs/diagnostics.md`); each rule's
    /// `helpUri` is this plus the code's anchor. `None` leaves it out.
    pub help_base: Option<&'a str>,
}

/// Renders a SARIF 2.1.0 log with one run of the `nudge` tool over every
/// project given (a source map and its diagnostics): a rule for every
/// diagnostic code and a result for every diagnostic. Columns count
/// Unicode code points; regions also carry byte offsets. Pretty-printed,
/// with a trailing newline.
pub fn sarif(projects: &[(&SourceMap, &[Diagnostic])], options: &SarifOptions<'_>) -> String {
    let places = Places::new(options);
    let codes: Vec<Code> = codes::all().collect();
    let mut occurrences: HashMap<String, usize> = HashMap::new();
    let mut results = Vec::new();
    for (sources, diags) in projects {
        for d in diags.iter() {
            results.push(result(sources, d, &codes, &places, &mut occurrences));
        }
    }
    let log = Log {
        schema: SCHEMA,
        version: "2.1.0",
        runs: [Run {
            tool: Tool {
                driver: Driver {
                    name: "nudge",
                    version: options.tool_version,
                    semantic_version: options.tool_version,
                    rules: codes.iter().map(|c| rule(c, options.help_base)).collect(),
                },
            },
            automation_details: AutomationDetails {
                id: format!("{}/", options.category.trim_end_matches('/')),
            },
            original_uri_base_ids: places.root_uri().map(|uri| {
                HashMap::from([(
                    SRCROOT,
                    BaseUri {
                        uri,
                        description: Text {
                            text: "The repository root.",
                        },
                    },
                )])
            }),
            column_kind: "unicodeCodePoints",
            results,
        }],
    };
    // Serialising plain structs of strings and numbers cannot fail.
    let mut text = serde_json::to_string_pretty(&log).unwrap_or_default();
    text.push('\n');
    text
}

/// A rule for a code: its summary as the description and help, with the
/// reference's section as the help URI when the reference's address is known.
fn rule(c: &Code, help_base: Option<&str>) -> Rule {
    let anchor = format!("{}-{}", c.id.to_ascii_lowercase(), c.name);
    let help_uri = help_base.map(|base| format!("{base}#{anchor}"));
    let section = format!("`{} {}`", c.id, c.name);
    let reference = match &help_uri {
        Some(uri) => format!("[{} {}]({uri})", c.id, c.name),
        None => section.clone(),
    };
    Rule {
        id: c.id,
        name: c.name,
        short_description: Text { text: c.summary },
        help: Help {
            text: format!(
                "{} The section {section} of the Nudge diagnostics reference shows a failing example and its fix.",
                c.summary
            ),
            markdown: format!(
                "{}\n\nThe section {reference} of the Nudge diagnostics reference shows a failing example and its fix.",
                c.summary
            ),
        },
        help_uri,
        default_configuration: DefaultConfiguration {
            level: level(c.severity),
        },
    }
}

/// SARIF's name for a severity.
fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}

fn result<'a>(
    sources: &SourceMap,
    d: &'a Diagnostic,
    codes: &[Code],
    places: &Places<'_>,
    occurrences: &mut HashMap<String, usize>,
) -> SarifResult<'a> {
    let mut text = d.title.clone();
    if let Some(help) = &d.help {
        text.push_str("\n\n");
        text.push_str(help);
    }
    let primary = resolve(sources, d.primary);
    let artifact = places.artifact(&primary.path);
    SarifResult {
        rule_id: d.code.id,
        rule_index: codes.iter().position(|c| c.id == d.code.id),
        level: level(d.severity),
        message: Text { text },
        partial_fingerprints: HashMap::from([(
            FINGERPRINT_KEY,
            fingerprint(sources, d, &artifact, occurrences),
        )]),
        locations: vec![location(places, &primary, d.primary_label.as_deref(), None)],
        related_locations: d
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| location(places, &resolve(sources, l.at), Some(&l.message), Some(i)))
            .collect(),
        fixes: d.fix.as_ref().map(|f| [fix(sources, places, f)]),
    }
}

/// A fingerprint that survives edits elsewhere in the file: the rule, the
/// file and the primary line's text (whitespace aside) hashed, plus how
/// many identical ones came before, so two equal lines stay apart.
fn fingerprint(
    sources: &SourceMap,
    d: &Diagnostic,
    artifact: &ArtifactLocation,
    occurrences: &mut HashMap<String, usize>,
) -> String {
    let line = file(sources, d.primary.file)
        .map(|f| {
            let index = f.line_index(d.primary.span.start.min(f.text.len() as u32));
            let start = f.line_start(index) as usize;
            let end = f.line_start(index + 1) as usize;
            f.text.get(start..end).unwrap_or("").to_string()
        })
        .unwrap_or_default();
    let squeezed: String = line.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut hasher = Sha256::new();
    for part in [
        d.code.id,
        artifact.uri_base_id.unwrap_or(""),
        &artifact.uri,
        &squeezed,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    let seen = occurrences.entry(digest.clone()).or_insert(0);
    *seen += 1;
    format!("{digest}:{seen}")
}

/// Turns display paths into artifact locations.
struct Places<'a> {
    root: Option<PathBuf>,
    working_dir: Option<&'a Path>,
}

impl<'a> Places<'a> {
    fn new(options: &SarifOptions<'a>) -> Self {
        Places {
            root: options.source_root.map(normalize),
            working_dir: options.working_dir,
        }
    }

    /// The root as a `file:` URI ending in a slash, as SARIF requires of a base.
    fn root_uri(&self) -> Option<String> {
        let root = self.root.as_ref()?;
        let mut uri = uri(&root.to_string_lossy());
        if !uri.ends_with('/') {
            uri.push('/');
        }
        Some(uri)
    }

    /// A path relative to `%SRCROOT%` when it lies under the root; the path
    /// as displayed otherwise (a `file:` URI when absolute).
    fn artifact(&self, display: &str) -> ArtifactLocation {
        if let Some(root) = &self.root {
            let path = Path::new(display);
            let absolute = if path.is_absolute() {
                Some(normalize(path))
            } else {
                self.working_dir.map(|dir| normalize(&dir.join(path)))
            };
            if let Some(relative) = absolute.as_ref().and_then(|a| a.strip_prefix(root).ok()) {
                return ArtifactLocation {
                    uri: uri(&relative.to_string_lossy()),
                    uri_base_id: Some(SRCROOT),
                };
            }
            if let Some(absolute) = absolute {
                return ArtifactLocation {
                    uri: uri(&absolute.to_string_lossy()),
                    uri_base_id: None,
                };
            }
        }
        ArtifactLocation {
            uri: uri(display),
            uri_base_id: None,
        }
    }
}

/// Removes `.` and resolves `..` without touching the file system, so the
/// display paths of files that no longer exist still resolve.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn fix<'a>(sources: &SourceMap, places: &Places<'_>, fix: &'a Fix) -> SarifFix<'a> {
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
                artifact_location: places
                    .artifact(resolved.first().map_or("", |r| r.path.as_str())),
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
fn location<'a>(
    places: &Places<'_>,
    r: &Resolved,
    message: Option<&'a str>,
    id: Option<usize>,
) -> Location<'a> {
    Location {
        id,
        physical_location: PhysicalLocation {
            artifact_location: places.artifact(&r.path),
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
    automation_details: AutomationDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_uri_base_ids: Option<HashMap<&'static str, BaseUri>>,
    column_kind: &'static str,
    results: Vec<SarifResult<'a>>,
}

#[derive(Serialize)]
struct AutomationDetails {
    id: String,
}

#[derive(Serialize)]
struct BaseUri {
    uri: String,
    description: Text<&'static str>,
}

#[derive(Serialize)]
struct Tool<'a> {
    driver: Driver<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver<'a> {
    name: &'static str,
    version: &'a str,
    semantic_version: &'a str,
    rules: Vec<Rule>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: &'static str,
    name: &'static str,
    short_description: Text<&'static str>,
    help: Help,
    #[serde(skip_serializing_if = "Option::is_none")]
    help_uri: Option<String>,
    default_configuration: DefaultConfiguration,
}

#[derive(Serialize)]
struct Help {
    text: String,
    markdown: String,
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
    partial_fingerprints: HashMap<&'static str, String>,
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
#[serde(rename_all = "camelCase")]
struct ArtifactLocation {
    uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri_base_id: Option<&'static str>,
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
    use super::*;

    #[test]
    fn paths_under_the_root_are_relative_to_srcroot() {
        let options = SarifOptions {
            source_root: Some(Path::new("/repo")),
            working_dir: Some(Path::new("/repo/shop")),
            ..SarifOptions::default()
        };
        let places = Places::new(&options);
        let a = places.artifact("flows/cart.flow");
        assert_eq!(
            (a.uri.as_str(), a.uri_base_id),
            ("shop/flows/cart.flow", Some(SRCROOT))
        );
        let a = places.artifact("../other/./x.flow");
        assert_eq!(a.uri, "other/x.flow");
        let a = places.artifact("/repo/a.flow");
        assert_eq!((a.uri.as_str(), a.uri_base_id), ("a.flow", Some(SRCROOT)));
        let a = places.artifact("../../elsewhere/b.flow");
        assert_eq!(
            (a.uri.as_str(), a.uri_base_id),
            ("file:///elsewhere/b.flow", None)
        );
        assert_eq!(places.root_uri().as_deref(), Some("file:///repo/"));
    }

    #[test]
    fn without_a_root_paths_stay_as_displayed() {
        let places = Places::new(&SarifOptions::default());
        let a = places.artifact("flows/cart.flow");
        assert_eq!((a.uri.as_str(), a.uri_base_id), ("flows/cart.flow", None));
        assert_eq!(places.root_uri(), None);
    }

    #[test]
    fn uris_use_forward_slashes_and_escape_what_uris_forbid() {
        assert_eq!(uri("flows\\cart.flow"), "flows/cart.flow");
        assert_eq!(uri("my flows/été.flow"), "my%20flows/%C3%A9t%C3%A9.flow");
        assert_eq!(uri("/srv/shop/a.flow"), "file:///srv/shop/a.flow");
        assert_eq!(uri("C:\\shop\\a.flow"), "file:///C:/shop/a.flow");
        assert_eq!(uri("a:b.flow"), "a%3Ab.flow");
    }
}
