//! Finding projects on a real file system: roots, loose files, the
//! directories every scan skips, nested projects and the scan budget.

use std::path::{Path, PathBuf};

use nudge_project::{Scan, enclosing_root, manifest_root, project_root};

fn touch(base: &Path, rel: &str) {
    let path = base.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, "").unwrap();
}

#[test]
fn groups_roots_and_loose_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    for f in [
        "a/nudge.toml",
        "b/nudge.toml",
        "b/sub/x.flow",
        "loose/y.flow",
    ] {
        touch(base, f);
    }
    let all = Scan::unlimited().projects(&[base.to_path_buf()]);
    assert_eq!(all, vec![vec![base.join("a")], vec![base.join("b")]]);

    // A file inside a project pulls in its whole project.
    let inner = Scan::unlimited().projects(&[base.join("b/sub/x.flow")]);
    assert_eq!(inner.len(), 1);
    assert_eq!(
        inner[0][0].canonicalize().unwrap(),
        base.join("b").canonicalize().unwrap()
    );

    let loose = Scan::unlimited().projects(&[base.join("loose")]);
    assert_eq!(loose, vec![vec![base.join("loose")]]);
}

#[test]
fn hidden_build_and_package_folders_hold_no_projects() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    for f in [
        "node_modules/pkg/nudge.toml",
        "target/debug/nudge.toml",
        ".git/nudge.toml",
        "shop/nudge.toml",
    ] {
        touch(base, f);
    }
    let all = Scan::unlimited().projects(&[base.to_path_buf()]);
    assert_eq!(all, vec![vec![base.join("shop")]]);
}

#[test]
fn a_project_s_files_skip_nested_projects_and_skipped_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for f in [
        "nudge.toml",
        "b.flow",
        "a/c.flow",
        "a.flow",
        "inner/nudge.toml",
        "inner/d.flow",
        "node_modules/e.flow",
        "target/f.flow",
        ".cache/g.flow",
        "notes.txt",
    ] {
        touch(root, f);
    }
    let (files, problem) = Scan::unlimited().flow_files(root);
    assert!(problem.is_none());
    let rel: Vec<PathBuf> = files
        .iter()
        .map(|f| f.strip_prefix(root).unwrap().to_path_buf())
        .collect();
    assert_eq!(
        rel,
        ["a/c.flow", "a.flow", "b.flow"].map(PathBuf::from).to_vec()
    );
    // The nested project is a project of its own.
    let (inner, _) = Scan::unlimited().flow_files(&root.join("inner"));
    assert_eq!(inner, vec![root.join("inner/d.flow")]);
}

#[test]
fn a_limited_scan_stops_early() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for i in 0..10 {
        touch(root, &format!("f{i}.flow"));
    }
    let (all, _) = Scan::unlimited().flow_files(root);
    assert_eq!(all.len(), 10);
    let (some, _) = Scan::entries(4).flow_files(root);
    assert_eq!(some, all[..4].to_vec());
}

#[test]
fn roots_are_found_upwards() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    touch(&root, "shop/nudge.toml");
    touch(&root, "shop/flows/deep/a.flow");
    let deep = root.join("shop/flows/deep");
    assert_eq!(manifest_root(&deep), Some(root.join("shop")));
    assert_eq!(project_root(&deep), root.join("shop"));
    assert_eq!(manifest_root(&root), None);
    assert_eq!(project_root(&root), root);
    // Spelled from the path given, `..` and all resolved.
    assert_eq!(
        enclosing_root(&deep.join("a.flow")),
        Some(root.join("shop"))
    );
    assert_eq!(enclosing_root(&root.join("x.flow")), None);
}
