//! Vanilla RNN cell, one direction (`OP_RNN`): `h' = act(W x + b_w + R h + b_r)`.
//!
//! `act = 0` (tanh): `g = sat16(rq(ax) + rq(ah))` in Q3.12 and
//! `h = clamp(h_zp + rq(lut16(tanh, g), hq))`. `act = 1` (ReLU): the pairs map straight to the
//! output scale and `h = clamp(h_zp + max(rq(ax) + rq(ah), 0))`. Here
//! `ax = bias_x[j] + Σ w[j,k] x[t,k]` and `ah = bias_h[j] + Σ r[j,k] h[k]` with their pairs.
//!
//! The new state is written into `y[t]` first (every unit reads the previous `h`) and then
//! copied to `h`, so the op needs no scratch.
//!
//! Error bound (tested): against an f64 ONNX RNN on the dequantized operands with `h` in
//! float, the dequantized `h` stays within 2 LSB of its scale (0.0157 for a 2/255 scale;
//! measured ≤ 0.0085) for tanh and ReLU, `H` 8..32, `I = 12`, `T = 10`, recurrent gain < 1:
//! `h`'s int8 rounding (½ LSB per step) carried through `R` dominates.

use super::fixed::{clamp8_add, lut16, rq, sat16_add};
use super::{step_index, ActTable, GateWeights};

/// Shape and quantization of an RNN op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RnnParams {
    /// Time steps processed.
    pub steps: usize,
    /// Input features `I`.
    pub input: usize,
    /// Hidden units `H`.
    pub hidden: usize,
    /// Process steps from last to first.
    pub reverse: bool,
    /// Zero point of `h` and `y`.
    pub h_zp: i32,
    /// Requantization of the Q0.15 tanh output to `h`'s scale (unused for ReLU).
    pub hq_mult: i32,
    /// Shift of that requantization.
    pub hq_shift: i32,
    /// `false`: tanh; `true`: ReLU.
    pub relu: bool,
}

