//! `kinglet bench`: host latency of every example model, one thread, batch 1, in one process:
//! Kinglet int8 with the best SIMD kernels of this CPU, Kinglet with the reference loop forced,
//! and tract running the float ONNX. `bench/run.sh` adds ONNX Runtime (Python) and the
//! Cortex-M4 figures and writes the README's benchmark table.
//!
//! What one timed call is, for every engine: float input in, float output out (Kinglet
//! quantizes the input, runs `Session::invoke` — which resets the recurrent state — and
//! dequantizes every output; tract builds its input tensor and runs the optimized plan). Calls
//! cycle over the first [`SAMPLES`] samples of the model's `test.npy`.
//!
//! Timing: each call is timed alone with `Instant` (resolution ~20 ns against calls of 10 µs
//! and more); the engines take turns in [`ROUNDS`] rounds, each a short warm-up and then calls
//! for a fixed time slice, so a burst of load from other processes on this shared machine hits
//! every engine alike; the report is the median and 90th percentile of all timed calls. This
//! is not criterion: criterion reports a bootstrapped mean per iteration of batched calls,
//! while the table needs per-call medians measured the same way as the ONNX Runtime script
//! (which cannot use criterion), in one process with tract. `cargo bench -p kinglet --bench
//! models` is the criterion view of Kinglet alone.

use crate::{npy, oracle::TractModel, table};
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Test samples the timed calls cycle over.
pub const SAMPLES: usize = 32;
/// Rounds in which the engines take turns.
pub const ROUNDS: usize = 5;

/// Options of one benchmark run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Folder of the example models (`fixtures*` folders are skipped).
    pub dir: PathBuf,
    /// Only these model folders (all when empty).
    pub only: Vec<String>,
    /// Timed time per engine and round.
    pub slice: Duration,
    /// Skip the reference path (it is slow on the Transformer models).
    pub no_reference: bool,
}

/// Latency statistics of one engine on one model, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median of all timed calls.
    pub median_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// Fastest call.
    pub min_us: f64,
    /// Timed calls.
    pub runs: usize,
}

/// One model's row.
#[derive(Debug, Clone, Serialize)]
pub struct ModelBench {
    /// Folder name under `models/`.
    pub name: String,
    /// The ONNX input shape the samples were run in.
    pub input_shape: Vec<usize>,
    /// `model.kgl` bytes.
    pub kgl_bytes: u64,
    /// `model.onnx` bytes.
    pub onnx_bytes: u64,
    /// Arena bytes of the int8 model.
    pub arena_bytes: usize,
    /// Multiply-accumulates per inference (FC, recurrent and attention ops).
    pub macs: u64,
    /// Kinglet int8, best SIMD level.
    pub kinglet_simd: Latency,
    /// Kinglet int8, reference loop forced (`None` with `--no-reference`).
    pub kinglet_reference: Option<Latency>,
    /// tract 0.23, float32, the same ONNX.
    pub tract: Latency,
    /// Largest |Kinglet − tract| over output 0 of the timed samples, in output units (a sanity
    /// check that both ran the same model, not an accuracy figure).
    pub max_abs_diff_vs_tract: f64,
}

/// The whole report (`kinglet bench --json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The SIMD level Kinglet's kernels used (`avx512-vnni`, `avx2`, …).
    pub isa: String,
    /// Timed slice per engine and round, in milliseconds.
    pub slice_ms: u64,
    /// Rounds.
    pub rounds: usize,
    /// Per model.
    pub models: Vec<ModelBench>,
}

/// The model folders of `dir` that hold `model.kgl`, `model.onnx` and `test.npy`, sorted.
pub fn model_dirs(dir: &Path, only: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let p = e?.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name == "fixtures" || name.starts_with("fixtures_") {
            continue;
        }
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        if ["model.kgl", "model.onnx", "test.npy"]
            .iter()
            .all(|f| p.join(f).is_file())
        {
            out.push(p);
        }
    }
    out.sort();
    if let Some(missing) = only
        .iter()
        .find(|o| !out.iter().any(|p| p.ends_with(o.as_str())))
    {
        bail!(
            "{}/{missing} has no model.kgl, model.onnx and test.npy",
            dir.display()
        );
    }
    Ok(out)
}

