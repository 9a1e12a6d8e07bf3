//! Reference runs of the original ONNX model through tract (the oracle the float IR and the
//! quantized model are compared against).
//!
//! Exactly-equivalent rewrites of the ONNX graph work around tract 0.23 bugs before tract sees
//! it:
//! * `GRU` with a single input feature: tract's fused `GruSeq` fails at run time ("xw not
//!   contiguous"), so X gets a second, all-zero feature (`X · 0`) and W a zero column;
//! * `RNN` with non-tanh activations: tract ignores the `activations` attribute (always tanh),
//!   so such nodes are unrolled into `MatMul` / `Add` / activation / `Concat` steps;
//! * float16 models: tract's `Gemm` expansion produces f32 instead of f16 and fails to
//!   translate, so `Gemm` (alpha = beta = 1, transA = 0) becomes `[Transpose] → MatMul → Add`.
//!   If tract still cannot build the half model (e.g. its f16 `GRU` expansion), the model is
//!   promoted to float32 (weights converted exactly, inputs still rounded to f16) — see
//!   [`TractModel::promoted_to_f32`].

use crate::import::tensor::{self as t, dt};
use anyhow::{bail, ensure, Context, Result};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tract_onnx::pb::{AttributeProto, ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;

/// An ONNX model loaded, optimized and made runnable by tract for a fixed input shape.
#[derive(Debug)]
pub struct TractModel {
    plan: Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
    input_f16: bool,
    promoted: bool,
}

impl TractModel {
    /// Loads `path` with its (single) input fixed to `input_shape`, typed float16 when
    /// `input_f16` (models exported after `.half()`), else float32.
    pub fn load(path: &Path, input_shape: &[usize], input_f16: bool) -> Result<Self> {
        let proto = crate::import::load_proto(path)?;
        Self::load_proto(&proto, path.parent(), input_shape, input_f16)
            .with_context(|| format!("tract cannot load {}", path.display()))
    }

    /// Like [`TractModel::load`] for an already decoded model (`model_dir`: where external
    /// tensor data lives).
    pub fn load_proto(
        model: &ModelProto,
        model_dir: Option<&Path>,
        input_shape: &[usize],
        input_f16: bool,
    ) -> Result<Self> {
        let mut proto = model.clone();
        work_around_tract_bugs(&mut proto, input_shape, input_f16)
            .context("cannot rewrite the model around tract bugs")?;
        let dir = model_dir.and_then(|p| p.to_str());
        let build = |proto: &ModelProto, dtype: DatumType| {
            (|| -> TractResult<Arc<TypedRunnableModel>> {
                let parsed = tract_onnx::onnx().parse(proto, dir)?;
                if !parsed.unresolved_inputs.is_empty() {
                    anyhow::bail!("unresolved inputs {:?}", parsed.unresolved_inputs);
                }
                parsed
                    .model
                    .with_input_fact(0, InferenceFact::dt_shape(dtype, input_shape))?
                    .into_optimized()?
                    .into_runnable()
            })()
        };
        let (plan, promoted) = if input_f16 {
            match build(&proto, DatumType::F16) {
                Ok(p) => (p, false),
                Err(e16) => {
                    promote_to_f32(&mut proto)?;
                    let p = build(&proto, DatumType::F32).map_err(|e32| {
                        anyhow::anyhow!(
                            "{e16:#} (and after promoting the float16 model to float32: {e32:#})"
                        )
                    })?;
                    (p, true)
                }
            }
        } else {
            (build(&proto, DatumType::F32)?, false)
        };
        Ok(TractModel {
            plan,
            input_shape: input_shape.to_vec(),
            input_f16,
            promoted,
        })
    }

    /// The input shape the model was loaded for.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// A float16 model tract could not run in half precision, run in f32 instead (weights
    /// are the same f16 values, inputs are still rounded to f16).
    pub fn promoted_to_f32(&self) -> bool {
        self.promoted
    }

    /// Runs one input (row-major in the input shape); returns every model output as f32.
    pub fn run(&self, input: &[f32]) -> Result<Vec<Vec<f32>>> {
        let n: usize = self.input_shape.iter().product();
        ensure!(
            input.len() == n,
            "tract input has {} values, the model input {:?} needs {n}",
            input.len(),
            self.input_shape
        );
        let t = match (self.input_f16, self.promoted) {
            (true, false) => {
                let h: Vec<f16> = input.iter().map(|&v| f16::from_f32(v)).collect();
                Tensor::from_shape(&self.input_shape, &h)?
            }
            (true, true) => {
                let h: Vec<f32> = input.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
                Tensor::from_shape(&self.input_shape, &h)?
            }
            _ => Tensor::from_shape(&self.input_shape, input)?,
        };
        let outs = self
            .plan
            .run(tvec!(t.into_tvalue()))
            .context("tract run failed")?;
        outs.iter()
            .map(|o| {
                let f = o.cast_to::<f32>()?;
                let v: Vec<f32> = f.to_plain_array_view::<f32>()?.iter().copied().collect();
                Ok(v)
            })
            .collect()
    }
}

fn float_tensor(name: &str, dims: &[usize], data: &[f32], dtype: i32) -> TensorProto {
    let raw: Vec<u8> = if dtype == dt::FLOAT16 {
        data.iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect()
    } else {
        data.iter().flat_map(|&v| v.to_le_bytes()).collect()
    };
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: if dtype == dt::FLOAT16 {
            dt::FLOAT16
        } else {
            dt::FLOAT
        },
        raw_data: raw,
        ..Default::default()
    }
}

