//! LSTM cell, one direction (`OP_LSTM`), ONNX gate order `i, o, f, c`, int8 weights and
//! activations, int16 gates and cell.
//!
//! For each step `t` (`T-1` down to `0` when `reverse`), with `h` (int8, zero point `h_zp`) and
//! `c` (int16, scale `2^(cell_exp - 15)`) the recurrent state:
//!
//! ```text
//! g[j]  = sat16(rq(bias_x[j] + Σ w[j,k] x[t,k], rq_x[j]) + rq(bias_h[j] + Σ r[j,k] h[k], rq_h[j]))  Q3.12
//! i = lut16(sig, g[u]); o = lut16(sig, g[H+u]); f = lut16(sig, g[2H+u]); z = lut16(tanh, g[3H+u])
//! c[u]  = sat16(rsr(f · c[u], 15) + rsr(i · z, 15 + cell_exp))
//! tc    = cell_exp ≥ 3 ? sat16(c[u] << (cell_exp - 3)) : rsr(c[u], 3 - cell_exp)                Q3.12
//! h[u]  = y[t, u] = clamp(h_zp + rq(o · lut16(tanh, tc), hq_mult, hq_shift))
//! ```
//!
//! All `4H` gates are computed from the previous `h` (into `scratch`) before any unit updates.
//!
//! Error bound (tested): against an f64 ONNX LSTM on the dequantized weights, inputs and
//! biases, with `h` kept in float, the dequantized `h` stays within 2 LSB of its scale
//! (0.0157 for a `[-1, 1]` output; measured ≤ 0.0052) for `H` from 8 to 32, `I = 12`, `T = 10`,
//! gate pre-activations inside `[-8, 8)` and `|c| < 2^cell_exp`. Why 2 LSB: each step rounds
//! `h` once (½ LSB); that error re-enters through `R` with a gain below 1 for a contracting
//! cell, so it stays bounded by about ½ / (1 − gain) LSB; the Q3.12 gates, Q0.15 tables
//! (≤ 1.2e-4) and Q cell add < 1e-3. Saturated gates (|pre| ≥ 8) are outside the bound.

use super::fixed::{clamp8_add, lut16, rq, rsr32, sat16_add, MATVEC_BLOCK};
use super::{step_index, ActTables, GateWeights};
use crate::kernels::matvec::{cell_simd_active, lstm_cell_simd, lstm_seq_simd, CellGates};

/// Shape and quantization of an LSTM op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LstmParams {
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
    /// Cell scale exponent: `c` has scale `2^(cell_exp - 15)`, `0 ≤ cell_exp ≤ 15`.
    pub cell_exp: u32,
    /// Requantization of `o · tanh(c)` (Q0.30) to `h`'s scale.
    pub hq_mult: i32,
    /// Shift of that requantization.
    pub hq_shift: i32,
}

/// Runs `p.steps` LSTM steps over `x [steps, I]`, updating `h [H]` and `c [H]` in place and
/// writing `y [steps, H]`; `scratch` holds `4H` gates. Returns without writing if a slice length
/// disagrees with `p`.
#[allow(clippy::too_many_arguments)]
pub fn lstm_i8(
    p: &LstmParams,
    wt: &GateWeights<'_>,
    tabs: &ActTables<'_>,
    x: &[i8],
    h: &mut [i8],
    c: &mut [i16],
    y: &mut [i8],
    scratch: &mut [i16],
) {
    let (ni, nh) = (p.input, p.hidden);
    let ok = ni > 0
        && nh > 0
        && wt.fits(4, ni, nh)
        && Some(x.len()) == p.steps.checked_mul(ni)
        && Some(y.len()) == p.steps.checked_mul(nh)
        && h.len() == nh
        && c.len() == nh
        && scratch.len() == 4 * nh;
    if !ok {
        return;
    }
    if lstm_seq_simd(p, wt, tabs, x, h, c, y) {
        return;
    }
    lstm_steps(p, wt, tabs, x, h, c, y, scratch);
}

