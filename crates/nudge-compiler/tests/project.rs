//! Loading projects from disk, templates, and the editor queries of an analysis.

use std::fs;
use std::path::PathBuf;

use nudge_compiler::{LoadErrorReason, Project, SymbolKind, check};
use proptest::prelude::*;

#[test]
fn loads_directories_recursively_sorted_skipping_hidden_and_target() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("b")).unwrap();
    fs::create_dir_all(root.join(".git")).unwrap();
    fs::create_dir_all(root.join("target")).unwrap();
    fs::write(root.join("b/two.flow"), "let two = 2\n").unwrap();
    fs::write(root.join("a.flow"), "let one = 1\n").unwrap();
    fs::write(root.join(".git/x.flow"), "let hidden = 1\n").unwrap();
    fs::write(root.join("target/y.flow"), "let built = 1\n").unwrap();
    fs::write(root.join("notes.txt"), "not flow").unwrap();
    let p = Project::load(&[root.to_path_buf()]).unwrap();
    let paths: Vec<String> = p
        .user_files()
        .map(|f| p.sources.get(f).path.clone())
        .collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(
        paths[0].ends_with("a.flow") && paths[1].ends_with("two.flow"),
        "{paths:?}"
    );
    // The stdlib is always there, under `<stdlib>/`.
    assert!(
        p.stdlib_files()
            .all(|f| p.sources.get(f).path.starts_with("<stdlib>/"))
    );
    assert!(p.stdlib_files().count() > 0);
}

#[test]
fn load_errors_name_the_path_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.flow");
    let e = Project::load(std::slice::from_ref(&missing)).unwrap_err();
    assert!(matches!(e.reason, LoadErrorReason::NotFound));
    assert!(e.to_string().contains("nope.flow"), "{e}");

    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let e = Project::load(std::slice::from_ref(&empty)).unwrap_err();
    assert!(matches!(e.reason, LoadErrorReason::NoFlowFiles));
    assert!(e.to_string().contains("no .flow files"), "{e}");

    let bad = dir.path().join("bad.flow");
    fs::write(&bad, [0xff, 0xfe, 0x00]).unwrap();
    let e = Project::load(std::slice::from_ref(&bad)).unwrap_err();
    assert!(matches!(e.reason, LoadErrorReason::NotUtf8));
    let _: &dyn std::error::Error = &e;
}

const MSG: &str = "let shop = \"The Shop\"\nmessage hello(name: string) {\n  channel email\n  subject \"Hi\"\n  body template \"mail/hello.html\"\n}\nflow f {\n  trigger order_completed\n  send hello(\"x\")\n}\n";

#[test]
fn templates_are_loaded_relative_to_the_flow_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("mail")).unwrap();
    fs::write(
        root.join("mail/hello.html"),
        "Hi {{ name }} from {{ shop }}, {{ profile.first_name }}",
    )
    .unwrap();
    fs::write(root.join("a.flow"), MSG).unwrap();
    let p = Project::load(&[root.to_path_buf()]).unwrap();
    let a = check(&p);
    assert!(a.diagnostics.is_empty(), "{:?}", a.diagnostics);

    // An unknown variable is reported inside the template, at the variable.
    fs::write(root.join("mail/hello.html"), "Hi {{ nam }}").unwrap();
    let p = Project::load(&[root.join("a.flow")]).unwrap();
    let a = check(&p);
    let d = a
        .diagnostics
        .iter()
        .find(|d| d.code.id == "E0406")
        .expect("E0406");
    let file = p.sources.get(d.primary.file);
    assert!(file.path.ends_with("hello.html"), "{}", file.path);
    assert_eq!(&file.text[d.primary.span.range()], "nam");
    assert_eq!(d.help.as_deref(), Some("did you mean `name`?"));

    // A syntax error points into the template.
    fs::write(root.join("mail/hello.html"), "Hi {{ name ").unwrap();
    let p = Project::load(&[root.join("a.flow")]).unwrap();
    let a = check(&p);
    let d = a
        .diagnostics
        .iter()
        .find(|d| d.code.id == "E0407")
        .expect("E0407");
    assert!(p.sources.get(d.primary.file).path.ends_with("hello.html"));

    // In-memory files resolve templates next to their path on disk.
    fs::write(root.join("mail/hello.html"), "Hi {{ name }}").unwrap();
    let path = root.join("memory.flow").display().to_string();
    let p = Project::from_sources(vec![(path, MSG.to_string())]);
    assert!(check(&p).diagnostics.iter().all(|d| d.code.id != "E0405"));
    // ... and E0405 when there is no such file.
    let p = Project::from_sources(vec![("nowhere/x.flow".into(), MSG.to_string())]);
    assert!(check(&p).diagnostics.iter().any(|d| d.code.id == "E0405"));
}

