//! Every committed example model (`models/<name>/model.kgl`, the rows of the README's benchmark
//! table; `models/fixtures*` are covered by the golden test) end to end — `Session::invoke` on
//! the golden input — with the best SIMD kernel of this CPU and with the reference loop forced.
//! `KINGLET_BENCH_MODELS=kws_gru,vit_mnist` limits the set.
//!
//! `cargo bench -p kinglet --bench models`; for a profile,
//! `perf record -g target/release/deps/models-* --bench --profile-time 5 model/kws_gru`.
//! The README's table (Kinglet next to tract and ONNX Runtime, float in / float out) comes from
//! `bash bench/run.sh` instead.

use criterion::{criterion_group, criterion_main, Criterion};
use kinglet::golden::InputGen;
use kinglet::kernels::{best_isa, force_reference};
use kinglet::{Model, Session};
use std::path::PathBuf;

fn example_models() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let only: Vec<String> = std::env::var("KINGLET_BENCH_MODELS")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("models/")
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let name = dir.file_name()?.to_str()?.to_string();
            if name.starts_with("fixtures") || !(only.is_empty() || only.contains(&name)) {
                return None;
            }
            let bytes = std::fs::read(dir.join("model.kgl")).ok()?;
            Some((name, bytes))
        })
        .collect();
    out.sort();
    out
}

fn models(c: &mut Criterion) {
    let simd = best_isa().name();
    for (name, bytes) in example_models() {
        let model = Model::parse(&bytes).expect("valid model file");
        let mut arena = vec![0u8; model.arena_bytes() + model.prepared_bytes()];
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
