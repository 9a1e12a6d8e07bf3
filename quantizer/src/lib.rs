//! Kinglet's host tool: imports float ONNX models, calibrates them on real data, quantizes them
//! to the int8 model file the `kinglet` runtime executes, and validates the result against tract.

pub mod bench;
pub mod calibrate;
pub mod features;
pub mod float_eval;
pub mod import;
pub mod ir;
pub mod kws;
pub mod npy;
pub mod oracle;
pub mod plan;
pub mod prune;
pub mod quantize;
pub mod table;
pub mod validate;
pub mod writer;

use anyhow::{Context, Result};
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// failed write never leaves a half-written file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| {
        format!(
            "cannot write {} (directory {})",
            path.display(),
            dir.display()
        )
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!(
            "cannot move {} into place as {}: {e}",
            tmp.display(),
            path.display()
        )
    })
}

/// The whole host pipeline: import, calibrate, quantize, plan, write.
#[derive(Debug)]
pub struct Quantized {
    /// The model file.
    pub bytes: Vec<u8>,
    /// The int8 program (for summaries).
    pub program: quantize::QModel,
    /// Arena bytes the plan needs (without the 15 bytes of alignment slack).
    pub plan_bytes: usize,
    /// What a plan without reuse would need.
    pub naive_bytes: usize,
}

/// Refuses, naming the limit, a program the runtime's parser would refuse for its size: more
/// state tensors or outputs than `kinglet::format` allows.
fn check_runtime_limits(p: &quantize::QModel) -> Result<()> {
    use kinglet::format::{MAX_OUTPUTS, MAX_STATE_TENSORS};
    let states = p
        .tensors
        .iter()
        .filter(|t| t.kind == kinglet::TensorKind::State)
        .count();
    if states > MAX_STATE_TENSORS {
        anyhow::bail!(
            "the model needs {states} recurrent state tensors; the runtime allows at most \
             {MAX_STATE_TENSORS} (docs/format.md): use fewer stacked or bidirectional layers"
        );
    }
    if p.outputs.len() > MAX_OUTPUTS {
        anyhow::bail!(
            "the model has {} outputs; the runtime allows at most {MAX_OUTPUTS}",
            p.outputs.len()
        );
    }
    Ok(())
}

/// The JSON text of the file's [`quantize::META_TENSOR`] (how it was made), if it has one.
pub fn meta(m: &kinglet::Model<'_>) -> Option<String> {
    let t = (0..m.n_tensors())
        .filter_map(|i| m.tensor(i))
        .find(|t| t.name() == quantize::META_TENSOR)?;
    let bytes = m.const_data(&t)?;
    std::str::from_utf8(bytes).ok().map(str::to_string)
}

/// Imports `onnx`, calibrates it on `calib` (min/max ranges) and returns the int8 model file.
pub fn quantize_model(
    onnx: &Path,
    calib: &npy::ArrayF32,
    input_shape: Option<&[usize]>,
) -> Result<Quantized> {
    quantize_model_with(onnx, calib, input_shape, calibrate::Method::MinMax)
}

/// [`quantize_model`] with a choice of how activation ranges are calibrated. The choice is
/// recorded in the file (constant tensor [`quantize::META_TENSOR`], JSON).
pub fn quantize_model_with(
    onnx: &Path,
    calib: &npy::ArrayF32,
    input_shape: Option<&[usize]>,
    method: calibrate::Method,
) -> Result<Quantized> {
    quantize_model_layout(onnx, calib, input_shape, method, false)
}

/// [`quantize_model_with`], and with `lstm_unit16` every LSTM's gate operands in the unit16
/// layout (`kinglet::format::OP_FLAG_UNIT16`; recorded in the file's meta tensor): the
/// Cortex-M DSP kernel's layout, twice the LSTM weight bytes, the same results.
pub fn quantize_model_layout(
    onnx: &Path,
    calib: &npy::ArrayF32,
    input_shape: Option<&[usize]>,
    method: calibrate::Method,
    lstm_unit16: bool,
) -> Result<Quantized> {
    quantize_model_rows(onnx, calib, input_shape, method, lstm_unit16, false)
}

