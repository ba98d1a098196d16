//! Conversion between byte offsets and the protocol's positions (line and
//! UTF-16 column) through an index built once per text.
//!
//! Counting UTF-16 units from the start of the line for every position makes
//! the work on one long line grow with the square of its length (every token
//! of a 1 MB line recounts up to 1 MB). The index keeps the line starts and,
//! per line, only the characters that are not one byte long, so a conversion
//! is two binary searches. Lines end at `\n`, `\r\n` or a lone `\r`, as the
//! Language Server Protocol says.

/// A character whose UTF-8 and UTF-16 lengths differ from one byte and one unit.
#[derive(Clone, Copy, Debug)]
struct Wide {
    /// Byte offset in the text.
    byte: u32,
    /// UTF-16 column in its line.
    col: u32,
    len8: u8,
    len16: u8,
}

/// Line starts and wide characters of one text.
#[derive(Clone, Debug)]
pub struct LineIndex {
    /// Byte offset of each line's start.
    starts: Vec<u32>,
    /// Byte offset of each line's end, before its terminator.
    ends: Vec<u32>,
    /// Wide characters of the whole text, in order.
    wide: Vec<Wide>,
    /// For each line, the index in `wide` of its first wide character.
    first_wide: Vec<u32>,
    len: u32,
}

impl LineIndex {
    /// Indexes a text in one pass.
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0u32];
        let mut ends = Vec::new();
        let mut wide = Vec::new();
        let mut first_wide = vec![0u32];
        let bytes = text.as_bytes();
        let mut line_start = 0usize;
        let mut col_shift = 0u32; // bytes minus UTF-16 units so far on this line
        let mut i = 0usize;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'\n' || b == b'\r' {
                ends.push(i as u32);
                let next = if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                    i + 2
                } else {
                    i + 1
                };
                starts.push(next as u32);
                first_wide.push(wide.len() as u32);
                line_start = next;
                col_shift = 0;
                i = next;
                continue;
            }
            if b < 0x80 {
                i += 1;
                continue;
            }
            let len8 = utf8_len(b);
            let len16 = if len8 == 4 { 2 } else { 1 };
            let col = (i - line_start) as u32 - col_shift;
            wide.push(Wide {
                byte: i as u32,
                col,
                len8,
                len16,
            });
            col_shift += u32::from(len8 - len16);
            i += usize::from(len8);
        }
        ends.push(text.len() as u32);
        LineIndex {
            starts,
            ends,
            wide,
            first_wide,
            len: text.len() as u32,
        }
    }

    /// How many lines the text has (at least one).
    pub fn line_count(&self) -> usize {
        self.starts.len()
    }

    /// The zero-based line and UTF-16 column of a byte offset. An offset past
    /// the end gives the end; one inside a character gives its start.
    pub fn position(&self, offset: u32) -> (u32, u32) {
        let offset = offset.min(self.len);
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        let wides = self.line_wides(line);
        // The wide characters that start before the offset.
        let before = wides.partition_point(|w| w.byte < offset);
        let Some(last) = before.checked_sub(1).map(|k| wides[k]) else {
            return (line as u32, offset - start);
        };
        let end_of_last = last.byte + u32::from(last.len8);
        if offset < end_of_last {
            // Inside a character: its start.
            return (line as u32, last.col);
        }
        (
            line as u32,
            last.col + u32::from(last.len16) + (offset - end_of_last),
        )
    }

    /// The byte offset of a zero-based line and UTF-16 column. A line past
    /// the last gives the end of the text; a column past the end of its line
    /// gives the end of the line (before its terminator); a column in the
    /// middle of a surrogate pair gives the start of that character.
    pub fn offset(&self, line: u32, col: u32) -> u32 {
        let line = line as usize;
        let Some(&start) = self.starts.get(line) else {
            return self.len;
        };
        let end = self.ends[line];
        let wides = self.line_wides(line);
        // The wide characters that start at or before the column.
        let upto = wides.partition_point(|w| w.col <= col);
        let byte = match upto.checked_sub(1).map(|k| wides[k]) {
            None => u64::from(start) + u64::from(col),
            Some(w) if col < w.col + u32::from(w.len16) => u64::from(w.byte),
            Some(w) => {
                u64::from(w.byte) + u64::from(w.len8) + u64::from(col - w.col - u32::from(w.len16))
            }
        };
        byte.min(u64::from(end)) as u32
    }

    fn line_wides(&self, line: usize) -> &[Wide] {
        let from = self.first_wide[line] as usize;
        let to = self
            .first_wide
            .get(line + 1)
            .map_or(self.wide.len(), |&n| n as usize);
        &self.wide[from..to]
    }
}

