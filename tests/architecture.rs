//! The crate graph is the one ARCHITECTURE.md describes: each library's
//! workspace dependencies are exactly those its "Depends on" names, so a
//! new edge (the engine reaching for the compiler, the VM for the runtime)
//! fails here and the document changes with the code.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Each library crate and the workspace crates it may use (normal
/// dependencies; tests and benches may use more).
const LAYERS: &[(&str, &[&str])] = &[
    ("nudge-diagnostics", &[]),
    ("nudge-project", &["nudge-diagnostics"]),
    ("nudge-syntax", &["nudge-diagnostics"]),
    ("nudge-stdlib", &[]),
    ("nudge-bytecode", &["nudge-stdlib"]),
    (
        "nudge-compiler",
        &[
            "nudge-bytecode",
            "nudge-diagnostics",
            "nudge-project",
            "nudge-stdlib",
            "nudge-syntax",
        ],
    ),
    ("nudge-fmt", &["nudge-diagnostics", "nudge-syntax"]),
    ("nudge-vm", &["nudge-bytecode", "nudge-stdlib"]),
    ("nudge-channels", &["nudge-bytecode"]),
    (
        "nudge-runtime",
        &["nudge-bytecode", "nudge-channels", "nudge-vm"],
    ),
    (
        "nudge-store",
        &["nudge-bytecode", "nudge-channels", "nudge-runtime"],
    ),
    (
        "nudge-host",
        &[
            "nudge-bytecode",
            "nudge-channels",
            "nudge-diagnostics",
            "nudge-project",
            "nudge-runtime",
            "nudge-store",
        ],
    ),
    ("nudge-report", &["nudge-runtime"]),
    (
        "nudge-cluster",
        &[
            "nudge-bytecode",
            "nudge-channels",
            "nudge-host",
            "nudge-runtime",
            "nudge-store",
        ],
    ),
    (
        "nudge-testing",
        &[
            "nudge-bytecode",
            "nudge-channels",
            "nudge-compiler",
            "nudge-diagnostics",
            "nudge-runtime",
            "nudge-syntax",
            "nudge-vm",
        ],
    ),
    ("nudge-gen", &[]),
    (
        "nudge-lsp",
        &[
            "nudge-compiler",
            "nudge-diagnostics",
            "nudge-fmt",
            "nudge-project",
            "nudge-stdlib",
            "nudge-syntax",
            "nudge-testing",
        ],
    ),
    (
        "nudge-test-support",
        &["nudge-compiler", "nudge-diagnostics"],
    ),
];

/// Each workspace package's normal dependencies on other workspace crates,
/// as `cargo metadata` reads them from the manifests.
fn workspace_graph() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|d| names.contains(d))
                .map(str::to_string)
                .collect();
            (p["name"].as_str().expect("name").to_string(), deps)
        })
        .collect()
}

#[test]
fn every_library_depends_on_exactly_the_crates_architecture_md_names() {
    let graph = workspace_graph();
    let mut wrong = Vec::new();
    for (name, deps) in &graph {
        if name == "nudge" {
            continue; // The CLI is the one crate that may use every library.
        }
        let Some((_, allowed)) = LAYERS.iter().find(|(n, _)| n == name) else {
            wrong.push(format!(
                "{name} is not in ARCHITECTURE.md's code map (nor in this test)"
            ));
            continue;
        };
        let allowed: BTreeSet<String> = allowed.iter().map(|s| s.to_string()).collect();
        if *deps != allowed {
            let extra: Vec<_> = deps.difference(&allowed).collect();
            let gone: Vec<_> = allowed.difference(deps).collect();
            wrong.push(format!(
                "{name}: uses {extra:?} beyond its layer; no longer uses {gone:?}"
            ));
        }
    }
    for (name, _) in LAYERS {
        if !graph.contains_key(*name) {
            wrong.push(format!("{name} is named here but is not in the workspace"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the crate graph and ARCHITECTURE.md disagree; change both together:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn architecture_md_names_every_library_crate() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md");
    for (name, _) in LAYERS {
        assert!(
            doc.contains(&format!("### `crates/{name}`")),
            "ARCHITECTURE.md has no section for crates/{name}"
        );
    }
}
