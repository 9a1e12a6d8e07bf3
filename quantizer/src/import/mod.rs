//! ONNX importer: reads a float ONNX model (as exported by `torch.onnx.export`, legacy or
//! dynamo exporter) and lowers it to Kinglet's float IR ([`crate::ir`]).
//!
//! The importer infers static shapes from the graph input shape, folds every node whose inputs
//! are all constant (shape arithmetic, `Constant`, `Expand` of zero initial states, …) with a
//! small constant evaluator, and lowers the remaining activation nodes to IR ops:
//!
//! * `LSTM` / `GRU` / `RNN` → one IR node per direction (+ `Concat` / `Slice` / `Reshape` for
//!   the ONNX `Y` / `Y_h` outputs);
//! * `MatMul` (constant right operand) / `Gemm` (constant `B`, `C`) → [`Op::Fc`]; a following
//!   `Add` / `Sub` / `Mul` / `Div` by a per-feature constant and a following `Relu` are folded
//!   into it; a per-feature affine constant op anywhere else becomes a diagonal `Fc`;
//! * `Tanh` / `Sigmoid` / `Relu` / `Gelu` (and the exporters' `Erf` GELU chain) → [`Op::Unary`];
//! * scaled dot-product attention (decomposed `MatMul(Q, Kᵀ)` … `Softmax` … `MatMul(·, V)` as
//!   exported for `nn.MultiheadAttention` / `F.scaled_dot_product_attention`, or the opset-23
//!   `Attention` op) → `Fc` per Q / K / V (a packed in-projection is split) + [`Op::Attention`]
//!   (see `attention.rs`); constant causal masks / `is_causal` → `causal: true`;
//! * `LayerNormalization` (and the opset < 17 decomposition `ReduceMean/Sub/Pow/ReduceMean/Add/
//!   Sqrt/Div/Mul/Add`) → [`Op::LayerNorm`];
//! * `Conv` with kernel = stride, no padding / dilation, group 1 (patch embedding) → Reshape /
//!   Transpose into patch rows + `Fc`;
//! * a constant joined to activations by `Concat` (CLS token) or added to them with a shape
//!   that is not per-feature (positional embedding) → [`Op::Constant`] + `Concat` / `Add`;
//! * `ReduceMean` over contiguous axes other than the last (mean over tokens) →
//!   [`Op::Mean`] (+ Reshape); other `ReduceMean` / `ReduceSum` → `Fc` with constant weights;
//! * `Add` of two activations → [`Op::Add`]; `Softmax` → [`Op::Softmax`];
//! * `Reshape` / `Flatten` / `Squeeze` / `Unsqueeze` / size-1 `Transpose` → [`Op::Reshape`]
//!   (`Identity`, `Dropout`, float-to-float `Cast` are aliases), `Transpose` →
//!   [`Op::Transpose`], `Slice` / `Gather` / `Split` with constant indices → [`Op::Slice`]
//!   (+ `Reshape` / `Concat`), `Concat` → [`Op::Concat`].
//!
//! Anything else is an error naming the op and the node. Dead nodes are removed, reshape
//! chains collapsed (and duplicate reshapes merged), Reshape/Transpose chains that move no data
//! replaced by a Reshape, Transposes emitted with size-1 axes dropped and adjacent axes merged,
//! and the nodes are in topological order.

/// `map_err` adapter turning a helper's error into an error naming the node.
macro_rules! ctx {
    ($s:expr, $n:expr) => {
        |e: anyhow::Error| $s.node_err($n, format!("{e:#}"))
    };
}

mod attention;
mod rnn;
pub(crate) mod tensor;

use crate::ir::{Graph, Node, Op, Unary, Value, ValueId};
use anyhow::{anyhow, bail, ensure, Context, Result};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use tensor::{attr_i, attr_s, dt, Tensor};
use tract_onnx::pb::{ModelProto, NodeProto};
use tract_onnx::prelude::Framework;

/// The result of [`import`].
#[derive(Debug, Clone)]
pub struct Imported {
    /// The lowered float graph.
    pub graph: Graph,
    /// The ONNX graph input is float16 (the model was exported after `.half()`); the IR still
    /// runs in f32, but tract / the deployed model expect half inputs.
    pub input_f16: bool,
    /// The default-domain opset the model was exported with.
    pub opset: i64,
    /// `producer_name producer_version` of the ONNX file.
    pub producer: String,
}

/// Reads the ONNX file at `path` and lowers it to the float IR. `input_shape` overrides (or
/// fills in dynamic dimensions of) the graph input's shape.
pub fn import(path: &Path, input_shape: Option<&[usize]>) -> Result<Imported> {
    let model = load_proto(path)?;
    import_proto(&model, path.parent(), input_shape)
        .with_context(|| format!("cannot import {}", path.display()))
}

/// Decodes an ONNX protobuf file.
pub fn load_proto(path: &Path) -> Result<ModelProto> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| anyhow!("{} is not a valid ONNX protobuf: {e}", path.display()))
}

/// Lowers an already decoded ONNX model. `model_dir` is where external tensor data lives.
pub fn import_proto(
    model: &ModelProto,
    model_dir: Option<&Path>,
    input_shape: Option<&[usize]>,
) -> Result<Imported> {
    let opset = model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .context("the model imports no default-domain ONNX opset")?;
    let producer = format!("{} {}", model.producer_name, model.producer_version)
        .trim()
        .to_string();
    let graph = model.graph.as_ref().context("the model has no graph")?;

    // Initializers.
    let mut inits: HashMap<String, Tensor> = HashMap::new();
    for t in &graph.initializer {
        let v = tensor::from_proto(t, model_dir)
            .with_context(|| format!("cannot read initializer '{}'", t.name))?;
        if let tensor::Data::F(values) = &v.data {
            // ±inf is legitimate in attention masks; a NaN never is.
            if let Some(pos) = values.iter().position(|x| x.is_nan()) {
                bail!(
                    "initializer '{}' holds NaN at element {pos}: the weights are corrupt",
                    t.name
                );
            }
        }
        inits.insert(t.name.clone(), v);
    }
    ensure!(
        graph.sparse_initializer.is_empty(),
        "sparse initializers are not supported"
    );

    // The graph input.
    let real_inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !inits.contains_key(&i.name))
        .collect();
    ensure!(
        real_inputs.len() == 1,
        "expected exactly one graph input, found {}: {:?}",
        real_inputs.len(),
        real_inputs.iter().map(|i| &i.name).collect::<Vec<_>>()
    );
    let input = real_inputs[0];
    let tt = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(tract_onnx::pb::type_proto::Value::TensorType(t)) => t,
        _ => bail!("graph input '{}' is not a tensor", input.name),
    };
    let input_f16 = match tt.elem_type {
        dt::FLOAT => false,
        dt::FLOAT16 => true,
        other => bail!(
            "graph input '{}' is {}; only float32 and float16 inputs are supported",
            input.name,
            dt::name(other)
        ),
    };
    let in_shape = resolve_input_shape(&input.name, tt.shape.as_ref(), input_shape)?;

    // Nodes: GELU rewrite, then topological order.
    let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let output_set: HashSet<String> = outputs.iter().cloned().collect();
    let nodes = topo_sort(graph.node.clone(), &inits, &input.name)?;
    let nodes = rewrite_gelu(nodes, &inits, opset, &output_set);
    let nodes = rewrite_layer_norm(nodes, &inits, opset, &output_set);

    let mut imp = Importer::new(opset);
    for name in &outputs {
        *imp.uses.entry(name.clone()).or_default() += 1;
    }
    for n in &nodes {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *imp.uses.entry(i.clone()).or_default() += 1;
        }
    }
    let in_id = imp.new_value(&input.name, in_shape);
    imp.g.inputs.push(in_id);
    imp.bind(&input.name, Sym::A(in_id));
    for (k, v) in inits {
        imp.syms.entry(k).or_insert(Sym::C(v));
    }

    for node in &nodes {
        imp.node(node)?;
    }

    // Outputs.
    for o in &graph.output {
        ensure!(
            !imp.scores.contains_key(&o.name),
            "graph output '{}' is attention scores (a MatMul of two activations); only complete \
             scaled dot-product attention is supported",
            o.name
        );
        let sym =
            imp.syms.get(&o.name).cloned().with_context(|| {
                format!("graph output '{}' is not produced by any node", o.name)
            })?;
        let mut id = match sym {
            Sym::A(id) => id,
            Sym::C(_) => bail!(
                "graph output '{}' is a constant (it does not depend on the input)",
                o.name
            ),
        };
        if imp.g.inputs.contains(&id) || imp.g.outputs.contains(&id) {
            let shape = imp.g.values[id].shape.clone();
            id = imp.emit(&o.name, Op::Reshape, vec![id], &o.name, shape);
        }
        imp.g.values[id].name = o.name.clone();
        if input_shape.is_none() {
            check_declared_shape(o, &imp.g.values[id].shape)?;
        }
        imp.g.outputs.push(id);
    }

    Ok(Imported {
        graph: finalize(imp.g),
        input_f16,
        opset,
        producer,
    })
}

