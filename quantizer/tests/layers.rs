//! `kinglet validate`'s per-layer SQNR: every int8 activation against the float graph.
//!
//! Two oracles: tract's end-to-end SQNR on the same samples (the last layer must agree with
//! it), and a file whose weights of one FC are wrecked on purpose (the layers before it must
//! not move, the FC's output must collapse).

use kinglet_quantizer::{npy, quantize_model, validate};
use std::path::{Path, PathBuf};

const SAMPLES: usize = 40;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/fixtures_tf")
        .join(name)
}

fn quantize(dir: &Path) -> Vec<u8> {
    let calib = npy::read_f32(&dir.join("calib.npy")).unwrap();
    quantize_model(&dir.join("model.onnx"), &calib, None)
        .unwrap()
        .bytes
}

/// Rewrites the CRC after an edit (CRC-32/ISO-HDLC over bytes 0..12 and 16..).
fn fix_crc(bytes: &mut [u8]) {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let mut d = crc.digest();
    d.update(&bytes[..12]);
    d.update(&bytes[16..]);
    let v = d.finalize();
    bytes[12..16].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn last_layer_agrees_with_tract_and_a_broken_layer_is_found() {
    let dir = fixture("enc_post_relu_legacy_o17");
    let onnx = dir.join("model.onnx");
    let test = npy::read_f32(&dir.join("test.npy")).unwrap();
    let bytes = quantize(&dir);

    let end_to_end = validate::validate(&onnx, &bytes, &test, None, None, Some(SAMPLES)).unwrap();
    let layers = validate::layer_sqnr(&onnx, &bytes, &test, SAMPLES).unwrap();
    for l in &layers {
        eprintln!(
            "{:>3} {:<10} {:>6} {:7.2} dB  {}",
            l.op, l.op_kind, l.elements, l.sqnr_db, l.tensor
        );
    }
    let model = kinglet::Model::parse(&bytes).unwrap();
    let out_name = model.output(0).unwrap().name();
    let last = layers
        .iter()
        .find(|l| l.tensor == out_name)
        .expect("the model output has a per-layer row");
    assert!(
        (last.sqnr_db - end_to_end.sqnr_db).abs() < 0.5,
        "output layer {:.2} dB vs tract end to end {:.2} dB",
        last.sqnr_db,
        end_to_end.sqnr_db
    );
    assert!(layers.len() >= 10, "only {} layers matched", layers.len());
    assert!(
        layers.iter().all(|l| l.sqnr_db > 15.0),
        "a layer below 15 dB on a healthy file"
    );
    assert!(layers.windows(2).all(|w| w[0].op <= w[1].op), "op order");

    // Wreck the weights of an FC in the middle: negate every int8 weight.
    let fcs: Vec<usize> = (0..model.n_ops())
        .filter(|&i| model.op(i).unwrap().opcode() == kinglet::format::OP_FC)
        .collect();
    let victim = fcs[fcs.len() / 2];
    let op = model.op(victim).unwrap();
    let w = op
        .tensors()
        .filter_map(|t| model.tensor(t))
        .filter(|t| t.kind() == kinglet::TensorKind::Const && t.dtype() == kinglet::DType::I8)
        .max_by_key(|t| t.nbytes())
        .expect("an FC has int8 weights");
    let at = model.data_offset() + w.offset();
    let mut broken = bytes.clone();
    for b in &mut broken[at..at + w.nbytes()] {
        *b = (*b as i8).wrapping_neg() as u8;
    }
    fix_crc(&mut broken);
    let after = validate::layer_sqnr(&onnx, &broken, &test, SAMPLES).unwrap();
    assert_eq!(after.len(), layers.len());
    for (a, b) in layers.iter().zip(&after) {
        assert_eq!(a.tensor, b.tensor);
        if a.op < victim {
            assert_eq!(
                a.sqnr_db, b.sqnr_db,
                "{} (before the broken op {victim}) moved",
                a.tensor
            );
        }
    }
    let hit = after
        .iter()
        .find(|l| l.op == victim && l.sqnr_db < 3.0)
        .unwrap_or_else(|| panic!("op {victim}'s output did not collapse: {after:?}"));
    eprintln!(
        "broken FC op {victim}: {} at {:.2} dB",
        hit.tensor, hit.sqnr_db
    );
}