/// Runs `p.steps` RNN steps over `x [steps, I]`, updating `h [H]` and writing `y [steps, H]`.
/// Returns without writing if a slice length disagrees with `p`.
pub fn rnn_i8(
    p: &RnnParams,
    wt: &GateWeights<'_>,
    tanh: &ActTable,
    x: &[i8],
    h: &mut [i8],
    y: &mut [i8],
) {
    let (ni, nh) = (p.input, p.hidden);
    let ok = ni > 0
        && nh > 0
        && wt.fits(1, ni, nh)
        && Some(x.len()) == p.steps.checked_mul(ni)
        && Some(y.len()) == p.steps.checked_mul(nh)
        && h.len() == nh;
    if !ok {
        return;
    }
    for it in 0..p.steps {
        let t = step_index(it, p.steps, p.reverse);
        // In bounds by the length checks above; `get` keeps the device path panic-free.
        let (Some(xt), Some(yt)) = (x.get(t * ni..(t + 1) * ni), y.get_mut(t * nh..(t + 1) * nh))
        else {
            return;
        };
        wt.for_each_block(nh, xt, h, |first, ax, ah| {
            let Some(yb) = yt.get_mut(first..first + ax.len()) else {
                return;
            };
            for ((out, &a), &r) in yb.iter_mut().zip(ax).zip(ah) {
                // Saturating i32 sums clamp to the same int16 / int8 as the exact ones.
                let v = if p.relu {
                    a.saturating_add(r).max(0)
                } else {
                    rq(lut16(tanh, sat16_add(a, r)), p.hq_mult, p.hq_shift)
                };
                *out = clamp8_add(p.h_zp, v);
            }
        });
        h.copy_from_slice(yt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{
        fold_bias, le32, quantize, quantize_multiplier, quantize_rows, rq_pairs, tanh_table, Rng,
    };
    use std::vec::Vec;

    /// 2 LSB of the 2/255 output scale: the stated error bound.
    const BOUND: f64 = 2.0 * 2.0 / 255.0;

    fn rnn_error(
        hidden: usize,
        input: usize,
        steps: usize,
        relu: bool,
        reverse: bool,
        seed: u64,
    ) -> f64 {
        let mut rng = Rng::new(seed);
        let wsc = 1.2 / (input as f64).sqrt();
        let rsc = 0.9 / (hidden as f64).sqrt();
        let w: Vec<f64> = (0..hidden * input).map(|_| rng.f64_in(-wsc, wsc)).collect();
        let r: Vec<f64> = (0..hidden * hidden)
            .map(|_| rng.f64_in(-rsc, rsc))
            .collect();
        let bw: Vec<f64> = (0..hidden).map(|_| rng.f64_in(-0.3, 0.3)).collect();
        let br: Vec<f64> = (0..hidden).map(|_| rng.f64_in(-0.3, 0.3)).collect();
        let (s_x, z_x) = (2.0 / 255.0, 0);
        let (s_h, z_h) = if relu {
            (2.0 / 255.0, -128)
        } else {
            (2.0 / 255.0, 0)
        };
        let xq: Vec<i8> = (0..steps * input)
            .map(|_| quantize(rng.f64_in(-1.0, 1.0), s_x, z_x))
            .collect();
        let (wq, sw) = quantize_rows(&w, input);
        let (rq_r, sr) = quantize_rows(&r, hidden);
        let bx = fold_bias(&bw, &wq, input, s_x, &sw, z_x);
        let bh = fold_bias(&br, &rq_r, hidden, s_h, &sr, z_h);
        let target = if relu { s_h } else { 1.0 / 4096.0 };
        let rqx = rq_pairs(sw.iter().map(|s| s_x * s / target));
        let rqh = rq_pairs(sr.iter().map(|s| s_h * s / target));
        let (hm, hs) = if relu {
            (0, 0)
        } else {
            quantize_multiplier(2f64.powi(-15) / s_h)
        };
        let (bx32, bh32, rqx32, rqh32) = (le32(&bx), le32(&bh), le32(&rqx), le32(&rqh));
        let wt = GateWeights {
            w: &wq,
            r: &rq_r,
            bias_x: &bx32,
            bias_h: &bh32,
            rq_x: &rqx32,
            rq_h: &rqh32,
            #[cfg(kinglet_prep)]
            prep: None,
        };
        let tanh = tanh_table();
        let p = RnnParams {
            steps,
            input,
            hidden,
            reverse,
            h_zp: z_h,
            hq_mult: hm,
            hq_shift: hs,
            relu,
        };
        let mut h = std::vec![z_h as i8; hidden];
        let mut y = std::vec![0i8; steps * hidden];
        rnn_i8(&p, &wt, &tanh, &xq, &mut h, &mut y);

        let wf: Vec<f64> = wq
            .iter()
            .enumerate()
            .map(|(i, &q)| q as f64 * sw[i / input])
            .collect();
        let rf: Vec<f64> = rq_r
            .iter()
            .enumerate()
            .map(|(i, &q)| q as f64 * sr[i / hidden])
            .collect();
        let xf: Vec<f64> = xq.iter().map(|&q| (q as i32 - z_x) as f64 * s_x).collect();
        let mut hf = std::vec![0f64; hidden];
        let mut worst = 0f64;
        for it in 0..steps {
            let t = if reverse { steps - 1 - it } else { it };
            let pre: Vec<f64> = (0..hidden)
                .map(|j| {
                    bw[j]
                        + br[j]
                        + (0..input)
                            .map(|k| wf[j * input + k] * xf[t * input + k])
                            .sum::<f64>()
                        + (0..hidden).map(|k| rf[j * hidden + k] * hf[k]).sum::<f64>()
                })
                .collect();
            for u in 0..hidden {
                hf[u] = if relu {
                    pre[u].clamp(0.0, 255.0 * s_h)
                } else {
                    pre[u].tanh()
                };
                let got = (y[t * hidden + u] as i32 - z_h) as f64 * s_h;
                worst = worst.max((got - hf[u]).abs());
            }
        }
        worst
    }

    #[test]
    fn rnn_tracks_float_onnx_cell() {
        for (i, &hidden) in [8usize, 16, 32].iter().enumerate() {
            for relu in [false, true] {
                for reverse in [false, true] {
                    let e = rnn_error(hidden, 12, 10, relu, reverse, 300 + i as u64);
                    assert!(
                        e < BOUND,
                        "H {hidden} relu {relu} reverse {reverse}: error {e}"
                    );
                }
            }
        }
    }
}