fn resolve_input_shape(
    name: &str,
    shape: Option<&tract_onnx::pb::TensorShapeProto>,
    given: Option<&[usize]>,
) -> Result<Vec<usize>> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value as D;
    let dims: Option<Vec<Option<(usize, String)>>> = shape.map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(D::DimValue(v)) if *v > 0 => Some((*v as usize, String::new())),
                Some(D::DimParam(p)) => {
                    let _ = p;
                    None
                }
                _ => None,
            })
            .collect()
    });
    let params: Vec<String> = shape
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(D::DimParam(p)) => p.clone(),
                    _ => String::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    match (dims, given) {
        (Some(dims), Some(given)) => {
            ensure!(
                dims.len() == given.len(),
                "input '{name}' has rank {} but the given input shape {given:?} has rank {}",
                dims.len(),
                given.len()
            );
            for (k, (d, &g)) in dims.iter().zip(given).enumerate() {
                if let Some((v, _)) = d {
                    ensure!(
                        *v == g,
                        "input '{name}' has static dimension {k} = {v}, but the given input \
                         shape {given:?} says {g}"
                    );
                }
            }
            ensure!(
                given.iter().all(|&d| d > 0),
                "input shape {given:?} has a zero dimension"
            );
            Ok(given.to_vec())
        }
        (None, Some(given)) => Ok(given.to_vec()),
        (None, None) => bail!(
            "input '{name}' has no shape in the model; pass the input shape explicitly \
             (e.g. 1,T,F)"
        ),
        (Some(dims), None) => dims
            .iter()
            .enumerate()
            .map(|(k, d)| match d {
                Some((v, _)) => Ok(*v),
                None => {
                    let p = &params[k];
                    let what = if p.is_empty() {
                        "unknown".to_string()
                    } else {
                        format!("named '{p}'")
                    };
                    Err(anyhow!(
                        "input '{name}' has a dynamic dimension {k} ({what}); pass the full \
                         input shape explicitly (e.g. 1,T,F) to fix it"
                    ))
                }
            })
            .collect(),
    }
}

fn check_declared_shape(o: &tract_onnx::pb::ValueInfoProto, shape: &[usize]) -> Result<()> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value as D;
    let Some(tract_onnx::pb::type_proto::Value::TensorType(tt)) =
        o.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Ok(());
    };
    let Some(s) = tt.shape.as_ref() else {
        return Ok(());
    };
    let declared: Option<Vec<usize>> = s
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(D::DimValue(v)) if *v > 0 => Some(*v as usize),
            _ => None,
        })
        .collect();
    if let Some(declared) = declared {
        ensure!(
            declared == shape,
            "internal error: output '{}' is declared {declared:?} but the importer inferred \
             {shape:?}",
            o.name
        );
    }
    Ok(())
}

