//! The example projects in the repository's `examples/` folder.

use std::path::PathBuf;

/// The repository's `examples/` folder, as an absolute path.
pub fn examples_root() -> PathBuf {
    // This crate lives at crates/nudge-test-support, two levels below the root.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    root.canonicalize()
        .unwrap_or_else(|e| panic!("the examples folder {}: {e}", root.display()))
}

/// The folder of the example project `name`.
pub fn example_dir(name: &str) -> PathBuf {
    let dir = examples_root().join(name);
    assert!(
        dir.join("nudge.toml").is_file(),
        "{} is not an example project",
        dir.display()
    );
    dir
}

/// Every example project's folder (those holding a `nudge.toml`), sorted.
pub fn example_dirs() -> Vec<PathBuf> {
    let root = examples_root();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("nudge.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// Every example project's name (its folder's name), sorted.
pub fn example_names() -> Vec<String> {
    example_dirs()
        .iter()
        .map(|d| {
            d.file_name()
                .expect("an example folder has a name")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// The sample Segment calls of the example project `name` (`events.jsonl`).
pub fn example_events(name: &str) -> String {
    let path = example_dir(name).join("events.jsonl");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