fn stats(mut t: Vec<f64>) -> Latency {
    t.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        let i = ((t.len() as f64 - 1.0) * q).round() as usize;
        t.get(i).copied().unwrap_or(f64::NAN)
    };
    Latency {
        median_us: at(0.5),
        p90_us: at(0.9),
        min_us: at(0.0),
        runs: t.len(),
    }
}

/// Calls `f(i)` for a warm-up (a fifth of `slice`, at least 3 calls), then for `slice` (at
/// least 10 calls), timing each call; appends the times (µs).
fn time_slice(
    slice: Duration,
    times: &mut Vec<f64>,
    mut f: impl FnMut(usize) -> Result<()>,
) -> Result<()> {
    let warm = Instant::now();
    let mut i = 0;
    while warm.elapsed() < slice / 5 || i < 3 {
        f(i)?;
        i += 1;
    }
    let start = Instant::now();
    let mut timed = 0;
    while start.elapsed() < slice || timed < 10 {
        let t0 = Instant::now();
        f(i)?;
        times.push(t0.elapsed().as_secs_f64() * 1e6);
        i += 1;
        timed += 1;
    }
    Ok(())
}

/// Kinglet's float-in, float-out call: one session, made once (which prepares the recurrent
/// ops' operands when the arena has room for them, `Model::prepared_bytes`) and reused, as an
/// application would.
struct Kinglet<'m, 'a> {
    model: &'m kinglet::Model<'m>,
    session: kinglet::Session<'m, 'a>,
    out: Vec<Vec<f32>>,
}

impl<'m, 'a> Kinglet<'m, 'a> {
    /// `arena`: at least `arena_bytes() + prepared_bytes()` long.
    fn new(model: &'m kinglet::Model<'m>, arena: &'a mut [u8]) -> Result<Self> {
        let out = (0..model.n_outputs())
            .map(|i| {
                model
                    .output(i)
                    .map(|o| vec![0f32; o.len()])
                    .ok_or_else(|| anyhow!("output {i} missing"))
            })
            .collect::<Result<_>>()?;
        let session = kinglet::Session::new(model, arena).map_err(|e| anyhow!("{e}"))?;
        Ok(Kinglet {
            model,
            session,
            out,
        })
    }

    fn run(&mut self, x: &[f32]) -> Result<()> {
        let (m, s) = (self.model, &mut self.session);
        let input = m
            .input(0)
            .ok_or_else(|| anyhow!("the model has no input"))?;
        input.quantize(x, s.input_mut(0).map_err(|e| anyhow!("{e}"))?);
        s.invoke().map_err(|e| anyhow!("{e}"))?;
        for (i, y) in self.out.iter_mut().enumerate() {
            let info = m.output(i).ok_or_else(|| anyhow!("output {i} missing"))?;
            info.dequantize(s.output(i).map_err(|e| anyhow!("{e}"))?, y);
        }
        Ok(())
    }
}