/// The step loop of [`lstm_i8`] (operands checked there). Never inlined: its stack blocks then
/// sit beside, not under, those of a sequence kernel that took the op instead.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn lstm_steps(
    p: &LstmParams,
    wt: &GateWeights<'_>,
    tabs: &ActTables<'_>,
    x: &[i8],
    h: &mut [i8],
    c: &mut [i16],
    y: &mut [i8],
    scratch: &mut [i16],
) {
    let (ni, nh) = (p.input, p.hidden);
    let cell_exp = p.cell_exp.min(15);
    for it in 0..p.steps {
        let t = step_index(it, p.steps, p.reverse);
        // In bounds by the length checks above; `get` keeps the device path panic-free.
        let (Some(xt), Some(yt)) = (x.get(t * ni..(t + 1) * ni), y.get_mut(t * nh..(t + 1) * nh))
        else {
            return;
        };
        if 4 * nh <= MATVEC_BLOCK && cell_simd_active() {
            // One block holds every gate row: the SIMD cell reads the products straight from
            // it (no int16 scratch), and the previous `h` from a copy, as it writes `h`.
            let mut h_prev = [0i8; MATVEC_BLOCK];
            if let Some(hp) = h_prev.get_mut(..nh) {
                hp.copy_from_slice(h);
                let mut done = false;
                wt.for_each_block(4 * nh, xt, hp, |first, ax, ah| {
                    done = first == 0
                        && lstm_cell_simd(p, tabs, CellGates::I32(ax, ah), c, h, &mut *yt);
                });
                if done {
                    continue;
                }
            }
        }
        wt.for_each_block(4 * nh, xt, h, |first, ax, ah| {
            let Some(gb) = scratch.get_mut(first..first + ax.len()) else {
                return;
            };
            for ((g, &a), &r) in gb.iter_mut().zip(ax).zip(ah) {
                *g = sat16_add(a, r);
            }
        });
        if lstm_cell_simd(p, tabs, CellGates::I16(scratch, &[]), c, h, yt) {
            continue;
        }
        cells(p, tabs, cell_exp, scratch, c, h, yt);
    }
}

/// One step's cell updates from the `4H` Q3.12 gates in `scratch` (gate-major: `i`, `o`, `f`,
/// `z`, each `H` long), writing `c`, `h` and the step's output row `y`. Writes nothing if
/// `scratch` is shorter than `4H`.
pub(super) fn cells(
    p: &LstmParams,
    tabs: &ActTables<'_>,
    cell_exp: u32,
    scratch: &[i16],
    c: &mut [i16],
    h: &mut [i8],
    y: &mut [i8],
) {
    let nh = h.len();
    let Some((gi, rest)) = scratch.split_at_checked(nh) else {
        return;
    };
    let Some((go, rest)) = rest.split_at_checked(nh) else {
        return;
    };
    let Some((gf, gz)) = rest.split_at_checked(nh) else {
        return;
    };
    let units = gi.iter().zip(go).zip(gf).zip(gz);
    let state = c.iter_mut().zip(h.iter_mut()).zip(y.iter_mut());
    for ((((&gi, &go), &gf), &gz), ((cu, hu), yu)) in units.zip(state) {
        cell(p, tabs, cell_exp, gi, go, gf, gz, cu, hu, yu);
    }
}

/// One unit's update from its four Q3.12 gates (module doc), in i32: every lookup is within
/// int16, so `f · c` and `i · z` are below 2^30 in magnitude, their rounding terms below 2^29,
/// `c << (cell_exp - 3)` below 2^27, and `o · tanh` below 2^30.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn cell(
    p: &LstmParams,
    tabs: &ActTables<'_>,
    cell_exp: u32,
    gi: i16,
    go: i16,
    gf: i16,
    gz: i16,
    c: &mut i16,
    h: &mut i8,
    y: &mut i8,
) {
    let i = lut16(tabs.sig, gi);
    let o = lut16(tabs.sig, go);
    let f = lut16(tabs.sig, gf);
    let z = lut16(tabs.tanh, gz);
    let s = rsr32(f * *c as i32, 15) + rsr32(i * z, 15 + cell_exp);
    let cu = s.clamp(i16::MIN as i32, i16::MAX as i32);
    *c = cu as i16;
    let tc = if cell_exp >= 3 {
        (cu << (cell_exp - 3)).clamp(i16::MIN as i32, i16::MAX as i32)
    } else {
        rsr32(cu, 3 - cell_exp)
    };
    let hv = rq(o * lut16(tabs.tanh, tc as i16), p.hq_mult, p.hq_shift);
    let hq = clamp8_add(p.h_zp, hv);
    *h = hq;
    *y = hq;
}

