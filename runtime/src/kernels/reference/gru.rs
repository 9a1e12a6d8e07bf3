//! GRU cell, one direction (`OP_GRU`), ONNX gate order `z, r, h`, `linear_before_reset = 1`
//! (PyTorch's formulation), int8 weights and activations, int16 gates.
//!
//! For each step `t` (`T-1` down to `0` when `reverse`):
//!
//! ```text
//! gx[j] = sat16(rq(bias_x[j] + Σ w[j,k] x[t,k], rq_x[j]))        j < 3H, Q3.12
//! gh[j] = sat16(rq(bias_h[j] + Σ r[j,k] h[k], rq_h[j]))          j < 3H, Q3.12
//! z  = lut16(sig, sat16(gx[u] + gh[u]));  r = lut16(sig, sat16(gx[H+u] + gh[H+u]))
//! n  = lut16(tanh, sat16(gx[2H+u] + rsr(r · gh[2H+u], 15)))                        Q0.15
//! h16[u] = sat16(n + rsr(z · (h16[u] - n), 15))                                    Q0.15
//! h[u] = y[t, u] = clamp(h_zp + rq(h16[u], hq_mult, hq_shift))
//! ```
//!
//! `scratch` holds `gx` then `gh` (`6H` int16), all computed from the previous `h`.
//! The state is kept twice: `h16` (Q0.15, the exact convex update) and its int8 image `h`
//! (the operand of the recurrent product and the output). Keeping only the int8 `h` loses the
//! small updates of slow dynamics: on the ETTh1 forecaster (96 steps) it cost +32% MSE,
//! with `h16` the int8 model is within 1% of float. `hin_mult` / `hin_shift` are unused
//! (reserved, written as 0 by the quantizer).
//!
//! Error bound (tested): against an f64 ONNX GRU (`linear_before_reset = 1`) on the
//! dequantized operands with `h` kept in float, the dequantized `h` stays within 2 LSB of its
//! scale (0.0157 for `[-1, 1]`; measured ≤ 0.0085) for `H` from 8 to 32, `I = 12`, `T = 10`:
//! `h`'s int8 rounding (½ LSB per step, carried through `z · h` with `z < 1`) dominates; the
//! Q3.12 gates and Q0.15 tables add < 1e-3.

use super::fixed::{clamp8_add, lut16, rq, rsr32, sat16_add, MATVEC_BLOCK};
use super::{step_index, ActTables, GateWeights};
use crate::kernels::matvec::{cell_simd_active, gru_cell_simd, gru_seq_simd, CellGates};

/// Shape and quantization of a GRU op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GruParams {
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
    /// Requantization of `h - h_zp` to Q0.15.
    pub hin_mult: i32,
    /// Shift of that requantization.
    pub hin_shift: i32,
    /// Requantization of the Q0.15 new state to `h`'s scale.
    pub hq_mult: i32,
    /// Shift of that requantization.
    pub hq_shift: i32,
}

/// Runs `p.steps` GRU steps over `x [steps, I]`, updating `h [H]` in place and writing
/// `y [steps, H]`; `scratch` holds `6H` gates. Returns without writing if a slice length
/// disagrees with `p`.
#[allow(clippy::too_many_arguments)]
pub fn gru_i8(
    p: &GruParams,
    wt: &GateWeights<'_>,
    tabs: &ActTables<'_>,
    x: &[i8],
    h: &mut [i8],
    h16: &mut [i16],
    y: &mut [i8],
    scratch: &mut [i16],
) {
    let (ni, nh) = (p.input, p.hidden);
    let ok = ni > 0
        && nh > 0
        && wt.fits(3, ni, nh)
        && Some(x.len()) == p.steps.checked_mul(ni)
        && Some(y.len()) == p.steps.checked_mul(nh)
        && h.len() == nh
        && h16.len() == nh
        && scratch.len() == 6 * nh;
    if !ok || gru_seq_simd(p, wt, tabs, x, h, h16, y, scratch) {
        return;
    }
    gru_steps(p, wt, tabs, x, h, h16, y, scratch);
}