/// The byte offset of a zero-based line and UTF-16 column, as
/// [`LineIndex::offset`] gives it, reading the text only up to there: for
/// one position in a text about to change (an edit as it arrives), where
/// indexing the whole text would cost more than the edit.
pub fn offset_in(text: &str, line: u32, col: u32) -> u32 {
    let bytes = text.as_bytes();
    let mut start = 0usize;
    for _ in 0..line {
        let Some(i) = bytes[start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        else {
            return text.len() as u32;
        };
        let at = start + i;
        start = if bytes[at] == b'\r' && bytes.get(at + 1) == Some(&b'\n') {
            at + 2
        } else {
            at + 1
        };
    }
    let mut units = 0u32;
    for (i, c) in text[start..].char_indices() {
        if units >= col || c == '\n' || c == '\r' {
            return (start + i) as u32;
        }
        units += c.len_utf16() as u32;
        if units > col {
            // The column falls inside a surrogate pair: the character's start.
            return (start + i) as u32;
        }
    }
    text.len() as u32
}

/// The length of a UTF-8 sequence from its first byte.
fn utf8_len(first: u8) -> u8 {
    match first {
        0xF0.. => 4,
        0xE0.. => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slow and obvious conversion, to compare against.
    fn naive(text: &str, offset: usize) -> (u32, u32) {
        let mut line = 0;
        let mut col = 0;
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if i >= offset {
                break;
            }
            if c == '\n' || (c == '\r' && chars.peek().is_none_or(|(_, n)| *n != '\n')) {
                line += 1;
                col = 0;
            } else if c != '\r' {
                col += c.len_utf16() as u32;
            }
        }
        (line, col)
    }

    #[test]
    fn offset_in_agrees_with_the_index_everywhere() {
        for text in [
            "a é😀 b\r\nlet x = \"😀\"\rlone cr ü\n\nlast 🎉 line",
            "ends with a break\n",
            "\r\n\r\r\n",
            "",
        ] {
            let idx = LineIndex::new(text);
            for line in 0..idx.line_count() as u32 + 2 {
                for col in 0..24 {
                    assert_eq!(
                        offset_in(text, line, col),
                        idx.offset(line, col),
                        "{text:?} line {line} col {col}"
                    );
                }
            }
        }
    }

    #[test]
    fn agrees_with_counting_on_mixed_text_and_terminators() {
        let text = "a é😀 b\r\nlet x = \"😀\"\rlone cr ü\n\nlast 🎉 line";
        let idx = LineIndex::new(text);
        assert_eq!(idx.line_count(), 5);
        for (offset, _) in text.char_indices() {
            let pos = idx.position(offset as u32);
            // Offsets of `\n` in `\r\n` belong to the terminator; skip them.
            if text[..offset].ends_with('\r') && text[offset..].starts_with('\n') {
                continue;
            }
            assert_eq!(pos, naive(text, offset), "offset {offset}");
            assert_eq!(idx.offset(pos.0, pos.1), offset as u32, "offset {offset}");
        }
        assert_eq!(
            idx.position(text.len() as u32 + 10),
            naive(text, text.len())
        );
    }

    #[test]
    fn clamps_columns_lines_and_surrogate_halves() {
        let text = "😀x\r\nab";
        let idx = LineIndex::new(text);
        // Column 1 is inside the surrogate pair of 😀: its start.
        assert_eq!(idx.offset(0, 1), 0);
        assert_eq!(idx.offset(0, 2), 4);
        // Past the end of the line: before `\r\n`.
        assert_eq!(idx.offset(0, 99), 5);
        assert_eq!(idx.offset(1, 1), 8);
        assert_eq!(idx.offset(7, 0), text.len() as u32);
        // Inside a character: its start.
        assert_eq!(idx.position(2), (0, 0));
    }

    #[test]
    fn positions_on_a_long_line_with_wide_characters() {
        // 1 MB on one line with a wide character every 10 bytes. That the
        // conversion is linear is measured by the `long_line` benchmark.
        let text = "abcdefgh€".repeat(100_000);
        let idx = LineIndex::new(&text);
        let mut last = (0, 0);
        for k in 0..100_000u32 {
            last = idx.position(k * 11);
        }
        assert_eq!(last, (0, 99_999 * 9));
        assert_eq!(idx.offset(0, 99_999 * 9), 99_999 * 11);
    }
}
