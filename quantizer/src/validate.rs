//! Validation: tract runs the float ONNX, Kinglet runs the int8 file on the host, same inputs.

use crate::npy::ArrayF32;
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

/// Runs a model file over samples on the host, float in and float out (int8 inside).
pub struct HostModel<'a> {
    model: kinglet::Model<'a>,
    arena: Vec<u8>,
}

impl<'a> HostModel<'a> {
    /// Parses `bytes`.
    pub fn new(bytes: &'a [u8]) -> Result<Self> {
        let model = kinglet::Model::parse(bytes).map_err(|e| anyhow!("invalid model file: {e}"))?;
        let arena = vec![0u8; model.arena_bytes()];
        Ok(Self { model, arena })
    }

    /// The parsed model.
    pub fn model(&self) -> &kinglet::Model<'a> {
        &self.model
    }

    /// Elements of input 0.
    pub fn input_len(&self) -> usize {
        self.model.input(0).map_or(0, |t| t.nbytes())
    }

    /// Runs one sample (the first input); returns every output dequantized.
    pub fn run(&mut self, x: &[f32]) -> Result<Vec<Vec<f32>>> {
        let input = self
            .model
            .input(0)
            .ok_or_else(|| anyhow!("the model has no input"))?;
        if x.len() != input.nbytes() {
            bail!(
                "a sample has {} values but the model input {:?} needs {}",
                x.len(),
                input.name(),
                input.nbytes()
            );
        }
        let mut session =
            kinglet::Session::new(&self.model, &mut self.arena).map_err(|e| anyhow!("{e}"))?;
        input.quantize(x, session.input_mut(0).map_err(|e| anyhow!("{e}"))?);
        session.invoke().map_err(|e| anyhow!("{e}"))?;
        let mut outs = Vec::new();
        for i in 0..self.model.n_outputs() {
            let info = self
                .model
                .output(i)
                .ok_or_else(|| anyhow!("output {i} missing"))?;
            let q = session.output(i).map_err(|e| anyhow!("{e}"))?;
            let mut y = vec![0f32; q.len()];
            info.dequantize(q, &mut y);
            outs.push(y);
        }
        Ok(outs)
    }

    /// Runs one sample like [`run`](Self::run) and calls `seen(op, tensor, bytes)` once for
    /// every int8 activation tensor, right after the first op that lists it (its producer,
    /// or its first consumer for the model input and for aliases), while it is still live.
    pub fn run_observed(
        &mut self,
        x: &[f32],
        seen: &mut dyn FnMut(usize, kinglet::TensorInfo<'a>, &[i8]),
    ) -> Result<()> {
        let model = &self.model;
        let input = model
            .input(0)
            .ok_or_else(|| anyhow!("the model has no input"))?;
        if x.len() != input.nbytes() {
            bail!(
                "a sample has {} values but the model input needs {}",
                x.len(),
                input.nbytes()
            );
        }
        let mut done = vec![false; model.n_tensors()];
        let mut session =
            kinglet::Session::new(model, &mut self.arena).map_err(|e| anyhow!("{e}"))?;
        input.quantize(x, session.input_mut(0).map_err(|e| anyhow!("{e}"))?);
        session
            .invoke_observed(|i, arena| {
                let Some(op) = model.op(i) else { return };
                for t in op.tensors() {
                    let Some(info) = model.tensor(t) else {
                        continue;
                    };
                    if done[t]
                        || info.kind() != kinglet::TensorKind::Activation
                        || info.dtype() != kinglet::DType::I8
                    {
                        continue;
                    }
                    done[t] = true;
                    if let Some(b) = arena.get(info.offset()..info.offset() + info.nbytes()) {
                        let q: Vec<i8> = b.iter().map(|&v| v as i8).collect();
                        seen(i, info, &q);
                    }
                }
            })
            .map_err(|e| anyhow!("{e}"))?;
        Ok(())
    }
}

