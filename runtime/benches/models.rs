//! Every committed fixture model (`models/fixtures/*/model.kgl`) end to end — `Session::invoke`
//! on the golden input — with the best SIMD kernel of this CPU and with the reference loop
//! forced.
//!
//! `cargo bench -p kinglet --bench models`

use criterion::{criterion_group, criterion_main, Criterion};
use kinglet::golden::InputGen;
use kinglet::kernels::{best_isa, force_reference};
use kinglet::{Model, Session};
use std::path::PathBuf;

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("models/fixtures")
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let bytes = std::fs::read(dir.join("model.kgl")).ok()?;
            Some((dir.file_name()?.to_str()?.to_string(), bytes))
        })
        .collect();
    out.sort();
    out
}

fn models(c: &mut Criterion) {
    let simd = best_isa().name();
    for (name, bytes) in fixtures() {
        let model = Model::parse(&bytes).expect("valid fixture");
        let mut arena = vec![0u8; model.arena_bytes()];
        let mut s = Session::new(&model, &mut arena).expect("session");
        let mut gen = InputGen::new(1);
        for i in 0..model.n_inputs() {
            gen.fill(s.input_mut(i).expect("input"));
        }
        let mut g = c.benchmark_group(format!("model/{name}"));
        for (label, forced) in [(simd, false), ("reference", true)] {
            force_reference(forced);
            g.bench_function(label, |b| b.iter(|| s.invoke().expect("invoke")));
        }
        force_reference(false);
        g.finish();
    }
}

criterion_group!(benches, models);
criterion_main!(benches);
