//! Finding projects: a directory that holds a `nudge.toml` is a project root,
//! and all `.flow` files below it share one namespace. Paths outside any root
//! form one project together.
//!
//! Every scan skips hidden directories, `target` and `node_modules` (build
//! output and installed packages never hold a project's sources), and a
//! project's files never include those of a project nested inside it.

use std::path::{Component, Path, PathBuf};

use crate::load::{LoadError, LoadErrorReason};

/// The file that marks a project root.
pub const MANIFEST: &str = "nudge.toml";

/// How much of the file system one scan may look at: the command line
/// looks at everything it is pointed at, an editor stops early so that
/// opening a file in a huge folder (a home directory) stays fast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Directory entries the scan may still look at.
    left: usize,
}

impl Scan {
    /// A scan that looks at every entry.
    pub fn unlimited() -> Scan {
        Scan { left: usize::MAX }
    }

    /// A scan that stops after `entries` directory entries.
    pub fn entries(entries: usize) -> Scan {
        Scan { left: entries }
    }

    /// Counts one entry; `false` once the budget is spent.
    fn take(&mut self) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }

    /// Groups `paths` into projects, each given as the paths to load together.
    ///
    /// A path inside a root yields that whole root (its files refer to each
    /// other); a directory with project roots below it yields one project per
    /// root; everything else is gathered into one project. A directory that
    /// cannot be read has no roots below it: loading it reports why.
    pub fn projects(&mut self, paths: &[PathBuf]) -> Vec<Vec<PathBuf>> {
        let mut roots: Vec<PathBuf> = Vec::new();
        let mut loose: Vec<PathBuf> = Vec::new();
        for path in paths {
            if let Some(root) = enclosing_root(path) {
                roots.push(root);
                continue;
            }
            let below = if path.is_dir() {
                self.roots_below(path)
            } else {
                Vec::new()
            };
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
        projects
    }

    /// The project roots at or below `dir`, in order; a root's own
    /// subdirectories are not searched (a nested project belongs to no one
    /// else's scan), nor are unreadable ones.
    pub fn roots_below(&mut self, dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        self.find_roots(dir, &mut out);
        out
    }

    fn find_roots(&mut self, dir: &Path, out: &mut Vec<PathBuf>) {
        if dir.join(MANIFEST).is_file() {
            out.push(dir.to_path_buf());
            return;
        }
        for sub in self.subdirs(dir) {
            self.find_roots(&sub, out);
        }
    }

    /// The directories in `dir` a scan enters, sorted.
    fn subdirs(&mut self, dir: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if !self.take() {
                break;
            }
            if skipped(&entry.file_name().to_string_lossy()) {
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(entry.path());
            }
        }
        out.sort();
        out
    }

    /// Every `.flow` file at or below `root`, in path order, skipping
    /// skipped directories and nested projects (directories below `root`
    /// with their own manifest). What could not be read is left out and the
    /// first such problem returned beside the files.
    pub fn flow_files(&mut self, root: &Path) -> (Vec<PathBuf>, Option<LoadError>) {
        let mut files = Vec::new();
        let mut problem = None;
        self.walk(root, true, &mut files, &mut problem);
        files.sort();
        (files, problem)
    }

    fn walk(
        &mut self,
        dir: &Path,
        is_root: bool,
        out: &mut Vec<PathBuf>,
        problem: &mut Option<LoadError>,
    ) {
        if !is_root && dir.join(MANIFEST).is_file() {
            return;
        }
        let unreadable = |e| LoadError {
            path: dir.to_path_buf(),
            reason: LoadErrorReason::Unreadable(e),
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                problem.get_or_insert(unreadable(e));
                return;
            }
        };
        let mut sorted = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => sorted.push(entry),
                Err(e) => {
                    problem.get_or_insert(unreadable(e));
                }
            }
        }
        sorted.sort_by_key(|e| e.file_name());
        for entry in sorted {
            if !self.take() {
                return;
            }
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if !skipped(&entry.file_name().to_string_lossy()) {
                    self.walk(&path, false, out, problem);
                }
            } else if path.extension().is_some_and(|e| e == "flow") {
                out.push(path);
            }
        }
    }
}

/// Whether a scan passes a directory by: hidden ones, build output and
/// installed packages.
fn skipped(name: &str) -> bool {
    name.starts_with('.') || name == "target" || name == "node_modules"
}

/// The nearest directory at or above `dir` that holds a manifest; `.` for
/// the working directory.
pub fn manifest_root(dir: &Path) -> Option<PathBuf> {
    let start = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    start
        .ancestors()
        .find(|d| d.join(MANIFEST).is_file())
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d.to_path_buf()
            }
        })
}

/// The project a file in `dir` belongs to: the nearest directory holding a
/// manifest, else `dir` itself.
pub fn project_root(dir: &Path) -> PathBuf {
    manifest_root(dir).unwrap_or_else(|| {
        if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.to_path_buf()
        }
    })
}

/// The nearest directory at or above `path` that holds a manifest, spelled
/// from `path` as the user gave it (so diagnostics show familiar relative
/// paths) even when the search went through symlinks.
pub fn enclosing_root(path: &Path) -> Option<PathBuf> {
    let start = if path.is_dir() { path } else { path.parent()? };
    let start = if start.as_os_str().is_empty() {
        Path::new(".")
    } else {
        start
    };
    let absolute = start.canonicalize().ok()?;
    let found = absolute.ancestors().find(|d| d.join(MANIFEST).is_file())?;
    let depth = absolute.components().count() - found.components().count();
    let mut root = start.to_path_buf();
    for _ in 0..depth {
        root.push("..");
    }
    Some(normalize(&root))
}

/// `path` with each `dir/..` pair removed, textually.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir
                if out
                    .components()
                    .next_back()
                    .is_some_and(|c| matches!(c, Component::Normal(_))) =>
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
