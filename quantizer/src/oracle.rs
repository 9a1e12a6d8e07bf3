//! Reference runs of the original ONNX model through tract (the oracle the float IR and the
//! quantized model are compared against).
//!
//! Two exactly-equivalent rewrites of the ONNX graph work around tract 0.23 bugs before tract
//! sees it:
//! * `GRU` with a single input feature: tract's fused `GruSeq` fails at run time ("xw not
//!   contiguous"), so X gets a second, all-zero feature (`X · 0`) and W a zero column;
//! * float16 models: tract's `Gemm` expansion produces f32 instead of f16 and fails to
//!   translate, so `Gemm` (alpha = beta = 1, transA = 0) becomes `[Transpose] → MatMul → Add`.

use crate::import::tensor::{self as t, dt};
use anyhow::{ensure, Context, Result};
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
        work_around_tract_bugs(&mut proto, input_f16)
            .context("cannot rewrite the model around tract bugs")?;
        let dir = model_dir.and_then(|p| p.to_str());
        let dtype = if input_f16 {
            DatumType::F16
        } else {
            DatumType::F32
        };
        let plan = (|| -> TractResult<Arc<TypedRunnableModel>> {
            let parsed = tract_onnx::onnx().parse(&proto, dir)?;
            if !parsed.unresolved_inputs.is_empty() {
                anyhow::bail!("unresolved inputs {:?}", parsed.unresolved_inputs);
            }
            parsed
                .model
                .with_input_fact(0, InferenceFact::dt_shape(dtype, input_shape))?
                .into_optimized()?
                .into_runnable()
        })()?;
        Ok(TractModel {
            plan,
            input_shape: input_shape.to_vec(),
            input_f16,
        })
    }

    /// The input shape the model was loaded for.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
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
        let t = if self.input_f16 {
            let h: Vec<f16> = input.iter().map(|&v| f16::from_f32(v)).collect();
            Tensor::from_shape(&self.input_shape, &h)?
        } else {
            Tensor::from_shape(&self.input_shape, input)?
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

fn node(op: &str, name: String, inputs: Vec<String>, output: String) -> NodeProto {
    NodeProto {
        op_type: op.to_string(),
        name,
        input: inputs,
        output: vec![output],
        ..Default::default()
    }
}

fn work_around_tract_bugs(model: &mut ModelProto, input_f16: bool) -> Result<()> {
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
                    cat.attribute.push(AttributeProto {
                        name: "axis".into(),
                        r#type: 2,
                        i: 2,
                        ..Default::default()
                    });
                    new_nodes.push(cat);
                    n.input[0] = xp;
                    n.input[1] = wname;
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
                    tr.attribute.push(AttributeProto {
                        name: "perm".into(),
                        r#type: 7,
                        ints: vec![1, 0],
                        ..Default::default()
                    });
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