/// Stable topological sort (ONNX requires sorted nodes, but be lenient).
fn topo_sort(
    nodes: Vec<NodeProto>,
    inits: &HashMap<String, Tensor>,
    input: &str,
) -> Result<Vec<NodeProto>> {
    let mut avail: HashSet<String> = inits.keys().cloned().collect();
    avail.insert(input.to_string());
    let mut pending: Vec<Option<NodeProto>> = nodes.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(pending.len());
    loop {
        let mut progress = false;
        for slot in pending.iter_mut() {
            let ready = match slot {
                Some(n) => n.input.iter().all(|i| i.is_empty() || avail.contains(i)),
                None => false,
            };
            if ready {
                let n = slot.take().unwrap();
                avail.extend(n.output.iter().filter(|o| !o.is_empty()).cloned());
                out.push(n);
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    if let Some(n) = pending.iter().flatten().next() {
        let missing: Vec<_> = n
            .input
            .iter()
            .filter(|i| !i.is_empty() && !avail.contains(*i))
            .collect();
        bail!(
            "node '{}' ({}) uses {:?}, which no node produces (cyclic graph or missing \
             initializer)",
            node_name(n),
            n.op_type,
            missing
        );
    }
    Ok(out)
}

/// A node's name for messages (its first output when it has none).
pub(crate) fn node_name(n: &NodeProto) -> String {
    if !n.name.is_empty() {
        n.name.clone()
    } else {
        format!(
            "<unnamed, output {}>",
            n.output.first().map(String::as_str).unwrap_or("?")
        )
    }
}

/// Replaces the `Erf` chain exporters emit for exact GELU
/// (`x · 0.5 · (1 + erf(x / √2))` in any association) by a single `Gelu` node.
fn rewrite_gelu(
    nodes: Vec<NodeProto>,
    inits: &HashMap<String, Tensor>,
    opset: i64,
    outputs: &HashSet<String>,
) -> Vec<NodeProto> {
    if !nodes.iter().any(|n| n.op_type == "Erf") {
        return nodes;
    }
    // Constants reachable without shape information.
    let mut consts: HashMap<String, Tensor> = inits.clone();
    for n in &nodes {
        if n.op_type == "Shape" || n.op_type == "Size" {
            continue;
        }
        let ins: Option<Vec<Option<Tensor>>> = n
            .input
            .iter()
            .map(|i| {
                if i.is_empty() {
                    Some(None)
                } else {
                    consts.get(i).cloned().map(Some)
                }
            })
            .collect();
        if let Some(ins) = ins {
            if let Ok(outs) = tensor::eval_node(n, opset, &ins) {
                for (o, t) in n.output.iter().zip(outs) {
                    consts.insert(o.clone(), t);
                }
            }
        }
    }
    let mut producer: HashMap<&str, usize> = HashMap::new();
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (k, n) in nodes.iter().enumerate() {
        for o in &n.output {
            producer.insert(o, k);
        }
        for i in &n.input {
            consumers.entry(i).or_default().push(k);
        }
    }
    let scalar = |name: &str, want: f32| -> bool {
        consts
            .get(name)
            .is_some_and(|t| t.numel() == 1 && (t.as_f32()[0] - want).abs() < 1e-3)
    };
    let single = |name: &str| -> Option<usize> {
        if outputs.contains(name) {
            return None;
        }
        match consumers.get(name).map(Vec::as_slice) {
            Some([c]) => Some(*c),
            _ => None,
        }
    };
    // For a binary node, the input other than `name` (if `name` is one of them).
    let other = |n: &NodeProto, name: &str| -> Option<String> {
        if n.input.len() != 2 {
            return None;
        }
        if n.input[0] == name {
            Some(n.input[1].clone())
        } else if n.input[1] == name {
            Some(n.input[0].clone())
        } else {
            None
        }
    };
    let mut removed = vec![false; nodes.len()];
    let mut replacement: HashMap<usize, NodeProto> = HashMap::new();
    for (e, en) in nodes.iter().enumerate() {
        if en.op_type != "Erf" || removed[e] {
            continue;
        }
        let matched = (|| -> Option<(String, Vec<usize>, usize)> {
            let u = en.input.first()?;
            let p = *producer.get(u.as_str())?;
            let pn = &nodes[p];
            single(u)?;
            let x = match pn.op_type.as_str() {
                "Div" if scalar(&pn.input[1], std::f32::consts::SQRT_2) => pn.input[0].clone(),
                "Mul" if scalar(&pn.input[1], std::f32::consts::FRAC_1_SQRT_2) => {
                    pn.input[0].clone()
                }
                "Mul" if scalar(&pn.input[0], std::f32::consts::FRAC_1_SQRT_2) => {
                    pn.input[1].clone()
                }
                _ => return None,
            };
            let eo = en.output.first()?;
            let a = single(eo)?;
            let an = &nodes[a];
            if an.op_type != "Add" || !scalar(&other(an, eo)?, 1.0) {
                return None;
            }
            let ao = an.output.first()?;
            let m1 = single(ao)?;
            let m1n = &nodes[m1];
            if m1n.op_type != "Mul" {
                return None;
            }
            let y = other(m1n, ao)?;
            let m1o = m1n.output.first()?;
            if y == x || scalar(&y, 0.5) {
                // (x · (1+erf)) · 0.5  or  ((1+erf) · 0.5) · x
                let want = if y == x { None } else { Some(x.clone()) };
                let m2 = single(m1o)?;
                let m2n = &nodes[m2];
                if m2n.op_type != "Mul" {
                    return None;
                }
                let z = other(m2n, m1o)?;
                let ok = match &want {
                    None => scalar(&z, 0.5),
                    Some(x) => &z == x,
                };
                if !ok {
                    return None;
                }
                Some((x, vec![p, e, a, m1, m2], m2))
            } else {
                // (x · 0.5) · (1+erf)
                let q = *producer.get(y.as_str())?;
                single(&y)?;
                let qn = &nodes[q];
                if qn.op_type != "Mul" || other(qn, &x).is_none_or(|h| !scalar(&h, 0.5)) {
                    return None;
                }
                Some((x, vec![p, e, a, q, m1], m1))
            }
        })();
        if let Some((x, chain, last)) = matched {
            if chain.iter().any(|&c| removed[c]) {
                continue;
            }
            for &c in &chain {
                removed[c] = true;
            }
            let out = nodes[last].output[0].clone();
            replacement.insert(
                last,
                NodeProto {
                    input: vec![x],
                    output: vec![out],
                    name: format!("{}/gelu", node_name(en)),
                    op_type: "Gelu".into(),
                    ..Default::default()
                },
            );
        }
    }
    nodes
        .into_iter()
        .enumerate()
        .filter_map(|(k, n)| match replacement.remove(&k) {
            Some(r) => Some(r),
            None if removed[k] => None,
            None => Some(n),
        })
        .collect()
}

/// Replaces the decomposed LayerNorm of old exports (opset < 17):
/// `d = x - ReduceMean(x)`, `y = d / Sqrt(ReduceMean(d²) + eps)` (`d²` as `Pow(d, 2)` or
/// `Mul(d, d)`), then optional `Mul` by a constant scale and `Add` of a constant bias, all over
/// the last axis (`axes = [-1]`) — by a single `LayerNormalization` node.
fn rewrite_layer_norm(
    nodes: Vec<NodeProto>,
    inits: &HashMap<String, Tensor>,
    opset: i64,
    outputs: &HashSet<String>,
) -> Vec<NodeProto> {
    if !nodes.iter().any(|n| n.op_type == "ReduceMean") {
        return nodes;
    }
    let consts = static_consts(&nodes, inits, opset);
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (k, n) in nodes.iter().enumerate() {
        for i in &n.input {
            consumers.entry(i).or_default().push(k);
        }
    }
    let uses = |name: &str| -> Vec<usize> {
        let mut v = consumers.get(name).cloned().unwrap_or_default();
        if outputs.contains(name) {
            v.push(usize::MAX);
        }
        v
    };
    let single = |name: &str| -> Option<usize> {
        match uses(name).as_slice() {
            [c] if *c != usize::MAX => Some(*c),
            _ => None,
        }
    };
    let cst = |name: &str| consts.get(name);
    let scalar = |name: &str| cst(name).filter(|t| t.numel() == 1).map(|t| t.as_f32()[0]);
    let last_axis_mean = |n: &NodeProto| -> bool {
        if n.op_type != "ReduceMean" || tensor::attr_i(n, "keepdims").unwrap_or(1) == 0 {
            return false;
        }
        let axes = if opset >= 18 {
            n.input
                .get(1)
                .and_then(|a| cst(a))
                .and_then(|t| t.as_i64().ok())
        } else {
            tensor::attr_ints(n, "axes")
        };
        axes.as_deref() == Some(&[-1])
    };
    let other = |n: &NodeProto, name: &str| -> Option<String> {
        match n.input.as_slice() {
            [a, b] if a == name => Some(b.clone()),
            [a, b] if b == name => Some(a.clone()),
            _ => None,
        }
    };
    let mut removed = vec![false; nodes.len()];
    let mut replacement: HashMap<usize, NodeProto> = HashMap::new();
    for (r1, n1) in nodes.iter().enumerate() {
        if removed[r1] || !last_axis_mean(n1) {
            continue;
        }
        let matched = (|| -> Option<(Vec<usize>, usize, NodeProto)> {
            let x = n1.input.first()?.clone();
            let m = n1.output.first()?;
            let sub = single(m)?;
            let sn = &nodes[sub];
            if sn.op_type != "Sub" || sn.input.first()? != &x || sn.input.get(1)? != m {
                return None;
            }
            let d = sn.output.first()?;
            let du = uses(d);
            let (sq, div) = match du.as_slice() {
                [a, b] if nodes.get(*a)?.op_type == "Div" => (*b, *a),
                [a, b] => (*a, *b),
                _ => return None,
            };
            let qn = &nodes[sq];
            let is_sq = match qn.op_type.as_str() {
                "Pow" => qn.input.first()? == d && scalar(qn.input.get(1)?) == Some(2.0),
                "Mul" => qn.input.first()? == d && qn.input.get(1)? == d,
                _ => false,
            };
            let dn = &nodes[div];
            if !is_sq || dn.op_type != "Div" || dn.input.first()? != d {
                return None;
            }
            let r2 = single(qn.output.first()?)?;
            if !last_axis_mean(&nodes[r2]) {
                return None;
            }
            let add = single(nodes[r2].output.first()?)?;
            let an = &nodes[add];
            let eps = scalar(&other(an, nodes[r2].output.first()?)?)?;
            if an.op_type != "Add" {
                return None;
            }
            let sqrt = single(an.output.first()?)?;
            let qtn = &nodes[sqrt];
            if qtn.op_type != "Sqrt" || dn.input.get(1)? != qtn.output.first()? {
                return None;
            }
            let mut chain = vec![r1, sub, sq, r2, add, sqrt, div];
            let mut last = div;
            let (mut gamma, mut beta) = (String::new(), String::new());
            if let Some(c) = single(dn.output.first()?) {
                let cn = &nodes[c];
                let g = other(cn, dn.output.first()?);
                if cn.op_type == "Mul" && g.as_deref().is_some_and(|g| cst(g).is_some()) {
                    gamma = g.unwrap();
                    chain.push(c);
                    last = c;
                }
            }
            if let Some(c) = single(nodes[last].output.first()?) {
                let cn = &nodes[c];
                let b = other(cn, nodes[last].output.first()?);
                if cn.op_type == "Add" && b.as_deref().is_some_and(|b| cst(b).is_some()) {
                    beta = b.unwrap();
                    chain.push(c);
                    last = c;
                }
            }
            let mut ln = NodeProto {
                input: vec![x, gamma, beta],
                output: vec![nodes[last].output[0].clone()],
                name: format!("{}/layer_norm", node_name(n1)),
                op_type: "LayerNormalization".into(),
                ..Default::default()
            };
            ln.attribute.push(tract_onnx::pb::AttributeProto {
                name: "epsilon".into(),
                r#type: 1,
                f: eps,
                ..Default::default()
            });
            Some((chain, last, ln))
        })();
        if let Some((chain, last, ln)) = matched {
            if chain.iter().any(|&c| removed[c]) {
                continue;
            }
            for &c in &chain {
                removed[c] = true;
            }
            replacement.insert(last, ln);
        }
    }
    nodes
        .into_iter()
        .enumerate()
        .filter_map(|(k, n)| match replacement.remove(&k) {
            Some(r) => Some(r),
            None if removed[k] => None,
            None => Some(n),
        })
        .collect()
}

/// Constants reachable without shape information (initializers, `Constant` nodes and what
/// folds from them).
fn static_consts(
    nodes: &[NodeProto],
    inits: &HashMap<String, Tensor>,
    opset: i64,
) -> HashMap<String, Tensor> {
    let mut consts: HashMap<String, Tensor> = inits.clone();
    for n in nodes {
        if n.op_type == "Shape" || n.op_type == "Size" {
            continue;
        }
        let ins: Option<Vec<Option<Tensor>>> = n
            .input
            .iter()
            .map(|i| {
                if i.is_empty() {
                    Some(None)
                } else {
                    consts.get(i).cloned().map(Some)
                }
            })
            .collect();
        if let Some(ins) = ins {
            if let Ok(outs) = tensor::eval_node(n, opset, &ins) {
                for (o, t) in n.output.iter().zip(outs) {
                    consts.insert(o.clone(), t);
                }
            }
        }
    }
    consts
}

/// What an ONNX value is at import time.
#[derive(Debug, Clone)]
pub(crate) enum Sym {
    /// A constant.
    C(Tensor),
    /// An activation (IR value).
    A(ValueId),
}

pub(crate) struct Importer {
    opset: i64,
    g: Graph,
    syms: HashMap<String, Sym>,
    /// ONNX consumers of each ONNX value (+1 for graph outputs).
    uses: HashMap<String, usize>,
    /// Per IR value: pending consumers (ONNX consumers of every name bound to it).
    ir_uses: Vec<usize>,
    /// Per IR value: the node producing it.
    producer: Vec<Option<usize>>,
    /// Pending attention scores (`MatMul` of two activations and what follows), by ONNX name.
    scores: HashMap<String, attention::Scores>,
    /// Column blocks of `Fc` nodes already split off: (node, first row, rows) → value.
    fc_splits: HashMap<(usize, usize, usize), ValueId>,
}

/// Affine per-feature constant op `y = s · x + b` (over the last axis).
struct Affine {
    scale: Vec<f32>,
    bias: Vec<f32>,
}

impl Importer {
    fn new(opset: i64) -> Self {
        Importer {
            opset,
            g: Graph::default(),
            syms: HashMap::new(),
            uses: HashMap::new(),
            ir_uses: Vec::new(),
            producer: Vec::new(),
            scores: HashMap::new(),
            fc_splits: HashMap::new(),
        }
    }

    pub(crate) fn new_value(&mut self, name: &str, shape: Vec<usize>) -> ValueId {
        self.g.values.push(Value {
            name: name.to_string(),
            shape,
        });
        self.ir_uses.push(0);
        self.producer.push(None);
        self.g.values.len() - 1
    }

    /// Appends a node producing a new value.
    pub(crate) fn emit(
        &mut self,
        node_name: &str,
        op: Op,
        inputs: Vec<ValueId>,
        out_name: &str,
        shape: Vec<usize>,
    ) -> ValueId {
        let out = self.new_value(out_name, shape);
        self.producer[out] = Some(self.g.nodes.len());
        self.g.nodes.push(Node {
            name: node_name.to_string(),
            op,
            inputs,
            output: out,
        });
        out
    }

    /// Binds an ONNX value name.
    pub(crate) fn bind(&mut self, name: &str, sym: Sym) {
        if name.is_empty() {
            return;
        }
        if let Sym::A(id) = sym {
            self.ir_uses[id] += self.uses.get(name).copied().unwrap_or(0);
        }
        self.syms.insert(name.to_string(), sym);
    }

    /// Binds an output name to an existing IR value on behalf of a pass-through node that
    /// consumed it (the pass-through's own use is released).
    fn alias(&mut self, name: &str, id: ValueId) {
        self.release_use(id);
        self.bind(name, Sym::A(id));
    }

    /// Releases one pending use of `id` (its consumer has been lowered without reading it).
    pub(crate) fn release_use(&mut self, id: ValueId) {
        self.ir_uses[id] = self.ir_uses[id].saturating_sub(1);
    }

    pub(crate) fn shape(&self, id: ValueId) -> &[usize] {
        &self.g.values[id].shape
    }

    /// `id` viewed with `shape` (a Reshape node unless the shape is already right).
    pub(crate) fn reshape(
        &mut self,
        node_name: &str,
        id: ValueId,
        shape: Vec<usize>,
        out_name: &str,
    ) -> ValueId {
        if self.shape(id) == shape.as_slice() {
            id
        } else {
            self.emit(node_name, Op::Reshape, vec![id], out_name, shape)
        }
    }

    /// The producing node if it is a non-ReLU `Fc` read only by the node being lowered.
    fn exclusive_fc(&self, id: ValueId) -> Option<usize> {
        let p = self.producer[id]?;
        if self.ir_uses[id] != 1 || self.g.outputs.contains(&id) {
            return None;
        }
        match &self.g.nodes[p].op {
            Op::Fc { relu: false, .. } => Some(p),
            _ => None,
        }
    }

    fn describe_inputs(&self, node: &NodeProto) -> String {
        node.input
            .iter()
            .map(|i| {
                if i.is_empty() {
                    return "<absent>".to_string();
                }
                match self.syms.get(i) {
                    Some(Sym::A(id)) => format!("'{i}': activation {:?}", self.shape(*id)),
                    Some(Sym::C(t)) => format!("'{i}': constant {}", t.describe()),
                    None => format!("'{i}': ?"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(crate) fn unsupported(&self, node: &NodeProto, hint: &str) -> anyhow::Error {
        let op = if node.domain.is_empty() || node.domain == "ai.onnx" {
            node.op_type.clone()
        } else {
            format!("{}::{}", node.domain, node.op_type)
        };
        anyhow!(
            "unsupported ONNX op '{}' at node '{}' (inputs: {}): {}",
            op,
            node_name(node),
            self.describe_inputs(node),
            hint
        )
    }

    /// An error about a supported op used in an unsupported way.
    pub(crate) fn node_err(&self, node: &NodeProto, msg: impl std::fmt::Display) -> anyhow::Error {
        anyhow!(
            "ONNX node '{}' ({}, inputs: {}): {}",
            node_name(node),
            node.op_type,
            self.describe_inputs(node),
            msg
        )
    }

    fn node(&mut self, node: &NodeProto) -> Result<()> {
        if node.input.iter().any(|i| self.scores.contains_key(i)) {
            return attention::scores_use(self, node);
        }
        let ins: Vec<Option<Sym>> = node
            .input
            .iter()
            .map(|i| {
                if i.is_empty() {
                    Ok(None)
                } else {
                    self.syms.get(i).cloned().map(Some).with_context(|| {
                        format!("node '{}': input '{i}' is undefined", node_name(node))
                    })
                }
            })
            .collect::<Result<_>>()?;
        let std_domain = node.domain.is_empty() || node.domain == "ai.onnx";
        if !std_domain {
            return Err(self.unsupported(
                node,
                "custom-domain ops are not supported; export with standard ONNX ops only",
            ));
        }
        let op = node.op_type.as_str();
        // Shape queries on activations are constants: shapes are static.
        if matches!(op, "Shape" | "Size") {
            if let Some(Some(Sym::A(id))) = ins.first() {
                let shape = self.shape(*id).to_vec();
                let t = if op == "Shape" {
                    tensor::shape_of(node, &shape).map_err(|e| self.node_err(node, e))?
                } else {
                    Tensor::i(vec![], vec![shape.iter().product::<usize>() as i64])
                };
                self.ir_uses[*id] = self.ir_uses[*id].saturating_sub(1);
                self.bind(&node.output[0], Sym::C(t));
                return Ok(());
            }
        }
        let all_const = ins.iter().all(|s| !matches!(s, Some(Sym::A(_))));
        if all_const && !matches!(op, "LSTM" | "GRU" | "RNN") {
            let consts: Vec<Option<Tensor>> = ins
                .into_iter()
                .map(|s| match s {
                    Some(Sym::C(t)) => Some(t),
                    _ => None,
                })
                .collect();
            return match tensor::eval_node(node, self.opset, &consts) {
                Ok(outs) => {
                    for (o, t) in node.output.iter().zip(outs) {
                        self.bind(o, Sym::C(t));
                    }
                    Ok(())
                }
                Err(e) if e.is::<tensor::UnknownOp>() => Err(self.unsupported(
                    node,
                    "this op is not known to Kinglet's constant folder (all its inputs are \
                     constant); fold it before import (e.g. onnxsim) or report it",
                )),
                Err(e) => Err(self.node_err(node, format!("constant folding failed: {e:#}"))),
            };
        }
        self.lower(node, &ins)
    }

    fn act(&self, node: &NodeProto, ins: &[Option<Sym>], i: usize) -> Result<ValueId> {
        match ins.get(i) {
            Some(Some(Sym::A(id))) => Ok(*id),
            Some(Some(Sym::C(_))) => Err(self.node_err(
                node,
                format!("input {i} must be an activation here, not a constant"),
            )),
            _ => Err(self.node_err(node, format!("missing input {i}"))),
        }
    }

    fn cst<'a>(&self, node: &NodeProto, ins: &'a [Option<Sym>], i: usize) -> Result<&'a Tensor> {
        match ins.get(i) {
            Some(Some(Sym::C(t))) => Ok(t),
            Some(Some(Sym::A(_))) => Err(self.node_err(
                node,
                format!(
                    "input {i} ('{}') must be a constant (it depends on the model input)",
                    node.input[i]
                ),
            )),
            _ => Err(self.node_err(node, format!("missing input {i}"))),
        }
    }

    fn opt_cst<'a>(
        &self,
        node: &NodeProto,
        ins: &'a [Option<Sym>],
        i: usize,
    ) -> Result<Option<&'a Tensor>> {
        match ins.get(i) {
            None | Some(None) => Ok(None),
            Some(_) => self.cst(node, ins, i).map(Some),
        }
    }

    /// Constant inputs as `Option<Tensor>` (activations → `None`), for the shared parameter
    /// helpers.
    fn const_view(ins: &[Option<Sym>]) -> Vec<Option<Tensor>> {
        ins.iter()
            .map(|s| match s {
                Some(Sym::C(t)) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    fn out0(node: &NodeProto) -> &str {
        node.output.first().map(String::as_str).unwrap_or("")
    }

    fn lower(&mut self, node: &NodeProto, ins: &[Option<Sym>]) -> Result<()> {
        let op = node.op_type.as_str();
        let name = node_name(node);
        let out = Self::out0(node).to_string();
        match op {
            "Identity" => {
                let x = self.act(node, ins, 0)?;
                self.alias(&out, x);
            }
            "Dropout" => {
                let x = self.act(node, ins, 0)?;
                if let Some(Some(Sym::C(t))) = ins.get(2) {
                    if !t.all_zero() {
                        return Err(self.node_err(node, "Dropout in training mode"));
                    }
                }
                if node.output.len() > 1 && self.uses.get(&node.output[1]).copied().unwrap_or(0) > 0
                {
                    return Err(self.node_err(node, "the Dropout mask output is used"));
                }
                self.alias(&out, x);
            }
            "Cast" | "CastLike" => {
                let x = self.act(node, ins, 0)?;
                let to = if op == "Cast" {
                    attr_i(node, "to").unwrap_or(0) as i32
                } else {
                    match ins.get(1) {
                        Some(Some(Sym::C(t))) => t.dt,
                        _ => dt::FLOAT,
                    }
                };
                if !dt::is_float(to) {
                    return Err(self.unsupported(
                        node,
                        &format!(
                            "Cast of an activation to {} is not supported (only float-to-float \
                             casts, which are no-ops in Kinglet's float IR)",
                            dt::name(to)
                        ),
                    ));
                }
                self.alias(&out, x);
            }
            "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => {
                let x = self.act(node, ins, 0)?;
                let shape = self.shape(x).to_vec();
                let consts = Self::const_view(ins);
                let new_shape = (|| -> Result<Vec<usize>> {
                    match op {
                        "Reshape" => {
                            let spec = if self.opset < 5 {
                                tensor::attr_ints(node, "shape").context("no shape")?
                            } else {
                                self.cst(node, ins, 1)?.as_i64()?
                            };
                            let allowzero = attr_i(node, "allowzero").unwrap_or(0) != 0;
                            tensor::reshape_shape(&shape, &spec, allowzero)
                        }
                        "Flatten" => {
                            tensor::flatten_shape(&shape, attr_i(node, "axis").unwrap_or(1))
                        }
                        "Squeeze" => {
                            let axes = tensor::axes_param(node, self.opset, &consts)?;
                            tensor::squeeze_shape(&shape, axes.as_deref())
                        }
                        _ => {
                            let axes = tensor::axes_param(node, self.opset, &consts)?
                                .context("Unsqueeze without axes")?;
                            tensor::unsqueeze_shape(&shape, &axes)
                        }
                    }
                })()
                .map_err(ctx!(self, node))?;
                if new_shape == shape {
                    self.alias(&out, x);
                } else {
                    let y = self.emit(&name, Op::Reshape, vec![x], &out, new_shape);
                    self.bind(&out, Sym::A(y));
                }
            }
            "Transpose" => {
                let x = self.act(node, ins, 0)?;
                let shape = self.shape(x).to_vec();
                let perm = tensor::transpose_perm(node, shape.len()).map_err(ctx!(self, node))?;
                let y = self.permute(&name, x, perm, &out);
                if y == x {
                    self.alias(&out, x);
                } else {
                    self.bind(&out, Sym::A(y));
                }
            }
            "Slice" => {
                let x = self.act(node, ins, 0)?;
                let consts = Self::const_view(ins);
                let rank = self.shape(x).len();
                let params = tensor::slice_params(node, self.opset, &consts, rank)
                    .map_err(ctx!(self, node))?;
                let mut y = x;
                for (axis, s, e, step) in params {
                    let dim = self.shape(y)[axis];
                    let idx = tensor::slice_range(s, e, step, dim).map_err(ctx!(self, node))?;
                    y = self.take(node, y, axis, &idx, &out)?;
                }
                if y == x {
                    self.alias(&out, x);
                } else {
                    self.bind(&out, Sym::A(y));
                }
            }
            "Gather" => {
                let x = self.act(node, ins, 0)?;
                let it = self.cst(node, ins, 1)?.clone();
                let shape = self.shape(x).to_vec();
                let axis = tensor::norm_axis(attr_i(node, "axis").unwrap_or(0), shape.len())
                    .map_err(ctx!(self, node))?;
                let idx = tensor::gather_indices(&it, shape[axis]).map_err(ctx!(self, node))?;
                let y = self.take(node, x, axis, &idx, &format!("{out}/take"))?;
                let mut new_shape = shape[..axis].to_vec();
                new_shape.extend_from_slice(&it.shape);
                new_shape.extend_from_slice(&shape[axis + 1..]);
                let y = self.reshape(&name, y, new_shape, &out);
                if y == x {
                    self.alias(&out, x);
                } else {
                    self.g.values[y].name = out.clone();
                    self.bind(&out, Sym::A(y));
                }
            }
            "Split" => {
                let x = self.act(node, ins, 0)?;
                let shape = self.shape(x).to_vec();
                let consts = Self::const_view(ins);
                let sizes = tensor::split_sizes(node, self.opset, &consts, &shape)
                    .map_err(ctx!(self, node))?;
                let axis = tensor::norm_axis(attr_i(node, "axis").unwrap_or(0), shape.len())
                    .map_err(ctx!(self, node))?;
                let mut start = 0;
                for (k, &sz) in sizes.iter().enumerate() {
                    let o = node.output.get(k).cloned().unwrap_or_default();
                    let idx: Vec<usize> = (start..start + sz).collect();
                    start += sz;
                    if o.is_empty() || self.uses.get(&o).copied().unwrap_or(0) == 0 {
                        continue;
                    }
                    let y = self.take(node, x, axis, &idx, &o)?;
                    self.bind(&o, Sym::A(y));
                }
            }
            "Concat" => {
                let mut ids = Vec::new();
                for (k, s) in ins.iter().enumerate() {
                    match s {
                        Some(Sym::A(id)) => ids.push(*id),
                        Some(Sym::C(t)) if t.numel() == 0 => {}
                        Some(Sym::C(t)) => {
                            // A learned token (CLS) joined to the activations.
                            let c = self.emit(
                                &name,
                                Op::Constant { data: t.as_f32() },
                                vec![],
                                &format!("{}/const", node.input[k]),
                                t.shape.clone(),
                            );
                            ids.push(c);
                        }
                        None => {}
                    }
                }
                let rank = self.shape(ids[0]).len();
                let axis = tensor::norm_axis(
                    attr_i(node, "axis")
                        .context("Concat without axis")
                        .map_err(ctx!(self, node))?,
                    rank,
                )
                .map_err(ctx!(self, node))?;
                let mut shape = self.shape(ids[0]).to_vec();
                shape[axis] = 0;
                for &id in &ids {
                    let s = self.shape(id);
                    if s.len() != rank
                        || (0..rank).any(|d| d != axis && s[d] != self.shape(ids[0])[d])
                    {
                        return Err(self.node_err(node, "Concat input shapes do not match"));
                    }
                    shape[axis] += s[axis];
                }
                if ids.len() == 1 {
                    self.alias(&out, ids[0]);
                } else {
                    let y = self.emit(&name, Op::Concat { axis }, ids, &out, shape);
                    self.bind(&out, Sym::A(y));
                }
            }
            "MatMul" => {
                let x = match &ins[0] {
                    Some(Sym::A(id)) => *id,
                    _ => {
                        return Err(self.unsupported(
                            node,
                            "MatMul with a constant left operand is not supported",
                        ))
                    }
                };
                let w = match &ins[1] {
                    Some(Sym::C(t)) => t.clone(),
                    Some(Sym::A(b)) => return attention::start_scores(self, node, x, *b),
                    None => return Err(self.node_err(node, "missing input 1")),
                };
                let xs = self.shape(x).to_vec();
                let mut ws = w.shape.clone();
                while ws.len() > 2 && ws[0] == 1 {
                    ws.remove(0);
                }
                let (k, n, vec_w) = match ws.len() {
                    1 => (ws[0], 1, true),
                    2 => (ws[0], ws[1], false),
                    _ => {
                        return Err(self.unsupported(
                            node,
                            "batched MatMul with a 3-D constant is not supported",
                        ))
                    }
                };
                let kx = *xs
                    .last()
                    .context("MatMul of a scalar")
                    .map_err(ctx!(self, node))?;
                if kx != k {
                    return Err(
                        self.node_err(node, format!("MatMul shapes {xs:?} x {:?}", w.shape))
                    );
                }
                let wv = w.as_f32();
                let mut wt = vec![0f32; n * k];
                for kk in 0..k {
                    for nn in 0..n {
                        wt[nn * k + kk] = wv[kk * n + nn];
                    }
                }
                let mut shape = xs[..xs.len() - 1].to_vec();
                if !vec_w {
                    shape.push(n);
                }
                if w.shape.len() > 2 {
                    // leading 1s of the weight broadcast onto the output
                    while shape.len() < w.shape.len() {
                        shape.insert(0, 1);
                    }
                }
                let fc_shape = if vec_w {
                    let mut s = shape.clone();
                    s.push(1);
                    s
                } else {
                    shape.clone()
                };
                let op = Op::Fc {
                    w: wt,
                    b: vec![0.0; n],
                    n,
                    k,
                    relu: false,
                };
                let y = self.emit(&name, op, vec![x], &out, fc_shape);
                let y = self.reshape(&name, y, shape, &out);
                self.bind(&out, Sym::A(y));
            }
            "Gemm" => self.lower_gemm(node, ins, &name, &out)?,
            "Add" | "Sub" | "Mul" | "Div" => self.lower_binary(node, ins, &name, &out)?,
            "Relu" | "Tanh" | "Sigmoid" | "Gelu" => {
                let x = self.act(node, ins, 0)?;
                let u = match op {
                    "Relu" => Unary::Relu,
                    "Tanh" => Unary::Tanh,
                    "Sigmoid" => Unary::Sigmoid,
                    _ => {
                        let approx = attr_s(node, "approximate").unwrap_or_else(|| "none".into());
                        if approx != "none" {
                            return Err(self.unsupported(
                                node,
                                &format!(
                                    "Gelu with approximate='{approx}' is not supported (only \
                                     the exact erf form)"
                                ),
                            ));
                        }
                        Unary::Gelu
                    }
                };
                if u == Unary::Relu {
                    if let Some(p) = self.exclusive_fc(x) {
                        if let Op::Fc { relu, .. } = &mut self.g.nodes[p].op {
                            *relu = true;
                        }
                        self.g.values[x].name = out.clone();
                        self.alias(&out, x);
                        return Ok(());
                    }
                }
                let shape = self.shape(x).to_vec();
                let y = self.emit(&name, Op::Unary(u), vec![x], &out, shape);
                self.bind(&out, Sym::A(y));
            }
            "Softmax" => {
                let x = self.act(node, ins, 0)?;
                let shape = self.shape(x).to_vec();
                let rank = shape.len();
                let default = if self.opset < 13 { 1 } else { -1 };
                let axis = tensor::norm_axis(attr_i(node, "axis").unwrap_or(default), rank)
                    .map_err(ctx!(self, node))?;
                let ok = if self.opset < 13 {
                    // softmax over the flattened dims axis.. == last-axis softmax iff the dims
                    // between are 1.
                    shape[axis..rank - 1].iter().all(|&d| d == 1)
                } else {
                    shape[axis + 1..].iter().all(|&d| d == 1)
                };
                if !ok {
                    return Err(self.unsupported(
                        node,
                        &format!(
                            "Softmax over axis {axis} of {shape:?} is not supported (only over \
                             the last non-trivial axis)"
                        ),
                    ));
                }
                let y = if self.opset >= 13 && axis != rank - 1 {
                    let inner: Vec<usize> = shape[..=axis].to_vec();
                    let r = self.reshape(&name, x, inner.clone(), &format!("{out}/flat"));
                    let s = self.emit(
                        &name,
                        Op::Softmax,
                        vec![r],
                        &format!("{out}/softmax"),
                        inner,
                    );
                    self.emit(&name, Op::Reshape, vec![s], &out, shape)
                } else {
                    self.emit(&name, Op::Softmax, vec![x], &out, shape)
                };
                self.bind(&out, Sym::A(y));
            }
            "LSTM" | "GRU" | "RNN" => rnn::lower(self, node, ins)?,
            "Attention" => attention::lower_attention_op(self, node, ins)?,
            "LayerNormalization" => self.lower_layer_norm(node, ins, &name, &out)?,
            "Conv" => self.lower_patch_conv(node, ins, &name, &out)?,
            "ReduceMean" | "ReduceSum" => self.lower_reduce(node, ins, &name, &out)?,
            "Shape" | "Size" => unreachable!("handled before"),
            "Erf" => {
                return Err(self.unsupported(
                    node,
                    "Erf is only supported as part of the exact GELU pattern \
                     x·0.5·(1+erf(x/√2))",
                ))
            }
            _ => {
                return Err(self.unsupported(
                    node,
                    "Kinglet imports LSTM/GRU/RNN, MatMul/Gemm with constant weights, \
                     scaled dot-product attention, LayerNormalization, patch-embedding Conv \
                     (kernel = stride), Add, per-feature constant Add/Sub/Mul/Div, \
                     Tanh/Sigmoid/Relu/Gelu, Softmax, ReduceMean/ReduceSum and shape/slicing \
                     ops; re-export the model without this op",
                ))
            }
        }
        Ok(())
    }

    /// `LayerNormalization` → [`Op::LayerNorm`] over the last axis (the normalized trailing
    /// axes are flattened into one if there are several).
    fn lower_layer_norm(
        &mut self,
        node: &NodeProto,
        ins: &[Option<Sym>],
        name: &str,
        out: &str,
    ) -> Result<()> {
        let x = self.act(node, ins, 0)?;
        for o in node.output.iter().skip(1) {
            if !o.is_empty() && self.uses.get(o).copied().unwrap_or(0) > 0 {
                return Err(self.node_err(node, "the Mean / InvStdDev outputs are used"));
            }
        }
        let shape = self.shape(x).to_vec();
        let axis = tensor::norm_axis(attr_i(node, "axis").unwrap_or(-1), shape.len())
            .map_err(ctx!(self, node))?;
        let d: usize = shape[axis..].iter().product();
        let vec_of = |t: Option<&Tensor>, default: f32| -> Result<Vec<f32>> {
            match t {
                None => Ok(vec![default; d]),
                Some(t) if t.numel() == 1 => Ok(vec![t.as_f32()[0]; d]),
                Some(t) if t.numel() == d => Ok(t.as_f32()),
                Some(t) => bail!(
                    "scale/bias {:?} does not match the normalized size {d}",
                    t.shape
                ),
            }
        };
        let gamma = vec_of(self.opt_cst(node, ins, 1)?, 1.0).map_err(ctx!(self, node))?;
        let beta = vec_of(self.opt_cst(node, ins, 2)?, 0.0).map_err(ctx!(self, node))?;
        let eps = tensor::attr_f(node, "epsilon").unwrap_or(1e-5);
        let mut flat = shape[..axis].to_vec();
        flat.push(d);
        let xr = self.reshape(name, x, flat.clone(), &format!("{out}/flat"));
        let y = self.emit(
            name,
            Op::LayerNorm { gamma, beta, eps },
            vec![xr],
            out,
            flat,
        );
        let y = self.reshape(name, y, shape, out);
        self.bind(out, Sym::A(y));
        Ok(())
    }

    /// `Conv` with kernel = stride, no padding / dilation / groups (a patch embedding):
    /// the input is unfolded into patch rows `[patches, C·k…]` (Reshape + Transpose), an `Fc`
    /// applies the kernel, and a Transpose + Reshape restore `[1, O, spatial…]`.
    fn lower_patch_conv(
        &mut self,
        node: &NodeProto,
        ins: &[Option<Sym>],
        name: &str,
        out: &str,
    ) -> Result<()> {
        let x = self.act(node, ins, 0)?;
        let w = self.cst(node, ins, 1)?.clone();
        let b = self.opt_cst(node, ins, 2)?.cloned();
        let xs = self.shape(x).to_vec();
        let nsp = xs.len().saturating_sub(2);
        if nsp == 0 || xs[0] != 1 || w.shape.len() != xs.len() || w.shape[1] != xs[1] {
            return Err(self.node_err(
                node,
                format!(
                    "Conv of {xs:?} with weights {:?} (batch 1 expected)",
                    w.shape
                ),
            ));
        }
        let ks: Vec<usize> = w.shape[2..].to_vec();
        let ints =
            |a: &str, d: i64, n: usize| tensor::attr_ints(node, a).unwrap_or_else(|| vec![d; n]);
        let strides = ints("strides", 1, nsp);
        let pads = ints("pads", 0, 2 * nsp);
        let dil = ints("dilations", 1, nsp);
        let group = attr_i(node, "group").unwrap_or(1);
        let auto_pad = attr_s(node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
        let kernel_attr = tensor::attr_ints(node, "kernel_shape");
        let ok = strides.iter().zip(&ks).all(|(&s, &k)| s == k as i64)
            && pads.iter().all(|&p| p == 0)
            && dil.iter().all(|&d| d == 1)
            && group == 1
            && (auto_pad == "NOTSET" || auto_pad == "VALID")
            && kernel_attr.is_none_or(|k| k.iter().zip(&ks).all(|(&a, &b)| a == b as i64));
        if !ok {
            return Err(self.unsupported(
                node,
                &format!(
                    "only patch-embedding Conv is supported (stride = kernel {ks:?}, no padding,                      no dilation, group 1); got strides {strides:?}, pads {pads:?}, dilations                      {dil:?}, group {group}"
                ),
            ));
        }
        let c = xs[1];
        let o_ch = w.shape[0];
        let outs: Vec<usize> = (0..nsp).map(|i| xs[2 + i] / ks[i]).collect();
        if outs.contains(&0) {
            return Err(self.node_err(node, "the kernel is larger than the input"));
        }
        // Drop the trailing pixels the strided kernel never reaches.
        let mut y = x;
        for i in 0..nsp {
            let used = outs[i] * ks[i];
            if used != xs[2 + i] {
                let idx: Vec<usize> = (0..used).collect();
                y = self.take(node, y, 2 + i, &idx, &format!("{out}/crop{i}"))?;
            }
        }
        // [C, o1, k1, o2, k2, …] → [o1, o2, …, C, k1, k2, …]
        let mut split = vec![c];
        for i in 0..nsp {
            split.extend([outs[i], ks[i]]);
        }
        let y = self.reshape(name, y, split, &format!("{out}/blocks"));
        let mut perm: Vec<usize> = (0..nsp).map(|i| 1 + 2 * i).collect();
        perm.push(0);
        perm.extend((0..nsp).map(|i| 2 + 2 * i));
        let y = self.permute(name, y, perm, &format!("{out}/patches"));
        let patches: usize = outs.iter().product();
        let kk: usize = c * ks.iter().product::<usize>();
        let y = self.reshape(name, y, vec![patches, kk], &format!("{out}/rows"));
        let bias = match b {
            Some(b) if b.numel() == o_ch => b.as_f32(),
            Some(b) => return Err(self.node_err(node, format!("bias {:?}", b.shape))),
            None => vec![0.0; o_ch],
        };
        let fc = Op::Fc {
            w: w.as_f32(),
            b: bias,
            n: o_ch,
            k: kk,
            relu: false,
        };
        let y = self.emit(name, fc, vec![y], &format!("{out}/fc"), vec![patches, o_ch]);
        let y = self.permute(name, y, vec![1, 0], &format!("{out}/channels"));
        let mut shape = vec![1, o_ch];
        shape.extend(&outs);
        let y = self.reshape(name, y, shape, out);
        self.bind(out, Sym::A(y));
        Ok(())
    }

    /// `x` with its axes permuted (a `Reshape` if only size-1 axes move, nothing if `perm` is
    /// the identity).
    fn permute(&mut self, name: &str, x: ValueId, perm: Vec<usize>, out: &str) -> ValueId {
        let shape = self.shape(x).to_vec();
        let new_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let big: Vec<usize> = perm.iter().copied().filter(|&p| shape[p] != 1).collect();
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            x
        } else if big.windows(2).all(|w| w[0] < w[1]) {
            self.emit(name, Op::Reshape, vec![x], out, new_shape)
        } else {
            // The same data movement with size-1 axes dropped and axes that stay adjacent
            // merged (the lowest-rank Transpose), between Reshapes.
            let mut groups: Vec<Vec<usize>> = Vec::new(); // input axes, in output order
            for &p in &big {
                match groups.last_mut() {
                    Some(g) if *g.last().unwrap() + 1 == p => g.push(p),
                    _ => groups.push(vec![p]),
                }
            }
            let mut order: Vec<usize> = (0..groups.len()).collect();
            order.sort_by_key(|&g| groups[g][0]);
            let in_shape: Vec<usize> = order
                .iter()
                .map(|&g| groups[g].iter().map(|&a| shape[a]).product())
                .collect();
            let small_perm: Vec<usize> = (0..groups.len())
                .map(|g| order.iter().position(|&o| o == g).unwrap())
                .collect();
            if in_shape == shape {
                return self.emit(name, Op::Transpose { perm }, vec![x], out, new_shape);
            }
            let t_shape: Vec<usize> = small_perm.iter().map(|&p| in_shape[p]).collect();
            let r = self.reshape(name, x, in_shape, &format!("{out}/in"));
            let t = self.emit(
                name,
                Op::Transpose { perm: small_perm },
                vec![r],
                &format!("{out}/t"),
                t_shape,
            );
            self.emit(name, Op::Reshape, vec![t], out, new_shape)
        }
    }

    /// `ReduceMean` / `ReduceSum` of an activation. A `ReduceMean` over contiguous axes that do
    /// not include the last one (a mean over tokens) becomes [`Op::Mean`] (output keeps the
    /// reduced axis as size 1; several axes are first merged by a Reshape), followed by a
    /// Reshape to the ONNX shape. Otherwise (a reduction over the last axis, `ReduceSum`), the
    /// reduced axes are moved last and flattened, then an `Fc` with one output and constant
    /// weights `1/R` (or 1) sums them.
    fn lower_reduce(
        &mut self,
        node: &NodeProto,
        ins: &[Option<Sym>],
        name: &str,
        out: &str,
    ) -> Result<()> {
        let x = self.act(node, ins, 0)?;
        let shape = self.shape(x).to_vec();
        let rank = shape.len();
        let consts = Self::const_view(ins);
        let Some(axes) =
            tensor::reduce_axes(node, self.opset, &consts, rank).map_err(ctx!(self, node))?
        else {
            self.alias(out, x);
            return Ok(());
        };
        let keep = attr_i(node, "keepdims").unwrap_or(1) != 0;
        let kept: Vec<usize> = (0..rank).filter(|d| !axes.contains(d)).collect();
        let r: usize = axes.iter().map(|&a| shape[a]).product();
        let final_shape: Vec<usize> = if keep {
            (0..rank)
                .map(|d| if axes.contains(&d) { 1 } else { shape[d] })
                .collect()
        } else {
            kept.iter().map(|&d| shape[d]).collect()
        };
        let mut sorted = axes.clone();
        sorted.sort_unstable();
        let contiguous = sorted.windows(2).all(|w| w[1] == w[0] + 1);
        if node.op_type == "ReduceMean" && contiguous && !sorted.contains(&(rank - 1)) {
            let a0 = sorted[0];
            let mut merged = shape[..a0].to_vec();
            merged.push(r);
            merged.extend_from_slice(&shape[sorted[sorted.len() - 1] + 1..]);
            let y = self.reshape(name, x, merged.clone(), &format!("{out}/merged"));
            merged[a0] = 1;
            let y = self.emit(name, Op::Mean { axis: a0 }, vec![y], out, merged);
            let y = self.reshape(name, y, final_shape, out);
            self.bind(out, Sym::A(y));
            return Ok(());
        }
        let perm: Vec<usize> = kept.iter().chain(axes.iter()).copied().collect();
        let y = self.permute(name, x, perm, &format!("{out}/permuted"));
        let mut flat: Vec<usize> = kept.iter().map(|&d| shape[d]).collect();
        flat.push(r);
        let y = self.reshape(name, y, flat.clone(), &format!("{out}/flat"));
        let scale = if node.op_type == "ReduceMean" {
            1.0 / r as f32
        } else {
            1.0
        };
        *flat.last_mut().unwrap() = 1;
        let op = Op::Fc {
            w: vec![scale; r],
            b: vec![0.0],
            n: 1,
            k: r,
            relu: false,
        };
        let y = self.emit(name, op, vec![y], &format!("{out}/sum"), flat);
        let y = self.reshape(name, y, final_shape, out);
        self.g.values[y].name = out.to_string();
        self.bind(out, Sym::A(y));
        Ok(())
    }

    /// `x` restricted to the positions `idx` along `axis` (as contiguous Slices + Concat).
    fn take(
        &mut self,
        node: &NodeProto,
        x: ValueId,
        axis: usize,
        idx: &[usize],
        out: &str,
    ) -> Result<ValueId> {
        let name = node_name(node);
        let dim = self.shape(x)[axis];
        if idx.is_empty() {
            return Err(self.node_err(node, "selects an empty range"));
        }
        if idx.len() == dim && idx.iter().enumerate().all(|(i, &j)| i == j) {
            return Ok(x);
        }
        // Split into runs of consecutive indices.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &i in idx {
            match runs.last_mut() {
                Some((_, e)) if *e == i => *e += 1,
                _ => runs.push((i, i + 1)),
            }
        }
        let mut parts = Vec::new();
        for &(s, e) in &runs {
            let mut shape = self.shape(x).to_vec();
            shape[axis] = e - s;
            let pname = if runs.len() == 1 {
                out.to_string()
            } else {
                format!("{out}/{s}")
            };
            parts.push(self.emit(
                &name,
                Op::Slice {
                    axis,
                    start: s,
                    end: e,
                },
                vec![x],
                &pname,
                shape,
            ));
        }
        if parts.len() == 1 {
            return Ok(parts[0]);
        }
        let mut shape = self.shape(x).to_vec();
        shape[axis] = idx.len();
        Ok(self.emit(&name, Op::Concat { axis }, parts, out, shape))
    }

    fn lower_gemm(
        &mut self,
        node: &NodeProto,
        ins: &[Option<Sym>],
        name: &str,
        out: &str,
    ) -> Result<()> {
        let x = match &ins[0] {
            Some(Sym::A(id)) => *id,
            _ => {
                return Err(
                    self.unsupported(node, "Gemm with a constant A operand is not supported")
                )
            }
        };
        let bt = match &ins[1] {
            Some(Sym::C(t)) => t.clone(),
            _ => {
                return Err(self.unsupported(
                    node,
                    "Gemm of two activations is not supported (B must be a constant)",
                ))
            }
        };
        let c = self.opt_cst(node, ins, 2)?.cloned();
        let alpha = tensor::attr_f(node, "alpha").unwrap_or(1.0);
        let beta = tensor::attr_f(node, "beta").unwrap_or(1.0);
        let trans_a = attr_i(node, "transA").unwrap_or(0) != 0;
        let trans_b = attr_i(node, "transB").unwrap_or(0) != 0;
        let xs = self.shape(x).to_vec();
        if xs.len() != 2 || bt.shape.len() != 2 {
            return Err(self.node_err(node, "Gemm needs 2-D A and B"));
        }
        let (m, k) = if trans_a {
            (xs[1], xs[0])
        } else {
            (xs[0], xs[1])
        };
        let x = if trans_a {
            if m != 1 && k != 1 {
                return Err(self.unsupported(node, "Gemm with transA=1 is not supported"));
            }
            self.reshape(name, x, vec![m, k], &format!("{out}/a"))
        } else {
            x
        };
        let (kb, n) = if trans_b {
            (bt.shape[1], bt.shape[0])
        } else {
            (bt.shape[0], bt.shape[1])
        };
        if kb != k {
            return Err(self.node_err(node, format!("Gemm shapes {xs:?} x {:?}", bt.shape)));
        }
        let bv = bt.as_f32();
        let mut w = vec![0f32; n * k];
        for nn in 0..n {
            for kk in 0..k {
                let v = if trans_b {
                    bv[nn * k + kk]
                } else {
                    bv[kk * n + nn]
                };
                w[nn * k + kk] = alpha * v;
            }
        }
        let b = match c {
            None => vec![0.0; n],
            Some(c) => {
                let cv = c.as_f32();
                let per_feature = c.numel() == n
                    && (c.shape.len() <= 1 || c.shape[..c.shape.len() - 1].iter().all(|&d| d == 1));
                if c.numel() == 1 {
                    vec![beta * cv[0]; n]
                } else if per_feature || (c.numel() == n && m == 1) {
                    cv.iter().map(|v| beta * v).collect()
                } else {
                    return Err(self.unsupported(
                        node,
                        &format!(
                            "Gemm with a bias C of shape {:?} that is not a per-output vector",
                            c.shape
                        ),
                    ));
                }
            }
        };
        let y = self.emit(
            name,
            Op::Fc {
                w,
                b,
                n,
                k,
                relu: false,
            },
            vec![x],
            out,
            vec![m, n],
        );
        self.bind(out, Sym::A(y));
        Ok(())
    }

    fn lower_binary(
        &mut self,
        node: &NodeProto,
        ins: &[Option<Sym>],
        name: &str,
        out: &str,
    ) -> Result<()> {
        let op = node.op_type.as_str();
        let (a, b) = match (&ins[0], &ins[1]) {
            (Some(a), Some(b)) => (a.clone(), b.clone()),
            _ => return Err(self.node_err(node, "missing input")),
        };
        match (a, b) {
            (Sym::A(p), Sym::A(q)) => {
                if op != "Add" {
                    return Err(self.unsupported(
                        node,
                        &format!(
                            "{op} of two activations is not supported (only Add, or {op} by a \
                             constant)"
                        ),
                    ));
                }
                let (sp, sq) = (self.shape(p).to_vec(), self.shape(q).to_vec());
                let shape = tensor::broadcast(&sp, &sq).map_err(|e| self.node_err(node, e))?;
                let n: usize = shape.iter().product();
                // The larger operand first; the other must be a suffix of it.
                let (a, b) = if sp.iter().product::<usize>() >= sq.iter().product::<usize>() {
                    (p, q)
                } else {
                    (q, p)
                };
                let sa = self.shape(a).to_vec();
                let sb: Vec<usize> = self
                    .shape(b)
                    .iter()
                    .copied()
                    .skip_while(|&d| d == 1)
                    .collect();
                let sa_trim: Vec<usize> = sa.iter().copied().skip_while(|&d| d == 1).collect();
                let suffix = sa_trim.len() >= sb.len() && sa_trim[sa_trim.len() - sb.len()..] == sb;
                if sa.iter().product::<usize>() != n || !suffix {
                    return Err(self.unsupported(
                        node,
                        &format!(
                            "Add with broadcasting {sp:?} + {sq:?} is not supported (one operand \
                             must equal the other or be a trailing part of it)"
                        ),
                    ));
                }
                let y = self.emit(name, Op::Add, vec![a, b], out, shape);
                self.bind(out, Sym::A(y));
            }
            (Sym::A(x), Sym::C(c)) | (Sym::C(c), Sym::A(x)) => {
                let x_first = matches!(ins[0], Some(Sym::A(_)));
                let xs = self.shape(x).to_vec();
                let shape = tensor::broadcast(&xs, &c.shape).map_err(|e| self.node_err(node, e))?;
                let nf = *shape.last().unwrap_or(&1);
                let per_feature = shape.iter().product::<usize>() == xs.iter().product::<usize>()
                    && (c.numel() == 1
                        || (c.shape.last() == Some(&nf)
                            && c.shape[..c.shape.len() - 1].iter().all(|&d| d == 1)));
                let same = shape.iter().product::<usize>() == xs.iter().product::<usize>();
                if !per_feature
                    && same
                    && !shape.is_empty()
                    && (op == "Add" || (op == "Sub" && x_first))
                {
                    // A constant that varies along other axes (positional embedding): a
                    // Constant node and an Add.
                    let sign = if op == "Sub" { -1.0 } else { 1.0 };
                    let trim = |v: &[usize]| -> Vec<usize> {
                        v.iter().copied().skip_while(|&d| d == 1).collect()
                    };
                    let (ct, xt) = (trim(&c.shape), trim(&xs));
                    let (cshape, data) = if xt.len() >= ct.len() && xt[xt.len() - ct.len()..] == ct
                    {
                        (c.shape.clone(), c.as_f32())
                    } else {
                        let idx = tensor::broadcast_index(&c.shape, &shape);
                        let cv = c.as_f32();
                        (shape.clone(), idx.iter().map(|&i| cv[i]).collect())
                    };
                    let data = data.iter().map(|v| sign * v).collect();
                    let cid = self.emit(
                        name,
                        Op::Constant { data },
                        vec![],
                        &format!("{out}/const"),
                        cshape,
                    );
                    let y = self.emit(name, Op::Add, vec![x, cid], out, shape);
                    self.bind(out, Sym::A(y));
                    return Ok(());
                }
                if !per_feature || shape.is_empty() {
                    return Err(self.unsupported(
                        node,
                        &format!(
                            "{op} of an activation {xs:?} and a constant {:?} is only supported \
                             when the constant is a scalar or a vector over the last axis",
                            c.shape
                        ),
                    ));
                }
                let cv = c.as_f32();
                let cvec: Vec<f32> = if cv.len() == 1 { vec![cv[0]; nf] } else { cv };
                let aff = match (op, x_first) {
                    ("Add", _) => Affine {
                        scale: vec![1.0; nf],
                        bias: cvec,
                    },
                    ("Sub", true) => Affine {
                        scale: vec![1.0; nf],
                        bias: cvec.iter().map(|v| -v).collect(),
                    },
                    ("Sub", false) => Affine {
                        scale: vec![-1.0; nf],
                        bias: cvec,
                    },
                    ("Mul", _) => Affine {
                        scale: cvec,
                        bias: vec![0.0; nf],
                    },
                    ("Div", true) => Affine {
                        scale: cvec.iter().map(|v| 1.0 / v).collect(),
                        bias: vec![0.0; nf],
                    },
                    _ => {
                        return Err(self.unsupported(
                            node,
                            "division of a constant by an activation is not supported",
                        ))
                    }
                };
                self.affine(name, x, aff, shape, out);
            }
            (Sym::C(_), Sym::C(_)) => unreachable!("constant folded"),
        }
        Ok(())
    }

    /// `y = scale ⊙ x + bias` over the last axis: folded into the producing `Fc` when it is
    /// exclusive, an alias when it is the identity, else a diagonal `Fc`.
    fn affine(&mut self, name: &str, x: ValueId, aff: Affine, shape: Vec<usize>, out: &str) {
        let identity = aff.scale.iter().all(|&s| s == 1.0) && aff.bias.iter().all(|&b| b == 0.0);
        if identity {
            let y = self.reshape(name, x, shape, out);
            if y == x {
                self.alias(out, x);
            } else {
                self.bind(out, Sym::A(y));
            }
            return;
        }
        if let Some(p) = self.exclusive_fc(x) {
            if let Op::Fc { w, b, k, n, .. } = &mut self.g.nodes[p].op {
                if *n == aff.scale.len() {
                    for r in 0..*n {
                        for v in &mut w[r * *k..(r + 1) * *k] {
                            *v *= aff.scale[r];
                        }
                        b[r] = b[r] * aff.scale[r] + aff.bias[r];
                    }
                    self.g.values[x].shape = shape;
                    self.g.values[x].name = out.to_string();
                    self.alias(out, x);
                    return;
                }
            }
        }
        let n = aff.scale.len();
        let mut w = vec![0f32; n * n];
        for i in 0..n {
            w[i * n + i] = aff.scale[i];
        }
        let y = self.emit(
            name,
            Op::Fc {
                w,
                b: aff.bias,
                n,
                k: n,
                relu: false,
            },
            vec![x],
            out,
            shape,
        );
        self.bind(out, Sym::A(y));
    }
}

/// Turns a Reshape / Transpose node into a Reshape of an earlier value when the chain of
/// Reshapes and Transposes between them moves no data (e.g. the heads split and merged again
/// around attention, or a patch-embedding Conv's channel-first output flattened and
/// transposed back to tokens).
fn cancel_transposes(g: &mut Graph) {
    let mut producer: Vec<Option<usize>> = vec![None; g.values.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        producer[n.output] = Some(i);
    }
    for i in 0..g.nodes.len() {
        let mut moved = match &g.nodes[i].op {
            Op::Transpose { .. } => true,
            Op::Reshape => false,
            _ => continue,
        };
        let mut cur = g.nodes[i].inputs[0];
        let mut map: Vec<usize> = match &g.nodes[i].op {
            Op::Transpose { perm } => tensor::transpose_index(&g.values[cur].shape, perm),
            _ => (0..g.values[cur].numel()).collect(),
        };
        let mut best = None;
        loop {
            if moved && map.iter().enumerate().all(|(k, &j)| k == j) {
                best = Some(cur);
            }
            let Some(p) = producer[cur] else { break };
            let x = match g.nodes[p].inputs.first() {
                Some(&x) => x,
                None => break,
            };
            match &g.nodes[p].op {
                Op::Reshape => {}
                Op::Transpose { perm } => {
                    let idx = tensor::transpose_index(&g.values[x].shape, perm);
                    map = map.iter().map(|&j| idx[j]).collect();
                    moved = true;
                }
                _ => break,
            }
            cur = x;
        }
        if let Some(src) = best {
            g.nodes[i].op = Op::Reshape;
            g.nodes[i].inputs[0] = src;
        }
    }
}

/// Collapses reshape chains, reads slices of concatenations straight from the concatenated
/// input, drops identity reshapes / slices, removes dead nodes and unused values.
fn finalize(mut g: Graph) -> Graph {
    cancel_transposes(&mut g);
    let nv = g.values.len();
    let mut producer: Vec<Option<usize>> = vec![None; nv];
    for (i, n) in g.nodes.iter().enumerate() {
        producer[n.output] = Some(i);
    }
    let mut subst: Vec<ValueId> = (0..nv).collect();
    let mut views: HashMap<(ValueId, Vec<usize>), ValueId> = HashMap::new();
    for i in 0..g.nodes.len() {
        let inputs: Vec<ValueId> = g.nodes[i].inputs.iter().map(|&x| subst[x]).collect();
        g.nodes[i].inputs = inputs;
        let out = g.nodes[i].output;
        let is_output = g.outputs.contains(&out);
        match g.nodes[i].op.clone() {
            Op::Reshape => {
                let mut src = g.nodes[i].inputs[0];
                while let Some(p) = producer[src] {
                    if matches!(g.nodes[p].op, Op::Reshape) {
                        src = g.nodes[p].inputs[0];
                    } else {
                        break;
                    }
                }
                g.nodes[i].inputs[0] = src;
                if g.values[src].shape == g.values[out].shape && !is_output {
                    subst[out] = src;
                } else if !is_output {
                    // The same view of the same value twice: keep the first.
                    let key = (src, g.values[out].shape.clone());
                    match views.get(&key) {
                        Some(&v) => subst[out] = v,
                        None => {
                            views.insert(key, out);
                        }
                    }
                }
            }
            Op::Slice {
                axis,
                mut start,
                mut end,
            } => {
                let mut src = g.nodes[i].inputs[0];
                if let Some(p) = producer[src] {
                    if let Op::Concat { axis: ca } = g.nodes[p].op {
                        if ca == axis {
                            let mut off = 0;
                            for &x in &g.nodes[p].inputs {
                                let d = g.values[x].shape[axis];
                                if start >= off && end <= off + d {
                                    src = x;
                                    start -= off;
                                    end -= off;
                                    break;
                                }
                                off += d;
                            }
                        }
                    }
                }
                g.nodes[i].inputs[0] = src;
                g.nodes[i].op = Op::Slice { axis, start, end };
                if start == 0 && end == g.values[src].shape[axis] && !is_output {
                    subst[out] = src;
                }
            }
            _ => {}
        }
    }
    // Dead code.
    let mut live = vec![false; nv];
    for &o in &g.outputs {
        live[o] = true;
    }
    let mut keep = vec![false; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate().rev() {
        if live[n.output] {
            keep[i] = true;
            for &x in &n.inputs {
                live[x] = true;
            }
        }
    }
    for &i in &g.inputs {
        live[i] = true;
    }
    let nodes: Vec<Node> = g
        .nodes
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(n, _)| n)
        .collect();
    // Renumber values.
    let mut map = vec![usize::MAX; nv];
    let mut values = Vec::new();
    for (i, v) in g.values.into_iter().enumerate() {
        if live[i] {
            map[i] = values.len();
            values.push(v);
        }
    }
    let mut g = Graph {
        values,
        nodes: nodes
            .into_iter()
            .map(|mut n| {
                n.output = map[n.output];
                n.inputs.iter_mut().for_each(|i| *i = map[*i]);
                n
            })
            .collect(),
        inputs: g.inputs.iter().map(|&i| map[i]).collect(),
        outputs: g.outputs.iter().map(|&i| map[i]).collect(),
    };
    // Unique value names (graph inputs and outputs keep their ONNX names).
    let mut taken: HashSet<String> = HashSet::new();
    let reserved: Vec<ValueId> = g.inputs.iter().chain(&g.outputs).copied().collect();
    for &i in &reserved {
        taken.insert(g.values[i].name.clone());
    }
    for i in 0..g.values.len() {
        if reserved.contains(&i) {
            continue;
        }
        let base = g.values[i].name.clone();
        let mut name = base.clone();
        let mut k = 1;
        while taken.contains(&name) {
            name = format!("{base}#{k}");
            k += 1;
        }
        taken.insert(name.clone());
        g.values[i].name = name;
    }
    g
}
