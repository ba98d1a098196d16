//! The server's state, independent of the protocol: the projects of the
//! workspace, the text of open documents, and the latest analysis of each
//! project.
//!
//! Paths are absolute. Every `.flow` file below a project root is analysed
//! together; an open document's text replaces the file's text on disk. A
//! project's `nudge.toml` is checked with it, so its problems are shown too.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use nudge_compiler::{Analysis, Project};
use nudge_diagnostics::{Diagnostic, FileId, SourceFile};
pub use nudge_project::MANIFEST;
use nudge_project::{Scan, manifest_root};
use nudge_syntax::Parsed;

use crate::lines::LineIndex;

/// The tree of an empty file, for file ids that are not in a snapshot.
static EMPTY: OnceLock<Parsed> = OnceLock::new();

/// The line index of an empty file, for file ids that are not in a snapshot.
static EMPTY_LINES: OnceLock<LineIndex> = OnceLock::new();

/// How many directory entries a project scan looks at before it stops, so
/// that opening a file in a huge directory (a home directory) stays fast.
const MAX_SCAN_ENTRIES: usize = 20_000;

/// One analysed project: its sources, the analysis, and the paths of its
/// files. Immutable once built, and shared (`Arc`) with the threads that
/// answer requests.
#[derive(Debug)]
pub struct Snapshot {
    /// The files as analysed (user files, then the stdlib, then templates).
    pub project: Project,
    /// Diagnostics, the tables features read, the trees and the typed program.
    pub analysis: Analysis,
    by_path: HashMap<PathBuf, FileId>,
    paths: Vec<PathBuf>,
    /// Syntax trees of the files the checker did not parse (templates,
    /// `nudge.toml`), parsed on first use by the features that ask.
    trees: Vec<OnceLock<Parsed>>,
    /// Line indexes for position conversion, built on first use.
    lines: Vec<OnceLock<LineIndex>>,
    /// The editor's version of each open document analysed here.
    versions: HashMap<PathBuf, i32>,
}

impl Snapshot {
    /// Checks `files` (absolute path and text) as one project; stdlib files
    /// get paths in `stdlib_dir`.
    pub fn analyse(files: Vec<(PathBuf, String)>, stdlib_dir: &Path) -> Snapshot {
        Snapshot::analyse_reusing(files, stdlib_dir, None)
    }

