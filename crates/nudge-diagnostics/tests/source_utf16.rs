//! UTF-16 positions, as the language server exchanges them with editors.

use nudge_diagnostics::SourceFile;

#[test]
fn columns_count_utf16_code_units() {
    // `é` is 2 bytes and 1 unit; `🛒` is 4 bytes and 2 units.
    let f = SourceFile::new("a.flow", "café 🛒 x\r\nnext\n");
    assert_eq!(f.line_col_utf16(0), (0, 0));
    let x = f.text.find('x').unwrap() as u32;
    assert_eq!(x, 11);
    assert_eq!(f.line_col_utf16(x), (0, 8));
    let next = f.text.find("next").unwrap() as u32;
    assert_eq!(f.line_col_utf16(next), (1, 0));
    assert_eq!(f.line_col_utf16(next + 2), (1, 2));
    // The end of the file is the start of the empty last line.
    assert_eq!(f.line_col_utf16(f.text.len() as u32), (2, 0));
}

#[test]
fn offsets_inside_characters_and_past_the_end_clamp() {
    let f = SourceFile::new("a.flow", "🛒é");
    // Byte 2 is inside the emoji; byte 5 inside `é`.
    assert_eq!(f.line_col_utf16(2), (0, 0));
    assert_eq!(f.line_col_utf16(5), (0, 2));
    assert_eq!(f.line_col_utf16(99), (0, 3));
}

#[test]
fn offset_of_utf16_inverts_line_col_utf16() {
    let text = "// é 🛒\r\nflow a {\n  wait 1h\n}";
    let f = SourceFile::new("a.flow", text);
    for (offset, c) in text.char_indices() {
        // Between `\r` and `\n` is no position an editor can name.
        if c == '\n' && text[..offset].ends_with('\r') {
            assert_eq!(f.line_col_utf16(offset as u32), (0, 8));
            assert_eq!(f.offset_of_utf16(0, 8), offset as u32 - 1);
            continue;
        }
        let (line, col) = f.line_col_utf16(offset as u32);
        assert_eq!(
            f.offset_of_utf16(line, col),
            offset as u32,
            "offset {offset}"
        );
    }
    let (line, col) = f.line_col_utf16(text.len() as u32);
    assert_eq!(f.offset_of_utf16(line, col), text.len() as u32);
}

#[test]
fn offset_of_utf16_clamps_to_line_and_file_ends() {
    let f = SourceFile::new("a.flow", "a🛒\r\nbc\n");
    // Column 2 falls between the halves of the emoji's surrogate pair.
    assert_eq!(f.offset_of_utf16(0, 2), 1);
    assert_eq!(f.offset_of_utf16(0, 3), 5);
    // Past the end of the line: before `\r\n`.
    assert_eq!(f.offset_of_utf16(0, 50), 5);
    assert_eq!(f.offset_of_utf16(1, 50), 9);
    assert_eq!(f.offset_of_utf16(2, 0), 10);
    assert_eq!(f.offset_of_utf16(2, 7), 10);
    assert_eq!(f.offset_of_utf16(40, 0), 10);
}
