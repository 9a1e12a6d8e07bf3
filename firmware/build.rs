//! Host-side build step.
//!
//! 1. Picks the board from the target (or the `nucleo-f446re` feature), copies its
//!    `memory/<board>.x` to `OUT_DIR/memory.x` for cortex-m-rt's `link.x`, and writes
//!    `board.rs` (board name, RAM size, arena capacity).
//! 2. `kws`: converts a few committed Speech Commands clips (16 kHz WAV) to raw little-endian
//!    i16 PCM for flash (`kws_clips.bin`), and computes on the host what the device must print:
//!    the streaming detections of `kinglet kws --stream` (runtime front-end hop by hop, `step`,
//!    posterior smoothing and threshold, `src/common.rs`), the hash of every step's int8
//!    output, and the few `exp` arguments where `libm::expf` differs from the host's `f32::exp`
//!    (`kws.rs`).
//! 3. `forecast`: rebuilds the ETTh1 `OT` series from the committed test windows of
//!    `models/forecast_gru`, encodes it as TMP117 `Temp_Result` register values for the replay
//!    I2C bus (`forecast_replay.bin`), and runs the device's computation on the host: z-score,
//!    quantize, `Session::run` every hour once 96 samples are in, MSE against the replayed
//!    truth (`forecast.rs`).
use std::{env, fs, path::Path, path::PathBuf};

#[path = "src/common.rs"]
#[allow(dead_code)]
mod common;

/// Committed clips streamed by the kws app (paths under `models/kws_gru/clips/`).
const KWS_CLIPS: &[&str] = &[
    "yes/0cb74144_nohash_0.wav",
    "stop/1acc97de_nohash_0.wav",
    "left/43fc47a7_nohash_0.wav",
    "_unknown_/bed_cfbedff9_nohash_0.wav.wav",
];
const KWS_MODEL: &str = "../models/kws_gru/model.kgl";
const FORECAST_MODEL: &str = "../models/forecast_gru/model.kgl";
/// Forecasts the forecast app makes (one per replayed hour once 96 samples are in; each one's
/// 24-hour truth is replayed too).
const FORECASTS: usize = 12;

/// Board facts: memory map file, RAM size, and the static arena's capacity (RAM less room for
/// the stack and the app's other statics).
struct Board {
    name: &'static str,
    memory: &'static str,
    ram_bytes: usize,
    arena_bytes: usize,
    /// SysTick clock (the core clock) in Hz.
    systick_hz: u32,
    /// Whether the board is QEMU with `-icount shift=0` (one instruction per virtual ns, so a
    /// SysTick tick is 1e9 / systick_hz instructions) rather than real silicon (a tick is a cycle).
    qemu: bool,
}

fn board(target: &str) -> Board {
    let nucleo = env::var_os("CARGO_FEATURE_NUCLEO_F446RE").is_some();
    match target {
        t if t.starts_with("thumbv7em") && nucleo => Board {
            name: "nucleo-f446re",
            memory: "memory/nucleo-f446re.x",
            ram_bytes: 128 * 1024,
            arena_bytes: 96 * 1024,
            systick_hz: 16_000_000, // HSI after reset; the app does not touch the clock tree
            qemu: false,
        },
        t if t.starts_with("thumbv7em") => Board {
            name: "mps2-an386",
            memory: "memory/mps2-an386.x",
            ram_bytes: 128 * 1024,
            arena_bytes: 96 * 1024,
            systick_hz: 25_000_000,
            qemu: true,
        },
        t if t.starts_with("thumbv8m.main") => Board {
            name: "mps2-an505",
            memory: "memory/mps2-an505.x",
            ram_bytes: 512 * 1024,
            arena_bytes: 448 * 1024,
            systick_hz: 20_000_000,
            qemu: true,
        },
        t if t.starts_with("thumbv6m") => Board {
            name: "microbit",
            memory: "memory/microbit.x",
            ram_bytes: 16 * 1024,
            arena_bytes: 8 * 1024,
            systick_hz: 16_000_000,
            qemu: true,
        },
        t => panic!("no board for target {t}: use thumbv7em-none-eabihf, thumbv8m.main-none-eabihf or thumbv6m-none-eabi"),
    }
}