fn i64_tensor(name: &str, data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: vec![data.len() as i64],
        data_type: dt::INT64,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn node(op: &str, name: String, inputs: Vec<String>, output: String) -> NodeProto {
    NodeProto {
        op_type: op.to_string(),
        name,
        input: inputs,
        output: vec![output],
        ..Default::default()
    }
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 2,
        i,
        ..Default::default()
    }
}

fn ints_attr(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 7,
        ints,
        ..Default::default()
    }
}

fn work_around_tract_bugs(
    model: &mut ModelProto,
    input_shape: &[usize],
    input_f16: bool,
) -> Result<()> {
    // Sequence lengths of RNN nodes to unroll come from the importer's shape inference.
    let needs_unroll = model.graph.as_ref().is_some_and(|g| {
        g.node.iter().any(|n| {
            n.op_type == "RNN"
                && t::attr_strings(n, "activations")
                    .is_some_and(|a| a.iter().any(|s| !s.eq_ignore_ascii_case("tanh")))
        })
    });
    let rnn_steps: HashMap<String, usize> = if needs_unroll {
        let imported = crate::import::import_proto(model, None, Some(input_shape))
            .context("cannot infer the RNN sequence lengths")?;
        let g = &imported.graph;
        g.nodes
            .iter()
            .filter_map(|n| match n.op {
                crate::ir::Op::Rnn { input, .. } => {
                    Some((n.name.clone(), g.values[n.inputs[0]].numel() / input))
                }
                _ => None,
            })
            .collect()
    } else {
        HashMap::new()
    };

    let Some(graph) = model.graph.as_mut() else {
        return Ok(());
    };
    let mut new_nodes = Vec::with_capacity(graph.node.len());
    let nodes = std::mem::take(&mut graph.node);
    for (k, mut n) in nodes.into_iter().enumerate() {
        // GRU with input size 1.
        if n.op_type == "GRU" && n.input.len() > 1 {
            if let Some(wi) = graph.initializer.iter().position(|i| i.name == n.input[1]) {
                let w = t::from_proto(&graph.initializer[wi], None)?;
                if w.shape.len() == 3 && w.shape[2] == 1 {
                    let (d, g) = (w.shape[0], w.shape[1]);
                    let wv = w.as_f32();
                    let padded: Vec<f32> = wv.iter().flat_map(|&v| [v, 0.0]).collect();
                    let wname = format!("{}__kinglet_padded", n.input[1]);
                    graph
                        .initializer
                        .push(float_tensor(&wname, &[d, g, 2], &padded, w.dt));
                    let zname = format!("__kinglet_zero_{k}");
                    graph
                        .initializer
                        .push(float_tensor(&zname, &[], &[0.0], w.dt));
                    let x = n.input[0].clone();
                    let xz = format!("{x}__kinglet_zero_{k}");
                    let xp = format!("{x}__kinglet_padded_{k}");
                    new_nodes.push(node(
                        "Mul",
                        format!("{xz}_mul"),
                        vec![x.clone(), zname],
                        xz.clone(),
                    ));
                    let mut cat = node("Concat", format!("{xp}_cat"), vec![x, xz], xp.clone());
                    cat.attribute.push(int_attr("axis", 2));
                    new_nodes.push(cat);
                    n.input[0] = xp;
                    n.input[1] = wname;
                }
            }
        }
        // RNN with non-tanh activations.
        if n.op_type == "RNN" {
            if let Some(&steps) = rnn_steps.get(&crate::import::node_name(&n)) {
                let acts = t::attr_strings(&n, "activations").unwrap_or_default();
                if acts.iter().any(|s| !s.eq_ignore_ascii_case("tanh")) {
                    unroll_rnn(&n, k, steps, &mut graph.initializer, &mut new_nodes)?;
                    continue;
                }
            }
        }
        // Gemm in float16.
        if input_f16 && n.op_type == "Gemm" {
            let alpha = t::attr_f(&n, "alpha").unwrap_or(1.0);
            let beta = t::attr_f(&n, "beta").unwrap_or(1.0);
            let trans_a = t::attr_i(&n, "transA").unwrap_or(0);
            let trans_b = t::attr_i(&n, "transB").unwrap_or(0);
            if alpha == 1.0 && beta == 1.0 && trans_a == 0 {
                let out = n.output[0].clone();
                let mut b = n.input[1].clone();
                if trans_b != 0 {
                    let bt = format!("{out}__kinglet_bt");
                    let mut tr = node("Transpose", format!("{bt}_node"), vec![b], bt.clone());
                    tr.attribute.push(ints_attr("perm", vec![1, 0]));
                    new_nodes.push(tr);
                    b = bt;
                }
                let has_c = n.input.get(2).is_some_and(|c| !c.is_empty());
                let mm_out = if has_c {
                    format!("{out}__kinglet_mm")
                } else {
                    out.clone()
                };
                new_nodes.push(node(
                    "MatMul",
                    format!("{}_matmul", n.name),
                    vec![n.input[0].clone(), b],
                    mm_out.clone(),
                ));
                if has_c {
                    new_nodes.push(node(
                        "Add",
                        format!("{}_add", n.name),
                        vec![mm_out, n.input[2].clone()],
                        out,
                    ));
                }
                continue;
            }
        }
        new_nodes.push(n);
    }
    graph.node = new_nodes;
    Ok(())
}

