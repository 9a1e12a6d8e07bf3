//! End to end on every committed fixture: import → calibrate → quantize → write, then the int8
//! file against tract running the float ONNX on the held-out test samples.

use kinglet_quantizer::{npy, quantize_model, validate};
use std::path::{Path, PathBuf};

/// Recurrent fixtures (`models/fixtures`) and Transformer / ViT fixtures (`models/fixtures_tf`).
fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = Vec::new();
    for dir in ["../models/fixtures", "../models/fixtures_tf"] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        v.extend(
            std::fs::read_dir(&root)
                .expect("fixture folder exists")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("model.onnx").exists()),
        );
    }
    v.sort();
    assert!(
        v.len() >= 21,
        "expected the 14 recurrent and 7 Transformer fixtures, found {}",
        v.len()
    );
    v
}

fn quantize_dir(dir: &Path) -> Vec<u8> {
    let calib = npy::read_f32(&dir.join("calib.npy")).unwrap();
    quantize_model(&dir.join("model.onnx"), &calib, None)
        .unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()))
        .bytes
}

#[test]
fn every_fixture_validates_against_tract() {
    let mut failures = Vec::new();
    for dir in fixtures() {
        let bytes = quantize_dir(&dir);
        let test = npy::read_f32(&dir.join("test.npy")).unwrap();
        let labels = dir.join("labels.npy");
        let labels = labels.exists().then(|| npy::read_i64(&labels).unwrap().1);
        let r = validate::validate(
            &dir.join("model.onnx"),
            &bytes,
            &test,
            labels.as_deref(),
            None,
            None,
        )
        .unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        eprintln!(
            "{name:<26} sqnr {:6.2} dB  agreement {:.3}  acc float {:?} int8 {:?}  model {} B arena {} B",
            r.sqnr_db, r.top1_agreement, r.accuracy_float, r.accuracy_int8, r.model_bytes, r.arena_bytes
        );
        assert_eq!(r.samples, 200);
        let regression = dir.join("targets.npy").exists();
        if r.sqnr_db < 25.0 || (!regression && r.top1_agreement < 0.97) {
            failures.push(format!(
                "{name}: sqnr {:.2} dB, agreement {:.3}",
                r.sqnr_db, r.top1_agreement
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "below SQNR 25 dB / agreement 0.97: {failures:#?}"
    );
}

#[test]
fn streaming_equals_batch_on_streamable_fixtures() {
    let mut checked = 0;
    for dir in fixtures() {
        let bytes = quantize_dir(&dir);
        let model = kinglet::Model::parse(&bytes).unwrap();
        if !model.is_streamable() {
            continue;
        }
        let test = npy::read_f32(&dir.join("test.npy")).unwrap();
        let input = model.input(0).unwrap();
        let output = model.output(0).unwrap();
        let t = model.seq_len();
        let frame = input.nbytes() / t;
        let mut arena = vec![0u8; model.arena_bytes()];
        for s in 0..8 {
            let mut xq = vec![0i8; input.nbytes()];
            input.quantize(test.sample(s), &mut xq);
            let mut batch = vec![0i8; output.nbytes()];
            let mut session = kinglet::Session::new(&model, &mut arena).unwrap();
            session.run(&xq, &mut batch).unwrap();
            session.reset();
            let per_step_out = if output.time_axis().is_some() {
                output.nbytes() / t
            } else {
                output.nbytes()
            };
            let mut streamed = Vec::new();
            let mut last = vec![0i8; per_step_out];
            for k in 0..t {
                session
                    .step(&xq[k * frame..(k + 1) * frame], &mut last)
                    .unwrap();
                if output.time_axis().is_some() {
                    streamed.extend_from_slice(&last);
                }
            }
            if output.time_axis().is_none() {
                streamed = last;
            }
            assert_eq!(streamed, batch, "{}: sample {s}", dir.display());
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} fixtures were streamable");
}

#[test]
fn nan_in_calibration_is_refused_with_its_position() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/lstm_legacy_o13");
    let calib = npy::read_f32(&dir.join("calib.npy")).unwrap();
    let mut data = calib.data.clone();
    data[3 * calib.sample_len() + 5] = f32::NAN;
    let tmp = std::env::temp_dir().join(format!("kinglet_nan_{}.npy", std::process::id()));
    npy::write_f32(&tmp, &calib.shape, &data).unwrap();
    let err = npy::read_f32(&tmp).unwrap_err().to_string();
    std::fs::remove_file(&tmp).ok();
    assert!(err.contains("NaN") && err.contains("sample 3"), "{err}");
}

#[test]
fn calibration_of_the_wrong_shape_is_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/gru_legacy_o17");
    let calib = npy::read_f32(&dir.join("calib.npy")).unwrap();
    let wrong = npy::ArrayF32 {
        shape: vec![calib.samples(), 10, 16],
        data: calib.data.clone(),
    };
    let err = format!(
        "{:#}",
        quantize_model(&dir.join("model.onnx"), &wrong, None).unwrap_err()
    );
    assert!(
        err.contains("[64, 10, 16]") && err.contains("[1, 20, 8]"),
        "{err}"
    );
}

#[test]
fn an_arena_one_byte_short_is_refused_with_the_size_needed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/lstm2_dynamo_o23");
    let bytes = quantize_dir(&dir);
    let model = kinglet::Model::parse(&bytes).unwrap();
    let need = model.arena_bytes();
    let mut arena = vec![0u8; need - 1];
    match kinglet::Session::new(&model, &mut arena) {
        Err(kinglet::Error::ArenaTooSmall { needed, got }) => {
            assert_eq!((needed, got), (need, need - 1));
        }
        other => panic!("expected ArenaTooSmall, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn every_truncation_and_many_bit_flips_of_a_real_model_are_refused_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/bilstm_legacy_o17");
    let bytes = quantize_dir(&dir);
    for len in 0..bytes.len() {
        assert!(
            kinglet::Model::parse(&bytes[..len]).is_err(),
            "truncated to {len} parsed"
        );
    }
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..(1 + i % 3) {
            let bit = (next() % (b.len() as u64 * 8)) as usize;
            b[bit / 8] ^= 1 << (bit % 8);
        }
        // The checksum catches every flip in the covered region; flips in the header's first
        // 16 bytes hit magic, version, length or the checksum itself.
        assert!(kinglet::Model::parse(&b).is_err(), "flip set {i} parsed");
    }
}
