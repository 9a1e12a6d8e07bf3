//! `kinglet`: quantize float ONNX models to Kinglet's int8 model file, validate them against
//! tract, run and inspect them.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use kinglet_quantizer::{npy, validate, write_atomic};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "kinglet",
    version,
    about = "Int8 models for microcontrollers: quantize, validate against tract, run, inspect."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Quantize a float ONNX model into an int8 model file, calibrating on real samples.
    Quantize {
        /// Float ONNX model (float32 or float16), as exported by torch.onnx.export.
        model: PathBuf,
        /// Calibration data: float32 .npy `[N, ...]`, each sample in the model's input shape.
        #[arg(long)]
        calib: PathBuf,
        /// Output model file (.kgl).
        #[arg(short, long)]
        output: PathBuf,
        /// Input shape for models with dynamic dims, e.g. `1,49,40`.
        #[arg(long, value_delimiter = ',')]
        input_shape: Option<Vec<usize>>,
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
        /// How activation ranges are chosen: `minmax` (never clip), `mse` (per value, the
        /// shrink of the observed range with the least expected squared error), `percentile`
        /// or `percentile:P` (clip both tails at P, default 99.99). Recorded in the file.
        #[arg(long, default_value = "minmax")]
        calibration: kinglet_quantizer::calibrate::Method,
        /// How LSTM gate operands are stored: `int8` (row-major, every target's SIMD reads
        /// it) or `unit16` (int16, unit-major, interleaved for the Cortex-M DSP kernel: twice
        /// the LSTM weight bytes, 30 % fewer instructions per mnist_lstm inference on
        /// Cortex-M4, the same results; x86 and aarch64 narrow it back to int8 per call).
        #[arg(long, default_value = "int8", value_parser = ["int8", "unit16"])]
        lstm_layout: String,
        /// Skip dead-row elimination: by default, when the output reads only some rows (a
        /// CLS token), the row-wise ops before that selection run on those rows only (the
        /// same output bytes, less work). This flag keeps every op on all rows, for comparison.
        #[arg(long)]
        keep_dead_rows: bool,
    },
    /// Compare the int8 file (Kinglet) with the float ONNX (tract) on the same inputs.
    Validate {
        /// Float ONNX model.
        model: PathBuf,
        /// Int8 model file.
        kgl: PathBuf,
        /// Inputs: float32 .npy `[N, ...]`.
        #[arg(long)]
        data: PathBuf,
        /// Integer class labels `[N]` (or `[N, T]` for per-step outputs).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Regression targets `[N, ...]`, compared with output 0.
        #[arg(long)]
        targets: Option<PathBuf>,
        /// Use only the first N samples.
        #[arg(long)]
        limit: Option<usize>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Exit non-zero when the worst SQNR (dB) is below this.
        #[arg(long)]
        min_sqnr: Option<f64>,
        /// Exit non-zero when top-1 agreement is below this (0..1).
        #[arg(long)]
        min_agreement: Option<f64>,
        /// Per-layer SQNR (every int8 activation against the float graph) over the first N
        /// samples; 0 turns it off.
        #[arg(long, default_value_t = 32)]
        layer_samples: usize,
    },
    /// Run an int8 model file on float inputs (quantized on the way in, dequantized out).
    Run {
        /// Int8 model file.
        kgl: PathBuf,
        /// Inputs: float32 .npy `[N, ...]`.
        #[arg(long)]
        input: PathBuf,
        /// Output .npy (output 0, float32 `[N, ...]`).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Show a model file's ops, tensors, quantization and arena plan.
    Inspect {
        /// Int8 model file.
        kgl: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Keyword spotting on WAV files: whole clips, or streamed hop by hop with --stream.
    Kws(kinglet_quantizer::kws::KwsArgs),
    /// Quantize the bundled model, validate it against tract and run it.
    Demo {
        /// Folder with model.onnx, calib.npy, test.npy and labels.npy or targets.npy.
        #[arg(long, default_value = "models/kws_gru")]
        dir: PathBuf,
    },
    /// Compute log-mel features from 16 kHz WAV files (the runtime's front-end).
    Features(kinglet_quantizer::features::FeaturesArgs),
    /// Host latency of every example model: Kinglet SIMD, Kinglet reference, tract (float).
    /// `bench/run.sh` adds ONNX Runtime and writes the README's benchmark table.
    Bench {
        /// Folder of the example models (`fixtures*` folders are skipped).
        #[arg(long, default_value = "models")]
        dir: PathBuf,
        /// Only these model folders (comma-separated names).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Timed milliseconds per engine in each of the 5 rounds.
        #[arg(long, default_value_t = 200)]
        slice_ms: u64,
        /// Skip the reference path.
        #[arg(long)]
        no_reference: bool,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Validate every example model and rewrite the accuracy table in DIR/README.md.
    Table {
        /// Folder of the example models (`models/fixtures` is skipped).
        #[arg(long, default_value = "models")]
        dir: PathBuf,
    },
}

fn main() {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// `kinglet inspect m.kgl | head`: a reader that stops early closes our stdout, and `println!`
/// then panics with a backtrace. That is not an error of ours: exit quietly with the status a
/// shell gives a process killed by SIGPIPE (128 + 13), and leave every other panic as it was.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn read_file(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Quantize {
            model,
            calib,
            output,
            input_shape,
            json,
            calibration,
            lstm_layout,
            keep_dead_rows,
        } => {
            let calib = npy::read_f32(&calib)?;
            let q = kinglet_quantizer::quantize_model_rows(
                &model,
                &calib,
                input_shape.as_deref(),
                calibration,
                lstm_layout == "unit16",
                keep_dead_rows,
            )?;
            write_atomic(&output, &q.bytes)?;
            let parsed = kinglet::Model::parse(&q.bytes)
                .map_err(|e| anyhow!("internal: written file does not parse: {e}"))?;
            if json {
                let ops: Vec<_> = q
                    .program
                    .ops
                    .iter()
                    .map(|o| serde_json::json!({"name": o.name, "op": kinglet::op_name(o.opcode)}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "model_bytes": q.bytes.len(),
                        "arena_bytes": parsed.arena_bytes(),
                        "const_bytes": parsed.const_bytes(),
                        "streamable": q.program.streamable,
                        "ops": ops,
                    })
                );
            } else {
                println!(
                    "wrote {} ({} bytes; weights and tables {} bytes)",
                    output.display(),
                    q.bytes.len(),
                    parsed.const_bytes()
                );
                println!(
                    "arena: {} bytes (plan {} + 15 alignment; without reuse {} bytes)",
                    parsed.arena_bytes(),
                    q.plan_bytes,
                    q.naive_bytes
                );
                match &q.program.not_streamable_reason {
                    None => println!(
                        "streaming: yes, {} steps of {} bytes",
                        q.program.seq_len,
                        parsed.input(0).map_or(0, |t| t.nbytes()) / q.program.seq_len.max(1)
                    ),
                    Some(why) => println!("streaming: no ({why})"),
                }
                println!("#    op           node");
                for (i, o) in q.program.ops.iter().enumerate() {
                    println!("{:<4} {:<12} {}", i, kinglet::op_name(o.opcode), o.name);
                }
            }
        }
        Cmd::Validate {
            model,
            kgl,
            data,
            labels,
            targets,
            limit,
            json,
            min_sqnr,
            min_agreement,
            layer_samples,
        } => {
            let data = npy::read_f32(&data)?;
            let labels = labels.map(|p| npy::read_i64(&p)).transpose()?;
            let targets = targets.map(|p| npy::read_f32(&p)).transpose()?;
            let bytes = read_file(&kgl)?;
            let mut r = validate::validate(
                &model,
                &bytes,
                &data,
                labels.as_ref().map(|l| l.1.as_slice()),
                targets.as_ref(),
                limit,
            )?;
            if layer_samples > 0 {
                let n = limit.map_or(layer_samples, |l| l.min(layer_samples));
                r.layers = validate::layer_sqnr(&model, &bytes, &data, n)?;
            }
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("samples          {}", r.samples);
                println!("SQNR (worst)     {:.2} dB", r.sqnr_db);
                println!("relative MSE     {:.3e}", r.rel_mse);
                println!("top-1 agreement  {:.4}", r.top1_agreement);
                if let (Some(f), Some(q)) = (r.accuracy_float, r.accuracy_int8) {
                    println!(
                        "accuracy         float {:.2}%  int8 {:.2}%",
                        f * 100.0,
                        q * 100.0
                    );
                }
                if let (Some(f), Some(q)) = (r.mse_float, r.mse_int8) {
                    println!("MSE              float {f:.5}  int8 {q:.5}");
                }
                if let (Some(f), Some(q)) = (r.mae_float, r.mae_int8) {
                    println!("MAE              float {f:.5}  int8 {q:.5}");
                }
                println!(
                    "model / arena    {} / {} bytes",
                    r.model_bytes, r.arena_bytes
                );
                if !r.layers.is_empty() {
                    println!(
                        "per-layer SQNR, int8 against the float graph, first {} samples:",
                        layer_samples.min(r.samples)
                    );
                    println!(
                        "  {:>3}  {:<11} {:>9}  {:>8}  tensor",
                        "op", "kind", "elements", "SQNR dB"
                    );
                    for l in &r.layers {
                        println!(
                            "  {:>3}  {:<11} {:>9}  {:>8.2}  {}",
                            l.op, l.op_kind, l.elements, l.sqnr_db, l.tensor
                        );
                    }
                }
            }
            if let Some(m) = min_sqnr {
                if r.sqnr_db < m {
                    bail!("SQNR {:.2} dB is below --min-sqnr {m}", r.sqnr_db);
                }
            }
            if let Some(m) = min_agreement {
                if r.top1_agreement < m {
                    bail!(
                        "top-1 agreement {:.4} is below --min-agreement {m}",
                        r.top1_agreement
                    );
                }
            }
        }
        Cmd::Run { kgl, input, output } => {
            // Mapped read-only and parsed in place (page-aligned, so 16-aligned for SIMD).
            let bytes = kinglet_pi_kws::ModelFile::open(&kgl)?;
            let data = npy::read_f32(&input)?;
            let mut host = validate::HostModel::new(&bytes)?;
            let per = host.input_len();
            if data.sample_len() != per {
                bail!(
                    "{} has {} values per sample; the model input needs {per}",
                    input.display(),
                    data.sample_len()
                );
            }
            let mut out = Vec::new();
            let mut out_len = 0;
            for s in 0..data.samples() {
                let y = host.run(data.sample(s))?;
                out_len = y[0].len();
                out.extend_from_slice(&y[0]);
            }
            npy::write_f32(&output, &[data.samples(), out_len], &out)?;
            println!(
                "wrote {} ({} samples × {out_len})",
                output.display(),
                data.samples()
            );
        }
        Cmd::Inspect { kgl, json } => {
            let bytes = kinglet_pi_kws::ModelFile::open(&kgl)?;
            let m = kinglet::Model::parse(&bytes)
                .map_err(|e| anyhow!("{}: invalid model file: {e}", kgl.display()))?;
            inspect(&m, json);
        }
        Cmd::Demo { dir } => demo(&dir)?,
        Cmd::Kws(args) => kinglet_quantizer::kws::kws_cmd(args)?,
        Cmd::Features(args) => kinglet_quantizer::features::features_cmd(args)?,
        Cmd::Bench {
            dir,
            only,
            slice_ms,
            no_reference,
            json,
        } => bench(dir, only, slice_ms, no_reference, json)?,
        Cmd::Table { dir } => {
            let path = kinglet_quantizer::table::write_models_readme(&dir)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn bench(
    dir: PathBuf,
    only: Vec<String>,
    slice_ms: u64,
    no_reference: bool,
    json: Option<PathBuf>,
) -> Result<()> {
    use kinglet_quantizer::bench;
    let opts = bench::Options {
        dir,
        only,
        slice: std::time::Duration::from_millis(slice_ms),
        no_reference,
    };
    println!(
        "Kinglet kernels: {} (one thread, batch 1; median / p90 of {} rounds × {slice_ms} ms)",
        kinglet::kernels::best_isa().name(),
        bench::ROUNDS
    );
    println!(
        "{:<22} {:>14} {:>14} {:>14}",
        "model", "kinglet simd", "reference", "tract f32"
    );
    let fmt = |l: &bench::Latency| format!("{:.1}/{:.1}", l.median_us, l.p90_us);
    let report = bench::run(&opts, |m| {
        println!(
            "{:<22} {:>14} {:>14} {:>14}  µs",
            m.name,
            fmt(&m.kinglet_simd),
            m.kinglet_reference.as_ref().map_or("-".into(), fmt),
            fmt(&m.tract)
        );
    })?;
    if let Some(p) = json {
        write_atomic(&p, serde_json::to_string_pretty(&report)?.as_bytes())?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

fn inspect(m: &kinglet::Model<'_>, json: bool) {
    let tensors: Vec<_> = (0..m.n_tensors())
        .filter_map(|i| m.tensor(i))
        .map(|t| {
            serde_json::json!({
                "name": t.name(), "dtype": format!("{:?}", t.dtype()), "kind": format!("{:?}", t.kind()),
                "dims": &t.dims()[..t.rank()], "offset": t.offset(), "bytes": t.nbytes(),
                "scale": t.scale(), "zero_point": t.zero_point(),
            })
        })
        .collect();
    let ops: Vec<_> = (0..m.n_ops())
        .filter_map(|i| m.op(i))
        .map(|o| {
            serde_json::json!({
                "op": o.name(), "tensors": o.tensors().collect::<Vec<_>>(),
                "layout": if o.unit16() { "unit16" } else { "int8" },
            })
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "file_bytes": m.file_len(), "const_bytes": m.const_bytes(), "arena_bytes": m.arena_bytes(),
                "streamable": m.is_streamable(), "seq_len": m.seq_len(), "tensors": tensors, "ops": ops,
                "meta": kinglet_quantizer::meta(m).and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok()),
            })
        );
        return;
    }
    if let Some(meta) = kinglet_quantizer::meta(m) {
        println!("made by: {meta}");
    }
    println!(
        "file {} bytes, constants {} bytes, arena {} bytes, seq_len {}, streamable {}",
        m.file_len(),
        m.const_bytes(),
        m.arena_bytes(),
        m.seq_len(),
        m.is_streamable()
    );
    println!("\nops:");
    for (i, o) in ops.iter().enumerate() {
        let unit16 = o["layout"] == "unit16";
        println!(
            "  {i:<3} {:<12} tensors {}{}",
            o["op"].as_str().unwrap_or("?"),
            o["tensors"],
            if unit16 {
                "  (unit16 gate layout: int16 weights for the Cortex-M DSP kernel)"
            } else {
                ""
            }
        );
    }
    for o in (0..m.n_ops()).filter_map(|i| m.op(i)) {
        if o.opcode() == kinglet::format::OP_ATTENTION {
            let p: Vec<i32> = o.params().collect();
            let (tq, tk, heads) = (p[1] as usize, p[2] as usize, p[3] as usize);
            println!(
                "  attention op {}: scores need {} bytes of scratch (one row of {tk} i32); \
                 a naive plan holding T×T×heads i32 scores would need {} bytes",
                o.index(),
                tk * 4,
                tq * tk * heads * 4
            );
        }
    }
    println!("\ntensors:");
    println!(
        "  {:<3} {:<32} {:<5} {:<10} {:<18} {:>7} {:>7} {:>12} {:>5}",
        "#", "name", "dtype", "kind", "dims", "offset", "bytes", "scale", "zp"
    );
    for (i, t) in tensors.iter().enumerate() {
        println!(
            "  {i:<3} {:<32} {:<5} {:<10} {:<18} {:>7} {:>7} {:>12.6} {:>5}",
            t["name"].as_str().unwrap_or(""),
            t["dtype"].as_str().unwrap_or(""),
            t["kind"].as_str().unwrap_or(""),
            t["dims"].to_string(),
            t["offset"],
            t["bytes"],
            t["scale"].as_f64().unwrap_or(0.0),
            t["zero_point"]
        );
    }
}