/// The error codes `check` reports for a message whose body is `template "PATH"`,
/// in a project at `root` with the flow file in `root/flows`.
fn template_codes(root: &std::path::Path, path: &str) -> Vec<&'static str> {
    let flow = MSG.replace("mail/hello.html", path);
    fs::write(root.join("flows/a.flow"), flow).unwrap();
    let p = Project::load(&[root.to_path_buf()]).unwrap();
    let a = check(&p);
    // A refused template is never read, so its text cannot reach a bundle.
    for (_, f) in p.sources.iter() {
        assert!(!f.text.contains("hunter2"), "the secret was loaded");
    }
    a.diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.code.id)
        .collect()
}

#[test]
fn templates_outside_the_project_are_refused_with_e0409() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shop");
    fs::create_dir_all(root.join("flows")).unwrap();
    fs::create_dir_all(root.join("mail")).unwrap();
    fs::write(root.join("nudge.toml"), "").unwrap();
    fs::write(root.join("mail/hello.html"), "Hi {{ name }}").unwrap();
    // A secret beside the project, which no template may reach.
    fs::write(dir.path().join("secret.txt"), "ADMIN_TOKEN=hunter2").unwrap();

    // Inside the project, `..` back up to the project's root is fine.
    assert_eq!(template_codes(&root, "../mail/hello.html"), [] as [&str; 0]);
    // An absolute path, even to a file inside the project.
    let absolute = root.join("mail/hello.html").display().to_string();
    assert_eq!(template_codes(&root, &absolute), ["E0409"]);
    assert_eq!(template_codes(&root, "/etc/hostname"), ["E0409"]);
    assert_eq!(template_codes(&root, "/proc/self/environ"), ["E0409"]);
    // `..` escapes, existing or not.
    assert_eq!(template_codes(&root, "../../secret.txt"), ["E0409"]);
    assert_eq!(
        template_codes(&root, "../../../../../../../../etc/passwd"),
        ["E0409"]
    );
    assert_eq!(
        template_codes(&root, "./../mail/../../secret.txt"),
        ["E0409"]
    );
    // A symlink inside the project that leads outside it: to a file, or
    // through a linked directory.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("mail/leak.html"))
            .unwrap();
        assert_eq!(template_codes(&root, "../mail/leak.html"), ["E0409"]);
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        assert_eq!(template_codes(&root, "../up/secret.txt"), ["E0409"]);
        // A symlink that stays inside the project is fine.
        std::os::unix::fs::symlink(root.join("mail/hello.html"), root.join("mail/alias.html"))
            .unwrap();
        assert_eq!(template_codes(&root, "../mail/alias.html"), [] as [&str; 0]);
    }
    // A missing file inside the project is still E0405.
    assert_eq!(template_codes(&root, "../mail/nope.html"), ["E0405"]);
}

#[test]
fn without_a_nudge_toml_the_flow_files_directory_is_the_project() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("loose");
    fs::create_dir_all(root.join("flows")).unwrap();
    fs::create_dir_all(root.join("mail")).unwrap();
    fs::write(root.join("mail/hello.html"), "Hi {{ name }}").unwrap();
    // No nudge.toml: `flows/` alone is the project, so `../mail` is outside.
    assert_eq!(template_codes(&root, "../mail/hello.html"), ["E0409"]);
}