    /// Like [`Snapshot::analyse`], taking from `previous` the syntax tree of
    /// every file whose id and text are unchanged instead of parsing it
    /// again: an edit reparses the edited file only. A tree depends on
    /// nothing but the file's id and text, so a reused tree is the tree a
    /// parse would give.
    pub fn analyse_reusing(
        files: Vec<(PathBuf, String)>,
        stdlib_dir: &Path,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let sources = files
            .into_iter()
            .map(|(p, t)| (p.display().to_string(), t))
            .collect();
        let project = Project::from_sources(sources);
        let analysis = nudge_compiler::check_reusing(&project, |id, text| {
            let prev = previous?;
            let tree = prev.analysis.tree(id)?;
            (prev.source(id)?.text == text).then(|| Arc::clone(tree))
        });
        let mut paths = Vec::with_capacity(project.sources.len());
        for (id, file) in project.sources.iter() {
            let path = if project.is_stdlib(id) {
                let name = file.path.trim_start_matches("<stdlib>/");
                stdlib_dir.join(name)
            } else {
                PathBuf::from(&file.path)
            };
            paths.push(path);
        }
        let by_path = paths
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), FileId(i as u32)))
            .collect();
        let trees = paths.iter().map(|_| OnceLock::new()).collect();
        let lines = paths.iter().map(|_| OnceLock::new()).collect();
        Snapshot {
            project,
            analysis,
            by_path,
            paths,
            trees,
            lines,
            versions: HashMap::new(),
        }
    }

    /// Reads and checks the `nudge.toml` of the project `root`, so that its
    /// problems are published with the project's; a clean manifest has no
    /// entry in [`Snapshot::diagnostics_by_path`], like a clean template.
    pub fn add_manifest(&mut self, root: &Path) {
        let Some(found) = nudge_project::manifest::read(root, &mut self.project.sources) else {
            return;
        };
        let path = root.join(MANIFEST);
        self.by_path.insert(path.clone(), found.file);
        self.paths.push(path);
        self.trees.push(OnceLock::new());
        self.lines.push(OnceLock::new());
        self.analysis.diagnostics.extend(found.diagnostics);
    }

    /// The editor's version of an open document as analysed here; `None`
    /// for a file read from disk.
    pub fn version(&self, path: &Path) -> Option<i32> {
        self.versions.get(path).copied()
    }

    /// The file with this path (a user file, a template or a stdlib copy).
    pub fn file_id(&self, path: &Path) -> Option<FileId> {
        self.by_path.get(path).copied()
    }

    /// The path of a file: on disk for user files and templates, in the
    /// stdlib directory for the stdlib.
    pub fn path(&self, file: FileId) -> Option<&Path> {
        self.paths.get(file.0 as usize).map(PathBuf::as_path)
    }

    /// The text and line index of a file.
    pub fn source(&self, file: FileId) -> Option<&SourceFile> {
        (file.0 as usize)
            .lt(&self.project.sources.len())
            .then(|| self.project.sources.get(file))
    }

    /// The text of a file, or an empty text for an unknown id.
    pub fn text(&self, file: FileId) -> &str {
        self.source(file).map_or("", |f| f.text.as_str())
    }

    /// The syntax tree of a file: the one the checker read for a `.flow`
    /// file, otherwise parsed on first use and kept with the snapshot.
    pub fn parse(&self, file: FileId) -> &Parsed {
        if let Some(tree) = self.analysis.tree(file) {
            return tree;
        }
        match self.trees.get(file.0 as usize) {
            Some(cell) => cell.get_or_init(|| nudge_syntax::parse(file, self.text(file))),
            // An id from elsewhere: an empty tree, never a panic.
            None => EMPTY.get_or_init(|| nudge_syntax::parse(file, "")),
        }
    }

    /// The line index of a file, to convert offsets to protocol positions.
    pub fn lines(&self, file: FileId) -> &LineIndex {
        match self.lines.get(file.0 as usize) {
            Some(cell) => cell.get_or_init(|| LineIndex::new(self.text(file))),
            None => EMPTY_LINES.get_or_init(|| LineIndex::new("")),
        }
    }

    /// Whether a file is one of the user's `.flow` files.
    pub fn is_user_file(&self, file: FileId) -> bool {
        self.project.user_files().any(|f| f == file)
    }

    /// Diagnostics grouped by file path: every user file has an entry (empty
    /// when clean), templates and `nudge.toml` only when they have problems,
    /// never the stdlib.
    pub fn diagnostics_by_path(&self) -> BTreeMap<PathBuf, Vec<&Diagnostic>> {
        let mut out: BTreeMap<PathBuf, Vec<&Diagnostic>> = BTreeMap::new();
        for file in self.project.user_files() {
            if let Some(p) = self.path(file) {
                out.entry(p.to_path_buf()).or_default();
            }
        }
        for d in &self.analysis.diagnostics {
            if self.project.is_stdlib(d.primary.file) {
                continue;
            }
            if let Some(p) = self.path(d.primary.file) {
                out.entry(p.to_path_buf()).or_default().push(d);
            }
        }
        out
    }
}

/// A project: a root directory, its files on disk and its latest analysis.
#[derive(Debug)]
pub struct ProjectState {
    /// The directory whose `.flow` files make up the project.
    pub root: PathBuf,
    disk: BTreeMap<PathBuf, String>,
    snapshot: Option<Arc<Snapshot>>,
    dirty: bool,
}

/// An open document: the editor's text replaces the file on disk.
#[derive(Clone, Debug)]
pub struct OpenDoc {
    /// The current text.
    pub text: String,
    /// The editor's version number.
    pub version: i32,
}

/// Every project of the workspace and the open documents.
#[derive(Debug)]
pub struct World {
    stdlib_dir: PathBuf,
    /// Workspace folders without projects below them: their files form one project.
    folders: Vec<PathBuf>,
    /// Every workspace folder added, to find the projects again.
    workspace: Vec<PathBuf>,
    projects: Vec<ProjectState>,
    open: HashMap<PathBuf, OpenDoc>,
}

/// Index of a project in a [`World`].
pub type ProjectId = usize;

