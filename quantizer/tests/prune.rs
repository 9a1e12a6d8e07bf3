//! Dead-row elimination (`kinglet_quantizer::prune`) on the committed Transformer fixtures.
//!
//! Two files of each fixture, quantized from the same calibration: one with the pass (the
//! default) and one without (`keep_dead_rows`). Where the output reads one token (a CLS token,
//! the last step), the pruned file must do less work (fewer FC multiply-accumulates, fewer
//! activation bytes written, the last attention on one query row) and give the same output
//! bytes as the unpruned file on every test sample and on random int8 inputs; tract must agree
//! with it exactly as much as before. Where the pass does not apply (a mean over tokens, a
//! recurrent model), the two files must be the same bytes.

use kinglet::format::{OP_ATTENTION, OP_FC};
use kinglet_quantizer::{calibrate::Method, npy, quantize::QModel, quantize_model_rows, validate};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    let tf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures_tf");
    let rec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures");
    if tf.join(name).exists() {
        tf.join(name)
    } else {
        rec.join(name)
    }
}

fn quantize(dir: &Path, method: Method, keep_dead_rows: bool) -> kinglet_quantizer::Quantized {
    let calib = npy::read_f32(&dir.join("calib.npy")).unwrap();
    quantize_model_rows(
        &dir.join("model.onnx"),
        &calib,
        None,
        method,
        false,
        keep_dead_rows,
    )
    .unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()))
}

/// FC multiply-accumulates of a program.
fn fc_macs(p: &QModel) -> usize {
    p.ops
        .iter()
        .filter(|o| o.opcode == OP_FC)
        .map(|o| o.params[..4].iter().map(|&v| v as usize).product::<usize>())
        .sum()
}

/// Activation bytes the ops write (their last tensor listed as output: FC, ADD, LAYERNORM,
/// LUT8, COPY, CONCAT; ATTENTION's output is its fifth).
fn bytes_written(p: &QModel) -> usize {
    p.ops
        .iter()
        .map(|o| {
            let t = if o.opcode == OP_ATTENTION {
                o.tensors[4]
            } else {
                *o.tensors.last().unwrap()
            };
            p.tensors[t].nbytes()
        })
        .sum()
}

/// The raw output bytes of every input (int8, already quantized).
fn run_raw(bytes: &[u8], inputs: &[Vec<i8>]) -> Vec<Vec<i8>> {
    let model = kinglet::Model::parse(bytes).unwrap();
    let mut arena = vec![0u8; model.arena_bytes()];
    inputs
        .iter()
        .map(|x| {
            let mut s = kinglet::Session::new(&model, &mut arena).unwrap();
            s.input_mut(0).unwrap().copy_from_slice(x);
            s.invoke().unwrap();
            (0..model.n_outputs())
                .flat_map(|i| s.output(i).unwrap().to_vec())
                .collect()
        })
        .collect()
}

/// Every test sample quantized as the file's input wants, then `random` inputs of SplitMix64
/// bytes (the whole int8 range, far outside calibration).
fn inputs(bytes: &[u8], dir: &Path, random: usize) -> Vec<Vec<i8>> {
    let model = kinglet::Model::parse(bytes).unwrap();
    let info = model.input(0).unwrap();
    let test = npy::read_f32(&dir.join("test.npy")).unwrap();
    let mut v: Vec<Vec<i8>> = (0..test.samples())
        .map(|s| {
            let mut q = vec![0i8; info.nbytes()];
            info.quantize(test.sample(s), &mut q);
            q
        })
        .collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..random {
        v.push(
            (0..info.nbytes())
                .map(|_| {
                    state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let mut z = state;
                    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                    (z ^ (z >> 31)) as u8 as i8
                })
                .collect(),
        );
    }
    v
}

/// The pass applies: less work, the same output bytes, the same agreement with tract.
/// Returns `(full, pruned)` programs for fixture-specific checks.
fn check_pruned(name: &str, method: Method) -> (QModel, QModel) {
    let dir = fixture(name);
    let full = quantize(&dir, method, true);
    let pruned = quantize(&dir, method, false);
    assert_ne!(full.bytes, pruned.bytes, "{name}: the pass changed nothing");
    let (w_full, w_pruned) = (fc_macs(&full.program), fc_macs(&pruned.program));
    let (b_full, b_pruned) = (bytes_written(&full.program), bytes_written(&pruned.program));
    eprintln!(
        "{name}: FC MACs {w_full} -> {w_pruned}, activation bytes written {b_full} -> {b_pruned}, \
         ops {} -> {}, arena {} -> {}, file {} -> {} bytes",
        full.program.ops.len(),
        pruned.program.ops.len(),
        full.plan_bytes,
        pruned.plan_bytes,
        full.bytes.len(),
        pruned.bytes.len()
    );
    assert!(w_pruned < w_full, "{name}: FC MACs {w_pruned} ≥ {w_full}");
    assert!(
        b_pruned < b_full,
        "{name}: bytes written {b_pruned} ≥ {b_full}"
    );
    assert!(pruned.plan_bytes <= full.plan_bytes, "{name}: arena grew");

    let xs = inputs(&full.bytes, &dir, 50);
    let (y_full, y_pruned) = (run_raw(&full.bytes, &xs), run_raw(&pruned.bytes, &xs));
    let differ = y_full.iter().zip(&y_pruned).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "{name}: {differ} of {} outputs differ", xs.len());

    let test = npy::read_f32(&dir.join("test.npy")).unwrap();
    let labels = npy::read_i64(&dir.join("labels.npy")).unwrap().1;
    let onnx = dir.join("model.onnx");
    let r_full = validate::validate(&onnx, &full.bytes, &test, Some(&labels), None, None).unwrap();
    let r_pruned =
        validate::validate(&onnx, &pruned.bytes, &test, Some(&labels), None, None).unwrap();
    assert_eq!(r_full.sqnr_db, r_pruned.sqnr_db, "{name}");
    assert_eq!(r_full.top1_agreement, r_pruned.top1_agreement, "{name}");
    assert_eq!(r_full.accuracy_int8, r_pruned.accuracy_int8, "{name}");
    assert!(
        r_pruned.sqnr_db > 25.0,
        "{name}: {:.2} dB",
        r_pruned.sqnr_db
    );
    (full.program, pruned.program)
}