/// [`quantize_model_layout`], and with `keep_dead_rows` without dead-row elimination
/// ([`prune`]): every op then computes all its rows even where only some are read (a CLS
/// token). The outputs are the same either way; this is for comparisons.
pub fn quantize_model_rows(
    onnx: &Path,
    calib: &npy::ArrayF32,
    input_shape: Option<&[usize]>,
    method: calibrate::Method,
    lstm_unit16: bool,
    keep_dead_rows: bool,
) -> Result<Quantized> {
    let imported = import::import(onnx, input_shape)
        .with_context(|| format!("importing {}", onnx.display()))?;
    let ranges = calibrate::calibrate_with(&imported.graph, calib, method)?;
    let opts = quantize::Options {
        meta: serde_json::json!({
            "producer": concat!("kinglet-quantizer ", env!("CARGO_PKG_VERSION")),
            "calibration": method.to_string(),
            "calibration_samples": ranges.samples,
            "weights": if lstm_unit16 {
                "int8 per output channel, symmetric; LSTM gates in the unit16 layout (int16 storage)"
            } else {
                "int8 per output channel, symmetric"
            },
        })
        .to_string(),
        lstm_unit16,
        keep_dead_rows,
    };
    let mut program = quantize::quantize(&imported.graph, &ranges, &opts)?;
    check_runtime_limits(&program)?;
    let plan_bytes = plan::plan(&mut program);
    let naive_bytes = plan::naive_bytes(&program);
    let bytes = writer::write(&program, plan_bytes)?;
    Ok(Quantized {
        bytes,
        program,
        plan_bytes,
        naive_bytes,
    })
}

/// Refuses non-finite weights, naming the node that holds them.
pub fn check_weights(g: &ir::Graph) -> Result<()> {
    for n in &g.nodes {
        let arrays: Vec<(&str, &[f32])> = match &n.op {
            ir::Op::Fc { w, b, .. } => vec![("weight", w), ("bias", b)],
            ir::Op::Lstm { w, r, bw, br, .. }
            | ir::Op::Gru { w, r, bw, br, .. }
            | ir::Op::Rnn { w, r, bw, br, .. } => {
                vec![
                    ("W", w),
                    ("R", r),
                    ("input bias", bw),
                    ("recurrent bias", br),
                ]
            }
            ir::Op::LayerNorm { gamma, beta, .. } => vec![("gamma", gamma), ("beta", beta)],
            ir::Op::Constant { data } => vec![("constant", data)],
            _ => vec![],
        };
        for (what, a) in arrays {
            if let Some(pos) = a.iter().position(|v| !v.is_finite()) {
                anyhow::bail!(
                    "node '{}': its {what} holds {} at element {pos}; weights must be finite",
                    n.name,
                    a[pos]
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinglet::format::{DType, MAX_OUTPUTS, MAX_STATE_TENSORS};
    use kinglet::TensorKind;

    fn state() -> quantize::QTensor {
        quantize::QTensor {
            name: "h".into(),
            dtype: DType::I8,
            kind: TensorKind::State,
            dims: vec![4],
            time_axis: None,
            scale: 0.01,
            zero_point: 0,
            data: Vec::new(),
            buffer: None,
        }
    }

    #[test]
    fn programs_over_the_parser_limits_are_refused_before_writing() {
        let mut p = quantize::QModel {
            tensors: vec![state(); MAX_STATE_TENSORS],
            outputs: vec![0; MAX_OUTPUTS],
            ..Default::default()
        };
        check_runtime_limits(&p).unwrap();
        p.tensors.push(state());
        let e = check_runtime_limits(&p).unwrap_err().to_string();
        assert!(
            e.contains("65 recurrent state tensors") && e.contains("at most 64"),
            "{e}"
        );
        p.tensors.pop();
        p.outputs.push(0);
        let e = check_runtime_limits(&p).unwrap_err().to_string();
        assert!(e.contains("65 outputs"), "{e}");
    }
}
