//! Finding projects on disk, and open documents overriding files.

use std::path::PathBuf;

use nudge_lsp::World;

fn roots(world: &World) -> Vec<PathBuf> {
    world.projects().map(|(_, p)| p.root.clone()).collect()
}

#[test]
fn folders_split_into_projects_like_nudge_check() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    for dir in ["a/sub", "b", ".hidden", "stdlib"] {
        std::fs::create_dir_all(base.join(dir)).unwrap();
    }
    std::fs::write(base.join("a/nudge.toml"), "").unwrap();
    std::fs::write(base.join("b/nudge.toml"), "").unwrap();
    std::fs::write(base.join("a/sub/x.flow"), "segment s = true\n").unwrap();
    std::fs::write(base.join("b/y.flow"), "segment s = true\n").unwrap();
    std::fs::write(base.join("loose.flow"), "segment s = true\n").unwrap();
    std::fs::write(base.join(".hidden/h.flow"), "segment s = true\n").unwrap();

    let mut world = World::new(base.join("stdlib"));
    world.write_stdlib().unwrap();
    world.add_folder(base.clone());
    assert_eq!(roots(&world), [base.join("a"), base.join("b")]);
    world.analyse_dirty();
    // Each project sees its own files: the same segment name does not clash.
    for snap in world.snapshots() {
        assert!(
            snap.analysis
                .diagnostics
                .iter()
                .all(|d| d.code.id != "E0206")
        );
        assert_eq!(snap.project.user_files().count(), 1);
    }

    // A folder inside a project means that project.
    let mut inner = World::new(base.join("stdlib"));
    inner.add_folder(base.join("a/sub"));
    assert_eq!(roots(&inner), [base.join("a")]);

    // A loose file opened later, outside both projects, is a project of
    // its own: not its directory with the other projects, the stdlib copies
    // or hidden directories.
    let id = world
        .open(base.join("loose.flow"), "segment t = true\n".into(), 1)
        .unwrap();
    world.analyse_dirty();
    let snap = world.snapshot(id).unwrap();
    let files: Vec<String> = snap
        .project
        .user_files()
        .map(|f| snap.project.sources.get(f).path.clone())
        .collect();
    assert_eq!(files, [base.join("loose.flow").display().to_string()]);
    // The open document's text is what was analysed.
    assert_eq!(
        snap.text(snap.file_id(&base.join("loose.flow")).unwrap()),
        "segment t = true\n"
    );
    // Closing it goes back to the disk's text.
    world.close(&base.join("loose.flow"));
    world.analyse_dirty();
    let snap = world.snapshot(id).unwrap();
    assert_eq!(
        snap.text(snap.file_id(&base.join("loose.flow")).unwrap()),
        "segment s = true\n"
    );
}

#[test]
fn a_file_at_the_root_of_the_disk_does_not_load_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let mut world = World::new(tmp.path().join("stdlib"));
    let id = world.project_of(std::path::Path::new("/x.flow"));
    let project = world.project(id).unwrap();
    assert_eq!(project.root, PathBuf::from("/x.flow"));
    world.analyse_dirty();
    assert_eq!(world.snapshot(id).unwrap().project.user_files().count(), 0);
}

#[test]
fn an_edit_reparses_only_the_edited_file() {
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    std::fs::create_dir_all(base.join("shop")).unwrap();
    std::fs::write(base.join("shop/nudge.toml"), "").unwrap();
    std::fs::write(base.join("shop/a.flow"), "segment a = true\n").unwrap();
    std::fs::write(base.join("shop/b.flow"), "segment b = true\n").unwrap();
    let mut world = World::new(base.join("stdlib"));
    world.add_folder(base.clone());
    world.analyse_dirty();
    let (a, b) = (base.join("shop/a.flow"), base.join("shop/b.flow"));
    let trees = |world: &World, path: &PathBuf| {
        let (id, _) = world.projects().next().unwrap();
        let snap = world.shared_snapshot(id).unwrap();
        let file = snap.file_id(path).unwrap();
        let tree = Arc::clone(snap.analysis.tree(file).expect("a checked file has a tree"));
        let stdlib = snap.project.stdlib_files().next().unwrap();
        let std_tree = Arc::clone(snap.analysis.tree(stdlib).unwrap());
        (tree, std_tree)
    };
    let (a_before, std_before) = trees(&world, &a);
    let (b_before, _) = trees(&world, &b);

    world.open(b.clone(), "segment b = false\n".into(), 1);
    world.analyse_dirty();
    let (a_after, std_after) = trees(&world, &a);
    let (b_after, _) = trees(&world, &b);
    // The unchanged file and the stdlib keep their trees; the edited one is parsed anew.
    assert!(Arc::ptr_eq(&a_before, &a_after));
    assert!(Arc::ptr_eq(&std_before, &std_after));
    assert!(!Arc::ptr_eq(&b_before, &b_after));
    assert_ne!(b_before.file, b_after.file);
    // The features read the same tree as the checker.
    let (id, _) = world.projects().next().unwrap();
    let snap = world.snapshot(id).unwrap();
    let file = snap.file_id(&a).unwrap();
    assert!(std::ptr::eq(snap.parse(file), &*a_after));
}
