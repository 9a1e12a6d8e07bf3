//! The quantizer's failure paths: each gives an error naming the culprit, and the CLI turns
//! every failure into a non-zero exit with a one-line `error: ...` on stderr (never a panic).

use kinglet_quantizer::import::{import_proto, load_proto};
use kinglet_quantizer::npy::{self, ArrayF32};
use kinglet_quantizer::{calibrate, quantize, quantize_model};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/fixtures")
        .join(name)
}

/// A fresh empty scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kinglet-errors-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn calib(dir: &Path) -> ArrayF32 {
    npy::read_f32(&dir.join("calib.npy")).unwrap()
}

fn msg(e: anyhow::Error) -> String {
    format!("{e:#}")
}

#[test]
fn unsupported_op_names_node_and_type() {
    let dir = fixture("lstm_legacy_o13");
    let mut model = load_proto(&dir.join("model.onnx")).unwrap();
    let node = model.graph.as_mut().unwrap().node.last_mut().unwrap();
    node.op_type = "FancyOp".into();
    let name = node.name.clone();
    let m = msg(import_proto(&model, Some(&dir), None).unwrap_err());
    assert!(m.contains("FancyOp"), "{m}");
    assert!(m.contains(&name), "{m}");
}

#[test]
fn dynamic_dims_without_input_shape() {
    let dir = fixture("lstm_legacy_o13");
    let mut model = load_proto(&dir.join("model.onnx")).unwrap();
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    use tract_onnx::pb::type_proto::Value as T;
    let input = &mut model.graph.as_mut().unwrap().input[0];
    let input_name = input.name.clone();
    let Some(T::TensorType(tt)) = input.r#type.as_mut().and_then(|t| t.value.as_mut()) else {
        panic!("input is not a tensor")
    };
    tt.shape.as_mut().unwrap().dim[1].value = Some(Value::DimParam("time".into()));
    let m = msg(import_proto(&model, Some(&dir), None).unwrap_err());
    assert!(m.contains(&input_name), "{m}");
    assert!(m.contains("dynamic dimension 1"), "{m}");
    assert!(m.contains("time"), "{m}");
    assert!(
        m.contains("input-shape") || m.contains("input shape"),
        "{m}"
    );
}

/// Sets element 0 of the first float initializer with more than one element to `v`; returns
/// its name.
fn poison_initializer(model: &mut tract_onnx::pb::ModelProto, v: f32) -> String {
    let g = model.graph.as_mut().unwrap();
    let t = g
        .initializer
        .iter_mut()
        .find(|t| t.data_type == 1 && t.dims.iter().product::<i64>() > 1)
        .expect("a float32 initializer");
    if !t.raw_data.is_empty() {
        t.raw_data[..4].copy_from_slice(&v.to_le_bytes());
    } else {
        t.float_data[0] = v;
    }
    t.name.clone()
}

/// BUG (reported, not fixed here: `quantizer/src/import/` and `quantize.rs` belong to other
/// work): a NaN or ±Inf in a weight initializer is not refused. The weight is quantized
/// silently and a model file was produced (fixed: NaN is refused where the initializer is read,
/// non-finite weights where they enter an op).
#[test]
fn nan_and_inf_in_weights_name_the_initializer() {
    let dir = fixture("gru_legacy_o17");
    let mut accepted = Vec::new();
    for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut model = load_proto(&dir.join("model.onnx")).unwrap();
        let name = poison_initializer(&mut model, v);
        let r = import_proto(&model, Some(&dir), None).and_then(|imp| {
            let ranges = calibrate::calibrate(&imp.graph, &calib(&dir))?;
            quantize::quantize(&imp.graph, &ranges, &quantize::Options::default())
        });
        match r {
            Ok(_) => accepted.push(format!("{v} in initializer '{name}'")),
            Err(e) => {
                let m = msg(e);
                // NaN is refused where the initializer is read (named); ±inf, which attention
                // masks legitimately hold, is refused where it becomes a weight (node named).
                assert!(m.contains(&name) || m.contains("node '"), "{v}: {m}");
                assert!(
                    m.contains("NaN") || m.contains("inf") || m.contains("finite"),
                    "{v}: {m}"
                );
            }
        }
    }
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
}

