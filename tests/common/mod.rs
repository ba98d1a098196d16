//! Helpers shared by the end-to-end tests.
// Each test binary uses its own subset of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A temporary path as the `&str` command arguments want.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// A copy of an example in a temporary directory, so runs write their
/// `.nudge/` files there and not into the repository.
pub fn copy_example(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join(name);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name),
        &to,
    );
    (tmp, to)
}

/// Copies a project, leaving out hidden entries such as an earlier `.nudge/`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}