/// Replaces an ONNX `RNN` node (constant W / R / B, zero or absent initial state) by its
/// unrolled definition: `h_t = act(X_t W^T + h_{t-1} R^T + Wb + Rb)`.
fn unroll_rnn(
    n: &NodeProto,
    k: usize,
    steps: usize,
    inits: &mut Vec<TensorProto>,
    out: &mut Vec<NodeProto>,
) -> Result<()> {
    let find = |name: &str| -> Result<t::Tensor> {
        let p = inits
            .iter()
            .find(|i| i.name == name)
            .with_context(|| format!("RNN input '{name}' is not an initializer"))?;
        t::from_proto(p, None)
    };
    let w = find(&n.input[1])?;
    let r = find(&n.input[2])?;
    let b = match n.input.get(3).filter(|s| !s.is_empty()) {
        Some(s) => Some(find(s)?),
        None => None,
    };
    if n.input.get(4).is_some_and(|s| !s.is_empty()) {
        bail!("cannot unroll an RNN with sequence_lens");
    }
    let (dirs, hidden, input) = (w.shape[0], w.shape[1], w.shape[2]);
    let fdt = w.dt;
    let direction = t::attr_s(n, "direction").unwrap_or_else(|| "forward".into());
    let mut acts = t::attr_strings(n, "activations").unwrap_or_default();
    if acts.len() == 1 && dirs == 2 {
        acts.push(acts[0].clone());
    }
    let (wv, rv) = (w.as_f32(), r.as_f32());
    let bv = b
        .map(|b| b.as_f32())
        .unwrap_or_else(|| vec![0.0; dirs * 2 * hidden]);
    let p = format!("__kinglet_rnn{k}");
    let x = n.input[0].clone();
    let h0 = n.input.get(5).filter(|s| !s.is_empty()).cloned();
    inits.push(i64_tensor(
        &format!("{p}_shape_step"),
        &[1, 1, -1, hidden as i64],
    ));
    inits.push(i64_tensor(&format!("{p}_shape_h"), &[1, -1, hidden as i64]));
    let mut ys = Vec::new();
    let mut hs = Vec::new();
    for d in 0..dirs {
        let reverse = direction == "reverse" || d == 1;
        let act = match acts.get(d).map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("tanh") => "Tanh",
            Some("relu") => "Relu",
            Some("sigmoid") => "Sigmoid",
            Some(a) => bail!("cannot unroll an RNN with activation '{a}'"),
        };
        let q = format!("{p}_d{d}");
        // W^T [I, H], R^T [H, H], bias [H].
        let mut wt = vec![0f32; input * hidden];
        let mut rt = vec![0f32; hidden * hidden];
        for h in 0..hidden {
            for i in 0..input {
                wt[i * hidden + h] = wv[(d * hidden + h) * input + i];
            }
            for j in 0..hidden {
                rt[j * hidden + h] = rv[(d * hidden + h) * hidden + j];
            }
        }
        let bias: Vec<f32> = (0..hidden)
            .map(|h| bv[d * 2 * hidden + h] + bv[d * 2 * hidden + hidden + h])
            .collect();
        inits.push(float_tensor(&format!("{q}_wt"), &[input, hidden], &wt, fdt));
        inits.push(float_tensor(
            &format!("{q}_rt"),
            &[hidden, hidden],
            &rt,
            fdt,
        ));
        inits.push(float_tensor(&format!("{q}_b"), &[hidden], &bias, fdt));
        out.push(node(
            "MatMul",
            format!("{q}_xw"),
            vec![x.clone(), format!("{q}_wt")],
            format!("{q}_xw"),
        ));
        out.push(node(
            "Add",
            format!("{q}_xwb"),
            vec![format!("{q}_xw"), format!("{q}_b")],
            format!("{q}_xwb"),
        ));
        let mut h = match &h0 {
            Some(h0) => {
                inits.push(i64_tensor(&format!("{q}_dir"), &[d as i64]));
                let mut g = node(
                    "Gather",
                    format!("{q}_h0"),
                    vec![h0.clone(), format!("{q}_dir")],
                    format!("{q}_h0"),
                );
                g.attribute.push(int_attr("axis", 0));
                out.push(g);
                // [1, B, H] → [B, H]
                inits.push(i64_tensor(&format!("{q}_shape_bh"), &[-1, hidden as i64]));
                out.push(node(
                    "Reshape",
                    format!("{q}_h0r"),
                    vec![format!("{q}_h0"), format!("{q}_shape_bh")],
                    format!("{q}_h0r"),
                ));
                format!("{q}_h0r")
            }
            None => {
                inits.push(float_tensor(
                    &format!("{q}_zero"),
                    &[1, hidden],
                    &vec![0.0; hidden],
                    fdt,
                ));
                format!("{q}_zero")
            }
        };
        let mut step_out = vec![String::new(); steps];
        for s in 0..steps {
            let tt = if reverse { steps - 1 - s } else { s };
            let st = format!("{q}_t{tt}");
            inits.push(i64_tensor(&format!("{st}_idx"), &[tt as i64]));
            let mut g = node(
                "Gather",
                format!("{st}_x"),
                vec![format!("{q}_xwb"), format!("{st}_idx")],
                format!("{st}_x"),
            );
            g.attribute.push(int_attr("axis", 0));
            out.push(g); // [1, B, H]
            out.push(node(
                "MatMul",
                format!("{st}_rh"),
                vec![h.clone(), format!("{q}_rt")],
                format!("{st}_rh"),
            ));
            out.push(node(
                "Add",
                format!("{st}_pre"),
                vec![format!("{st}_x"), format!("{st}_rh")],
                format!("{st}_pre"),
            )); // [1, B, H]
            out.push(node(
                act,
                format!("{st}_h"),
                vec![format!("{st}_pre")],
                format!("{st}_h"),
            ));
            out.push(node(
                "Reshape",
                format!("{st}_y"),
                vec![format!("{st}_h"), format!("{p}_shape_step")],
                format!("{st}_y"),
            )); // [1, 1, B, H]
            step_out[tt] = format!("{st}_y");
            h = format!("{st}_h");
        }
        let yd = format!("{q}_y");
        let mut cat = node("Concat", yd.clone(), step_out, yd.clone());
        cat.attribute.push(int_attr("axis", 0));
        out.push(cat); // [T, 1, B, H]
        ys.push(yd);
        let hd = format!("{q}_hn");
        out.push(node(
            "Reshape",
            hd.clone(),
            vec![h, format!("{p}_shape_h")],
            hd.clone(),
        ));
        hs.push(hd);
    }
    if let Some(y) = n.output.first().filter(|s| !s.is_empty()) {
        let mut cat = node("Concat", format!("{p}_y"), ys, y.clone());
        cat.attribute.push(int_attr("axis", 1));
        out.push(cat);
    }
    if let Some(yh) = n.output.get(1).filter(|s| !s.is_empty()) {
        let mut cat = node("Concat", format!("{p}_yh"), hs, yh.clone());
        cat.attribute.push(int_attr("axis", 0));
        out.push(cat);
    }
    Ok(())
}

