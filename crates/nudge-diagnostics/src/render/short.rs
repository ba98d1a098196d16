//! The short format: one `path:line:col: severity[code]: title` line per
//! diagnostic.

use super::{file, resolve};
use crate::{Diagnostic, SourceMap};

/// Renders one line per diagnostic, in the style compilers use for editors
/// and `grep`: `path:line:col: error[E0202]: title`. Columns count characters.
/// A diagnostic whose file the map does not hold gets no location.
pub fn short(sources: &SourceMap, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for diag in diags {
        if file(sources, diag.primary.file).is_some() {
            let at = resolve(sources, diag.primary);
            out.push_str(&format!("{}:{}:{}: ", at.path, at.start.line, at.start.col));
        }
        out.push_str(&format!(
            "{}[{}]: {}\n",
            diag.severity.as_str(),
            diag.code.id,
            diag.title
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::E0201;
    use crate::{FileId, FileSpan, Span};

    #[test]
    fn a_position_at_the_end_of_a_file_is_on_the_line_after_its_last_newline() {
        let mut map = SourceMap::new();
        let f = map.add("a.flow", "ab\n");
        let diags = [Diagnostic::new(
            E0201,
            FileSpan::new(f, Span::new(3, 3)),
            "t",
        )];
        assert_eq!(short(&map, &diags), "a.flow:2:1: error[E0201]: t\n");
    }

    #[test]
    fn a_span_inside_a_character_starts_at_that_character() {
        let mut map = SourceMap::new();
        let f = map.add("a.flow", "xé");
        let diags = [Diagnostic::new(
            E0201,
            FileSpan::new(f, Span::new(2, 3)),
            "t",
        )];
        assert_eq!(short(&map, &diags), "a.flow:1:2: error[E0201]: t\n");
    }

    #[test]
    fn an_unknown_file_gives_a_line_without_location() {
        let map = SourceMap::new();
        let diags = [Diagnostic::new(
            E0201,
            FileSpan::new(FileId(3), Span::new(0, 1)),
            "t",
        )];
        assert_eq!(short(&map, &diags), "error[E0201]: t\n");
    }
}