/// How much error one activation carries: the int8 tensor against the same value of the
/// float graph.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSqnr {
    /// Index of the op after which it was read (its producer).
    pub op: usize,
    /// That op's kind (`"LSTM"`, `"FC"`, ...).
    pub op_kind: &'static str,
    /// The tensor (= ONNX value) name.
    pub tensor: String,
    /// Elements per sample.
    pub elements: usize,
    /// SQNR in dB over the samples (200 when exact).
    pub sqnr_db: f64,
}

/// Per-layer SQNR over the first `samples` samples of `data`: every int8 activation of the
/// model file against the same-named value of the float graph, as the importer evaluates it
/// (`float_eval`, the interpreter calibration uses; its outputs agree with tract's to float
/// rounding, which `validate` checks end to end). In op order, so the first big drop shows
/// where error enters. Tensors with no float counterpart (internal to a fused op) are skipped.
/// A file whose ops run on selected rows only (dead-row elimination, [`crate::prune`]) is
/// compared with the float graph pruned the same way: its tensors keep their names and hold
/// the rows of the whole values that the pruned graph computes.
pub fn layer_sqnr(
    onnx: &std::path::Path,
    kgl_bytes: &[u8],
    data: &ArrayF32,
    samples: usize,
) -> Result<Vec<LayerSqnr>> {
    let (imported, _) = import_for(onnx, data)?;
    // The float graphs: as imported, and with dead rows pruned when that applies (the pass
    // needs ranges only to carry them over, so any will do here).
    let unused = crate::calibrate::Ranges {
        values: vec![(0.0, 0.0); imported.graph.values.len()],
        cell_max: Default::default(),
        gate_max: Default::default(),
        samples: 0,
    };
    let pruned = crate::prune::prune_rows(&imported.graph, &unused).map(|(g, _, _)| g);
    let graphs: Vec<&crate::ir::Graph> = std::iter::once(&imported.graph)
        .chain(pruned.as_ref())
        .collect();
    let mut host = HostModel::new(kgl_bytes)?;
    let kinds: Vec<&'static str> = (0..host.model().n_ops())
        .map(|i| host.model().op(i).map_or("?", |o| o.name()))
        .collect();
    let by_name: Vec<std::collections::HashMap<&str, usize>> = graphs
        .iter()
        .map(|g| {
            g.values
                .iter()
                .enumerate()
                .map(|(i, v)| (v.name.as_str(), i))
                .collect()
        })
        .collect();
    // tensor index -> (op, kind, name, Σ f², Σ (f − q)², elements)
    let mut acc: std::collections::BTreeMap<usize, (usize, &'static str, String, f64, f64, usize)> =
        Default::default();
    for s in 0..samples.min(data.samples()) {
        let x = data.sample(s);
        let mut float: Vec<Vec<Option<Vec<f32>>>> = Vec::new();
        for g in &graphs {
            let mut values: Vec<Option<Vec<f32>>> = vec![None; g.values.len()];
            crate::float_eval::eval(g, &[x], &mut |ev| {
                if let crate::float_eval::Event::Value { id, data } = ev {
                    values[id] = Some(data.to_vec());
                }
            })?;
            float.push(values);
        }
        let mut err = None;
        host.run_observed(x, &mut |op, info, q| {
            // The same-named float value with as many elements (whole, or the pruned rows).
            let Some(f) = by_name.iter().zip(&float).find_map(|(names, values)| {
                let f = names.get(info.name()).and_then(|&v| values[v].as_ref())?;
                (f.len() == q.len()).then_some(f)
            }) else {
                return;
            };
            let mut deq = vec![0f32; q.len()];
            info.dequantize(q, &mut deq);
            let kind = kinds.get(op).copied().unwrap_or("?");
            let e = acc
                .entry(info.index())
                .or_insert_with(|| (op, kind, info.name().to_string(), 0.0, 0.0, q.len()));
            for (a, b) in f.iter().zip(&deq) {
                e.3 += (*a as f64).powi(2);
                e.4 += (*a as f64 - *b as f64).powi(2);
            }
            if !f.iter().all(|v| v.is_finite()) {
                err = Some(info.name().to_string());
            }
        })?;
        if let Some(name) = err {
            bail!("the float graph gives non-finite values for '{name}'");
        }
    }
    let mut out: Vec<LayerSqnr> = acc
        .into_values()
        .map(|(op, op_kind, tensor, sig, noise, elements)| LayerSqnr {
            op,
            op_kind,
            tensor,
            elements,
            sqnr_db: sqnr_db(sig, noise),
        })
        .collect();
    out.sort_by_key(|l| l.op);
    Ok(out)
}

fn sqnr_db(sig: f64, noise: f64) -> f64 {
    if noise == 0.0 {
        200.0
    } else {
        10.0 * (sig / noise).log10()
    }
}

/// What `validate --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Samples compared.
    pub samples: usize,
    /// Worst SQNR over outputs, int8 against float, in dB.
    pub sqnr_db: f64,
    /// Worst relative MSE over outputs: Σ(f − q)² / Σ f².
    pub rel_mse: f64,
    /// Fraction of rows (last axis) of output 0 whose argmax agrees.
    pub top1_agreement: f64,
    /// Per output: SQNR in dB.
    pub sqnr_db_per_output: Vec<f64>,
    /// Float accuracy against labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy_float: Option<f64>,
    /// Int8 accuracy against labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy_int8: Option<f64>,
    /// Float MSE against targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mse_float: Option<f64>,
    /// Int8 MSE against targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mse_int8: Option<f64>,
    /// Float MAE against targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mae_float: Option<f64>,
    /// Int8 MAE against targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mae_int8: Option<f64>,
    /// Model file bytes.
    pub model_bytes: usize,
    /// Arena bytes the session needs.
    pub arena_bytes: usize,
    /// Per-layer SQNR in op order ([`layer_sqnr`]); empty unless asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerSqnr>,
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Compares `float` and `int8` outputs (per sample, per output) and scores them; `width` is the
/// last axis of output 0 (argmax and labels go by its rows).
pub fn compare(
    float: &[Vec<Vec<f32>>],
    width: usize,
    int8: &[Vec<Vec<f32>>],
    labels: Option<&[i64]>,
    targets: Option<&ArrayF32>,
    model_bytes: usize,
    arena_bytes: usize,
) -> Result<Report> {
    let samples = float.len();
    let n_out = float.first().map_or(0, |o| o.len());
    let mut sqnr = Vec::new();
    let mut worst_rel = 0f64;
    for o in 0..n_out {
        let (mut sig, mut noise) = (0f64, 0f64);
        for s in 0..samples {
            let (f, q) = (&float[s][o], &int8[s][o]);
            if f.len() != q.len() {
                bail!(
                    "output {o}: tract gives {} values, Kinglet {}",
                    f.len(),
                    q.len()
                );
            }
            for (a, b) in f.iter().zip(q) {
                sig += (*a as f64).powi(2);
                noise += (*a as f64 - *b as f64).powi(2);
            }
        }
        let rel = if sig > 0.0 { noise / sig } else { noise };
        worst_rel = worst_rel.max(rel);
        sqnr.push(sqnr_db(sig, noise));
    }
    // Argmax over the last axis of output 0: one row per label (several for sequence outputs).
    let mut rows_total = 0usize;
    let mut agree = 0usize;
    let mut correct_f = 0usize;
    let mut correct_q = 0usize;
    let width = width.max(1);
    for s in 0..samples {
        let f = &float[s][0];
        let q = &int8[s][0];
        if f.len() % width != 0 {
            bail!(
                "output 0 has {} values, not a multiple of its last axis {width}",
                f.len()
            );
        }
        let rows = f.len() / width;
        if let Some(l) = labels {
            if l.len() != samples * rows {
                bail!(
                    "{} labels for {samples} samples of {rows} row(s) each: expected {}",
                    l.len(),
                    samples * rows
                );
            }
        }
        for r in 0..rows {
            let af = argmax(&f[r * width..(r + 1) * width]);
            let aq = argmax(&q[r * width..(r + 1) * width]);
            rows_total += 1;
            agree += (af == aq) as usize;
            if let Some(l) = labels {
                let lab = l[s * rows + r];
                correct_f += (af as i64 == lab) as usize;
                correct_q += (aq as i64 == lab) as usize;
            }
        }
    }
    let mut report = Report {
        samples,
        sqnr_db: sqnr.iter().copied().fold(f64::INFINITY, f64::min),
        rel_mse: worst_rel,
        top1_agreement: agree as f64 / rows_total.max(1) as f64,
        sqnr_db_per_output: sqnr,
        accuracy_float: labels.map(|_| correct_f as f64 / rows_total.max(1) as f64),
        accuracy_int8: labels.map(|_| correct_q as f64 / rows_total.max(1) as f64),
        mse_float: None,
        mse_int8: None,
        mae_float: None,
        mae_int8: None,
        model_bytes,
        arena_bytes,
        layers: Vec::new(),
    };
    if let Some(t) = targets {
        if t.samples() < samples {
            bail!("{} targets for {samples} samples", t.samples());
        }
        let (mut mf, mut mq, mut af, mut aq, mut n) = (0f64, 0f64, 0f64, 0f64, 0usize);
        for s in 0..samples {
            let truth = t.sample(s);
            let (f, q) = (&float[s][0], &int8[s][0]);
            if truth.len() != f.len() {
                bail!(
                    "targets have {} values per sample, output 0 has {}",
                    truth.len(),
                    f.len()
                );
            }
            for i in 0..truth.len() {
                let (tv, fv, qv) = (truth[i] as f64, f[i] as f64, q[i] as f64);
                mf += (fv - tv).powi(2);
                mq += (qv - tv).powi(2);
                af += (fv - tv).abs();
                aq += (qv - tv).abs();
                n += 1;
            }
        }
        let n = n.max(1) as f64;
        report.mse_float = Some(mf / n);
        report.mse_int8 = Some(mq / n);
        report.mae_float = Some(af / n);
        report.mae_int8 = Some(aq / n);
    }
    Ok(report)
}

/// Imports `onnx` and checks that `data`'s samples fit its input; returns the import and the
/// input's shape.
fn import_for(
    onnx: &std::path::Path,
    data: &ArrayF32,
) -> Result<(crate::import::Imported, Vec<usize>)> {
    let imported = crate::import::import(onnx, None)
        .with_context(|| format!("importing {}", onnx.display()))?;
    let g = &imported.graph;
    let input = g
        .inputs
        .first()
        .copied()
        .ok_or_else(|| anyhow!("the ONNX model has no input"))?;
    let shape = g.values[input].shape.clone();
    crate::calibrate::check_sample_shape(data, &shape, "the validation data")?;
    Ok((imported, shape))
}

/// Runs both engines over `data` and compares.
pub fn validate(
    onnx: &std::path::Path,
    kgl_bytes: &[u8],
    data: &ArrayF32,
    labels: Option<&[i64]>,
    targets: Option<&ArrayF32>,
    limit: Option<usize>,
) -> Result<Report> {
    let (imported, shape) = import_for(onnx, data)?;
    let tract = crate::oracle::TractModel::load(onnx, &shape, imported.input_f16)?;
    let mut host = HostModel::new(kgl_bytes)?;
    let n = limit.map_or(data.samples(), |l| l.min(data.samples()));
    let mut float = Vec::with_capacity(n);
    let mut int8 = Vec::with_capacity(n);
    for s in 0..n {
        float.push(tract.run(data.sample(s))?);
        int8.push(host.run(data.sample(s))?);
    }
    let labels = labels.map(|l| &l[..(l.len() / data.samples().max(1)) * n]);
    let out0 = host
        .model()
        .output(0)
        .ok_or_else(|| anyhow!("the model has no output"))?;
    let width = out0.dims()[out0.rank().max(1) - 1];
    compare(
        &float,
        width,
        &int8,
        labels,
        targets,
        kgl_bytes.len(),
        host.model().arena_bytes(),
    )
}