/// Parses a version 1-3 `.npy` file of little-endian `f4` or `i8` (int64), C order.
/// Returns the shape and the values as f64 (exact for f32 and for the small labels).
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f64>) {
    let b = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        b.starts_with(b"\x93NUMPY"),
        "{}: not an .npy file",
        path.display()
    );
    let (hlen, hstart) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        _ => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
    };
    let header = std::str::from_utf8(&b[hstart..hstart + hlen]).expect("npy header is not UTF-8");
    assert!(
        header.contains("'fortran_order': False"),
        "{}: Fortran order",
        path.display()
    );
    let shape: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("npy header without shape")
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| d.trim().parse().expect("npy dim"))
        .collect();
    let body = &b[hstart + hlen..];
    let values: Vec<f64> = if header.contains("'descr': '<f4'") {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect()
    } else if header.contains("'descr': '<i8'") {
        body.chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect()
    } else {
        panic!(
            "{}: only <f4 and <i8 are supported: {header}",
            path.display()
        );
    };
    assert_eq!(
        values.len(),
        shape.iter().product::<usize>(),
        "{}: size",
        path.display()
    );
    (shape, values)
}

/// FNV-1a 32 over bytes; the firmware uses the same function (`src/lib.rs`).
fn fnv1a32(hash: u32, bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(hash, |h, &b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

/// Reads a 16 kHz mono 16-bit PCM WAV file (the format of the committed clips).
fn read_wav(path: &Path) -> Vec<i16> {
    let b = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        b.len() > 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WAVE",
        "{}: not a RIFF/WAVE file",
        path.display()
    );
    let (mut pos, mut format_ok, mut data) = (12, false, None);
    while pos + 8 <= b.len() {
        let id = &b[pos..pos + 4];
        let len = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &b[pos + 8..(pos + 8 + len).min(b.len())];
        if id == b"fmt " {
            let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
            let rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
            format_ok = u16_at(0) == 1 && u16_at(2) == 1 && rate == 16_000 && u16_at(14) == 16;
        } else if id == b"data" {
            data = Some(body);
        }
        pos += 8 + len + (len & 1);
    }
    assert!(
        format_ok,
        "{}: the kws app takes 16 kHz mono 16-bit PCM WAV",
        path.display()
    );
    let data = data.unwrap_or_else(|| panic!("{}: no data chunk", path.display()));
    data.chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// A number field of a flat JSON object (`norm.json`).
fn json_number(text: &str, key: &str) -> f64 {
    let rest = text
        .split(&format!("\"{key}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no \"{key}\" in {text}"));
    let rest = rest.trim_start().trim_start_matches(':').trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().expect("a number")
}

fn rerun(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}

fn parse_model<'a>(bytes: &'a [u8], path: &Path) -> kinglet::Model<'a> {
    kinglet::Model::parse(bytes).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
}

