//! Reading what a command under test printed.

/// A command's output bytes as text, invalid UTF-8 replaced, so a failing
/// assertion can still show what was printed.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