/// The step loop of [`gru_i8`] (operands checked there). Never inlined: its stack blocks then
/// sit beside, not under, those of a sequence kernel that took the op instead.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn gru_steps(
    p: &GruParams,
    wt: &GateWeights<'_>,
    tabs: &ActTables<'_>,
    x: &[i8],
    h: &mut [i8],
    h16: &mut [i16],
    y: &mut [i8],
    scratch: &mut [i16],
) {
    let (ni, nh) = (p.input, p.hidden);
    for it in 0..p.steps {
        let t = step_index(it, p.steps, p.reverse);
        // In bounds by the length checks above; `get` keeps the device path panic-free.
        let (Some(xt), Some(yt)) = (x.get(t * ni..(t + 1) * ni), y.get_mut(t * nh..(t + 1) * nh))
        else {
            return;
        };
        if 3 * nh <= MATVEC_BLOCK && cell_simd_active() {
            // One block holds every gate row: the SIMD cell reads the products straight from
            // it (no int16 scratch), and the previous `h` from a copy, as it writes `h`.
            let mut h_prev = [0i8; MATVEC_BLOCK];
            if let Some(hp) = h_prev.get_mut(..nh) {
                hp.copy_from_slice(h);
                let mut done = false;
                wt.for_each_block(3 * nh, xt, hp, |first, ax, ah| {
                    done = first == 0
                        && gru_cell_simd(p, tabs, CellGates::I32(ax, ah), h16, h, &mut *yt);
                });
                if done {
                    continue;
                }
            }
        }
        let Some((gx, gh)) = scratch.split_at_mut_checked(3 * nh) else {
            return;
        };
        wt.for_each_block(3 * nh, xt, h, |first, ax, ah| {
            let rows = first..first + ax.len();
            let (Some(gxb), Some(ghb)) = (gx.get_mut(rows.clone()), gh.get_mut(rows)) else {
                return;
            };
            for ((gx, gh), (&a, &r)) in gxb.iter_mut().zip(ghb).zip(ax.iter().zip(ah)) {
                *gx = a.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
                *gh = r.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
            }
        });
        if gru_cell_simd(p, tabs, CellGates::I16(gx, gh), h16, h, yt) {
            continue;
        }
        let (Some((gxz, rest_x)), Some((ghz, rest_h))) =
            (gx.split_at_checked(nh), gh.split_at_checked(nh))
        else {
            return;
        };
        let (Some((gxr, gxn)), Some((ghr, ghn))) =
            (rest_x.split_at_checked(nh), rest_h.split_at_checked(nh))
        else {
            return;
        };
        let gates = gxz
            .iter()
            .zip(ghz)
            .zip(gxr.iter().zip(ghr))
            .zip(gxn.iter().zip(ghn));
        let state = h16.iter_mut().zip(h.iter_mut()).zip(yt.iter_mut());
        for ((((&xz, &hz), (&xr, &hr)), (&xn, &hn)), ((hs, hu), yu)) in gates.zip(state) {
            // In i32: every lookup is within int16, so `r · gh` is below 2^30 in magnitude and
            // `z · (h16 - n)` below 2^15 · (2^16 - 1) < 2^31 - 2^14 (rounding term included).
            let z = lut16(tabs.sig, sat16_add(xz as i32, hz as i32));
            let r = lut16(tabs.sig, sat16_add(xr as i32, hr as i32));
            let n_in = xn as i32 + rsr32(r * hn as i32, 15);
            let n = lut16(tabs.tanh, sat16_add(n_in, 0));
            let mix = sat16_add(n, rsr32(z * (*hs as i32 - n), 15));
            *hs = mix;
            let hq = clamp8_add(p.h_zp, rq(mix as i32, p.hq_mult, p.hq_shift));
            *hu = hq;
            *yu = hq;
        }
    }
}