/// `(tq, tk)` of the last ATTENTION op, and the rows of every FC after it.
fn after_last_attention(p: &QModel) -> ((i32, i32), Vec<i32>) {
    let last = p
        .ops
        .iter()
        .rposition(|o| o.opcode == OP_ATTENTION)
        .expect("an attention op");
    let a = &p.ops[last];
    let rows = p.ops[last..]
        .iter()
        .filter(|o| o.opcode == OP_FC)
        .map(|o| o.params[1])
        .collect();
    ((a.params[1], a.params[2]), rows)
}

#[test]
fn cls_token_encoder_runs_its_last_layer_on_one_row() {
    // Linear → [CLS; x] + pos-emb (17 tokens) → 1 pre-norm GELU layer → LayerNorm → CLS.
    let (full, pruned) = check_pruned("enc_pre_gelu_dynamo_o18", Method::MinMax);
    let ((tq, tk), rows) = after_last_attention(&full);
    assert_eq!((tq, tk), (17, 17));
    assert!(rows.iter().all(|&r| r == 17 || r == 1), "{rows:?}");
    let ((tq, tk), rows) = after_last_attention(&pruned);
    assert_eq!((tq, tk), (1, 17), "one query row, every key");
    // Out-projection, MLP up and down, head: all on the CLS row.
    assert_eq!(rows, vec![1, 1, 1, 1]);
}

#[test]
fn per_layer_sqnr_covers_the_pruned_rows() {
    // `validate`'s per-layer table compares a pruned tensor with the same rows of the float
    // value (the float graph pruned alike), not skip it for its size.
    let dir = fixture("enc_pre_gelu_dynamo_o18");
    let test = npy::read_f32(&dir.join("test.npy")).unwrap();
    let onnx = dir.join("model.onnx");
    let layers = |keep: bool| {
        let q = quantize(&dir, Method::MinMax, keep);
        validate::layer_sqnr(&onnx, &q.bytes, &test, 20).unwrap()
    };
    let (full, pruned) = (layers(true), layers(false));
    let find = |ls: &[validate::LayerSqnr], name: &str| {
        ls.iter()
            .find(|l| l.tensor == name)
            .map(|l| (l.elements, l.sqnr_db))
    };
    // The final LayerNorm, the MLP's GELU: 17 rows before, the CLS row after.
    for (name, width) in [("layer_norm_2", 40), ("gelu", 64)] {
        let (n_full, db_full) = find(&full, name).unwrap_or_else(|| panic!("{name} (full)"));
        let (n_pruned, db_pruned) =
            find(&pruned, name).unwrap_or_else(|| panic!("{name} missing from the pruned table"));
        assert_eq!((n_full, n_pruned), (17 * width, width), "{name}");
        assert!(
            db_full > 15.0 && db_pruned > 15.0,
            "{name}: {db_full} / {db_pruned} dB"
        );
    }
    assert!(
        pruned.len() >= full.len(),
        "{} layers matched, {} before",
        pruned.len(),
        full.len()
    );
}

#[test]
fn cls_token_vit_prunes_the_last_of_two_layers() {
    // MSE calibration (as kws_transformer and vit_mnist use): the CLS slice then has a range
    // of its own, not inside its input's, and the quantization they share must carry over.
    let (full, pruned) = check_pruned("vit_conv_legacy_o17", Method::Mse);
    let attn = |p: &QModel| -> Vec<(i32, i32)> {
        p.ops
            .iter()
            .filter(|o| o.opcode == OP_ATTENTION)
            .map(|o| (o.params[1], o.params[2]))
            .collect()
    };
    assert_eq!(attn(&full), vec![(17, 17), (17, 17)]);
    // The first layer's every row feeds the second layer's keys and values.
    assert_eq!(attn(&pruned), vec![(17, 17), (1, 17)]);
    let (_, rows) = after_last_attention(&pruned);
    assert_eq!(rows, vec![1, 1, 1, 1]);
}

#[test]
fn last_step_after_causal_attention_prunes_only_the_row_wise_tail() {
    // The output reads the last step; causal attention decides a query's keys by its row, so
    // the selection stops there and only the ops after the last attention shrink.
    let (full, pruned) = check_pruned("mha_legacy_o17", Method::MinMax);
    let ((tq, tk), _) = after_last_attention(&full);
    assert_eq!(after_last_attention(&pruned).0, (tq, tk));
    let (_, rows) = after_last_attention(&pruned);
    assert!(rows.iter().all(|&r| r == 1), "{rows:?}");
}

#[test]
fn models_the_pass_does_not_apply_to_are_unchanged() {
    // Mean over tokens (two Transformer fixtures), and a recurrent model reading its last step.
    for name in [
        "enc_post_relu_legacy_o17",
        "vit_unfold_dynamo_o18",
        "lstm_legacy_o13",
    ] {
        let dir = fixture(name);
        assert_eq!(
            quantize(&dir, Method::MinMax, true).bytes,
            quantize(&dir, Method::MinMax, false).bytes,
            "{name}"
        );
    }
}
