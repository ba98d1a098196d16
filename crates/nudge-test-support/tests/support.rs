//! The shared helpers find the real examples and set up projects as promised.

use nudge_test_support::{
    build, copy_example, copy_project, copy_tree, example_bundle, example_dirs, example_events,
    example_names,
};

#[test]
fn the_examples_are_found_sorted_by_name() {
    let names = example_names();
    assert!(
        names.len() >= 10,
        "expected the ten example projects: {names:?}"
    );
    assert!(names.contains(&"cart_recovery".to_string()));
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(example_dirs().len(), names.len());
    assert!(example_events("cart_recovery").lines().count() > 0);
}

#[test]
fn an_example_compiles_to_a_bundle_with_flows() {
    let bundle = example_bundle("cart_recovery");
    assert!(bundle.flows.iter().any(|f| f.name == "cart_recovery"));
}

#[test]
#[should_panic(expected = "E0202")]
fn a_source_that_does_not_check_fails_with_its_diagnostics() {
    build(&[(
        "bad.flow",
        "flow f {\n  trigger order_complted\n  wait 1d\n}\n",
    )]);
}

#[test]
fn a_copied_example_leaves_hidden_state_behind() {
    let (_tmp, project) = copy_example("cart_recovery");
    assert!(project.join("nudge.toml").is_file());
    assert!(project.ends_with("cart_recovery"));

    std::fs::create_dir(project.join(".nudge")).unwrap();
    std::fs::write(project.join(".nudge/state.db"), "old state").unwrap();
    let again = tempfile::tempdir().unwrap();
    copy_project(&project, again.path());
    assert!(again.path().join("nudge.toml").is_file());
    assert!(!again.path().join(".nudge").exists());
}

#[test]
fn a_copied_tree_keeps_hidden_state() {
    let (_tmp, project) = copy_example("cart_recovery");
    std::fs::create_dir_all(project.join(".nudge/deep")).unwrap();
    std::fs::write(project.join(".nudge/deep/state.db"), "old state").unwrap();
    let again = tempfile::tempdir().unwrap();
    copy_tree(&project, again.path());
    assert!(again.path().join("nudge.toml").is_file());
    assert_eq!(
        std::fs::read_to_string(again.path().join(".nudge/deep/state.db")).unwrap(),
        "old state"
    );
}