#[test]
fn nan_and_inf_in_calibration_data() {
    let d = scratch("nan_calib");
    let dir = fixture("gru_legacy_o17");
    let c = calib(&dir);
    for (i, v) in [f32::NAN, f32::INFINITY].into_iter().enumerate() {
        let mut data = c.data.clone();
        let pos = c.sample_len() + 3; // sample 1
        data[pos] = v;
        let p = d.join(format!("bad{i}.npy"));
        npy::write_f32(&p, &c.shape, &data).unwrap();
        let m = msg(npy::read_f32(&p).unwrap_err());
        assert!(m.contains(&p.display().to_string()), "{m}");
        assert!(m.contains(&format!("element {pos}")), "{m}");
        assert!(m.contains("sample 1"), "{m}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// BUG (reported): the library path (`quantize_model` / `calibrate::calibrate` on an in-memory
/// `ArrayF32`) does not refuse a NaN sample: `f32::min` / `max` skip NaN, so the ranges come out
/// finite and a model file is produced. (`npy::read_f32`, hence the CLI, does refuse it.)
#[test]
fn nan_in_in_memory_calibration_set() {
    let dir = fixture("gru_legacy_o17");
    let mut bad = calib(&dir);
    bad.data[5] = f32::NAN;
    match quantize_model(&dir.join("model.onnx"), &bad, None) {
        Ok(_) => panic!("a NaN in an in-memory calibration set was accepted"),
        Err(e) => {
            let m = msg(e);
            assert!(m.contains("non-finite") || m.contains("NaN"), "{m}");
        }
    }
}

#[test]
fn empty_calibration_set() {
    let dir = fixture("gru_legacy_o17");
    let c = calib(&dir);
    let mut shape = c.shape.clone();
    shape[0] = 0;
    let empty = ArrayF32 {
        shape: shape.clone(),
        data: vec![],
    };
    let m = msg(quantize_model(&dir.join("model.onnx"), &empty, None).unwrap_err());
    assert!(m.contains("empty"), "{m}");
    assert!(m.contains(&format!("{shape:?}")), "{m}");
}

#[test]
fn misshaped_calibration_set() {
    let dir = fixture("gru_legacy_o17");
    let c = calib(&dir);
    let mut shape = c.shape.clone();
    let last = shape.len() - 1;
    shape[last] += 1;
    let n: usize = shape.iter().product();
    let bad = ArrayF32 {
        shape: shape.clone(),
        data: vec![0.5; n],
    };
    let m = msg(quantize_model(&dir.join("model.onnx"), &bad, None).unwrap_err());
    assert!(m.contains(&format!("{shape:?}")), "{m}");
    assert!(m.contains("expected [N,"), "{m}");
}

#[test]
fn zero_calibrated_range_names_the_value() {
    let dir = fixture("gru_legacy_o17");
    let c = calib(&dir);
    let zeros = ArrayF32 {
        shape: c.shape.clone(),
        data: vec![0.0; c.data.len()],
    };
    let m = msg(quantize_model(&dir.join("model.onnx"), &zeros, None).unwrap_err());
    assert!(m.contains("degenerate calibrated range"), "{m}");
    assert!(m.contains("value '"), "{m}");
}

// ---------------------------------------------------------------------------------------------
// The CLI.

fn kinglet(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kinglet"))
        .args(args)
        .output()
        .expect("run kinglet");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A failed command: non-zero exit, one `error: ...` line on stderr containing `want`, no panic.
fn assert_clean_failure(args: &[&str], want: &str) {
    let (ok, _, err) = kinglet(args);
    assert!(!ok, "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    let lines: Vec<_> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: stderr is not one line: {err}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {err}");
    assert!(err.contains(want), "{args:?}: {err} (wanted {want})");
}

#[test]
fn output_that_cannot_be_written_leaves_nothing_behind() {
    let d = scratch("unwritable");
    let dir = fixture("gru_legacy_o17");
    let onnx = dir.join("model.onnx");
    let calib = dir.join("calib.npy");
    // The output path is an existing directory: the temporary file is written, the rename
    // fails, and the temporary file must be removed.
    let target = d.join("out.kgl");
    std::fs::create_dir(&target).unwrap();
    assert_clean_failure(
        &[
            "quantize",
            onnx.to_str().unwrap(),
            "--calib",
            calib.to_str().unwrap(),
            "-o",
            target.to_str().unwrap(),
        ],
        "out.kgl",
    );
    let left: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["out.kgl".to_string()], "left behind: {left:?}");
    assert!(target.is_dir());
    // The parent is a regular file: nothing can be created there.
    let file = d.join("plain");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("out.kgl");
    assert_clean_failure(
        &[
            "quantize",
            onnx.to_str().unwrap(),
            "--calib",
            calib.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        "cannot write",
    );
    let mut left: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["out.kgl".to_string(), "plain".to_string()]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn cli_on_corrupted_model_files() {
    let d = scratch("corrupt");
    let dir = fixture("gru_legacy_o17");
    let good = std::fs::read(dir.join("model.kgl")).unwrap();
    let onnx = dir.join("model.onnx");
    let test = dir.join("test.npy");
    let out = d.join("out.npy");
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x10;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("flipped.kgl", flipped, "checksum"),
        ("short.kgl", good[..good.len() - 7].to_vec(), "truncated"),
        ("tiny.kgl", good[..10].to_vec(), "truncated"),
        ("empty.kgl", vec![], "truncated"),
        ("onnx.kgl", std::fs::read(&onnx).unwrap(), "bad magic"),
    ];
    for (name, bytes, want) in cases {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        let p = p.to_str().unwrap();
        assert_clean_failure(&["inspect", p], want);
        assert_clean_failure(&["inspect", p, "--json"], want);
        assert_clean_failure(
            &[
                "run",
                p,
                "--input",
                test.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
            want,
        );
        assert!(!out.exists(), "run wrote an output for {name}");
        assert_clean_failure(
            &[
                "validate",
                onnx.to_str().unwrap(),
                p,
                "--data",
                test.to_str().unwrap(),
                "--limit",
                "2",
            ],
            want,
        );
    }
    // Missing files and a corrupt .npy are named too.
    let missing = d.join("missing.kgl");
    assert_clean_failure(&["inspect", missing.to_str().unwrap()], "missing.kgl");
    let bad_npy = d.join("bad.npy");
    std::fs::write(&bad_npy, b"\x93NUMPY garbage").unwrap();
    assert_clean_failure(
        &[
            "run",
            dir.join("model.kgl").to_str().unwrap(),
            "--input",
            bad_npy.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        "bad.npy",
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// `run` and `inspect` map the model file (memmap2): a path that is not a regular file is
/// read instead when it can be (a pipe gives the same answer as the file) and named in a
/// one-line error when it cannot (a directory).
#[test]
fn cli_model_path_that_cannot_be_mapped() {
    let d = scratch("unmappable");
    let model = fixture("gru_legacy_o17").join("model.kgl");
    let test = fixture("gru_legacy_o17").join("test.npy");
    let out = d.join("out.npy");
    let dir = d.to_str().unwrap();
    assert_clean_failure(&["inspect", dir], &format!("cannot read {dir}"));
    assert_clean_failure(
        &[
            "run",
            dir,
            "--input",
            test.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &format!("cannot read {dir}"),
    );
    let (ok, from_file, err) = kinglet(&["inspect", model.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinglet"))
        .args(["inspect", "/dev/stdin", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run kinglet");
    let bytes = std::fs::read(&model).unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &bytes).unwrap();
    let piped = child.wait_with_output().unwrap();
    assert!(piped.status.success());
    assert_eq!(String::from_utf8_lossy(&piped.stdout), from_file);
    let _ = std::fs::remove_dir_all(&d);
}

/// BUG (found by `fuzz/` target `import`; reported, not fixed here): a two-byte change to
/// `lstm_fp16_legacy_o17/model.onnx` (byte 769: 0x00 → 0x5B, byte 4166: 0x37 → 0x35; the file
/// is `fuzz/regressions/import-expand-huge-alloc.onnx`) makes the importer constant-fold an
/// `Expand` to a shape of ~5·10^13 elements: `import::tensor::broadcast_index` calls
/// `Vec::with_capacity(n)` with no bound and the process aborts ("memory allocation … failed",
/// SIGABRT) instead of returning an error. Run in a child process (`kinglet quantize`) so the
/// abort cannot take the test harness down.
#[test]
fn huge_constant_folded_expand_is_an_error_not_an_abort() {
    let d = scratch("huge_expand");
    let dir = fixture("lstm_fp16_legacy_o17");
    let mut bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    assert_eq!((bytes[769], bytes[4166]), (0x00, 0x37), "fixture changed");
    bytes[769] = 0x5B;
    bytes[4166] = 0x35;
    let onnx = d.join("model.onnx");
    std::fs::write(&onnx, &bytes).unwrap();
    let out = d.join("out.kgl");
    assert_clean_failure(
        &[
            "quantize",
            onnx.to_str().unwrap(),
            "--calib",
            dir.join("calib.npy").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        "Expand",
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// `kinglet inspect m.kgl | head`: stdout closed by the reader is not a crash. The pipe's read
/// end is closed before the tool starts, so every write fails with EPIPE.
#[test]
fn closed_stdout_exits_quietly_without_a_panic() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/kws_gru/model.kgl");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kinglet"))
        .arg("inspect")
        .arg(&model)
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert_eq!(out.status.code(), Some(141), "stderr: {stderr}");
}
