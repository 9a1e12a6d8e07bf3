//! Importer + float interpreter against tract on every fixture model, and importer errors.

use kinglet_quantizer::float_eval::{self, Event};
use kinglet_quantizer::import::{import, import_proto, load_proto};
use kinglet_quantizer::ir::Op;
use kinglet_quantizer::npy;
use kinglet_quantizer::oracle::TractModel;
use std::path::{Path, PathBuf};

const SAMPLES: usize = 16;

/// `models/fixtures`, or `$KINGLET_FIXTURES_DIR` if set (to try other exports).
fn fixtures_dir() -> PathBuf {
    match std::env::var_os("KINGLET_FIXTURES_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures"),
    }
}

/// `models/fixtures_tf` (Transformer encoders and tiny ViTs).
fn fixtures_tf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures_tf")
}

fn fixture_dirs() -> Vec<PathBuf> {
    dirs_in(&fixtures_dir())
}

fn dirs_in(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file() && p.join("test.npy").is_file())
        .collect();
    v.sort();
    v
}

/// Imports `dir/model.onnx`, runs the first test samples through the float interpreter and
/// tract, returns (max abs diff, tolerance, the IR graph).
fn check_fixture(dir: &Path) -> anyhow::Result<(f32, f32, kinglet_quantizer::ir::Graph)> {
    let model = dir.join("model.onnx");
    let test = npy::read_f32(&dir.join("test.npy"))?;
    anyhow::ensure!(test.shape.len() >= 3, "test.npy shape {:?}", test.shape);
    let mut shape = vec![1];
    shape.extend_from_slice(&test.shape[1..]);
    // Models with a dynamic input dimension need the shape (taken from the test data).
    let imported = match import(&model, None) {
        Err(e) if format!("{e:#}").contains("dynamic dimension") => import(&model, Some(&shape))?,
        r => r?,
    };
    let g = &imported.graph;
    anyhow::ensure!(
        g.values[g.inputs[0]].shape == shape,
        "imported input shape {:?} vs test data {:?}",
        g.values[g.inputs[0]].shape,
        shape
    );
    let tract = TractModel::load(&model, &shape, imported.input_f16)?;
    let tol = if imported.input_f16 { 2e-2 } else { 1e-4 };
    let mut max_diff = 0f32;
    for i in 0..SAMPLES.min(test.samples()) {
        let x = test.sample(i);
        let mut n_events = 0usize;
        let ours = float_eval::eval(g, &[x], &mut |e: Event| {
            if let Event::Value { data, .. } = e {
                assert!(data.iter().all(|v| v.is_finite()));
            }
            n_events += 1;
        })?;
        assert!(n_events > g.nodes.len());
        let theirs = tract.run(x)?;
        anyhow::ensure!(ours.len() == theirs.len(), "output count differs");
        for (a, b) in ours.iter().zip(&theirs) {
            anyhow::ensure!(
                a.len() == b.len(),
                "output length {} vs tract {}",
                a.len(),
                b.len()
            );
            for (p, q) in a.iter().zip(b) {
                max_diff = max_diff.max((p - q).abs());
            }
        }
    }
    Ok((max_diff, tol, imported.graph))
}