/// A self-test for targets without the test harness (the Cortex-M firmware's `kernels` app):
/// [`lstm_i8`] through the active kernel level (on Cortex-M DSP, its own sequence kernel) against
/// the same op with [`force_reference`](crate::kernels::force_reference) on, over shapes the
/// level takes and declines (`H` 4 to 24 and 6, `I` 1 to 16, 1 to 5 steps, both directions),
/// random weights, biases that make the i32 bias add wrap, requantization shifts from -1 to 32
/// (the `smmulr` path, the 32-bit path and the rows and ops left to the scalar code), cell
/// exponents 0 to 15, and random int16 activation tables (any values: the check is bit
/// identity, not accuracy). Returns the number of output bytes, `h` bytes and `c` values that
/// differ (0 when the two agree). Leaves the reference switch off. About 7.5 KB of stack.
pub fn self_test_lstm(seed: u32) -> usize {
    use zerocopy::little_endian::{I16, I32};
    const HMAX: usize = 24;
    const IMAX: usize = 16;
    const TMAX: usize = 5;
    let mut rng = super::SelfTestRng::new(seed);
    let mut w = [0i8; 4 * HMAX * IMAX];
    let mut r = [0i8; 4 * HMAX * HMAX];
    let mut bx = [I32::new(0); 4 * HMAX];
    let mut bh = [I32::new(0); 4 * HMAX];
    let mut qx = [I32::new(0); 8 * HMAX];
    let mut qh = [I32::new(0); 8 * HMAX];
    let mut sig = [I16::new(0); crate::format::ACT_TABLE_LEN];
    let mut tanh = [I16::new(0); crate::format::ACT_TABLE_LEN];
    let mut x = [0i8; TMAX * IMAX];
    let mut scratch = [0i16; 4 * HMAX];
    let mut bad = 0;
    let mut case = 0u32;
    // (I, H): pairs of steps in one pass (I mod 4 = 0), one at a time, H not a multiple of 4.
    const SHAPES: [(usize, usize); 8] = [
        (16, 20),
        (8, 24),
        (4, 4),
        (1, 16),
        (3, 8),
        (8, 6),
        (16, 12),
        (12, 20),
    ];
    for &(ni, nh) in &SHAPES {
        for steps in 1..=TMAX {
            for reverse in [false, true] {
                case += 1;
                let g = 4 * nh;
                rng.fill_i8(&mut w);
                rng.fill_i8(&mut r);
                rng.fill_i8(&mut x);
                rng.biases(case, &mut bx);
                rng.biases(case + 1, &mut bh);
                rng.pairs(case, &mut qx);
                rng.pairs(case + 1, &mut qh);
                rng.table(&mut sig);
                rng.table(&mut tanh);
                let p = self_test_params(&mut rng, case, steps, ni, nh, reverse);
                let wt = GateWeights {
                    w: &w[..g * ni],
                    r: &r[..g * nh],
                    bias_x: &bx[..g],
                    bias_h: &bh[..g],
                    rq_x: &qx[..2 * g],
                    rq_h: &qh[..2 * g],
                    #[cfg(kinglet_prep)]
                    prep: None,
                };
                let tabs = ActTables {
                    sig: &sig,
                    tanh: &tanh,
                };
                let sc = &mut scratch[..g];
                bad += self_test_compare(&mut rng, nh, steps * nh, |h, c, y| {
                    lstm_i8(&p, &wt, &tabs, &x[..steps * ni], h, c, y, sc)
                });
            }
        }
    }
    bad
}

/// The self-tests' LSTM parameters for one case (both layouts, `self_test_lstm` and
/// `lstm16::self_test_lstm16`): a random `h_zp` and output multiplier, cell exponents 0 to 15,
/// output shifts 1 (the case the DSP cells decline) and 14 to 23.
pub(super) fn self_test_params(
    rng: &mut super::SelfTestRng,
    case: u32,
    steps: usize,
    input: usize,
    hidden: usize,
    reverse: bool,
) -> LstmParams {
    LstmParams {
        steps,
        input,
        hidden,
        reverse,
        h_zp: (rng.next() >> 25) as i32 - 64,
        cell_exp: [0, 2, 3, 4, 15][(case % 5) as usize],
        hq_mult: ((rng.next() >> 1) | (1 << 30)) as i32,
        hq_shift: if case % 11 == 0 {
            1
        } else {
            14 + (case % 10) as i32
        },
    }
}