fn demo(dir: &Path) -> Result<()> {
    let onnx = dir.join("model.onnx");
    println!("== quantize {}", onnx.display());
    let calib = npy::read_f32(&dir.join("calib.npy"))?;
    let q = kinglet_quantizer::quantize_model(&onnx, &calib, None)?;
    let out = dir.join("model.kgl");
    write_atomic(&out, &q.bytes)?;
    let model = kinglet::Model::parse(&q.bytes).map_err(|e| anyhow!("{e}"))?;
    println!(
        "   {} calibration samples -> {} ({} bytes, arena {} bytes)",
        calib.samples(),
        out.display(),
        q.bytes.len(),
        model.arena_bytes()
    );
    println!("== validate against tract");
    let test = npy::read_f32(&dir.join("test.npy"))?;
    let labels = dir.join("labels.npy");
    let labels = if labels.exists() {
        Some(npy::read_i64(&labels)?)
    } else {
        None
    };
    let targets = dir.join("targets.npy");
    let targets = if targets.exists() {
        Some(npy::read_f32(&targets)?)
    } else {
        None
    };
    let r = validate::validate(
        &onnx,
        &q.bytes,
        &test,
        labels.as_ref().map(|l| l.1.as_slice()),
        targets.as_ref(),
        None,
    )?;
    println!(
        "   {} test samples: SQNR {:.1} dB, top-1 agreement {:.3}",
        r.samples, r.sqnr_db, r.top1_agreement
    );
    if let (Some(f), Some(i)) = (r.accuracy_float, r.accuracy_int8) {
        println!(
            "   accuracy: float (tract) {:.2}%, int8 (Kinglet) {:.2}%",
            f * 100.0,
            i * 100.0
        );
    }
    if let (Some(f), Some(i)) = (r.mse_float, r.mse_int8) {
        println!("   MSE: float (tract) {f:.5}, int8 (Kinglet) {i:.5}");
    }
    let clips_dir = dir.join("clips");
    if clips_dir.is_dir() {
        let classes: Vec<String> = std::fs::read_to_string(dir.join("labels.txt"))
            .context("the model folder has clips/ but no labels.txt")?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let (mut n, mut ok) = (0, 0);
        for (ci, class) in classes.iter().enumerate() {
            let Ok(entries) = std::fs::read_dir(clips_dir.join(class)) else {
                continue;
            };
            let mut files: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for f in files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "wav"))
            {
                let pcm = kinglet_quantizer::features::read_wav_16k_mono(f)?;
                let (best, _) = kinglet_quantizer::kws::classify_clip(&q.bytes, &pcm)?;
                n += 1;
                ok += (best == ci) as usize;
            }
        }
        println!("== keyword spotting on {n} real clips (WAV → on-device front-end → int8 model)");
        println!(
            "   {ok} of {n} correct (see `kinglet kws --stream {} {}/clips/*/*.wav`)",
            out.display(),
            dir.display()
        );
    }
    println!("== run on the host (this build's kernels)");
    let mut host = validate::HostModel::new(&q.bytes)?;
    let mut times = Vec::new();
    for s in 0..test.samples().min(200) {
        let t0 = Instant::now();
        host.run(test.sample(s))?;
        times.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
    println!(
        "   median latency {median:.1} µs per inference over {} runs (this build, one thread)",
        times.len()
    );
    println!(
        "   model {} bytes, arena {} bytes",
        q.bytes.len(),
        model.arena_bytes()
    );
    Ok(())
}