#[test]
fn fixtures_match_tract() {
    let dirs = fixture_dirs();
    assert!(
        !dirs.is_empty(),
        "no fixtures in {}",
        fixtures_dir().display()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        match check_fixture(dir) {
            Ok((diff, tol, g)) => {
                let nodes = g.nodes.len();
                let ok = diff <= tol;
                eprintln!(
                    "{name:28} {nodes:4} IR nodes  max|float - tract| = {diff:.3e} (tol {tol:.0e}) {}",
                    if ok { "ok" } else { "FAIL" }
                );
                if !ok {
                    failures.push(format!("{name}: max diff {diff} > {tol}"));
                }
            }
            Err(e) => {
                eprintln!("{name:28} ERROR {e:#}");
                failures.push(format!("{name}: {e:#}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "fixtures failing:\n{}",
        failures.join("\n")
    );
}

/// Every Transformer fixture imports with the expected number of `Attention` / `LayerNorm`
/// nodes (`expected_ir` in its `meta.json`) and matches tract.
#[test]
fn transformer_fixtures_match_tract() {
    let dirs = dirs_in(&fixtures_tf_dir());
    assert!(dirs.len() >= 7, "expected 7 fixtures in models/fixtures_tf");
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let want = |k: &str| meta["expected_ir"][k].as_u64().unwrap() as usize;
        match check_fixture(dir) {
            Ok((diff, tol, g)) => {
                let count = |f: &dyn Fn(&Op) -> bool| g.nodes.iter().filter(|n| f(&n.op)).count();
                let att = count(&|o| matches!(o, Op::Attention { .. }));
                let ln = count(&|o| matches!(o, Op::LayerNorm { .. }));
                let tr = count(&|o| matches!(o, Op::Transpose { .. }));
                let ok = diff <= tol && att == want("attention") && ln == want("layernorm");
                eprintln!(
                    "{name:26} {:4} IR nodes ({att} Attention, {ln} LayerNorm, {tr} Transpose)  \
                     max|float - tract| = {diff:.3e} {}",
                    g.nodes.len(),
                    if ok { "ok" } else { "FAIL" }
                );
                if !ok {
                    failures.push(format!(
                        "{name}: max diff {diff} (tol {tol}), {att} Attention (want {}), {ln} \
                         LayerNorm (want {})",
                        want("attention"),
                        want("layernorm")
                    ));
                }
            }
            Err(e) => {
                eprintln!("{name:26} ERROR {e:#}");
                failures.push(format!("{name}: {e:#}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "fixtures failing:\n{}",
        failures.join("\n")
    );
}

fn any_fixture() -> PathBuf {
    let dirs = fixture_dirs();
    dirs.iter()
        .find(|d| d.ends_with("lstm_legacy_o13"))
        .cloned()
        .unwrap_or_else(|| dirs[0].clone())
}

#[test]
fn unsupported_op_is_named() {
    let dir = any_fixture();
    let mut model = load_proto(&dir.join("model.onnx")).unwrap();
    let graph = model.graph.as_mut().unwrap();
    // The classifier head (last node) depends on the input, so it is not constant-folded.
    let node = graph.node.last_mut().unwrap();
    node.op_type = "Foo".into();
    let node_name = node.name.clone();
    let err = import_proto(&model, Some(&dir), None).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("unsupported ONNX op 'Foo'"), "{msg}");
    assert!(msg.contains(&format!("at node '{node_name}'")), "{msg}");
}

/// Makes dimension `k` of a graph input dynamic (named `param`); returns the static shape.
fn make_dim_dynamic(
    input: &mut tract_onnx::pb::ValueInfoProto,
    k: usize,
    param: &str,
) -> Vec<usize> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    use tract_onnx::pb::type_proto::Value as T;
    let Some(T::TensorType(tt)) = input.r#type.as_mut().and_then(|t| t.value.as_mut()) else {
        panic!("input is not a tensor")
    };
    let dims = &mut tt.shape.as_mut().unwrap().dim;
    let shape = dims
        .iter()
        .map(|d| match d.value {
            Some(Value::DimValue(v)) => v as usize,
            _ => panic!("fixture input is already dynamic"),
        })
        .collect();
    dims[k].value = Some(Value::DimParam(param.to_string()));
    shape
}

#[test]
fn dynamic_input_dim_needs_a_shape() {
    let dir = any_fixture();
    let mut model = load_proto(&dir.join("model.onnx")).unwrap();
    let input_name;
    let static_shape: Vec<usize>;
    {
        let graph = model.graph.as_mut().unwrap();
        let input = &mut graph.input[0];
        input_name = input.name.clone();
        static_shape = make_dim_dynamic(input, 1, "seq_len");
    }
    let err = import_proto(&model, Some(&dir), None).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(&format!("input '{input_name}'")), "{msg}");
    assert!(msg.contains("dynamic dimension 1"), "{msg}");
    assert!(msg.contains("seq_len"), "{msg}");
    // With the shape given it imports.
    let imported = import_proto(&model, Some(&dir), Some(&static_shape)).unwrap();
    let g = &imported.graph;
    assert_eq!(g.values[g.inputs[0]].shape, static_shape);
}

#[test]
fn gru_linear_before_reset_0_is_rejected() {
    let Some(dir) = fixture_dirs()
        .into_iter()
        .find(|d| d.ends_with("gru_legacy_o17"))
    else {
        return;
    };
    let mut model = load_proto(&dir.join("model.onnx")).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let gru = graph.node.iter_mut().find(|n| n.op_type == "GRU").unwrap();
    let a = gru
        .attribute
        .iter_mut()
        .find(|a| a.name == "linear_before_reset")
        .unwrap();
    a.i = 0;
    let msg = format!("{:#}", import_proto(&model, Some(&dir), None).unwrap_err());
    assert!(msg.contains("linear_before_reset"), "{msg}");
}

#[test]
fn recurrent_nodes_are_split_per_direction() {
    let Some(dir) = fixture_dirs()
        .into_iter()
        .find(|d| d.ends_with("bilstm_legacy_o17"))
    else {
        return;
    };
    let g = import(&dir.join("model.onnx"), None).unwrap().graph;
    let dirs: Vec<bool> = g
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::Lstm { reverse, .. } => Some(reverse),
            _ => None,
        })
        .collect();
    assert_eq!(dirs, vec![false, true]);
    assert!(g.nodes.iter().any(|n| matches!(n.op, Op::Fc { .. })));
}

fn max_diff_vs_tract(
    model: &tract_onnx::pb::ModelProto,
    dir: Option<&Path>,
    shape: &[usize],
    samples: usize,
) -> (kinglet_quantizer::ir::Graph, f32) {
    let imported = import_proto(model, dir, Some(shape)).unwrap();
    let tract = TractModel::load_proto(model, dir, shape, imported.input_f16).unwrap();
    let n: usize = shape.iter().product();
    let mut seed = 12345u64;
    let mut max_diff = 0f32;
    for _ in 0..samples {
        let x: Vec<f32> = (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 33) as f32 / (1u64 << 31) as f32) * 4.0 - 2.0
            })
            .collect();
        let ours = float_eval::eval(&imported.graph, &[&x], &mut |_| {}).unwrap();
        let theirs = tract.run(&x).unwrap();
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a.len(), b.len());
            for (p, q) in a.iter().zip(b) {
                max_diff = max_diff.max((p - q).abs());
            }
        }
    }
    (imported.graph, max_diff)
}