/// A self-test for targets without the test harness (the Cortex-M firmware's `kernels` app):
/// [`gru_i8`] through the active kernel level (on Cortex-M DSP, its own sequence kernel) against
/// the same op with [`force_reference`](crate::kernels::force_reference) on, over shapes the
/// level takes and declines (`H` 4 to 24 and 6, `I` 1 to 16, 1 to 5 steps, both directions),
/// random weights, biases that make the i32 bias add wrap, requantization shifts from -1 to 32,
/// and random int16 activation tables (the check is bit identity, not accuracy). Returns the
/// number of output bytes, `h` bytes and `h16` values that differ (0 when the two agree).
/// Leaves the reference switch off. About 6 KB of stack.
pub fn self_test_gru(seed: u32) -> usize {
    use crate::kernels::force_reference;
    use zerocopy::little_endian::{I16, I32};
    const HMAX: usize = 24;
    const IMAX: usize = 16;
    const TMAX: usize = 5;
    /// The op's scratch, word-aligned as the arena's regions are.
    #[repr(align(4))]
    struct Scratch([i16; 6 * HMAX]);
    let mut rng = super::SelfTestRng::new(seed);
    let mut w = [0i8; 3 * HMAX * IMAX];
    let mut r = [0i8; 3 * HMAX * HMAX];
    let mut bx = [I32::new(0); 3 * HMAX];
    let mut bh = [I32::new(0); 3 * HMAX];
    let mut qx = [I32::new(0); 6 * HMAX];
    let mut qh = [I32::new(0); 6 * HMAX];
    let mut sig = [I16::new(0); crate::format::ACT_TABLE_LEN];
    let mut tanh = [I16::new(0); crate::format::ACT_TABLE_LEN];
    let mut x = [0i8; TMAX * IMAX];
    let mut scratch = Scratch([0; 6 * HMAX]);
    let mut bad = 0;
    let mut case = 0u32;
    // (I, H): H a multiple of 4 (the DSP kernel's) and not.
    const SHAPES: [(usize, usize); 6] = [(16, 20), (8, 24), (4, 4), (1, 16), (3, 8), (8, 6)];
    for &(ni, nh) in &SHAPES {
        for steps in 1..=TMAX {
            for reverse in [false, true] {
                case += 1;
                let g = 3 * nh;
                rng.fill_i8(&mut w);
                rng.fill_i8(&mut r);
                rng.fill_i8(&mut x);
                rng.biases(case, &mut bx);
                rng.biases(case + 1, &mut bh);
                rng.pairs(case, &mut qx);
                rng.pairs(case + 1, &mut qh);
                rng.table(&mut sig);
                rng.table(&mut tanh);
                let p = GruParams {
                    steps,
                    input: ni,
                    hidden: nh,
                    reverse,
                    h_zp: (rng.next() >> 25) as i32 - 64,
                    hin_mult: 0,
                    hin_shift: 0,
                    hq_mult: ((rng.next() >> 1) | (1 << 30)) as i32,
                    hq_shift: if case % 11 == 0 {
                        1
                    } else {
                        14 + (case % 10) as i32
                    },
                };
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
                let (h0, s0) = (
                    (rng.next() >> 24) as u8 as i8,
                    (rng.next() >> 16) as u16 as i16,
                );
                let (mut h, mut h16, mut y) = ([h0; HMAX], [s0; HMAX], [0i8; TMAX * HMAX]);
                let (mut hr, mut h16r, mut yr) = (h, h16, y);
                let xs = &x[..steps * ni];
                let (ny, sc) = (steps * nh, &mut scratch.0[..2 * g]);
                force_reference(false);
                gru_i8(
                    &p,
                    &wt,
                    &tabs,
                    xs,
                    &mut h[..nh],
                    &mut h16[..nh],
                    &mut y[..ny],
                    sc,
                );
                force_reference(true);
                gru_i8(
                    &p,
                    &wt,
                    &tabs,
                    xs,
                    &mut hr[..nh],
                    &mut h16r[..nh],
                    &mut yr[..ny],
                    sc,
                );
                force_reference(false);
                bad += y.iter().zip(&yr).filter(|(a, b)| a != b).count();
                bad += h.iter().zip(&hr).filter(|(a, b)| a != b).count();
                bad += h16.iter().zip(&h16r).filter(|(a, b)| a != b).count();
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference::lstm::tests::sigm;
    use crate::kernels::testutil::{
        fold_bias, le32, quantize, quantize_multiplier, quantize_rows, rq_pairs, sigmoid_table,
        tanh_table, Rng,
    };
    use std::vec::Vec;

    /// 2 LSB of the 2/255 output scale: the stated error bound.
    const BOUND: f64 = 2.0 * 2.0 / 255.0;

    fn gru_error(hidden: usize, input: usize, steps: usize, reverse: bool, seed: u64) -> f64 {
        let mut rng = Rng::new(seed);
        let g = 3 * hidden;
        let wsc = 1.5 / (input as f64).sqrt();
        let rsc = 1.5 / (hidden as f64).sqrt();
        let w: Vec<f64> = (0..g * input).map(|_| rng.f64_in(-wsc, wsc)).collect();
        let r: Vec<f64> = (0..g * hidden).map(|_| rng.f64_in(-rsc, rsc)).collect();
        let bw: Vec<f64> = (0..g).map(|_| rng.f64_in(-0.5, 0.5)).collect();
        let br: Vec<f64> = (0..g).map(|_| rng.f64_in(-0.5, 0.5)).collect();
        let (s_x, z_x) = (2.0 / 255.0, -2);
        let (s_h, z_h) = (2.0 / 255.0, 1);
        let xq: Vec<i8> = (0..steps * input)
            .map(|_| quantize(rng.f64_in(-1.0, 1.0), s_x, z_x))
            .collect();
        let (wq, sw) = quantize_rows(&w, input);
        let (rq_r, sr) = quantize_rows(&r, hidden);
        // The bias of the recurrent part stays separate (it is inside r · (...)).
        let bx = fold_bias(&bw, &wq, input, s_x, &sw, z_x);
        let bh = fold_bias(&br, &rq_r, hidden, s_h, &sr, z_h);
        let rqx = rq_pairs(sw.iter().map(|s| s_x * s * 4096.0));
        let rqh = rq_pairs(sr.iter().map(|s| s_h * s * 4096.0));
        let (im, is) = quantize_multiplier(s_h * 32768.0);
        let (hm, hs) = quantize_multiplier(2f64.powi(-15) / s_h);
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
        let p = GruParams {
            steps,
            input,
            hidden,
            reverse,
            h_zp: z_h,
            hin_mult: im,
            hin_shift: is,
            hq_mult: hm,
            hq_shift: hs,
        };
        let mut h = std::vec![z_h as i8; hidden];
        let mut y = std::vec![0i8; steps * hidden];
        let mut scratch = std::vec![0i16; 2 * g];
        gru_i8(
            &p,
            &wt,
            &ActTables {
                sig: &sig,
                tanh: &tanh,
            },
            &xq,
            &mut h,
            &mut std::vec![0i16; hidden],
            &mut y,
            &mut scratch,
        );

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
            let ax: Vec<f64> = (0..g)
                .map(|j| {
                    bw[j]
                        + (0..input)
                            .map(|k| wf[j * input + k] * xf[t * input + k])
                            .sum::<f64>()
                })
                .collect();
            let ah: Vec<f64> = (0..g)
                .map(|j| br[j] + (0..hidden).map(|k| rf[j * hidden + k] * hf[k]).sum::<f64>())
                .collect();
            let prev = hf.clone();
            for u in 0..hidden {
                let z = sigm(ax[u] + ah[u]);
                let r = sigm(ax[hidden + u] + ah[hidden + u]);
                let n = (ax[2 * hidden + u] + r * ah[2 * hidden + u]).tanh();
                hf[u] = (1.0 - z) * n + z * prev[u];
            }
            for u in 0..hidden {
                let got = (y[t * hidden + u] as i32 - z_h) as f64 * s_h;
                worst = worst.max((got - hf[u]).abs());
            }
        }
        worst
    }

    #[test]
    fn gru_self_test_agrees_with_the_reference() {
        assert_eq!(self_test_gru(0x2545_f491), 0);
    }

    #[test]
    fn gru_tracks_float_onnx_cell() {
        for (i, &hidden) in [8usize, 16, 32].iter().enumerate() {
            for reverse in [false, true] {
                let e = gru_error(hidden, 12, 10, reverse, 200 + i as u64);
                assert!(
                    e < BOUND,
                    "H {hidden} reverse {reverse}: max |h - h_float| = {e}"
                );
            }
        }
    }
}