/// Runs `op` (one LSTM op on `(h, c, y)`, `hidden` units, `ny` output bytes, at most 24 and
/// 120) through the active kernel level and again with the reference forced, from the same
/// random state, and returns how many output bytes, `h` bytes and `c` values differ. Leaves the
/// reference switch off.
pub(super) fn self_test_compare(
    rng: &mut super::SelfTestRng,
    hidden: usize,
    ny: usize,
    mut op: impl FnMut(&mut [i8], &mut [i16], &mut [i8]),
) -> usize {
    use crate::kernels::force_reference;
    const HMAX: usize = 24;
    const YMAX: usize = 5 * HMAX;
    let (h0, c0) = (
        (rng.next() >> 24) as u8 as i8,
        (rng.next() >> 16) as u16 as i16,
    );
    let (mut h, mut c, mut y) = ([h0; HMAX], [c0; HMAX], [0i8; YMAX]);
    let (mut hr, mut cr, mut yr) = (h, c, y);
    let (nh, ny) = (hidden.min(HMAX), ny.min(YMAX));
    force_reference(false);
    op(&mut h[..nh], &mut c[..nh], &mut y[..ny]);
    force_reference(true);
    op(&mut hr[..nh], &mut cr[..nh], &mut yr[..ny]);
    force_reference(false);
    y.iter().zip(&yr).filter(|(a, b)| a != b).count()
        + h.iter().zip(&hr).filter(|(a, b)| a != b).count()
        + c.iter().zip(&cr).filter(|(a, b)| a != b).count()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernels::testutil::{
        fold_bias, le32, quantize, quantize_multiplier, quantize_rows, rq_pairs, sigmoid_table,
        tanh_table, Rng,
    };
    use std::vec::Vec;

    /// 2 LSB of the 2/255 output scale: the stated error bound.
    const BOUND: f64 = 2.0 * 2.0 / 255.0;

    pub(crate) fn sigm(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Max abs error of the dequantized `h` over all steps, integer vs f64 ONNX LSTM.
    fn lstm_error(hidden: usize, input: usize, steps: usize, reverse: bool, seed: u64) -> f64 {
        let mut rng = Rng::new(seed);
        let g = 4 * hidden;
        let wsc = 1.5 / (input as f64).sqrt();
        let rsc = 1.5 / (hidden as f64).sqrt();
        let w: Vec<f64> = (0..g * input).map(|_| rng.f64_in(-wsc, wsc)).collect();
        let r: Vec<f64> = (0..g * hidden).map(|_| rng.f64_in(-rsc, rsc)).collect();
        let bw: Vec<f64> = (0..g).map(|_| rng.f64_in(-0.5, 0.5)).collect();
        let br: Vec<f64> = (0..g).map(|_| rng.f64_in(-0.5, 0.5)).collect();
        let (s_x, z_x) = (2.0 / 255.0, 3);
        let (s_h, z_h) = (2.0 / 255.0, -1);
        let cell_exp = 2u32;
        let xq: Vec<i8> = (0..steps * input)
            .map(|_| quantize(rng.f64_in(-1.0, 1.0), s_x, z_x))
            .collect();
        let (wq, sw) = quantize_rows(&w, input);
        let (rq_r, sr) = quantize_rows(&r, hidden);
        let bx = fold_bias(&bw, &wq, input, s_x, &sw, z_x);
        let bh = fold_bias(&br, &rq_r, hidden, s_h, &sr, z_h);
        let rqx = rq_pairs(sw.iter().map(|s| s_x * s * 4096.0));
        let rqh = rq_pairs(sr.iter().map(|s| s_h * s * 4096.0));
        let (hm, hs) = quantize_multiplier(2f64.powi(-30) / s_h);
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
        let (sig, tanh) = (sigmoid_table(), tanh_table());
        let p = LstmParams {
            steps,
            input,
            hidden,
            reverse,
            h_zp: z_h,
            cell_exp,
            hq_mult: hm,
            hq_shift: hs,
        };
        let mut h = std::vec![z_h as i8; hidden];
        let mut c = std::vec![0i16; hidden];
        let mut y = std::vec![0i8; steps * hidden];
        let mut scratch = std::vec![0i16; g];
        lstm_i8(
            &p,
            &wt,
            &ActTables {
                sig: &sig,
                tanh: &tanh,
            },
            &xq,
            &mut h,
            &mut c,
            &mut y,
            &mut scratch,
        );

        // Float ONNX LSTM on the dequantized operands.
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
        let (mut hf, mut cf) = (std::vec![0f64; hidden], std::vec![0f64; hidden]);
        let mut worst = 0f64;
        for it in 0..steps {
            let t = if reverse { steps - 1 - it } else { it };
            let pre: Vec<f64> = (0..g)
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
                let (i, o, f, z) = (
                    sigm(pre[u]),
                    sigm(pre[hidden + u]),
                    sigm(pre[2 * hidden + u]),
                    pre[3 * hidden + u].tanh(),
                );
                cf[u] = f * cf[u] + i * z;
                hf[u] = o * cf[u].tanh();
            }
            for u in 0..hidden {
                let got = (y[t * hidden + u] as i32 - z_h) as f64 * s_h;
                worst = worst.max((got - hf[u]).abs());
            }
        }
        for u in 0..hidden {
            assert_eq!(h[u], y[if reverse { 0 } else { steps - 1 } * hidden + u]);
        }
        worst
    }

    #[test]
    fn lstm_self_test_agrees_with_the_reference() {
        assert_eq!(self_test_lstm(0x2545_f491), 0);
    }

    #[test]
    fn lstm_tracks_float_onnx_cell() {
        for (i, &hidden) in [8usize, 16, 32].iter().enumerate() {
            for reverse in [false, true] {
                let e = lstm_error(hidden, 12, 10, reverse, 100 + i as u64);
                assert!(
                    e < BOUND,
                    "H {hidden} reverse {reverse}: max |h - h_float| = {e}"
                );
            }
        }
    }
}