fn value_info(name: &str, dims: Option<&[usize]>) -> tract_onnx::pb::ValueInfoProto {
    use tract_onnx::pb::{tensor_shape_proto, type_proto, TensorShapeProto, TypeProto};
    tract_onnx::pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: dims.map(|d| TensorShapeProto {
                    dim: d
                        .iter()
                        .map(|&v| tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(v as i64)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn bidirectional_y_and_y_h_match_tract() {
    let Some(dir) = fixture_dirs()
        .into_iter()
        .find(|d| d.ends_with("bilstm_legacy_o17"))
    else {
        return;
    };
    let mut model = load_proto(&dir.join("model.onnx")).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let lstm = graph.node.iter().find(|n| n.op_type == "LSTM").unwrap();
    let (y, y_h) = (lstm.output[0].clone(), lstm.output[1].clone());
    graph.output = vec![value_info(&y, None), value_info(&y_h, None)];
    let (g, diff) = max_diff_vs_tract(&model, Some(&dir), &[1, 20, 8], 4);
    assert_eq!(g.values[g.outputs[0]].shape, vec![20, 2, 1, 12]);
    assert_eq!(g.values[g.outputs[1]].shape, vec![2, 1, 12]);
    assert!(diff <= 1e-5, "max diff {diff}");
}

mod synth {
    use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto};

    pub fn init(name: &str, dims: &[usize], data: Vec<f32>) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: 1,
            float_data: data,
            ..Default::default()
        }
    }
    pub fn init_i64(name: &str, data: Vec<i64>) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: vec![data.len() as i64],
            data_type: 7,
            int64_data: data,
            ..Default::default()
        }
    }
    pub fn weights(name: &str, dims: &[usize], seed: u32) -> TensorProto {
        let n: usize = dims.iter().product();
        let data = (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 1000) as f32
                    / 1000.0
                    - 0.5
            })
            .collect();
        init(name, dims, data)
    }
    pub fn node(op: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: format!("{op}_{}", outs[0]),
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: outs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        }
    }
    pub fn ai(name: &str, i: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 2,
            i,
            ..Default::default()
        }
    }
    pub fn aints(name: &str, ints: Vec<i64>) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 7,
            ints,
            ..Default::default()
        }
    }
}

