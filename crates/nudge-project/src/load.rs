//! Reading a project's files: the `.flow` sources named by a command's paths
//! and the template files their messages refer to. Nothing else in the
//! front end touches the file system.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use nudge_diagnostics::codes::{E0601, E0602, E0603};
use nudge_diagnostics::{Code, Diagnostic, FileSpan, SourceMap, Span, render};

use crate::discover::{Scan, project_root};

/// Why a project's sources could not be read.
#[derive(Debug)]
pub struct LoadError {
    /// The path that failed.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: LoadErrorReason,
}

/// What went wrong while reading a path.
#[derive(Debug)]
pub enum LoadErrorReason {
    /// The path does not exist.
    NotFound,
    /// The path could not be read.
    Unreadable(std::io::Error),
    /// The file is not valid UTF-8.
    NotUtf8,
    /// A directory with no `.flow` file below it.
    NoFlowFiles,
}

impl LoadError {
    /// The diagnostic code of this problem.
    pub fn code(&self) -> Code {
        match self.reason {
            LoadErrorReason::NotFound => E0601,
            LoadErrorReason::Unreadable(_) | LoadErrorReason::NotUtf8 => E0602,
            LoadErrorReason::NoFlowFiles => E0603,
        }
    }

    /// The problem as a diagnostic at the start of the path, which is added
    /// to `sources` without text (there is none to show, or none readable).
    pub fn diagnostic(&self, sources: &mut SourceMap) -> Diagnostic {
        let file = sources.add(self.path.display().to_string(), String::new());
        let title = match &self.reason {
            LoadErrorReason::NotFound => "no such file or directory".to_string(),
            LoadErrorReason::Unreadable(e) => format!("cannot be read: {e}"),
            LoadErrorReason::NotUtf8 => "is not valid UTF-8 text".to_string(),
            LoadErrorReason::NoFlowFiles => "no .flow files found".to_string(),
        };
        let help = match self.reason {
            LoadErrorReason::NotFound => {
                "check the path; commands take .flow files and the folders that hold them"
            }
            LoadErrorReason::Unreadable(_) => "check the permissions of the file or folder",
            LoadErrorReason::NotUtf8 => {
                ".flow files are UTF-8 text; save the file in that encoding"
            }
            LoadErrorReason::NoFlowFiles => {
                "point the command at a folder with .flow files below it (hidden folders, `target`, `node_modules` and nested projects are skipped)"
            }
        };
        Diagnostic::new(self.code(), FileSpan::new(file, Span::new(0, 0)), title).with_help(help)
    }

    /// The problem as `nudge check` shows diagnostics, for a terminal or a file.
    pub fn render(&self, color: bool) -> String {
        let mut sources = SourceMap::new();
        let diagnostic = self.diagnostic(&mut sources);
        render::human(&sources, &[diagnostic], color)
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.reason {
            LoadErrorReason::NotFound => write!(f, "{path}: no such file or directory"),
            LoadErrorReason::Unreadable(e) => write!(f, "{path}: cannot be read: {e}"),
            LoadErrorReason::NotUtf8 => write!(f, "{path}: is not valid UTF-8 text"),
            LoadErrorReason::NoFlowFiles => write!(f, "{path}: no .flow files found"),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.reason {
            LoadErrorReason::Unreadable(e) => Some(e),
            _ => None,
        }
    }
}

/// Reads the `.flow` files named by `paths` as `(path, text)`: a directory
/// means every `*.flow` below it (sorted, skipping hidden directories,
/// `target`, `node_modules` and nested projects), a file means that file.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<(String, String)>, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| LoadError {
            path: path.clone(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                LoadErrorReason::NotFound
            } else {
                LoadErrorReason::Unreadable(e)
            },
        })?;
        if meta.is_dir() {
            let (found, problem) = Scan::unlimited().flow_files(path);
            if let Some(problem) = problem {
                return Err(problem);
            }
            if found.is_empty() {
                return Err(LoadError {
                    path: path.clone(),
                    reason: LoadErrorReason::NoFlowFiles,
                });
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        return Err(LoadError {
            path: PathBuf::from("."),
            reason: LoadErrorReason::NoFlowFiles,
        });
    }
    let mut texts = Vec::with_capacity(files.len());
    for path in files {
        let bytes = std::fs::read(&path).map_err(|e| LoadError {
            path: path.clone(),
            reason: LoadErrorReason::Unreadable(e),
        })?;
        let text = String::from_utf8(bytes).map_err(|_| LoadError {
            path: path.clone(),
            reason: LoadErrorReason::NotUtf8,
        })?;
        texts.push((path.display().to_string(), text));
    }
    Ok(texts)
}

/// Why a template file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// The file cannot be read (missing, unreadable, not UTF-8).
    Unreadable(String),
    /// The path leads outside the project: absolute, a `..` escape, or a
    /// symlink to elsewhere. It is never read, so nothing outside leaks.
    Outside(String),
}

/// The file the template path `rel`, written in a `.flow` file in `dir`,
/// names, as long as it stays inside that file's project.
pub fn template_path(dir: &Path, rel: &str) -> Result<PathBuf, TemplateError> {
    let root = project_root(dir);
    confined(&root, dir, rel).map_err(TemplateError::Outside)?;
    Ok(dir.join(rel))
}

/// Reads a template file found by [`template_path`].
pub fn read_template(full: &Path) -> Result<String, TemplateError> {
    match std::fs::read(full) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(TemplateError::Unreadable(
            format!("there is no file {}", full.display()),
        )),
        Err(e) => Err(TemplateError::Unreadable(format!(
            "{}: {e}",
            full.display()
        ))),
        Ok(bytes) => String::from_utf8(bytes)
            .map_err(|_| TemplateError::Unreadable("it is not valid UTF-8 text".to_string())),
    }
}

/// Whether the template path `rel`, written in a `.flow` file in `dir`,
/// stays inside the project `root`; else why not. The check is on the text
/// first (absolute paths, `..` above the root), then on the file system,
/// so that a symlink inside the project cannot point outside it.
fn confined(root: &Path, dir: &Path, rel: &str) -> Result<(), String> {
    let path = Path::new(rel);
    // `/etc/passwd`, `C:\x` and `\\server\share` are absolute on some system.
    if path.has_root()
        || path.is_absolute()
        || rel.starts_with(['/', '\\'])
        || rel.get(1..2) == Some(":")
    {
        return Err("an absolute path leads outside the project".into());
    }
    let inside = dir.strip_prefix(root).unwrap_or(Path::new(""));
    let mut depth: usize = inside.components().count();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| "`..` leads outside the project".to_string())?;
            }
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("an absolute path leads outside the project".into());
            }
        }
    }
    // A file that exists is resolved, symlinks and all; one that does not
    // is reported as missing by the caller.
    let (Ok(root), Ok(real)) = (root.canonicalize(), dir.join(path).canonicalize()) else {
        return Ok(());
    };
    if real.starts_with(&root) {
        Ok(())
    } else {
        Err("a symlink leads outside the project".into())
    }
}
