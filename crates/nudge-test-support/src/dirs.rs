//! Throwaway project folders, so that runs write their `.nudge/` state into
//! a temporary directory and never into the repository.

use std::path::{Path, PathBuf};

use crate::examples::example_dir;

/// A temporary path as the `&str` that command arguments want.
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// Copies a project folder, leaving out hidden entries such as the `.nudge/`
/// state of an earlier run, so the copy starts fresh.
pub fn copy_project(from: &Path, to: &Path) {
    copy_walk(from, to, Hidden::Skip);
}

/// Copies a folder whole, hidden entries included, so that a project's
/// `.nudge/` state can be put back as it was.
pub fn copy_tree(from: &Path, to: &Path) {
    copy_walk(from, to, Hidden::Keep);
}

/// Whether a copy takes entries whose names start with a dot.
#[derive(Clone, Copy, PartialEq)]
enum Hidden {
    Skip,
    Keep,
}

fn copy_walk(from: &Path, to: &Path, hidden: Hidden) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("creating {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
        let name = entry.file_name();
        if hidden == Hidden::Skip && name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_walk(&path, &to.join(&name), hidden);
        } else {
            std::fs::copy(&path, to.join(&name))
                .unwrap_or_else(|e| panic!("copying {}: {e}", path.display()));
        }
    }
}

/// A copy of the example project `name` in a new temporary directory: the
/// directory (removed when dropped) and the copy's folder inside it, which
/// keeps the example's name.
pub fn copy_example(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let to = tmp.path().join(name);
    copy_project(&example_dir(name), &to);
    (tmp, to)
}
