//! Calibration: run the float graph over real samples and record the range of every value and
//! of the insides of recurrent cells.

use crate::float_eval::{self, Event};
use crate::ir::{Graph, ValueId};
use crate::npy::ArrayF32;
use anyhow::{bail, Result};
use std::collections::HashMap;

/// Observed ranges.
#[derive(Debug, Clone)]
pub struct Ranges {
    /// `(min, max)` of every value (NaN-free; `(0, 0)` if never observed).
    pub values: Vec<(f32, f32)>,
    /// Largest |c| of each LSTM node's cell state, by node index.
    pub cell_max: HashMap<usize, f32>,
    /// Largest |pre-activation| of each recurrent node's gates, by node index.
    pub gate_max: HashMap<usize, f32>,
    /// Number of samples seen.
    pub samples: usize,
}

/// Checks that one sample of `data` fits the graph input `input`, whose shape is `shape`.
/// Accepts `[N, ...shape]` and `[N, ...shape without leading 1s]`.
pub fn check_sample_shape(data: &ArrayF32, shape: &[usize], what: &str) -> Result<()> {
    if data.shape.is_empty() || data.samples() == 0 {
        bail!(
            "{what} is empty (shape {:?}): it needs at least one sample",
            data.shape
        );
    }
    let sample = &data.shape[1..];
    let mut trimmed = shape;
    loop {
        if sample == trimmed {
            return Ok(());
        }
        match trimmed.split_first() {
            Some((1, rest)) => trimmed = rest,
            _ => break,
        }
    }
    bail!(
        "{what} has shape {:?}: each of its N samples must have the model input's shape {:?} \
         (leading 1s may be dropped), so expected [N, {}]",
        data.shape,
        shape,
        shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Runs `graph` over every sample of `calib` and records ranges.
pub fn calibrate(graph: &Graph, calib: &ArrayF32) -> Result<Ranges> {
    crate::check_weights(graph)?;
    let input: ValueId = match graph.inputs.as_slice() {
        [i] => *i,
        other => bail!(
            "models with {} inputs are not supported yet (calibration feeds one input)",
            other.len()
        ),
    };
    check_sample_shape(calib, &graph.values[input].shape, "the calibration set")?;
    if let Some(pos) = calib.data.iter().position(|v| !v.is_finite()) {
        let n = calib.sample_len().max(1);
        bail!(
            "the calibration set holds {} at element {pos} (sample {}): calibration data must be finite",
            calib.data[pos],
            pos / n
        );
    }
    let mut values = vec![(f32::INFINITY, f32::NEG_INFINITY); graph.values.len()];
    let mut cell_max: HashMap<usize, f32> = HashMap::new();
    let mut gate_max: HashMap<usize, f32> = HashMap::new();
    for s in 0..calib.samples() {
        let x = calib.sample(s);
        float_eval::eval(graph, &[x], &mut |ev| match ev {
            Event::Value { id, data } => {
                let r = &mut values[id];
                for &v in data {
                    r.0 = r.0.min(v);
                    r.1 = r.1.max(v);
                }
            }
            Event::LstmCell { node, c } => {
                let m = cell_max.entry(node).or_insert(0.0);
                *m = c.iter().fold(*m, |a, v| a.max(v.abs()));
            }
            Event::GatePre { node, data } => {
                let m = gate_max.entry(node).or_insert(0.0);
                *m = data.iter().fold(*m, |a, v| a.max(v.abs()));
            }
        })?;
    }
    for (i, r) in values.iter_mut().enumerate() {
        if !r.0.is_finite() || !r.1.is_finite() {
            bail!(
                "value '{}' produced non-finite numbers during calibration",
                graph.values[i].name
            );
        }
    }
    Ok(Ranges {
        values,
        cell_max,
        gate_max,
        samples: calib.samples(),
    })
}