impl World {
    /// A world with no projects yet; stdlib declarations are linked in `stdlib_dir`.
    pub fn new(stdlib_dir: PathBuf) -> World {
        World {
            stdlib_dir,
            folders: Vec::new(),
            workspace: Vec::new(),
            projects: Vec::new(),
            open: HashMap::new(),
        }
    }

    /// Where the stdlib's `.flow` files are (or will be) written for navigation.
    pub fn stdlib_dir(&self) -> &Path {
        &self.stdlib_dir
    }

    /// Adds a workspace folder and loads every project in it.
    ///
    /// As for `nudge check DIR`: a folder inside a project means that
    /// project; a folder with projects below it means those projects; any
    /// other folder is one project of all its `.flow` files.
    pub fn add_folder(&mut self, folder: PathBuf) {
        if !self.workspace.contains(&folder) {
            self.workspace.push(folder.clone());
        }
        let groups = Scan::entries(MAX_SCAN_ENTRIES).projects(std::slice::from_ref(&folder));
        let roots: Vec<PathBuf> = groups
            .into_iter()
            .filter_map(|group| match <[PathBuf; 1]>::try_from(group) {
                Ok([root]) if root.join(MANIFEST).is_file() => Some(root),
                _ => None,
            })
            .collect();
        if !roots.is_empty() {
            for root in roots {
                self.project_for_root(root);
            }
            return;
        }
        if !self.folders.contains(&folder) {
            self.folders.push(folder.clone());
        }
        let existed = self.projects.iter().any(|p| p.root == folder);
        let id = self.project_for_root(folder);
        // Ids are positions, so only a project just added at the end may go.
        if !existed && self.projects[id].disk.is_empty() {
            self.projects.pop();
        }
    }

    /// Adds a project made of in-memory files under `root`, without reading
    /// the disk (used by tests and benchmarks).
    pub fn add_project_in_memory(&mut self, root: PathBuf, files: Vec<(PathBuf, String)>) {
        self.projects.push(ProjectState {
            root,
            disk: files.into_iter().collect(),
            snapshot: None,
            dirty: true,
        });
    }

    fn project_for_root(&mut self, root: PathBuf) -> ProjectId {
        if let Some(i) = self.projects.iter().position(|p| p.root == root) {
            return i;
        }
        let mut disk = BTreeMap::new();
        // What cannot be read is left out: the editor shows what it can.
        let (mut paths, _) = Scan::entries(MAX_SCAN_ENTRIES).flow_files(&root);
        // The stdlib copies may sit inside a workspace; they are never user files.
        paths.retain(|p| !self.is_stdlib_path(p));
        for path in paths {
            if let Ok(text) = std::fs::read_to_string(&path) {
                disk.insert(path, text);
            }
        }
        self.projects.push(ProjectState {
            root,
            disk,
            snapshot: None,
            dirty: true,
        });
        self.projects.len() - 1
    }

    /// The project a `.flow` file belongs to, created (and read from disk) on first use.
    pub fn project_of(&mut self, path: &Path) -> ProjectId {
        if let Some(id) = self.find_project(path) {
            return id;
        }
        let root = path
            .parent()
            .and_then(manifest_root)
            .or_else(|| {
                self.folders
                    .iter()
                    .filter(|f| path.starts_with(f))
                    .max_by_key(|f| f.components().count())
                    .cloned()
            })
            // Outside every project: the file alone, never its whole folder.
            .unwrap_or_else(|| path.to_path_buf());
        self.project_for_root(root)
    }

    /// The project that holds a file already, if any: the one with the
    /// deepest root above it.
    pub fn find_project(&self, path: &Path) -> Option<ProjectId> {
        let holding = self.projects.iter().position(|p| {
            p.disk.contains_key(path)
                || p.snapshot
                    .as_ref()
                    .is_some_and(|s| s.file_id(path).is_some())
        });
        if let Some(id) = holding.filter(|&i| self.projects[i].root != self.stdlib_dir) {
            return Some(id);
        }
        // A file below a manifest belongs to that manifest's project only.
        let manifest = path.parent().and_then(manifest_root);
        self.projects
            .iter()
            .enumerate()
            .filter(|(_, p)| path.starts_with(&p.root) && !self.is_stdlib_path(path))
            .filter(|(_, p)| manifest.as_ref().is_none_or(|r| *r == p.root))
            .max_by_key(|(_, p)| p.root.components().count())
            .map(|(i, _)| i)
    }

