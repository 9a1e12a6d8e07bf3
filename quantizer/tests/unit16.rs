//! `kinglet quantize --lstm-layout unit16`: the LSTM's gate operands in the Cortex-M DSP
//! kernel's layout (`kinglet::format::OP_FLAG_UNIT16`).
//!
//! Oracles: the int8-layout file of the same model (every output byte on the committed test
//! images must be equal: the layout changes where values sit, not what is computed), the format's
//! own definition of the layout (each widened weight read back through `unit16_index` is the
//! int8 file's weight), and the committed `models/mnist_lstm_unit16/model.kgl` (a fresh run of
//! the command gives the same bytes).

use kinglet::format::{unit16_index, unit16_kp, DType, OP_LSTM, UNIT16_SCRATCH_PER_UNIT};
use kinglet::{Model, Session};
use kinglet_quantizer::{calibrate::Method, npy, quantize_model_layout};
use std::path::{Path, PathBuf};

fn mnist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/mnist_lstm")
}

fn quantize(unit16: bool) -> Vec<u8> {
    quantize_dir(&mnist(), unit16)
}

fn quantize_dir(dir: &Path, unit16: bool) -> Vec<u8> {
    let calib = npy::read_f32(&dir.join("calib.npy")).unwrap();
    quantize_model_layout(
        &dir.join("model.onnx"),
        &calib,
        None,
        Method::MinMax,
        unit16,
    )
    .unwrap()
    .bytes
}

/// The int8 outputs (all of them, in order) of every sample of `data` (quantized with the
/// model's input scale).
fn outputs(bytes: &[u8], data: &npy::ArrayF32) -> Vec<i8> {
    let model = Model::parse(bytes).unwrap();
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut session = Session::new(&model, &mut arena).unwrap();
    let input = model.input(0).unwrap();
    let n_in = input.nbytes();
    let n_out: usize = (0..model.n_outputs())
        .map(|i| model.output(i).unwrap().nbytes())
        .sum();
    let mut all = Vec::new();
    for x in data.data.chunks_exact(n_in) {
        let mut q = vec![0i8; n_in];
        input.quantize(x, &mut q);
        let mut y = vec![0i8; n_out];
        session.run(&q, &mut y).unwrap();
        all.extend_from_slice(&y);
    }
    all
}

#[test]
fn unit16_file_computes_what_the_int8_file_computes() {
    let (b8, b16) = (quantize(false), quantize(true));
    let (m8, m16) = (Model::parse(&b8).unwrap(), Model::parse(&b16).unwrap());
    // The header says minor 1 only for the file that uses the flag.
    assert_eq!(u16::from_le_bytes([b8[6], b8[7]]), 0);
    assert_eq!(u16::from_le_bytes([b16[6], b16[7]]), 1);
    fn lstm<'a>(m: &Model<'a>) -> kinglet::OpInfo<'a> {
        (0..m.n_ops())
            .filter_map(|i| m.op(i))
            .find(|o| o.opcode() == OP_LSTM)
            .expect("an LSTM op")
    }
    let (o8, o16) = (lstm(&m8), lstm(&m16));
    assert!(!o8.unit16() && o16.unit16());
    let (ni, nh) = (28usize, 20usize);
    fn t<'a>(m: &Model<'a>, o: &kinglet::OpInfo<'a>, slot: usize) -> kinglet::TensorInfo<'a> {
        m.tensor(o.tensor(slot).unwrap()).unwrap()
    }
    // w and r: int16 in the unit16 order, each element the int8 file's weight.
    for (slot, k) in [(1usize, ni), (2, nh)] {
        let (a, b) = (t(&m8, &o8, slot), t(&m16, &o16, slot));
        assert_eq!((a.dtype(), b.dtype()), (DType::I8, DType::I16));
        let kp = unit16_kp(k);
        assert_eq!(b.nbytes(), 4 * nh * kp * 2);
        let (wa, wb) = (m8.const_data(&a).unwrap(), m16.const_data(&b).unwrap());
        for g in 0..4 {
            for u in 0..nh {
                for c in 0..kp {
                    let i = unit16_index(kp, u, g, c);
                    let v = i16::from_le_bytes([wb[2 * i], wb[2 * i + 1]]);
                    let want = if c < k {
                        wa[(g * nh + u) * k + c] as i8 as i16
                    } else {
                        0
                    };
                    assert_eq!(v, want, "slot {slot} gate {g} unit {u} column {c}");
                }
            }
        }
    }
    // The per-row operands: unit-major, the same words.
    for slot in 3..=6 {
        let (a, b) = (t(&m8, &o8, slot), t(&m16, &o16, slot));
        let (da, db) = (m8.const_data(&a).unwrap(), m16.const_data(&b).unwrap());
        let per_row = da.len() / (4 * nh);
        for g in 0..4 {
            for u in 0..nh {
                let (j, s) = (g * nh + u, 4 * u + g);
                assert_eq!(
                    da[j * per_row..(j + 1) * per_row],
                    db[s * per_row..(s + 1) * per_row],
                    "slot {slot} row {j}"
                );
            }
        }
    }
    assert_eq!(t(&m16, &o16, 12).nbytes(), 2 * UNIT16_SCRATCH_PER_UNIT * nh);
    // Every output byte on the committed test images.
    let test = npy::read_f32(&mnist().join("test.npy")).unwrap();
    let (y8, y16) = (outputs(&b8, &test), outputs(&b16, &test));
    assert_eq!(y8.len(), 500 * 10);
    assert!(y8 == y16, "the two layouts' outputs differ");
}

#[test]
fn committed_unit16_model_is_what_the_command_writes() {
    let committed = std::fs::read(mnist().join("../mnist_lstm_unit16/model.kgl")).unwrap();
    assert!(
        committed == quantize(true),
        "re-quantize models/mnist_lstm_unit16 (its README)"
    );
}

/// The other LSTM shapes the importer produces (bidirectional, stacked, whole-sequence output,
/// fp16 weights, an old opset): every LSTM op takes the layout, and the outputs are the int8
/// file's on the fixture's committed test inputs.
#[test]
fn unit16_fixtures_compute_what_their_int8_files_compute() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures");
    for name in [
        "bilstm_legacy_o17",
        "lstm2_dynamo_o23",
        "lstm_seq_dynamo_o18",
        "lstm_fp16_legacy_o17",
        "lstm_legacy_o13",
    ] {
        let dir = fixtures.join(name);
        let (b8, b16) = (quantize_dir(&dir, false), quantize_dir(&dir, true));
        let m16 = Model::parse(&b16).unwrap();
        let lstms: Vec<_> = (0..m16.n_ops())
            .filter_map(|i| m16.op(i))
            .filter(|o| o.opcode() == OP_LSTM)
            .collect();
        assert!(!lstms.is_empty(), "{name}: no LSTM op");
        assert!(
            lstms.iter().all(|o| o.unit16()),
            "{name}: an LSTM op without the layout"
        );
        let test = npy::read_f32(&dir.join("test.npy")).unwrap();
        let (y8, y16) = (outputs(&b8, &test), outputs(&b16, &test));
        assert!(
            !y8.is_empty() && y8 == y16,
            "{name}: the two layouts' outputs differ"
        );
    }
}
