use serde::Serialize;

/// A half-open byte range `start..end` within one source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Span {
    /// Offset of the first byte.
    pub start: u32,
    /// Offset one past the last byte.
    pub end: u32,
}

impl Span {
    /// Makes a span from byte offsets.
    pub fn new(start: usize, end: usize) -> Self {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The smallest span that covers both `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// The span as a `usize` range, for slicing source text.
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }

    /// Length in bytes.
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether the span covers no bytes.
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }

    /// Whether `offset` lies inside the span (or at its end).
    pub fn contains(self, offset: u32) -> bool {
        self.start <= offset && offset <= self.end
    }
}

/// Identifies a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FileId(pub u32);

/// A span together with the file it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FileSpan {
    /// The file.
    pub file: FileId,
    /// The byte range within it.
    pub span: Span,
}

impl FileSpan {
    /// Pairs a file with a span.
    pub fn new(file: FileId, span: Span) -> Self {
        FileSpan { file, span }
    }
}

/// A one-based line and column; the column counts Unicode scalar values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LineCol {
    /// Line number, starting at 1.
    pub line: u32,
    /// Column number, starting at 1.
    pub col: u32,
}

/// One source file: its display path, its text and where its lines start.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The path shown in diagnostics (as given on the command line).
    pub path: String,
    /// The full text.
    pub text: String,
    line_starts: Vec<u32>,
}

impl SourceFile {
    /// Wraps a file's text and indexes its line starts.
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i as u32 + 1),
        );
        SourceFile {
            path: path.into(),
            text,
            line_starts,
        }
    }

    /// The zero-based line index that contains `offset`.
    pub fn line_index(&self, offset: u32) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        }
    }

    /// Byte offset at which zero-based line `line` starts.
    pub fn line_start(&self, line: usize) -> u32 {
        self.line_starts
            .get(line)
            .copied()
            .unwrap_or(self.text.len() as u32)
    }

    /// Number of lines.
    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    /// One-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: u32) -> LineCol {
        let offset = offset.min(self.text.len() as u32);
        let line = self.line_index(offset);
        let start = self.line_starts[line] as usize;
        let end = floor_char_boundary(&self.text, offset as usize);
        let col = self.text[start..end].chars().count() as u32 + 1;
        LineCol {
            line: line as u32 + 1,
            col,
        }
    }

    /// Zero-based line and UTF-16 column of a byte offset, as the Language
    /// Server Protocol counts positions.
    ///
    /// Offsets past the end clamp to the end; offsets inside a multi-byte
    /// character clamp to its start.
    pub fn line_col_utf16(&self, offset: u32) -> (u32, u32) {
        let offset = floor_char_boundary(&self.text, (offset as usize).min(self.text.len()));
        let line = self.line_index(offset as u32);
        let start = self.line_starts[line] as usize;
        let col = self.text[start..offset].encode_utf16().count() as u32;
        (line as u32, col)
    }

    /// Byte offset of a zero-based line and UTF-16 column; the inverse of
    /// [`SourceFile::line_col_utf16`].
    ///
    /// A line past the last one gives the end of the file; a column past the
    /// end of its line gives the end of the line (before `\n` or `\r\n`); a
    /// column in the middle of a surrogate pair gives the start of that character.
    pub fn offset_of_utf16(&self, line: u32, col_utf16: u32) -> u32 {
        let Some(&start) = self.line_starts.get(line as usize) else {
            return self.text.len() as u32;
        };
        let start = start as usize;
        let mut end = self
            .line_starts
            .get(line as usize + 1)
            .map_or(self.text.len(), |&next| next as usize - 1);
        // The terminator is not part of the line an editor addresses.
        if self.text[start..end].ends_with('\r') && end < self.text.len() {
            end -= 1;
        }
        let mut remaining = col_utf16 as usize;
        let mut offset = start;
        for c in self.text[start..end].chars() {
            if c.len_utf16() > remaining {
                break;
            }
            remaining -= c.len_utf16();
            offset += c.len_utf8();
        }
        offset as u32
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// All files of a project, addressed by [`FileId`].
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, path: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push(SourceFile::new(path, text));
        FileId(self.files.len() as u32 - 1)
    }

    /// The file with this id.
    ///
    /// # Panics
    /// If the id did not come from this map.
    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// Replaces a file's text, keeping its id (used by the language server).
    pub fn set_text(&mut self, id: FileId, text: impl Into<String>) {
        let path = std::mem::take(&mut self.files[id.0 as usize].path);
        self.files[id.0 as usize] = SourceFile::new(path, text);
    }

    /// Iterates over every file with its id.
    pub fn iter(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(i as u32), f))
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the map holds no files.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_not_bytes() {
        let f = SourceFile::new("a.flow", "ab\nçé x\n");
        assert_eq!(f.line_col(0), LineCol { line: 1, col: 1 });
        assert_eq!(f.line_col(3), LineCol { line: 2, col: 1 });
        // 'x' sits after two two-byte characters and a space.
        assert_eq!(f.line_col(8), LineCol { line: 2, col: 4 });
        assert_eq!(f.line_col(100), LineCol { line: 3, col: 1 });
    }

    #[test]
    fn span_union_covers_both() {
        assert_eq!(Span::new(4, 6).to(Span::new(1, 2)), Span::new(1, 6));
    }
}
