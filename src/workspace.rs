//! Finding projects: a directory that holds a `nudge.toml` is a project root,
//! and all `.flow` files below it share one namespace. Paths outside any root
//! form one project together.

use std::path::{Path, PathBuf};

/// The file that marks a project root.
pub const MANIFEST: &str = "nudge.toml";

/// Groups `paths` into projects, each given as the paths to load together.
///
/// A directory with project roots below it yields one project per root; a
/// path inside a root yields that whole root (its files refer to each other);
/// everything else is gathered into one project.
pub fn projects(paths: &[PathBuf]) -> std::io::Result<Vec<Vec<PathBuf>>> {
    let mut roots: Vec<PathBuf> = Vec::new();
    let mut loose: Vec<PathBuf> = Vec::new();
    for path in paths {
        if let Some(root) = enclosing_root(path) {
            roots.push(root);
            continue;
        }
        let mut below = Vec::new();
        if path.is_dir() {
            find_roots(path, &mut below)?;
        }
        if below.is_empty() {
            loose.push(path.clone());
        } else {
            roots.extend(below);
        }
    }
    roots.sort();
    roots.dedup();
    let mut projects: Vec<Vec<PathBuf>> = roots.into_iter().map(|r| vec![r]).collect();
    if !loose.is_empty() {
        projects.push(loose);
    }
    Ok(projects)
}

/// The nearest directory at or above `path` that holds a manifest.
fn enclosing_root(path: &Path) -> Option<PathBuf> {
    let start = if path.is_dir() { path } else { path.parent()? };
    let start = if start.as_os_str().is_empty() {
        Path::new(".")
    } else {
        start
    };
    let absolute = start.canonicalize().ok()?;
    let found = absolute.ancestors().find(|d| d.join(MANIFEST).is_file())?;
    // Report the root as the user spelled the path, so diagnostics show
    // familiar relative paths.
    let depth = absolute.components().count() - found.components().count();
    let mut root = start.to_path_buf();
    for _ in 0..depth {
        root.push("..");
    }
    Some(normalize(&root))
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir
                if out
                    .components()
                    .next_back()
                    .is_some_and(|c| matches!(c, std::path::Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn find_roots(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if dir.join(MANIFEST).is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if entry.file_type()?.is_dir() {
            find_roots(&entry.path(), out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_roots_and_loose_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        for p in ["a", "b/sub", "loose"] {
            std::fs::create_dir_all(base.join(p)).unwrap();
        }
        std::fs::write(base.join("a/nudge.toml"), "").unwrap();
        std::fs::write(base.join("b/nudge.toml"), "").unwrap();
        std::fs::write(base.join("b/sub/x.flow"), "").unwrap();
        std::fs::write(base.join("loose/y.flow"), "").unwrap();

        let all = projects(&[base.to_path_buf()]).unwrap();
        assert_eq!(all, vec![vec![base.join("a")], vec![base.join("b")]]);

        // A file inside a project pulls in its whole project.
        let inner = projects(&[base.join("b/sub/x.flow")]).unwrap();
        assert_eq!(inner.len(), 1);
        assert_eq!(
            inner[0][0].canonicalize().unwrap(),
            base.join("b").canonicalize().unwrap()
        );

        let loose = projects(&[base.join("loose")]).unwrap();
        assert_eq!(loose, vec![vec![base.join("loose")]]);
    }
}