/// A hand-built graph exercising the non-recurrent lowerings: MatMul + bias, the Erf GELU
/// chain, per-feature Mul/Sub, Relu, a real Transpose, Reshape, Gemm + Relu, Softmax, Slice,
/// Sigmoid/Tanh, Concat, two outputs.
#[test]
fn synthetic_mlp_matches_tract() {
    use synth::*;
    let nodes = vec![
        node("MatMul", &["x", "w1"], &["mm"], vec![]),
        node("Add", &["mm", "b1"], &["h1"], vec![]),
        node("Div", &["h1", "sqrt2"], &["d"], vec![]),
        node("Erf", &["d"], &["e"], vec![]),
        node("Add", &["e", "one"], &["e1"], vec![]),
        node("Mul", &["h1", "e1"], &["m"], vec![]),
        node("Mul", &["m", "half"], &["g"], vec![]),
        node("Mul", &["g", "s"], &["gs"], vec![]),
        node("Sub", &["gs", "c"], &["a"], vec![]),
        node("Relu", &["a"], &["r"], vec![]),
        node(
            "Transpose",
            &["r"],
            &["t"],
            vec![aints("perm", vec![0, 2, 1])],
        ),
        node("Reshape", &["t", "shape86"], &["t2"], vec![]),
        node("Gemm", &["t2", "w2", "b2"], &["f"], vec![ai("transB", 1)]),
        node("Relu", &["f"], &["fr"], vec![]),
        node("Softmax", &["fr"], &["out1"], vec![ai("axis", -1)]),
        node("Slice", &["r", "starts", "ends", "axes"], &["sl"], vec![]),
        node("Sigmoid", &["sl"], &["sg"], vec![]),
        node("Tanh", &["sl"], &["th"], vec![]),
        node("Concat", &["sg", "th"], &["out2"], vec![ai("axis", 2)]),
    ];
    let initializer = vec![
        weights("w1", &[5, 8], 1),
        weights("b1", &[8], 2),
        init("sqrt2", &[], vec![std::f32::consts::SQRT_2]),
        init("one", &[], vec![1.0]),
        init("half", &[], vec![0.5]),
        weights("s", &[8], 3),
        weights("c", &[1, 1, 8], 4),
        init_i64("shape86", vec![8, 6]),
        weights("w2", &[4, 6], 5),
        weights("b2", &[4], 6),
        init_i64("starts", vec![1]),
        init_i64("ends", vec![4]),
        init_i64("axes", vec![1]),
    ];
    let model = tract_onnx::pb::ModelProto {
        ir_version: 8,
        opset_import: vec![tract_onnx::pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "kinglet-test".into(),
        graph: Some(tract_onnx::pb::GraphProto {
            node: nodes,
            name: "synthetic".into(),
            initializer,
            input: vec![value_info("x", Some(&[1, 6, 5]))],
            output: vec![value_info("out1", None), value_info("out2", None)],
            ..Default::default()
        }),
        ..Default::default()
    };
    let (g, diff) = max_diff_vs_tract(&model, None, &[1, 6, 5], 8);
    assert!(diff <= 1e-5, "max diff {diff}");
    use kinglet_quantizer::ir::Unary;
    let ops: Vec<String> = g.nodes.iter().map(|n| format!("{:?}", n.op)).collect();
    let count = |f: &dyn Fn(&Op) -> bool| g.nodes.iter().filter(|n| f(&n.op)).count();
    // MatMul+Add, Mul+Sub(+Relu) as a diagonal Fc, Gemm(+Relu).
    assert_eq!(count(&|o| matches!(o, Op::Fc { .. })), 3, "{ops:#?}");
    assert_eq!(
        count(&|o| matches!(o, Op::Fc { relu: true, .. })),
        2,
        "{ops:#?}"
    );
    assert_eq!(
        count(&|o| matches!(o, Op::Unary(Unary::Gelu))),
        1,
        "{ops:#?}"
    );
    assert_eq!(
        count(&|o| matches!(o, Op::Unary(Unary::Relu))),
        0,
        "{ops:#?}"
    );
    assert_eq!(count(&|o| matches!(o, Op::Transpose { .. })), 1, "{ops:#?}");
    assert_eq!(g.values[g.outputs[0]].shape, vec![8, 4]);
    assert_eq!(g.values[g.outputs[1]].shape, vec![1, 3, 16]);
}

fn synth_model(
    opset: i64,
    nodes: Vec<tract_onnx::pb::NodeProto>,
    initializer: Vec<tract_onnx::pb::TensorProto>,
    input: &[usize],
) -> tract_onnx::pb::ModelProto {
    tract_onnx::pb::ModelProto {
        ir_version: 8,
        opset_import: vec![tract_onnx::pb::OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        producer_name: "kinglet-test".into(),
        graph: Some(tract_onnx::pb::GraphProto {
            node: nodes,
            name: "synthetic".into(),
            initializer,
            input: vec![value_info("x", Some(input))],
            output: vec![value_info("y", None)],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn count_ops(g: &kinglet_quantizer::ir::Graph, f: &dyn Fn(&Op) -> bool) -> usize {
    g.nodes.iter().filter(|n| f(&n.op)).count()
}

/// Decomposed attention with separate q/k/v projections, a `Div` scale after Q·Kᵀ and an
/// additive mask `mask` (`[T, T]`): `x [1, 4, 8]` → 2 heads of 4.
fn synthetic_attention(mask: Vec<f32>) -> tract_onnx::pb::ModelProto {
    use synth::*;
    let nodes = vec![
        node("MatMul", &["x", "wq"], &["q"], vec![]),
        node("MatMul", &["x", "wk"], &["k"], vec![]),
        node("MatMul", &["x", "wv"], &["v"], vec![]),
        node("Reshape", &["q", "heads"], &["q4"], vec![]),
        node("Reshape", &["k", "heads"], &["k4"], vec![]),
        node("Reshape", &["v", "heads"], &["v4"], vec![]),
        node(
            "Transpose",
            &["q4"],
            &["qh"],
            vec![aints("perm", vec![0, 2, 1, 3])],
        ),
        node(
            "Transpose",
            &["k4"],
            &["kt"],
            vec![aints("perm", vec![0, 2, 3, 1])],
        ),
        node(
            "Transpose",
            &["v4"],
            &["vh"],
            vec![aints("perm", vec![0, 2, 1, 3])],
        ),
        node("MatMul", &["qh", "kt"], &["s"], vec![]),
        node("Div", &["s", "two"], &["s2"], vec![]),
        node("Add", &["s2", "mask"], &["s3"], vec![]),
        node("Softmax", &["s3"], &["p"], vec![ai("axis", -1)]),
        node("MatMul", &["p", "vh"], &["a"], vec![]),
        node(
            "Transpose",
            &["a"],
            &["at"],
            vec![aints("perm", vec![0, 2, 1, 3])],
        ),
        node("Reshape", &["at", "flat"], &["y"], vec![]),
    ];
    let inits = vec![
        weights("wq", &[8, 8], 1),
        weights("wk", &[8, 8], 2),
        weights("wv", &[8, 8], 3),
        init_i64("heads", vec![1, 4, 2, 4]),
        init_i64("flat", vec![1, 4, 8]),
        init("two", &[], vec![2.0]),
        init("mask", &[4, 4], mask),
    ];
    synth_model(17, nodes, inits, &[1, 4, 8])
}

#[test]
fn synthetic_causal_attention_matches_tract() {
    let ninf = f32::NEG_INFINITY;
    let mask: Vec<f32> = (0..16)
        .map(|n| if n % 4 <= n / 4 { 0.0 } else { ninf })
        .collect();
    let model = synthetic_attention(mask);
    let (g, diff) = max_diff_vs_tract(&model, None, &[1, 4, 8], 8);
    assert!(diff <= 1e-5, "max diff {diff}");
    let att: Vec<_> = g
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::Attention {
                heads,
                scale,
                causal,
            } => Some((heads, scale, causal)),
            _ => None,
        })
        .collect();
    assert_eq!(att, vec![(2, 0.5, true)]);
    // The projections feed the attention directly: no data movement left.
    assert_eq!(count_ops(&g, &|o| matches!(o, Op::Fc { .. })), 3);
    assert_eq!(count_ops(&g, &|o| matches!(o, Op::Transpose { .. })), 0);
}

#[test]
fn non_causal_attention_mask_is_rejected() {
    let mask: Vec<f32> = (0..16)
        .map(|n| if n % 3 == 0 { -1e9 } else { 0.0 })
        .collect();
    let model = synthetic_attention(mask);
    let msg = format!("{:#}", import_proto(&model, None, None).unwrap_err());
    assert!(msg.contains("only causal masks"), "{msg}");
    let bias: Vec<f32> = (0..16).map(|n| n as f32 * 0.1).collect();
    let msg = format!(
        "{:#}",
        import_proto(&synthetic_attention(bias), None, None).unwrap_err()
    );
    assert!(msg.contains("attention biases are not supported"), "{msg}");
}

#[test]
fn matmul_of_two_activations_outside_attention_is_rejected() {
    use synth::*;
    let nodes = vec![
        node(
            "Transpose",
            &["x"],
            &["xt"],
            vec![aints("perm", vec![0, 2, 1])],
        ),
        node("MatMul", &["x", "xt"], &["y"], vec![]),
    ];
    let model = synth_model(17, nodes, vec![], &[1, 4, 8]);
    let msg = format!("{:#}", import_proto(&model, None, None).unwrap_err());
    assert!(msg.contains("attention scores"), "{msg}");
}

/// The opset-23 `Attention` op with 3-D inputs (`q_num_heads`) and `is_causal`.
#[test]
fn onnx_attention_op_3d_causal_matches_tract() {
    use synth::*;
    let nodes = vec![
        node("MatMul", &["x", "wq"], &["q"], vec![]),
        node("MatMul", &["x", "wk"], &["k"], vec![]),
        node("MatMul", &["x", "wv"], &["v"], vec![]),
        node(
            "Attention",
            &["q", "k", "v"],
            &["a"],
            vec![
                ai("is_causal", 1),
                ai("q_num_heads", 2),
                ai("kv_num_heads", 2),
            ],
        ),
        node("MatMul", &["a", "wo"], &["y"], vec![]),
    ];
    let inits = vec![
        weights("wq", &[6, 8], 1),
        weights("wk", &[6, 8], 2),
        weights("wv", &[6, 8], 3),
        weights("wo", &[8, 3], 4),
    ];
    let model = synth_model(23, nodes, inits, &[1, 5, 6]);
    let (g, diff) = max_diff_vs_tract(&model, None, &[1, 5, 6], 8);
    assert!(diff <= 1e-5, "max diff {diff}");
    assert_eq!(
        count_ops(&g, &|o| matches!(
            o,
            Op::Attention {
                heads: 2,
                causal: true,
                ..
            }
        )),
        1
    );
}

/// The LayerNorm decomposition of old exports (opset < 17) becomes one `LayerNorm`.
#[test]
fn decomposed_layer_norm_matches_tract() {
    use synth::*;
    let nodes = vec![
        node("ReduceMean", &["x"], &["m"], vec![aints("axes", vec![-1])]),
        node("Sub", &["x", "m"], &["d"], vec![]),
        node("Pow", &["d", "two"], &["d2"], vec![]),
        node(
            "ReduceMean",
            &["d2"],
            &["var"],
            vec![aints("axes", vec![-1])],
        ),
        node("Add", &["var", "eps"], &["ve"], vec![]),
        node("Sqrt", &["ve"], &["sd"], vec![]),
        node("Div", &["d", "sd"], &["n"], vec![]),
        node("Mul", &["n", "gamma"], &["ng"], vec![]),
        node("Add", &["ng", "beta"], &["ln"], vec![]),
        node("MatMul", &["ln", "w"], &["y"], vec![]),
    ];
    let inits = vec![
        init("two", &[], vec![2.0]),
        init("eps", &[], vec![1e-5]),
        weights("gamma", &[8], 1),
        weights("beta", &[8], 2),
        weights("w", &[8, 3], 3),
    ];
    let model = synth_model(13, nodes, inits, &[1, 5, 8]);
    let (g, diff) = max_diff_vs_tract(&model, None, &[1, 5, 8], 8);
    assert!(diff <= 1e-5, "max diff {diff}");
    assert_eq!(count_ops(&g, &|o| matches!(o, Op::LayerNorm { .. })), 1);
    assert_eq!(g.nodes.len(), 2, "{:#?}", g.nodes);
}

#[test]
fn conv_other_than_patch_embedding_is_rejected() {
    use synth::*;
    let nodes = vec![node(
        "Conv",
        &["x", "w"],
        &["y"],
        vec![
            aints("strides", vec![1, 1]),
            aints("pads", vec![1, 1, 1, 1]),
        ],
    )];
    let model = synth_model(
        17,
        nodes,
        vec![weights("w", &[4, 1, 3, 3], 1)],
        &[1, 1, 8, 8],
    );
    let msg = format!("{:#}", import_proto(&model, None, None).unwrap_err());
    assert!(msg.contains("only patch-embedding Conv"), "{msg}");
}

/// A patch-embedding Conv whose input is not a multiple of the kernel (the trailing pixels
/// are dropped), with 2 input channels.
#[test]
fn patch_conv_with_crop_matches_tract() {
    use synth::*;
    let nodes = vec![node(
        "Conv",
        &["x", "w", "b"],
        &["y"],
        vec![
            aints("strides", vec![3, 2]),
            aints("kernel_shape", vec![3, 2]),
        ],
    )];
    let inits = vec![weights("w", &[4, 2, 3, 2], 1), weights("b", &[4], 2)];
    let model = synth_model(17, nodes, inits, &[1, 2, 7, 9]);
    let (g, diff) = max_diff_vs_tract(&model, None, &[1, 2, 7, 9], 4);
    assert!(diff <= 1e-5, "max diff {diff}");
    assert_eq!(g.values[g.outputs[0]].shape, vec![1, 4, 2, 4]);
}