/// Rewrites a float16 model as float32: initializers and constants converted exactly, casts
/// to half become casts to float, graph inputs / outputs / value infos typed float.
fn promote_to_f32(model: &mut ModelProto) -> Result<()> {
    use tract_onnx::pb::type_proto::Value;
    let Some(graph) = model.graph.as_mut() else {
        return Ok(());
    };
    for init in &mut graph.initializer {
        if init.data_type == dt::FLOAT16 {
            let v = t::from_proto(init, None)?;
            *init = float_tensor(&init.name, &v.shape, &v.as_f32(), dt::FLOAT);
        }
    }
    for n in &mut graph.node {
        for a in &mut n.attribute {
            if let Some(tp) = a.t.as_mut() {
                if tp.data_type == dt::FLOAT16 {
                    let v = t::from_proto(tp, None)?;
                    *tp = float_tensor(&tp.name, &v.shape, &v.as_f32(), dt::FLOAT);
                }
            }
            if n.op_type == "Cast" && a.name == "to" && a.i == dt::FLOAT16 as i64 {
                a.i = dt::FLOAT as i64;
            }
        }
    }
    for vi in graph
        .input
        .iter_mut()
        .chain(&mut graph.output)
        .chain(&mut graph.value_info)
    {
        if let Some(Value::TensorType(tt)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            if tt.elem_type == dt::FLOAT16 {
                tt.elem_type = dt::FLOAT;
            }
        }
    }
    Ok(())
}
