//! Compile throughput: `nudge check` (parse, resolve, type-check, lint) on a
//! generated project of realistic flows. Run with `cargo bench --bench check`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nudge_compiler::Project;

/// One block of declarations; `{n}` is replaced by the block's number.
const BLOCK: &str = r#"// Block {n}: a cart flow with the usual rules.
let threshold_{n} = $50.00
let cart_url_{n} = "https://shop.example/cart/{n}"

segment loyal_{n} = profile.orders_count > 3 and profile.total_spent >= threshold_{n}

message reminder_{n}(products: list<Product>, url: string) {
  channel email
  subject "{profile.first_name ?? "Hi"}, you left {len(products)} items behind"
  body "Your cart is saved: {url}"
}

message nudge_sms_{n}(url: string) {
  channel sms
  text "Still thinking it over? {url}"
}

flow cart_{n} {
  trigger checkout_started where event.value > $0
  entry once per 7d
  exit on order_completed
  suppress if profile.total_spent > $10000
  quiet hours 21:00 to 08:00
  cap email 1 per 16h
  goal order_completed within 5d

  wait 1h
  send reminder_{n}(trigger.products, cart_url_{n})
  let bought = wait for order_completed where event.order_id != "" within 1d
  if bought != none {
    exit
  }
  if loyal_{n} and any(trigger.products, p => p.price > threshold_{n}) {
    send nudge_sms_{n}(cart_url_{n})
  } else {
    wait 2h
    send reminder_{n}(filter(trigger.products, p => p.quantity > 1), cart_url_{n})
  }
  on exit {
    audience remove "cart_abandoners_{n}"
  }
}
"#;

/// A project of about `lines` lines, split into files of about 1,000 lines.
fn generate(lines: usize) -> Vec<(String, String)> {
    let block_lines = BLOCK.lines().count() + 1;
    let blocks = lines.div_ceil(block_lines);
    let per_file = 1000 / block_lines;
    let mut files = Vec::new();
    let mut text = String::new();
    for n in 0..blocks {
        text.push_str(&BLOCK.replace("{n}", &n.to_string()));
        text.push('\n');
        if (n + 1) % per_file == 0 || n + 1 == blocks {
            files.push((
                format!("gen/file_{}.flow", files.len()),
                std::mem::take(&mut text),
            ));
        }
    }
    files
}

fn bench_check(c: &mut Criterion) {
    let files = generate(100_000);
    let lines: usize = files.iter().map(|(_, t)| t.lines().count()).sum();
    let project = Project::from_sources(files);
    let analysis = nudge_compiler::check(&project);
    let errors: Vec<_> = analysis
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .take(3)
        .map(|d| d.title.clone())
        .collect();
    assert!(
        errors.is_empty(),
        "the generated project must be valid: {errors:?}"
    );

    let mut group = c.benchmark_group("check");
    group.sample_size(10);
    group.throughput(Throughput::Elements(lines as u64));
    group.bench_function(format!("{lines}_lines"), |b| {
        b.iter(|| nudge_compiler::check(&project))
    });
    group.finish();
}

criterion_group!(benches, bench_check);
criterion_main!(benches);
