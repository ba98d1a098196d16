//! Converting the answers about one long line to the protocol's UTF-16
//! positions: the capped diagnostics and the semantic tokens of a file whose
//! second line is a list of names, at two lengths. Linear work takes twice
//! as long on the line twice as long; a recount of the line per token would
//! take four times as long.
//! Run with `cargo bench -p nudge-lsp --bench long_line`.

use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use nudge_lsp::Snapshot;
use nudge_lsp::semantic;
use nudge_lsp::server::{MAX_DIAGNOSTICS, capped_diagnostics, encode_tokens};

/// A file whose second line lists a known constant and `names` unknown
/// names, with an `é` in a comment first so that the line has a wide
/// character to index.
fn long_line(names: usize) -> String {
    let list: Vec<String> = (0..names).map(|i| format!("a, x{i}")).collect();
    format!("let a = 1 // é\nlet all = [{}]\n", list.join(", "))
}

fn bench_long_line(c: &mut Criterion) {
    let mut group = c.benchmark_group("convert one long line");
    for names in [12_500usize, 25_000] {
        let text = long_line(names);
        let path = PathBuf::from("/bench/a.flow");
        let snap = Snapshot::analyse(vec![(path.clone(), text.clone())], Path::new("/stdlib"));
        let file = snap.file_id(&path).unwrap();
        let tokens = semantic::semantic_tokens(&snap, file);
        assert!(tokens.len() > names, "every name is a token");
        let diags = snap.diagnostics_by_path().remove(&path).unwrap();
        assert!(diags.len() >= names, "every unknown name is an error");
        eprintln!("{} KB line: {} tokens", text.len() / 1024, tokens.len());
        group.bench_function(format!("{} KB", text.len() / 1024), |b| {
            b.iter(|| {
                let published = capped_diagnostics(&snap, snap.lines(file), diags.clone());
                let encoded = encode_tokens(snap.lines(file), &tokens);
                assert_eq!(published.len(), MAX_DIAGNOSTICS + 1);
                encoded.len()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench_long_line
}
criterion_main!(benches);