/// The diagnostics (code and help) of a project whose one message renders
/// `template` as its body, with an order parameter and a top-level let.
fn template_findings(template: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("nudge.toml"), "").unwrap();
    fs::write(root.join("body.html"), template).unwrap();
    fs::write(
        root.join("a.flow"),
        "let shop = \"The Shop\"\nmessage m(order: order_completed, name: string) {\n  channel email\n  subject \"Hi\"\n  body template \"body.html\"\n}\nflow f {\n  trigger order_completed\n  send m(trigger, \"x\")\n}\n",
    )
    .unwrap();
    let p = Project::load(&[root.to_path_buf()]).unwrap();
    check(&p)
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| (d.code.id.to_string(), d.help.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn template_paths_are_checked_against_parameters_profile_records_and_loops() {
    let clean = "{{ shop }}: {{ profile.first_name | default(name) | title }} \
                 {{ order.order_id }} {{ order.total }} {{ name.upper() }} \
                 {% for p in order.products %}{{ p.name or p.product_id }} \
                 {{ loop.index }}{% endfor %} {{ 'profile.nope' }}";
    assert_eq!(template_findings(clean), []);
    let finding = |code: &str, help: &str| vec![(code.to_string(), help.to_string())];
    assert_eq!(
        template_findings("{{ profile.frist_name }}"),
        finding("E0410", "did you mean `first_name`?")
    );
    assert_eq!(
        template_findings("{{ order.totl }}"),
        finding("E0410", "did you mean `total`?")
    );
    assert_eq!(
        template_findings("{% for p in order.products %}{{ p.nmae }}{% endfor %}"),
        finding("E0410", "did you mean `name`?")
    );
    assert_eq!(
        template_findings("{{ order.order_id.first }}"),
        finding("E0410", "remove it from the template, or declare the field")
    );
    assert_eq!(
        template_findings("{{ name | uper }}"),
        finding("E0411", "did you mean `upper`?")
    );
    // Once the loop ends, its variable is out of scope again.
    assert_eq!(
        template_findings("{% for p in order.products %}{% endfor %}{{ p.x }}")[0].0,
        "E0406"
    );
}

const EDITOR: &str = "// Customers who spent a lot.\n// Used for perks.\nsegment big = profile.total_spent > $500\nmessage hi(name: string) {\n  channel email\n  subject \"Hi {name}\"\n  body \"x\"\n}\nflow f {\n  trigger order_completed\n  if big {\n    send hi(trigger.order_id)\n  }\n}\n";

#[test]
fn editor_queries_find_symbols_definitions_references_and_types() {
    let p = Project::from_sources(vec![("a.flow".into(), EDITOR.into())]);
    let a = check(&p);
    assert!(a.diagnostics.is_empty(), "{:?}", a.diagnostics);
    let file = p.user_files().next().unwrap();
    let at = |needle: &str, nth: usize| -> u32 {
        EDITOR
            .match_indices(needle)
            .nth(nth)
            .map(|(i, _)| i as u32)
            .unwrap()
    };

    let big = a
        .symbol_at(file, at("big", 1) + 1)
        .expect("the use of `big`");
    let sym = a.symbol(big).unwrap();
    assert_eq!(sym.kind, SymbolKind::Segment);
    assert_eq!(
        sym.doc.as_deref(),
        Some("Customers who spent a lot.\nUsed for perks.")
    );
    let def = a.definition(big).unwrap();
    assert_eq!(def.span.start, at("big", 0));
    let refs = a.references(big);
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].span.start, at("big", 1));

    // A field of a stdlib event resolves into the stdlib.
    let order_id = a.symbol_at(file, at("order_id", 0) + 2).expect("order_id");
    let def = a.definition(order_id).unwrap();
    assert!(p.sources.get(def.file).path.starts_with("<stdlib>/"));

    assert_eq!(
        a.type_at(file, at("trigger.order_id", 0) + 12).as_deref(),
        Some("string")
    );
    assert_eq!(
        a.type_at(file, at("trigger", 1) + 1).as_deref(),
        Some("order_completed")
    );
    assert_eq!(a.type_at(file, at("$500", 0)).as_deref(), Some("money"));

    let names: Vec<_> = a
        .symbols_in(file)
        .iter()
        .map(|(_, s)| s.name.clone())
        .collect();
    assert_eq!(names, vec!["big", "hi", "name", "f"]);
    let hi = a
        .symbols_in(file)
        .into_iter()
        .find(|(_, s)| s.name == "hi")
        .unwrap()
        .1;
    assert_eq!(hi.detail, "message hi(name: string)");

    // Lowering reads the recorded resolution and types.
    let use_at = nudge_diagnostics::FileSpan::new(
        file,
        nudge_diagnostics::Span::new(at("big", 1) as usize, at("big", 1) as usize + 3),
    );
    assert_eq!(a.resolution(use_at), Some(big));
    assert!(a.expr_type(use_at).is_some());
}

#[test]
fn diagnostics_are_sorted_by_file_then_position() {
    let p = Project::from_sources(vec![
        ("b.flow".into(), "let y = nope2\nlet x = nope1\n".into()),
        ("a.flow".into(), "let z = nope3\n".into()),
    ]);
    let a = check(&p);
    let keys: Vec<_> = a
        .diagnostics
        .iter()
        .map(|d| (d.primary.file, d.primary.span.start))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), 3);
}

#[test]
fn load_accepts_explicit_files() {
    let dir = tempfile::tempdir().unwrap();
    let f: PathBuf = dir.path().join("one.flow");
    fs::write(&f, "let a = 1\n").unwrap();
    let p = Project::load(std::slice::from_ref(&f)).unwrap();
    assert_eq!(p.user_files().count(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn check_never_panics_on_arbitrary_text(src in "\\PC{0,300}") {
        let _ = check(&Project::from_sources(vec![("a.flow".into(), src)]));
    }

    #[test]
    fn check_never_panics_on_mangled_programs(cut in 0usize..400, len in 0usize..40, insert in "[a-z{}()\"$.?:=<>!%, \n0-9]{0,6}") {
        let mut src = EDITOR.to_string();
        let start = cut.min(src.len());
        let end = (start + len).min(src.len());
        if src.is_char_boundary(start) && src.is_char_boundary(end) {
            src.replace_range(start..end, &insert);
        }
        let _ = check(&Project::from_sources(vec![("a.flow".into(), src)]));
    }
}