/// Benchmarks one model folder.
pub fn bench_model(dir: &Path, opts: &Options) -> Result<ModelBench> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_string();
    let onnx = dir.join("model.onnx");
    let kgl = std::fs::read(dir.join("model.kgl"))
        .with_context(|| format!("cannot read {}/model.kgl", dir.display()))?;
    let model = kinglet::Model::parse(&kgl)
        .map_err(|e| anyhow!("{}/model.kgl: invalid model file: {e}", dir.display()))?;
    let imported = crate::import::import(&onnx, None)
        .with_context(|| format!("importing {}", onnx.display()))?;
    let g = &imported.graph;
    let input = g
        .inputs
        .first()
        .copied()
        .ok_or_else(|| anyhow!("{}: no input", onnx.display()))?;
    let shape = g.values[input].shape.clone();
    let test = npy::read_f32(&dir.join("test.npy"))?;
    crate::calibrate::check_sample_shape(&test, &shape, "test.npy")?;
    let n = test.samples().min(SAMPLES);
    if n == 0 {
        bail!("{}/test.npy has no samples", dir.display());
    }
    let tract = TractModel::load(&onnx, &shape, imported.input_f16)?;
    let mut arena = vec![0u8; model.arena_bytes() + model.prepared_bytes()];
    let mut k = Kinglet::new(&model, &mut arena)?;

    // Sanity: both engines run the same model on the timed samples.
    let mut max_diff = 0f64;
    for s in 0..n {
        let f = tract.run(test.sample(s))?;
        k.run(test.sample(s))?;
        let (f, q) = (&f[0], &k.out[0]);
        if f.len() != q.len() {
            bail!(
                "{name}: tract output 0 has {} values, Kinglet {}",
                f.len(),
                q.len()
            );
        }
        for (a, b) in f.iter().zip(q) {
            max_diff = max_diff.max((*a as f64 - *b as f64).abs());
        }
    }

    let (mut t_simd, mut t_ref, mut t_tract) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        kinglet::kernels::force_reference(false);
        time_slice(opts.slice, &mut t_simd, |i| k.run(test.sample(i % n)))?;
        if !opts.no_reference {
            kinglet::kernels::force_reference(true);
            let r = time_slice(opts.slice, &mut t_ref, |i| k.run(test.sample(i % n)));
            kinglet::kernels::force_reference(false);
            r?;
        }
        time_slice(opts.slice, &mut t_tract, |i| {
            tract.run(test.sample(i % n)).map(|_| ())
        })?;
    }
    let onnx_bytes = std::fs::metadata(&onnx)?.len();
    Ok(ModelBench {
        name,
        input_shape: shape,
        kgl_bytes: kgl.len() as u64,
        onnx_bytes,
        arena_bytes: model.arena_bytes(),
        macs: table::counts(&model)?.macs,
        kinglet_simd: stats(t_simd),
        kinglet_reference: (!opts.no_reference).then(|| stats(t_ref)),
        tract: stats(t_tract),
        max_abs_diff_vs_tract: max_diff,
    })
}

/// Benchmarks every model folder; `progress` receives each finished row.
pub fn run(opts: &Options, mut progress: impl FnMut(&ModelBench)) -> Result<Report> {
    let mut models = Vec::new();
    for dir in model_dirs(&opts.dir, &opts.only)? {
        let m =
            bench_model(&dir, opts).with_context(|| format!("benchmarking {}", dir.display()))?;
        progress(&m);
        models.push(m);
    }
    Ok(Report {
        isa: kinglet::kernels::best_isa().name().to_string(),
        slice_ms: opts.slice.as_millis() as u64,
        rounds: ROUNDS,
        models,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn stats_are_nearest_rank() {
        let l = stats(vec![5.0, 1.0, 3.0]);
        assert_eq!(
            (l.min_us, l.median_us, l.p90_us, l.runs),
            (1.0, 3.0, 5.0, 3)
        );
        let l = stats((1..=11).map(f64::from).collect());
        assert_eq!((l.median_us, l.p90_us), (6.0, 10.0));
    }

    #[test]
    fn model_dirs_skip_fixtures_and_name_missing_models() {
        let dirs = model_dirs(&repo().join("models"), &[]).expect("models/");
        assert!(!dirs.is_empty());
        assert!(dirs.iter().all(|d| {
            let n = d.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !n.starts_with("fixtures") && d.join("model.kgl").is_file()
        }));
        let e = model_dirs(&repo().join("models"), &["no_such_model".into()]).unwrap_err();
        assert!(e.to_string().contains("no_such_model"), "{e}");
    }

    /// One fixture end to end with tiny slices: every engine timed, Kinglet and tract on the
    /// same model (the comparison the table rests on), no timing asserted.
    #[test]
    fn benches_a_fixture() {
        let dir = repo().join("models/fixtures/gru_legacy_o17");
        let opts = Options {
            dir: dir.clone(),
            only: vec![],
            slice: Duration::from_millis(2),
            no_reference: false,
        };
        let m = bench_model(&dir, &opts).expect("bench");
        assert_eq!(m.name, "gru_legacy_o17");
        for l in [&m.kinglet_simd, &m.tract] {
            assert!(l.runs >= 10 * ROUNDS && l.min_us > 0.0 && l.median_us <= l.p90_us);
        }
        assert!(m
            .kinglet_reference
            .as_ref()
            .is_some_and(|l| l.runs >= 10 * ROUNDS));
        assert!(m.max_abs_diff_vs_tract.is_finite());
        assert!(m.macs > 0 && m.arena_bytes > 0 && m.kgl_bytes > 0 && m.onnx_bytes > 0);
    }
}