    /// Whether a path is one of the stdlib copies in the stdlib directory.
    pub fn is_stdlib_path(&self, path: &Path) -> bool {
        path.starts_with(&self.stdlib_dir)
    }

    /// Opens a document: its text now replaces the file on disk.
    pub fn open(&mut self, path: PathBuf, text: String, version: i32) -> Option<ProjectId> {
        if self.is_stdlib_path(&path) || path.extension().is_none_or(|e| e != "flow") {
            return None;
        }
        let id = self.project_of(&path);
        self.open.insert(path, OpenDoc { text, version });
        self.projects[id].dirty = true;
        Some(id)
    }

    /// Replaces an open document's text.
    pub fn change(&mut self, path: &Path, text: String, version: i32) -> Option<ProjectId> {
        let doc = self.open.get_mut(path)?;
        doc.text = text;
        doc.version = version;
        let id = self.find_project(path)?;
        self.projects[id].dirty = true;
        Some(id)
    }

    /// Closes a document: the file's text on disk counts again.
    pub fn close(&mut self, path: &Path) -> Option<ProjectId> {
        self.open.remove(path)?;
        let id = self.find_project(path)?;
        self.reload(path);
        Some(id)
    }

    /// Re-reads a file from disk after it changed there (or was deleted).
    pub fn reload(&mut self, path: &Path) -> Option<ProjectId> {
        if path.extension().is_none_or(|e| e != "flow") || self.is_stdlib_path(path) {
            return None;
        }
        let id = self.project_of(path);
        let project = &mut self.projects[id];
        match std::fs::read_to_string(path) {
            Ok(text) => {
                project.disk.insert(path.to_path_buf(), text);
            }
            Err(_) => {
                project.disk.remove(path);
            }
        }
        project.dirty = true;
        Some(id)
    }

    /// Marks the projects that may read a file (a template) as changed, so
    /// the next analysis reads it again.
    pub fn touch(&mut self, path: &Path) {
        for p in &mut self.projects {
            // A project of one file reads templates relative to its folder.
            let base = if p.root.extension().is_some_and(|e| e == "flow") {
                p.root.parent().unwrap_or(&p.root)
            } else {
                &p.root
            };
            if path.starts_with(base) {
                p.dirty = true;
            }
        }
    }

    /// Finds every project again from the workspace folders and the open
    /// documents, after a manifest was created, changed or deleted.
    pub fn rebuild(&mut self) {
        self.projects.clear();
        self.folders.clear();
        for folder in self.workspace.clone() {
            self.add_folder(folder);
        }
        let open: Vec<PathBuf> = self.open.keys().cloned().collect();
        for path in open {
            let id = self.project_of(&path);
            self.projects[id].dirty = true;
        }
    }

    /// The projects that changed since they were last analysed.
    pub fn dirty_projects(&self) -> Vec<ProjectId> {
        (0..self.projects.len())
            .filter(|&i| self.projects[i].dirty)
            .collect()
    }

    /// One project.
    pub fn project(&self, id: ProjectId) -> Option<&ProjectState> {
        self.projects.get(id)
    }

    /// An open document.
    pub fn document(&self, path: &Path) -> Option<&OpenDoc> {
        self.open.get(path)
    }

    /// Every project.
    pub fn projects(&self) -> impl Iterator<Item = (ProjectId, &ProjectState)> {
        self.projects.iter().enumerate()
    }

    /// Whether some project changed since it was last analysed.
    pub fn is_dirty(&self) -> bool {
        self.projects.iter().any(|p| p.dirty)
    }

    /// Analyses every project that changed; returns the ones analysed.
    pub fn analyse_dirty(&mut self) -> Vec<ProjectId> {
        let dirty: Vec<ProjectId> = (0..self.projects.len())
            .filter(|&i| self.projects[i].dirty)
            .collect();
        for &id in &dirty {
            self.analyse(id);
        }
        dirty
    }

