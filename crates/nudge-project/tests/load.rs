//! Reading a project's `.flow` files: what is read, in which order, and
//! each way it can fail as a diagnostic with its code.

use nudge_diagnostics::SourceMap;
use nudge_diagnostics::codes::{E0601, E0602, E0603};
use nudge_project::{LoadErrorReason, read_sources};

#[test]
fn a_folder_reads_its_flow_files_in_path_order_and_a_file_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("z")).unwrap();
    std::fs::write(root.join("z/b.flow"), "b").unwrap();
    std::fs::write(root.join("a.flow"), "a").unwrap();
    std::fs::write(root.join("other.txt"), "x").unwrap();
    let texts: Vec<String> = read_sources(&[root.to_path_buf()])
        .unwrap()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(texts, ["a", "b"]);
    let one = read_sources(&[root.join("z/b.flow")]).unwrap();
    assert_eq!(
        one,
        vec![(root.join("z/b.flow").display().to_string(), "b".into())]
    );
}

#[test]
fn each_failure_is_a_diagnostic_with_its_code_at_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let missing = root.join("missing");
    let empty = root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let latin1 = root.join("latin1.flow");
    std::fs::write(&latin1, b"caf\xe9").unwrap();

    for (path, code) in [(&missing, E0601), (&empty, E0603), (&latin1, E0602)] {
        let err = read_sources(std::slice::from_ref(path)).unwrap_err();
        assert_eq!(err.path, *path);
        assert_eq!(err.code(), code);
        let mut sources = SourceMap::new();
        let d = err.diagnostic(&mut sources);
        assert_eq!(d.code, code);
        assert_eq!(sources.get(d.primary.file).path, path.display().to_string());
        let shown = err.render(false);
        assert!(shown.contains(&format!("error[{}]", code.id)), "{shown}");
        assert!(shown.contains(&path.display().to_string()), "{shown}");
    }
    let err = read_sources(&[latin1]).unwrap_err();
    assert!(matches!(err.reason, LoadErrorReason::NotUtf8));
    assert!(
        err.to_string().ends_with("is not valid UTF-8 text"),
        "{err}"
    );
}

#[test]
fn a_folder_whose_only_flow_files_are_in_a_nested_project_has_none() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("inner")).unwrap();
    std::fs::write(root.join("nudge.toml"), "").unwrap();
    std::fs::write(root.join("inner/nudge.toml"), "").unwrap();
    std::fs::write(root.join("inner/a.flow"), "").unwrap();
    let err = read_sources(&[root.to_path_buf()]).unwrap_err();
    assert_eq!(err.code(), E0603);
}
