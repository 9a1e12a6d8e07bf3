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

/// How an activation's int8 range is chosen from what calibration saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// The observed minimum and maximum: nothing is ever clipped, but one outlier stretches
    /// the step for every other value.
    MinMax,
    /// Clip both tails at this percentile of the observed values (e.g. 99.99).
    Percentile(f64),
    /// Per value, the range (the observed one shrunk by a factor in 0.30..=1.00) that minimises
    /// the expected squared error: clipping error of the values outside plus step²/12 inside.
    Mse,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::MinMax => write!(f, "minmax"),
            Method::Percentile(p) => write!(f, "percentile:{p}"),
            Method::Mse => write!(f, "mse"),
        }
    }
}

impl std::str::FromStr for Method {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "minmax" => Ok(Method::MinMax),
            "mse" => Ok(Method::Mse),
            "percentile" => Ok(Method::Percentile(99.99)),
            _ => {
                if let Some(p) = s.strip_prefix("percentile:") {
                    let p: f64 = p
                        .parse()
                        .map_err(|_| anyhow::anyhow!("'{p}' is not a number (percentile:99.99)"))?;
                    if p > 50.0 && p <= 100.0 {
                        return Ok(Method::Percentile(p));
                    }
                    bail!("percentile {p} is outside (50, 100]");
                }
                bail!("unknown calibration method '{s}': minmax, mse, percentile or percentile:P")
            }
        }
    }
}

/// Histogram bins per value for the range search.
const BINS: usize = 2048;

/// Runs calibration and then narrows every value's range by `method` (a second pass over the
/// samples fills a histogram of each value between its min and max). Recurrent-cell insides
/// (`cell_max`, `gate_max`) keep their observed maxima: the kernels' fixed-point formats need
/// the whole range.
pub fn calibrate_with(graph: &Graph, calib: &ArrayF32, method: Method) -> Result<Ranges> {
    let mut ranges = calibrate(graph, calib)?;
    if method == Method::MinMax {
        return Ok(ranges);
    }
    let mut hist = vec![Vec::<u32>::new(); graph.values.len()];
    for (h, &(lo, hi)) in hist.iter_mut().zip(&ranges.values) {
        if hi > lo {
            *h = vec![0; BINS];
        }
    }
    for s in 0..calib.samples() {
        float_eval::eval(graph, &[calib.sample(s)], &mut |ev| {
            if let Event::Value { id, data } = ev {
                let (lo, hi) = ranges.values[id];
                let h = &mut hist[id];
                if h.is_empty() {
                    return;
                }
                let k = BINS as f32 / (hi - lo);
                for &v in data {
                    let b = (((v - lo) * k) as usize).min(BINS - 1);
                    h[b] += 1;
                }
            }
        })?;
    }
    for (r, h) in ranges.values.iter_mut().zip(&hist) {
        if !h.is_empty() {
            *r = match method {
                Method::Percentile(p) => percentile_range(h, *r, p),
                _ => mse_range(h, *r),
            };
        }
    }
    Ok(ranges)
}

fn bin_center(lo: f32, hi: f32, b: usize) -> f64 {
    lo as f64 + (b as f64 + 0.5) * (hi - lo) as f64 / BINS as f64
}

/// The `p`-th and `(100 - p)`-th percentiles (bin edges), never wider than observed.
fn percentile_range(h: &[u32], (lo, hi): (f32, f32), p: f64) -> (f32, f32) {
    let total: u64 = h.iter().map(|&c| c as u64).sum();
    let tail = ((1.0 - p / 100.0) * total as f64).floor() as u64;
    let width = (hi - lo) as f64 / BINS as f64;
    let (mut acc, mut a) = (0u64, 0usize);
    while a < BINS - 1 && acc + h[a] as u64 <= tail {
        acc += h[a] as u64;
        a += 1;
    }
    let (mut acc, mut b) = (0u64, BINS - 1);
    while b > a && acc + h[b] as u64 <= tail {
        acc += h[b] as u64;
        b -= 1;
    }
    (
        (lo as f64 + a as f64 * width) as f32,
        (lo as f64 + (b + 1) as f64 * width) as f32,
    )
}