    /// Analyses one project now, with open documents' text over the disk's.
    pub fn analyse(&mut self, id: ProjectId) {
        let Some(project) = self.projects.get(id) else {
            return;
        };
        let mut files: BTreeMap<PathBuf, String> = project.disk.clone();
        let mut versions = HashMap::new();
        for (path, doc) in &self.open {
            if self.find_project(path) == Some(id) {
                files.insert(path.clone(), doc.text.clone());
                versions.insert(path.clone(), doc.version);
            }
        }
        let root = project.root.clone();
        // The last analysis's trees serve the files that did not change.
        let previous = project.snapshot.clone();
        let mut snapshot = Snapshot::analyse_reusing(
            files.into_iter().collect(),
            &self.stdlib_dir,
            previous.as_deref(),
        );
        snapshot.versions = versions;
        snapshot.add_manifest(&root);
        let project = &mut self.projects[id];
        project.snapshot = Some(Arc::new(snapshot));
        project.dirty = false;
    }

    /// The latest analysis of a project.
    pub fn snapshot(&self, id: ProjectId) -> Option<&Snapshot> {
        self.projects.get(id)?.snapshot.as_deref()
    }

    /// The latest analysis of a project, shared, for work done on another
    /// thread while the world moves on.
    pub fn shared_snapshot(&self, id: ProjectId) -> Option<Arc<Snapshot>> {
        self.projects.get(id)?.snapshot.clone()
    }

    /// Every analysed project's latest analysis, shared.
    pub fn shared_snapshots(&self) -> Vec<Arc<Snapshot>> {
        self.projects
            .iter()
            .filter_map(|p| p.snapshot.clone())
            .collect()
    }

    /// The analysis and file id for a path: its project's, or for a stdlib
    /// copy, any project's (the stdlib is the same in all of them).
    pub fn locate(&self, path: &Path) -> Option<(&Snapshot, FileId)> {
        if self.is_stdlib_path(path) {
            return self
                .projects
                .iter()
                .filter_map(|p| p.snapshot.as_deref())
                .find_map(|s| s.file_id(path).map(|f| (s, f)));
        }
        let snap = self.snapshot(self.find_project(path)?)?;
        Some((snap, snap.file_id(path)?))
    }

    /// [`World::locate`], shared: the analysis stays valid on another
    /// thread while later edits are analysed.
    pub fn shared_locate(&self, path: &Path) -> Option<(Arc<Snapshot>, FileId)> {
        if self.is_stdlib_path(path) {
            return self
                .projects
                .iter()
                .filter_map(|p| p.snapshot.as_ref())
                .find_map(|s| s.file_id(path).map(|f| (s.clone(), f)));
        }
        let snap = self.shared_snapshot(self.find_project(path)?)?;
        let file = snap.file_id(path)?;
        Some((snap, file))
    }

    /// Every analysed project.
    pub fn snapshots(&self) -> impl Iterator<Item = &Snapshot> {
        self.projects.iter().filter_map(|p| p.snapshot.as_deref())
    }

    /// Writes the stdlib's `.flow` files to the stdlib directory (read-only),
    /// so that "go to definition" can open them. Files already there with
    /// the same text are left alone.
    pub fn write_stdlib(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.stdlib_dir)?;
        for f in nudge_stdlib::FILES {
            let path = self.stdlib_dir.join(f.name);
            if std::fs::read_to_string(&path).is_ok_and(|t| t == f.source) {
                continue;
            }
            if let Ok(meta) = std::fs::metadata(&path) {
                let mut perms = meta.permissions();
                #[allow(clippy::permissions_set_readonly_false)]
                perms.set_readonly(false);
                let _ = std::fs::set_permissions(&path, perms);
            }
            std::fs::write(&path, f.source)?;
            let mut perms = std::fs::metadata(&path)?.permissions();
            perms.set_readonly(true);
            std::fs::set_permissions(&path, perms)?;
        }
        Ok(())
    }
}

/// The default directory for stdlib copies: the user's cache directory,
/// keyed by a hash of the stdlib's text so that versions never mix.
pub fn default_stdlib_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    // FNV-1a over every file: stable across runs, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for f in nudge_stdlib::FILES {
        for b in f.name.bytes().chain(f.source.bytes()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    base.join("nudge").join(format!("stdlib-{hash:016x}"))
}

// Requests are answered on worker threads from shared snapshots.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Snapshot>();
};