fn kws(out: &Path, manifest: &Path) {
    let model_path = manifest.join(KWS_MODEL);
    rerun(&model_path);
    let bytes = fs::read(&model_path).unwrap_or_else(|e| panic!("{KWS_MODEL}: {e}"));
    let model = parse_model(&bytes, &model_path);
    let (x, y) = (model.input(0).unwrap(), model.output(0).unwrap());
    assert_eq!(y.len(), common::CLASSES, "kws: model classes");
    let labels_path = manifest.join("../models/kws_gru/labels.txt");
    rerun(&labels_path);
    let labels: Vec<String> = fs::read_to_string(&labels_path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    assert_eq!(labels.len(), common::CLASSES, "kws: labels.txt");
    let window = model.seq_len();

    // The host's run: what `kinglet kws --stream` does for each clip, with a fresh session and
    // streamer per clip, `f32::exp` in the softmax.
    let mut pcm_all = Vec::new();
    let (mut clips, mut detections) = (String::new(), String::new());
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut hash: u32 = 0x811c_9dc5;
    for (c, name) in KWS_CLIPS.iter().enumerate() {
        let path = manifest.join("../models/kws_gru/clips").join(name);
        rerun(&path);
        let pcm = read_wav(&path);
        // check.sh groups the m4cycles intervals by clip: 50 hops of 320 samples each.
        assert_eq!(pcm.len(), 16_000, "{name}: the kws app takes 1 s clips");
        clips += &format!(
            "    Clip {{ name: {name:?}, start: {}, len: {} }},\n",
            pcm_all.len(),
            pcm.len()
        );
        pcm_all.extend_from_slice(&pcm);
        let mut session = kinglet::Session::new(&model, &mut arena).unwrap();
        let mut streamer = kinglet::frontend::Streamer::new();
        let mut posterior = common::Posterior::new();
        streamer.push(&pcm, |frame| {
            let mut fq = [0i8; kinglet::frontend::BANDS];
            x.quantize(frame, &mut fq);
            let mut yq = [0i8; common::CLASSES];
            session.step(&fq, &mut yq).unwrap();
            hash = fnv1a32(hash, &yq.map(|v| v as u8));
            let mut yf = [0f32; common::CLASSES];
            y.dequantize(&yq, &mut yf);
            if let Some((class, score)) = posterior.push(
                &yf,
                window,
                |k| !labels[k].starts_with('_'),
                f32::exp,
            ) {
                detections += &format!(
                    "    Detection {{ clip: {c}, frame: {}, class: {class}, score_bits: {:#010x} }}, // {} {score}\n",
                    posterior.frames(),
                    score.to_bits(),
                    labels[class]
                );
            }
        });
    }
    fs::write(
        out.join("kws_clips.bin"),
        pcm_all
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect::<Vec<_>>(),
    )
    .unwrap();

    // Every softmax argument the device can meet is `x - max` with both dequantized int8 scores
    // (`scale * (q - zp)`); list those where `libm::expf` (device) and `f32::exp` (host) differ.
    let deq = |q: i32| y.scale() * (q - y.zero_point()) as f32;
    let mut fixups: Vec<(u32, u32)> = Vec::new();
    for qmax in -128..=127 {
        for q in -128..=qmax {
            let d = deq(q) - deq(qmax);
            let (device, host) = (libm::expf(d), d.exp());
            if device.to_bits() != host.to_bits() {
                fixups.push((d.to_bits(), host.to_bits()));
            }
        }
    }
    fixups.sort_unstable();
    fixups.dedup();
    fs::write(
        out.join("kws.rs"),
        format!(
            "/// Class names (`models/kws_gru/labels.txt`).\npub const LABELS: [&str; {}] = {labels:?};\n\
             /// The clips in `kws_clips.bin` (offsets and lengths in samples).\npub const CLIPS: &[Clip] = &[\n{clips}];\n\
             /// The host's detections (`kinglet kws --stream` semantics, computed in build.rs).\npub const HOST_DETECTIONS: &[Detection] = &[\n{detections}];\n\
             /// FNV-1a 32 of every step's int8 output over all clips, on the host.\npub const HOST_HASH: u32 = {hash:#010x};\n\
             /// `Model::arena_bytes()` of the model.\npub const ARENA_NEEDED: usize = {};\n\
             /// `(x bits, host exp(x) bits)` where `libm::expf(x)` differs from the host's `f32::exp`, sorted.\npub const EXP_FIXUPS: &[(u32, u32)] = &{fixups:#x?};\n",
            labels.len(),
            model.arena_bytes()
        ),
    )
    .unwrap();
}

fn forecast(out: &Path, manifest: &Path) {
    let dir = manifest.join("../models/forecast_gru");
    let model_path = manifest.join(FORECAST_MODEL);
    for f in ["test.npy", "targets.npy", "norm.json"] {
        rerun(&dir.join(f));
    }
    rerun(&model_path);
    let bytes = fs::read(&model_path).unwrap_or_else(|e| panic!("{FORECAST_MODEL}: {e}"));
    let model = parse_model(&bytes, &model_path);
    let (x, y) = (model.input(0).unwrap(), model.output(0).unwrap());
    let (lookback, horizon) = (common::LOOKBACK, common::HORIZON);
    assert_eq!(
        (x.len(), y.len()),
        (lookback, horizon),
        "forecast model shape"
    );
    let (tshape, test) = read_npy(&dir.join("test.npy"));
    let (gshape, targets) = read_npy(&dir.join("targets.npy"));
    assert_eq!(&tshape[1..], &[lookback, 1]);
    assert_eq!(&gshape[1..], &[horizon]);
    let norm = fs::read_to_string(dir.join("norm.json")).unwrap();
    let (mean, std) = (json_number(&norm, "mean"), json_number(&norm, "std"));

    // The test windows have stride 1: window i is rows i..i+96 of the test split, its targets
    // rows i+96..i+120. Rebuild the series from the first values of the windows and check every
    // window and target used against it.
    let samples = lookback + FORECASTS - 1 + horizon;
    let series: Vec<f64> = (0..samples).map(|j| test[j * lookback]).collect();
    for i in 0..FORECASTS {
        for k in 0..lookback {
            assert_eq!(test[i * lookback + k], series[i + k], "test window {i}");
        }
        for h in 0..horizon {
            assert_eq!(
                targets[i * horizon + h],
                series[i + lookback + h],
                "target {i}"
            );
        }
    }
    // Oil temperature in °C (3 decimals in the CSV), as the TMP117 reports it: 1/128 °C.
    let raw: Vec<i16> = series
        .iter()
        .map(|&z| {
            let r = ((z * std + mean) * 128.0).round();
            assert!(
                (-32768.0..=32767.0).contains(&r),
                "temperature out of range"
            );
            r as i16
        })
        .collect();
    fs::write(
        out.join("forecast_replay.bin"),
        raw.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<_>>(),
    )
    .unwrap();

    // The device's computation, on the host.
    let (mean32, std32) = (mean as f32, std as f32);
    let z: Vec<f32> = raw
        .iter()
        .map(|&r| common::zscore(r, mean32, std32))
        .collect();
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut session = kinglet::Session::new(&model, &mut arena).unwrap();
    let (mut forecasts, mut mses, mut differing) = (Vec::new(), Vec::new(), 0);
    let mut mse_sum = 0f32;
    for i in 0..FORECASTS {
        let mut xq = vec![0i8; lookback];
        x.quantize(&z[i..i + lookback], &mut xq);
        // How far the sensor's 1/128 °C resolution moves the int8 input from test.npy's.
        let committed: Vec<f32> = test[i * lookback..(i + 1) * lookback]
            .iter()
            .map(|&v| v as f32)
            .collect();
        let mut cq = vec![0i8; lookback];
        x.quantize(&committed, &mut cq);
        differing += xq.iter().zip(&cq).filter(|(a, b)| a != b).count();
        let mut yq = vec![0i8; horizon];
        session.run(&xq, &mut yq).unwrap();
        let mut yf = vec![0f32; horizon];
        y.dequantize(&yq, &mut yf);
        let mut err = common::SquaredError::default();
        for (h, &f) in yf.iter().enumerate() {
            err.add(f, z[i + lookback + h]);
        }
        mse_sum += err.mean();
        mses.push(err.mean().to_bits());
        forecasts.extend(yq);
    }
    let mean_mse = mse_sum / FORECASTS as f32;
    fs::write(
        out.join("forecast.rs"),
        format!(
            "/// Replayed hourly samples in `forecast_replay.bin`.\npub const SAMPLES: usize = {samples};\n\
             /// Forecasts made (each with its full 24-hour truth replayed).\npub const FORECASTS: usize = {FORECASTS};\n\
             /// Training mean and std of `OT` in °C (`norm.json`), as f32.\npub const MEAN: f32 = {mean32:?};\npub const STD: f32 = {std32:?};\n\
             /// The host's int8 forecasts, {FORECASTS} x {horizon}.\npub const HOST_FORECASTS: [i8; {}] = {forecasts:?};\n\
             /// The host's MSE (z units) of each forecast against the replayed truth, f32 bits.\npub const HOST_MSE: [u32; {FORECASTS}] = {mses:#x?};\n\
             /// Their mean, f32 bits ({mean_mse}).\npub const HOST_MEAN_MSE: u32 = {:#x};\n\
             /// int8 inputs (of {}) that differ from quantizing the committed test.npy windows directly.\npub const INPUTS_DIFFERING_FROM_TEST_NPY: usize = {differing};\n",
            forecasts.len(),
            mean_mse.to_bits(),
            FORECASTS * lookback
        ),
    )
    .unwrap();
}

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let target = env::var("TARGET").unwrap();

    let b = board(&target);
    fs::copy(manifest.join(b.memory), out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    // defmt's linker script (its interned strings live in a non-loaded section).
    println!("cargo:rustc-link-arg=-Tdefmt.x");
    println!("cargo:rerun-if-changed=memory");
    // The arena's capacity can be forced (e.g. to see the refusal message): KINGLET_ARENA_BYTES.
    println!("cargo:rerun-if-env-changed=KINGLET_ARENA_BYTES");
    let arena = match env::var("KINGLET_ARENA_BYTES") {
        Ok(v) => v.parse().expect("KINGLET_ARENA_BYTES must be a number"),
        Err(_) => b.arena_bytes,
    };
    fs::write(
        out.join("board.rs"),
        format!(
            "/// Board this build is for.\npub const BOARD: &str = {:?};\n\
             /// Bytes of RAM on the board.\npub const RAM_BYTES: usize = {};\n\
             /// Capacity of the static arena.\npub const ARENA_BYTES: usize = {};\n\
             /// SysTick (core) clock in Hz.\npub const SYSTICK_HZ: u32 = {};\n\
             /// QEMU with `-icount shift=0`: SysTick ticks measure instructions, not cycles.\n\
             pub const QEMU_ICOUNT: bool = {};\n",
            b.name, b.ram_bytes, arena, b.systick_hz, b.qemu
        ),
    )
    .unwrap();

    kws(&out, &manifest);
    forecast(&out, &manifest);
    bench(&out, &manifest);
    golden(&out, &manifest);
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/common.rs");
}

/// The `bench` app's fixture: the model named by `KINGLET_BENCH_MODEL` (default
/// `models/mnist_lstm/model.kgl`; a relative path is taken from the repository root), copied to
/// `OUT_DIR/bench_model.kgl`, and one fixed input per model input: the first sample of the
/// `test.npy` beside the model when the model has one input and that file exists, otherwise a
/// fixed pseudo-random int8 pattern. The host runs it through `kinglet` and records the int8
/// outputs and their FNV-1a 32 hash (`bench.rs`), which the device must reproduce.
fn bench(out: &Path, manifest: &Path) {
    println!("cargo:rerun-if-env-changed=KINGLET_BENCH_MODEL");
    let root = manifest.join("..");
    let path = match env::var("KINGLET_BENCH_MODEL") {
        Ok(p) if Path::new(&p).is_absolute() => PathBuf::from(p),
        Ok(p) => root.join(p),
        Err(_) => root.join("models/mnist_lstm/model.kgl"),
    };
    println!("cargo:rerun-if-changed={}", path.display());
    let bytes =
        fs::read(&path).unwrap_or_else(|e| panic!("KINGLET_BENCH_MODEL {}: {e}", path.display()));
    let model =
        kinglet::Model::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    let test = path.with_file_name("test.npy");
    let mut inputs = Vec::new();
    let mut source = String::from("pattern");
    for i in 0..model.n_inputs() {
        let x = model.input(i).expect("model input");
        let mut q = vec![0i8; x.nbytes()];
        if model.n_inputs() == 1 && test.exists() {
            println!("cargo:rerun-if-changed={}", test.display());
            let (shape, values) = read_npy(&test);
            let per_sample: usize = shape[1..].iter().product();
            assert_eq!(
                per_sample,
                x.len(),
                "{}: sample size vs model input",
                test.display()
            );
            let floats: Vec<f32> = values[..per_sample].iter().map(|&v| v as f32).collect();
            x.quantize(&floats, &mut q);
            source = String::from("test.npy[0]");
        } else {
            let mut s: u32 = 0x2545_f491 ^ i as u32;
            for v in q.iter_mut() {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                *v = (s >> 24) as u8 as i8;
            }
        }
        inputs.push(q);
    }
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut session = kinglet::Session::new(&model, &mut arena).unwrap();
    for (i, q) in inputs.iter().enumerate() {
        session.input_mut(i).unwrap().copy_from_slice(q);
    }
    session.invoke().unwrap();
    let mut outputs = Vec::new();
    for i in 0..model.n_outputs() {
        outputs.extend_from_slice(session.output(i).unwrap());
    }
    let hash = fnv1a32(
        0x811c_9dc5,
        &outputs.iter().map(|&v| v as u8).collect::<Vec<_>>(),
    );
    fs::write(out.join("bench_model.kgl"), &bytes).unwrap();
    let flat: Vec<u8> = inputs.iter().flatten().map(|&v| v as u8).collect();
    fs::write(out.join("bench_inputs.bin"), flat).unwrap();
    let name = path
        .parent()
        .and_then(|d| d.file_name())
        .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    fs::write(
        out.join("bench.rs"),
        format!(
            "/// The benchmarked model's folder name.\npub const MODEL_NAME: &str = {name:?};\n\
             /// Where the input came from.\npub const INPUT_SOURCE: &str = {source:?};\n\
             /// The host's int8 outputs (all outputs, concatenated).\npub const HOST_OUTPUT: &[i8] = &{outputs:?};\n\
             /// FNV-1a 32 of `HOST_OUTPUT`.\npub const HOST_HASH: u32 = {hash:#010x};\n"
        ),
    )
    .unwrap();
}

/// The `golden` app's models: `KINGLET_GOLDEN_MODELS` (comma-separated names of
/// `runtime/tests/golden.txt`), each embedded with its committed hash; `golden_models.rs` holds
/// the table and the largest arena. Unset or empty: an empty table (the app then only says so).
fn golden(out: &Path, manifest: &Path) {
    println!("cargo:rerun-if-env-changed=KINGLET_GOLDEN_MODELS");
    let root = manifest.join("..");
    let golden_txt = root.join("runtime/tests/golden.txt");
    println!("cargo:rerun-if-changed={}", golden_txt.display());
    let text = fs::read_to_string(&golden_txt).expect("runtime/tests/golden.txt");
    let mut want = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 3, "golden.txt: bad line {line:?}");
        let seed: u64 = f[1].parse().expect("golden.txt seed");
        let hash = u64::from_str_radix(f[2], 16).expect("golden.txt hash");
        want.insert(f[0].to_string(), (seed, hash));
    }
    let names = env::var("KINGLET_GOLDEN_MODELS").unwrap_or_default();
    let mut table = String::new();
    let mut arena = 16usize;
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let &(seed, hash) = want
            .get(name)
            .unwrap_or_else(|| panic!("KINGLET_GOLDEN_MODELS: {name} is not in golden.txt"));
        // golden.rs's naming: recurrent fixtures by their folder, `fixtures_tf/<name>`, and the
        // example models by their folder under models/.
        let fixture = root.join("models/fixtures").join(name).join("model.kgl");
        let path = if fixture.exists() {
            fixture
        } else {
            root.join("models").join(name).join("model.kgl")
        };
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let model =
            kinglet::Model::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        arena = arena.max(model.arena_bytes());
        table.push_str(&format!(
            "    ({name:?}, kinglet_firmware::include_aligned!({:?}), {seed}, {hash:#018x}),\n",
            path.display().to_string()
        ));
    }
    fs::write(
        out.join("golden_models.rs"),
        format!(
            "/// `(name, model file, seed, committed hash)`.\n\
             pub static MODELS: &[(&str, &[u8], u64, u64)] = &[\n{table}];\n\
             /// The largest arena the models need.\npub const ARENA_BYTES: usize = {arena};\n"
        ),
    )
    .unwrap();
}