/// The shrink of `[lo, hi]` (by a common factor, after widening to contain 0 as the int8
/// parameters do) with the least expected squared quantization error over the histogram.
fn mse_range(h: &[u32], (lo, hi): (f32, f32)) -> (f32, f32) {
    let mut best = (f64::INFINITY, (lo, hi));
    for step in 0..=70 {
        let f = 1.0 - step as f64 * 0.01;
        let a = (lo.min(0.0) as f64) * f;
        let b = (hi.max(0.0) as f64) * f;
        let q = (b - a) / 255.0;
        let mut err = 0f64;
        for (i, &c) in h.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let x = bin_center(lo, hi, i);
            let e = if x < a {
                (a - x).powi(2)
            } else if x > b {
                (x - b).powi(2)
            } else {
                q * q / 12.0
            };
            err += c as f64 * e;
        }
        if err < best.0 {
            best = (err, (a as f32, b as f32));
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantize::affine_i8;

    /// Laplace-distributed samples (a heavy-ish tail) plus a few far outliers, from a fixed LCG.
    fn samples() -> Vec<f32> {
        let mut s = 0x1234_5678u64;
        let mut u = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut v: Vec<f32> = (0..200_000)
            .map(|_| {
                let (a, b) = (u(), u());
                (-(a.ln()) * if b < 0.5 { -1.0 } else { 1.0 }) as f32
            })
            .collect();
        v.extend([40.0, -35.0, 38.0]);
        v
    }

    fn histogram(v: &[f32]) -> ((f32, f32), Vec<u32>) {
        let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut h = vec![0u32; BINS];
        for &x in v {
            h[(((x - lo) * (BINS as f32 / (hi - lo))) as usize).min(BINS - 1)] += 1;
        }
        ((lo, hi), h)
    }

    /// The mean squared error of really quantizing `v` to int8 with the range `(lo, hi)`.
    fn real_mse(v: &[f32], (lo, hi): (f32, f32)) -> f64 {
        let (scale, zp) = affine_i8(lo, hi);
        v.iter()
            .map(|&x| {
                let q = ((x / scale).round() as i64 + zp as i64).clamp(-128, 127);
                let y = (q - zp as i64) as f64 * scale as f64;
                (y - x as f64).powi(2)
            })
            .sum::<f64>()
            / v.len() as f64
    }

    #[test]
    fn mse_search_beats_min_max_on_real_quantization_error() {
        let v = samples();
        let (observed, h) = histogram(&v);
        let chosen = mse_range(&h, observed);
        assert!(chosen.1 < observed.1 && chosen.0 > observed.0, "{chosen:?}");
        let (e_minmax, e_mse) = (real_mse(&v, observed), real_mse(&v, chosen));
        assert!(
            e_mse < 0.8 * e_minmax,
            "mse range {chosen:?}: {e_mse:e} vs min/max {e_minmax:e}"
        );
        // The histogram estimate picks (nearly) the candidate that is really best.
        let best = (0..=70)
            .map(|k| {
                let f = 1.0 - k as f32 * 0.01;
                real_mse(&v, (observed.0 * f, observed.1 * f))
            })
            .fold(f64::INFINITY, f64::min);
        assert!(e_mse <= 1.05 * best, "{e_mse:e} vs best candidate {best:e}");
    }

    #[test]
    fn mse_keeps_a_range_without_outliers() {
        // Uniform values: any clipping costs more than it saves.
        let v: Vec<f32> = (0..100_000)
            .map(|i| i as f32 / 100_000.0 * 6.0 - 2.0)
            .collect();
        let (observed, h) = histogram(&v);
        let chosen = mse_range(&h, observed);
        assert!((chosen.0 - observed.0).abs() < 0.03 && (chosen.1 - observed.1).abs() < 0.05);
    }

    #[test]
    fn percentile_clips_exactly_the_tails() {
        let v = samples();
        let (observed, h) = histogram(&v);
        let (a, b) = percentile_range(&h, observed, 99.99);
        let below = v.iter().filter(|&&x| x < a).count() as f64 / v.len() as f64;
        let above = v.iter().filter(|&&x| x > b).count() as f64 / v.len() as f64;
        // At most the tail fraction is clipped on each side, to one bin's resolution.
        assert!(below <= 1e-4 && above <= 1e-4, "{below} {above}");
        assert!(a > -35.0 && b < 38.0, "outliers not clipped: {a} {b}");
    }

    #[test]
    fn method_names_round_trip_and_bad_ones_are_explained() {
        for m in [Method::MinMax, Method::Mse, Method::Percentile(99.9)] {
            assert_eq!(m.to_string().parse::<Method>().unwrap(), m);
        }
        assert_eq!(
            "percentile".parse::<Method>().unwrap(),
            Method::Percentile(99.99)
        );
        let e = "percentile:40".parse::<Method>().unwrap_err().to_string();
        assert!(e.contains("outside"), "{e}");
        let e = "kl".parse::<Method>().unwrap_err().to_string();
        assert!(e.contains("minmax, mse, percentile"), "{e}");
    }
}
