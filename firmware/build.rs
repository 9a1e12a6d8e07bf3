//! Host-side build step.
//!
//! 1. Picks the board from the target (or the `nucleo-f446re` feature), copies its
//!    `memory/<board>.x` to `OUT_DIR/memory.x` for cortex-m-rt's `link.x`, and writes
//!    `board.rs` (board name, RAM size, arena capacity).
//! 2. For each app, quantizes the first few samples of the fixture's `test.npy` with the model's
//!    own input scale / zero point (`kinglet::TensorInfo::quantize`, run here on the host) into
//!    `<app>_inputs.bin`, runs them through `kinglet` on the host and records the FNV-1a 32 hash
//!    of all int8 outputs, which the firmware compares with its own (`<app>.rs`).
use std::{env, fs, path::Path, path::PathBuf};

/// One app's fixture: model, test inputs, how many samples go on the device, optional labels.
struct App {
    name: &'static str,
    model: &'static str,
    test: &'static str,
    samples: usize,
    labels: Option<&'static str>,
}

const APPS: &[App] = &[
    App {
        name: "forecast",
        model: "../models/fixtures/gru_forecast_legacy_o17/model.kgl",
        test: "../models/fixtures/gru_forecast_legacy_o17/test.npy",
        samples: 8,
        labels: None,
    },
    App {
        name: "kws",
        model: "../models/kws_gru/model.kgl",
        test: "../models/kws_gru/test.npy",
        samples: 4,
        labels: Some("../models/kws_gru/labels.npy"),
    },
];

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

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let target = env::var("TARGET").unwrap();

    let b = board(&target);
    fs::copy(manifest.join(b.memory), out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
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

    for app in APPS {
        let model_path = manifest.join(app.model);
        println!("cargo:rerun-if-changed={}", model_path.display());
        println!(
            "cargo:rerun-if-changed={}",
            manifest.join(app.test).display()
        );
        let bytes = fs::read(&model_path).unwrap_or_else(|e| panic!("{}: {e}", app.model));
        let model = kinglet::Model::parse(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e:?}", model_path.display()));
        let x = model.input(0).expect("model has an input");
        let y = model.output(0).expect("model has an output");
        let (shape, values) = read_npy(&manifest.join(app.test));
        let per_sample: usize = shape[1..].iter().product();
        assert_eq!(
            per_sample,
            x.len(),
            "{}: test sample size vs model input",
            app.name
        );
        assert!(
            shape[0] >= app.samples,
            "{}: not enough test samples",
            app.name
        );

        let mut inputs = vec![0i8; app.samples * per_sample];
        let mut arena = vec![0u8; model.arena_bytes()];
        let mut session = kinglet::Session::new(&model, &mut arena).unwrap();
        let mut output = vec![0i8; y.nbytes()];
        let mut hash: u32 = 0x811c_9dc5;
        for (s, q) in inputs.chunks_exact_mut(per_sample).enumerate() {
            let floats: Vec<f32> = values[s * per_sample..(s + 1) * per_sample]
                .iter()
                .map(|&v| v as f32)
                .collect();
            x.quantize(&floats, q);
            session.run(q, &mut output).unwrap();
            hash = fnv1a32(hash, &output.iter().map(|&v| v as u8).collect::<Vec<_>>());
        }
        fs::write(
            out.join(format!("{}_inputs.bin", app.name)),
            inputs.iter().map(|&v| v as u8).collect::<Vec<_>>(),
        )
        .unwrap();

        let labels = match app.labels {
            Some(p) => {
                println!("cargo:rerun-if-changed={}", manifest.join(p).display());
                let (_, l) = read_npy(&manifest.join(p));
                l[..app.samples].iter().map(|&v| v as u8).collect()
            }
            None => Vec::new(),
        };
        fs::write(
            out.join(format!("{}.rs", app.name)),
            format!(
                "/// Committed test samples quantized for the model input.\npub const SAMPLES: usize = {};\n\
                 /// FNV-1a 32 of all int8 outputs, computed by `kinglet` on the host in build.rs.\n\
                 pub const HOST_HASH: u32 = {:#010x};\n\
                 /// Labels of the samples (empty if the fixture has none).\n#[allow(dead_code)]\npub const LABELS: &[u8] = &{:?};\n",
                app.samples, hash, labels
            ),
        )
        .unwrap();
    }
    bench(&out, &manifest);
    println!("cargo:rerun-if-changed=build.rs");
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
