//! A project as the checker sees it: the user's `.flow` files, the stdlib
//! and the template files the messages refer to. Finding and reading the
//! files is `nudge_project`'s; this module only puts them in one source map.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nudge_diagnostics::{FileId, SourceMap};
pub(crate) use nudge_project::TemplateError;
pub use nudge_project::{LoadError, LoadErrorReason};

/// A template's file in the source map, or why it is not there.
pub(crate) type TemplateResult = Result<FileId, TemplateError>;

/// A set of source files checked together: the user's files, the stdlib and templates.
#[derive(Clone, Debug, Default)]
pub struct Project {
    /// Every file, addressed by id: user files first, then the stdlib, then templates.
    pub sources: SourceMap,
    user: Vec<FileId>,
    stdlib: Vec<FileId>,
    templates: HashMap<(FileId, String), TemplateResult>,
}

impl Project {
    /// Loads `.flow` files from disk: a directory means every `*.flow` below it
    /// (sorted, skipping hidden directories, `target`, `node_modules` and
    /// nested projects), a file means that file.
    pub fn load(paths: &[PathBuf]) -> Result<Project, LoadError> {
        nudge_project::read_sources(paths).map(Project::from_sources)
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
        let mut by_path: HashMap<PathBuf, FileId> = HashMap::new();
        for rel in refs {
            if self.templates.contains_key(&(file, rel.clone())) {
                continue;
            }
            let result = nudge_project::template_path(&dir, &rel).and_then(|full| {
                if let Some(&id) = by_path.get(&full) {
                    return Ok(id);
                }
                let text = nudge_project::read_template(&full)?;
                let id = self.sources.add(full.display().to_string(), text);
                by_path.insert(full, id);
                Ok(id)
            });
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
