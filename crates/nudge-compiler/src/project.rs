//! Loading a project: the user's `.flow` files, the stdlib and the template
//! files the messages refer to.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use nudge_diagnostics::{FileId, SourceMap};

/// A template's file in the source map, or why it is not there.
pub(crate) type TemplateResult = Result<FileId, TemplateError>;

/// Why a template file is not in the source map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TemplateError {
    /// The file cannot be read (missing, unreadable, not UTF-8).
    Unreadable(String),
    /// The path leads outside the project: absolute, a `..` escape, or a
    /// symlink to elsewhere. It is never read, so nothing outside leaks.
    Outside(String),
}

/// A set of source files checked together: the user's files, the stdlib and templates.
#[derive(Clone, Debug, Default)]
pub struct Project {
    /// Every file, addressed by id: user files first, then the stdlib, then templates.
    pub sources: SourceMap,
    user: Vec<FileId>,
    stdlib: Vec<FileId>,
    templates: HashMap<(FileId, String), TemplateResult>,
}

/// Why a project could not be loaded.
#[derive(Debug)]
pub struct LoadError {
    /// The path that failed.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: LoadErrorReason,
}

/// What went wrong while loading a path.
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

impl Project {
    /// Loads `.flow` files from disk: a directory means every `*.flow` below it
    /// (sorted, skipping hidden directories and `target`), a file means that file.
    pub fn load(paths: &[PathBuf]) -> Result<Project, LoadError> {
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
                let before = files.len();
                walk(path, &mut files)?;
                files[before..].sort();
                if files.len() == before {
                    return Err(LoadError {
                        path: path.clone(),
                        reason: LoadErrorReason::NoFlowFiles,
                    });
                }
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
        Ok(Project::from_sources(texts))
    }

    /// Builds a project from in-memory files `(path, text)`; templates are
    /// looked up on disk relative to each path.
    pub fn from_sources(files: Vec<(String, String)>) -> Project {
        let mut project = Project::default();
        for (path, text) in files {
            let id = project.sources.add(path, text);
            project.user.push(id);
        }
        for f in nudge_stdlib::FILES {
            let id = project
                .sources
                .add(format!("<stdlib>/{}", f.name), f.source);
            project.stdlib.push(id);
        }
        let user = project.user.clone();
        for file in user {
            project.load_templates(file);
        }
        project
    }

    fn load_templates(&mut self, file: FileId) {
        let src = self.sources.get(file);
        let refs = template_refs(&src.text);
        if refs.is_empty() {
            return;
        }
        let dir = Path::new(&src.path)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let root = project_root(&dir);
        let mut by_path: HashMap<PathBuf, FileId> = HashMap::new();
        for rel in refs {
            if self.templates.contains_key(&(file, rel.clone())) {
                continue;
            }
            let full = dir.join(&rel);
            let result = if let Err(why) = confined(&root, &dir, &rel) {
                Err(TemplateError::Outside(why))
            } else if let Some(&id) = by_path.get(&full) {
                Ok(id)
            } else {
                match std::fs::read(&full) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(
                        TemplateError::Unreadable(format!("there is no file {}", full.display())),
                    ),
                    Err(e) => Err(TemplateError::Unreadable(format!(
                        "{}: {e}",
                        full.display()
                    ))),
                    Ok(bytes) => match String::from_utf8(bytes) {
                        Err(_) => Err(TemplateError::Unreadable(
                            "it is not valid UTF-8 text".to_string(),
                        )),
                        Ok(text) => {
                            let id = self.sources.add(full.display().to_string(), text);
                            by_path.insert(full, id);
                            Ok(id)
                        }
                    },
                }
            };
            self.templates.insert((file, rel), result);
        }
    }

    /// The user's `.flow` files (not the stdlib, not templates).
    pub fn user_files(&self) -> impl Iterator<Item = FileId> + '_ {
        self.user.iter().copied()
    }

    /// The stdlib's files.
    pub fn stdlib_files(&self) -> impl Iterator<Item = FileId> + '_ {
        self.stdlib.iter().copied()
    }

    /// Whether a file belongs to the stdlib.
    pub fn is_stdlib(&self, file: FileId) -> bool {
        self.stdlib.contains(&file)
    }

    /// The template `path` referred to from `file`: its id, or why it could not be read.
    pub(crate) fn template(&self, file: FileId, path: &str) -> Option<&TemplateResult> {
        self.templates.get(&(file, path.to_string()))
    }
}

/// The project a `.flow` file in `dir` belongs to: the nearest directory
/// holding a `nudge.toml`, else `dir` itself.
fn project_root(dir: &Path) -> PathBuf {
    let start = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    start
        .ancestors()
        .find(|d| d.join("nudge.toml").is_file())
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .unwrap_or(start)
        .to_path_buf()
}

/// Whether the template path `rel`, written in a `.flow` file in `dir`,
/// stays inside the project `root`; else why not. The check is on the text
/// first (absolute paths, `..` above the root), then on the file system,
/// so that a symlink inside the project cannot point outside it.
fn confined(root: &Path, dir: &Path, rel: &str) -> Result<(), String> {
    use std::path::Component;
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

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|e| LoadError {
        path: dir.to_path_buf(),
        reason: LoadErrorReason::Unreadable(e),
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| LoadError {
            path: dir.to_path_buf(),
            reason: LoadErrorReason::Unreadable(e),
        })?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            if name.starts_with('.') || name == "target" {
                continue;
            }
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "flow") {
            out.push(path);
        }
    }
    Ok(())
}

/// The paths of every `template "PATH"` in a file, found with the lexer so
/// that comments and ordinary strings are not mistaken for references.
fn template_refs(text: &str) -> Vec<String> {
    use nudge_syntax::Token;
    let lexed = nudge_syntax::lex(FileId(0), text);
    let mut out = Vec::new();
    let toks = &lexed.tokens;
    for i in 0..toks.len() {
        if let (Token::Ident("template"), Some((Token::StrStart, _))) =
            (&toks[i].0, toks.get(i + 1))
        {
            match (toks.get(i + 2), toks.get(i + 3)) {
                (Some((Token::StrText(t), _)), Some((Token::StrEnd, _))) => out.push(unescape(t)),
                (Some((Token::StrEnd, _)), _) => out.push(String::new()),
                _ => {}
            }
        }
    }
    out
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}
