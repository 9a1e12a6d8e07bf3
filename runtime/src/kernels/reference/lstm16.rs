//! The LSTM op with its gate operands in the **unit16** layout ([`OP_FLAG_UNIT16`]): the same
//! arithmetic as [`lstm_i8`](super::lstm::lstm_i8), bit for bit, on operands stored the way the
//! Cortex-M DSP sequence kernel reads them.
//!
//! What changes is only where each value sits:
//!
//! - every per-row operand (`w`, `r`, `bias_x`, `bias_h`, `rq_x`, `rq_h`) is **unit-major**:
//!   storage row `4u + g` holds gate `g` (`i, o, f, c`) of unit `u`, logical row `g·H + u`, so
//!   one unit's four gate rows are adjacent and a kernel can finish a unit's cell while its
//!   gate sums are still in registers;
//! - `w` and `r` are **int16**, `[4H, Kp]` with `Kp` the row length rounded up to a multiple of
//!   4 (padding zero), each unit's four rows interleaved by column pair
//!   ([`unit16_index`]): one multi-register load brings the four rows' next pair, and `smlad`
//!   multiplies a pair without the `sxtb16` extractions an int8 weight word needs. Twice the
//!   weight bytes in flash, for about half the instructions per MAC on Cortex-M4.
//!
//! The quantizer writes weight values in `[-127, 127]` (the int8 file's values, widened), so a
//! unit16 file computes exactly what the same model's int8 file computes; that is tested
//! (here, on random cells, and by the golden hashes of `models/mnist_lstm`'s two files). Any
//! other int16 value is still well defined: products fit an i32 and sums wrap modulo 2^32.
//!
//! [`OP_FLAG_UNIT16`]: crate::format::OP_FLAG_UNIT16
//! [`unit16_index`]: crate::format::unit16_index

use super::fixed::{rq_at, sat16_add};
use super::lstm::{cells, self_test_compare, self_test_params, LstmParams};
use super::{step_index, ActTables};
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use crate::format::unit16_row;
use crate::format::{unit16_index, unit16_kp, UNIT16_SCRATCH_PER_UNIT};
use crate::kernels::matvec::lstm16_seq_simd;
use zerocopy::little_endian::{I16, I32};

/// The constant operands of a unit16 LSTM ([module doc](self)): `w [4H, Kp(I)]`,
/// `r [4H, Kp(H)]` int16, and the biases and requantization pairs in unit-major row order.
#[derive(Debug, Clone, Copy)]
pub struct Unit16Weights<'w> {
    /// Input weights, `4H · Kp(I)` int16.
    pub w: &'w [I16],
    /// Recurrent weights, `4H · Kp(H)` int16.
    pub r: &'w [I16],
    /// Input bias `[4H]`, unit-major (`-x_zp · Σ w` folded in).
    pub bias_x: &'w [I32],
    /// Recurrent bias `[4H]`, unit-major (`-h_zp · Σ r` folded in).
    pub bias_h: &'w [I32],
    /// Input requantization pairs `[4H, 2]`, unit-major.
    pub rq_x: &'w [I32],
    /// Recurrent requantization pairs `[4H, 2]`, unit-major.
    pub rq_h: &'w [I32],
}

impl Unit16Weights<'_> {
    /// Whether every slice is exactly as long as a unit16 LSTM with `input` inputs and
    /// `hidden` units needs.
    pub fn fits(&self, input: usize, hidden: usize) -> bool {
        let Some(g) = hidden.checked_mul(4) else {
            return false;
        };
        Some(self.w.len()) == g.checked_mul(unit16_kp(input))
            && Some(self.r.len()) == g.checked_mul(unit16_kp(hidden))
            && self.bias_x.len() == g
            && self.bias_h.len() == g
            && Some(self.rq_x.len()) == g.checked_mul(2)
            && Some(self.rq_h.len()) == g.checked_mul(2)
    }
}

/// `Σ_k m[g·H + u, k] · v[k]` over `k < v.len()` of a unit16 matrix with padded row length
/// `kp`, wrapping (a missing element counts as 0; the caller checked the lengths).
fn dot16(m: &[I16], kp: usize, u: usize, g: usize, v: &[i8]) -> i32 {
    v.iter().enumerate().fold(0i32, |acc, (k, &x)| {
        let w = m.get(unit16_index(kp, u, g, k)).map_or(0, |w| w.get());
        acc.wrapping_add(w as i32 * x as i32)
    })
}

/// Runs `p.steps` LSTM steps over `x [steps, I]` with unit16 operands, updating `h [H]` and
/// `c [H]` in place and writing `y [steps, H]`, exactly as [`lstm_i8`](super::lstm::lstm_i8)
/// with the same values in the int8 layout; `scratch` is the op's `48H` int16
/// ([`UNIT16_SCRATCH_PER_UNIT`]), the first `4H` the reference loop's gates. Returns without
/// writing if a slice length disagrees with `p`.
///
/// [`UNIT16_SCRATCH_PER_UNIT`]: crate::format::UNIT16_SCRATCH_PER_UNIT
#[allow(clippy::too_many_arguments)]
pub fn lstm16_i8(
    p: &LstmParams,
    wt: &Unit16Weights<'_>,
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
        && wt.fits(ni, nh)
        && Some(x.len()) == p.steps.checked_mul(ni)
        && Some(y.len()) == p.steps.checked_mul(nh)
        && h.len() == nh
        && c.len() == nh
        && Some(scratch.len()) == nh.checked_mul(UNIT16_SCRATCH_PER_UNIT);
    if !ok {
        return;
    }
    if lstm16_seq_simd(p, wt, tabs, x, h, c, y, scratch) {
        return;
    }
    let Some(gates) = scratch.get_mut(..4 * nh) else {
        return;
    };
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if via_int8(p, wt, tabs, x, h, c, y, gates) {
        return;
    }
    lstm16_steps(p, wt, tabs, x, h, c, y, gates);
}

/// The hosted SIMD targets' path (x86-64, aarch64: their LSTM kernels read the int8 layout):
/// the operands narrowed back to the int8 layout in stack buffers and the op run by
/// [`lstm_i8`](super::lstm::lstm_i8) with its SIMD kernels, the same bits (the values are the
/// same). Returns `false`, running nothing, when the reference loop is forced (so that it stays
/// tested), when a weight does not fit int8 (only a hand-made file has one) or when the cell
/// does not fit the buffers (`4H · (I + H) ≤ 32 KB`, `4H ≤ 256`). Costs one pass over the
/// weights per op call; a unit16 file is made for Cortex-M, this keeps it fast on a host too.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[allow(clippy::too_many_arguments)]
fn via_int8(
    p: &LstmParams,
    wt: &Unit16Weights<'_>,
    tabs: &ActTables<'_>,
    x: &[i8],
    h: &mut [i8],
    c: &mut [i16],
    y: &mut [i8],
    gates: &mut [i16],
) -> bool {
    if crate::kernels::active_isa() == crate::kernels::Isa::Reference {
        return false;
    }
    let need = 4 * p.hidden * (p.input + p.hidden);
    if need <= 4096 && 4 * p.hidden <= 128 {
        narrowed::<4096, 128>(p, wt, tabs, x, h, c, y, gates)
    } else if need <= 32 * 1024 && 4 * p.hidden <= 256 {
        narrowed::<{ 32 * 1024 }, 256>(p, wt, tabs, x, h, c, y, gates)
    } else {
        false
    }
}

/// [`via_int8`] with buffers of `W` weight bytes and `R` gate rows.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn narrowed<const W: usize, const R: usize>(
    p: &LstmParams,
    wt: &Unit16Weights<'_>,
    tabs: &ActTables<'_>,
    x: &[i8],
    h: &mut [i8],
    c: &mut [i16],
    y: &mut [i8],
    gates: &mut [i16],
) -> bool {
    use super::GateWeights;
    let (ni, nh) = (p.input, p.hidden);
    let g = 4 * nh;
    let mut w8 = [0i8; W];
    let (mut bx, mut bh) = ([I32::new(0); R], [I32::new(0); R]);
    let (mut qx, mut qh) = ([[I32::new(0); 2]; R], [[I32::new(0); 2]; R]);
    let (Some((w, rest)), Some(bx), Some(bh), Some(qx), Some(qh)) = (
        w8.split_at_mut_checked(g * ni),
        bx.get_mut(..g),
        bh.get_mut(..g),
        qx.as_flattened_mut().get_mut(..2 * g),
        qh.as_flattened_mut().get_mut(..2 * g),
    ) else {
        return false;
    };
    let Some(r) = rest.get_mut(..g * nh) else {
        return false;
    };
    // In storage order: unit blocks of `4 · kp` halfwords, column pairs of four gate words
    // (`format::unit16_index`).
    for (m8, m16, k) in [(&mut *w, wt.w, ni), (&mut *r, wt.r, nh)] {
        let kp = unit16_kp(k);
        for (u, block) in m16.chunks_exact(4 * kp).enumerate() {
            for (pair, words) in block.chunks_exact(8).enumerate() {
                let k0 = 4 * (pair / 2) + pair % 2;
                for (gate, e) in words.chunks_exact(2).enumerate() {
                    let row = (gate * nh + u) * k;
                    for (col, q) in [(k0, e[0]), (k0 + 2, e[1])] {
                        let Ok(q) = i8::try_from(q.get()) else {
                            return false;
                        };
                        if col < k {
                            let Some(v) = m8.get_mut(row + col) else {
                                return false;
                            };
                            *v = q;
                        }
                    }
                }
            }
        }
    }
    for (dst, src, per_row) in [
        (&mut *bx, wt.bias_x, 1),
        (&mut *bh, wt.bias_h, 1),
        (&mut *qx, wt.rq_x, 2),
        (&mut *qh, wt.rq_h, 2),
    ] {
        for (j, d) in dst.chunks_exact_mut(per_row).enumerate() {
            let s = unit16_row(nh, j);
            let Some(v) = src.get(s * per_row..(s + 1) * per_row) else {
                return false;
            };
            d.copy_from_slice(v);
        }
    }
    let wt8 = GateWeights {
        w,
        r,
        bias_x: bx,
        bias_h: bh,
        rq_x: qx,
        rq_h: qh,
        #[cfg(kinglet_prep)]
        prep: None,
    };
    super::lstm::lstm_i8(p, &wt8, tabs, x, h, c, y, gates);
    true
}

/// The scalar step loop of [`lstm16_i8`] (operands checked there): every gate from the
/// previous `h` into `scratch` (gate-major, as `lstm_i8` keeps it), then the cells.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn lstm16_steps(
    p: &LstmParams,
    wt: &Unit16Weights<'_>,
    tabs: &ActTables<'_>,
    x: &[i8],
    h: &mut [i8],
    c: &mut [i16],
    y: &mut [i8],
    scratch: &mut [i16],
) {
    let (ni, nh) = (p.input, p.hidden);
    if nh == 0 {
        return;
    }
    let (kpx, kph) = (unit16_kp(ni), unit16_kp(nh));
    let cell_exp = p.cell_exp.min(15);
    for it in 0..p.steps {
        let t = step_index(it, p.steps, p.reverse);
        // In bounds by the length checks above; `get` keeps the device path panic-free.
        let (Some(xt), Some(yt)) = (x.get(t * ni..(t + 1) * ni), y.get_mut(t * nh..(t + 1) * nh))
        else {
            return;
        };
        for (j, gj) in scratch.iter_mut().enumerate() {
            let (g, u) = (j / nh, j % nh);
            let s = 4 * u + g;
            let bx = wt.bias_x.get(s).map_or(0, |b| b.get());
            let bh = wt.bias_h.get(s).map_or(0, |b| b.get());
            let ax = rq_at(wt.rq_x, s, bx.wrapping_add(dot16(wt.w, kpx, u, g, xt)));
            let ah = rq_at(wt.rq_h, s, bh.wrapping_add(dot16(wt.r, kph, u, g, h)));
            *gj = sat16_add(ax, ah);
        }
        cells(p, tabs, cell_exp, scratch, c, h, yt);
    }
}

/// A self-test for targets without the test harness (the Cortex-M firmware's `kernels` app):
/// [`lstm16_i8`] through the active kernel level (on Cortex-M DSP, its own sequence kernel)
/// against the same op with [`force_reference`](crate::kernels::force_reference) on, over
/// shapes the level takes and declines (`H` 4 to 20 and 6, `I` 1 to 16 and odd, 1 to 4
/// steps, both directions), random int16 weights (any values: the check is bit identity),
/// biases that make the i32 bias add wrap, requantization shifts from -1 to 32, cell exponents
/// 0 to 15 and random tables. Returns the number of output bytes, `h` bytes and `c` values
/// that differ (0 when the two agree). Leaves the reference switch off. About 7 KB of stack.
pub fn self_test_lstm16(seed: u32) -> usize {
    const HMAX: usize = 20;
    const IMAX: usize = 16;
    const TMAX: usize = 4;
    /// Word-aligned, as a model file's constants are (the DSP kernel declines anything else).
    #[repr(C, align(4))]
    struct Aligned<T>(T);
    let mut rng = super::SelfTestRng::new(seed);
    let (mut w, mut r) = (
        Aligned([I16::new(0); 4 * HMAX * IMAX]),
        Aligned([I16::new(0); 4 * HMAX * HMAX]),
    );
    let (mut bx, mut bh) = (
        Aligned([I32::new(0); 4 * HMAX]),
        Aligned([I32::new(0); 4 * HMAX]),
    );
    let (mut qx, mut qh) = (
        Aligned([I32::new(0); 8 * HMAX]),
        Aligned([I32::new(0); 8 * HMAX]),
    );
    let (w, r, bx, bh, qx, qh) = (
        &mut w.0, &mut r.0, &mut bx.0, &mut bh.0, &mut qx.0, &mut qh.0,
    );
    let mut sig = [I16::new(0); crate::format::ACT_TABLE_LEN];
    let mut tanh = [I16::new(0); crate::format::ACT_TABLE_LEN];
    let mut x = [0i8; TMAX * IMAX];
    let mut scratch = Aligned([0i16; UNIT16_SCRATCH_PER_UNIT * HMAX]);
    let mut bad = 0;
    let mut case = 0u32;
    // (I, H): padded and unpadded rows, H not a multiple of 4.
    const SHAPES: [(usize, usize); 7] =
        [(16, 20), (8, 12), (4, 4), (1, 16), (3, 8), (13, 20), (8, 6)];
    for &(ni, nh) in &SHAPES {
        for steps in 1..=TMAX {
            for reverse in [false, true] {
                case += 1;
                let g = 4 * nh;
                // Weights: mostly int8 values (what the quantizer writes), now and then any
                // int16 value (the sums wrap the same way on every path).
                for (i, v) in w.iter_mut().chain(r.iter_mut()).enumerate() {
                    let b = rng.next();
                    let q = if (i as u32 + case) % 17 == 0 {
                        (b >> 16) as u16 as i16
                    } else {
                        (b >> 24) as u8 as i8 as i16
                    };
                    *v = I16::new(q);
                }
                rng.fill_i8(&mut x);
                rng.biases(case, bx);
                rng.biases(case + 1, bh);
                rng.pairs(case, qx);
                rng.pairs(case + 1, qh);
                rng.table(&mut sig);
                rng.table(&mut tanh);
                let p = self_test_params(&mut rng, case, steps, ni, nh, reverse);
                let wt = Unit16Weights {
                    w: &w[..g * unit16_kp(ni)],
                    r: &r[..g * unit16_kp(nh)],
                    bias_x: &bx[..g],
                    bias_h: &bh[..g],
                    rq_x: &qx[..2 * g],
                    rq_h: &qh[..2 * g],
                };
                let tabs = ActTables {
                    sig: &sig,
                    tanh: &tanh,
                };
                let sc = &mut scratch.0[..UNIT16_SCRATCH_PER_UNIT * nh];
                bad += self_test_compare(&mut rng, nh, steps * nh, |h, c, y| {
                    lstm16_i8(&p, &wt, &tabs, &x[..steps * ni], h, c, y, sc)
                });
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference::lstm::lstm_i8;
    use crate::kernels::reference::{GateWeights, SelfTestRng};
    use std::vec::Vec;

    /// The unit16 form of row-major int8 gate operands (what the quantizer writes).
    pub(crate) struct Packed {
        w: Vec<I16>,
        r: Vec<I16>,
        bx: Vec<I32>,
        bh: Vec<I32>,
        qx: Vec<I32>,
        qh: Vec<I32>,
    }

    /// `format::unit16_pack`, what the quantizer writes.
    fn pack_matrix(m: &[i8], h: usize, k: usize) -> Vec<I16> {
        let mut out = std::vec![0i16; 4 * h * unit16_kp(k)];
        assert!(crate::format::unit16_pack(m, h, k, &mut out));
        out.into_iter().map(I16::new).collect()
    }

    /// `format::unit16_rows`, what the quantizer writes.
    fn unit_major(v: &[I32], h: usize, per_row: usize) -> Vec<I32> {
        let mut out = std::vec![I32::new(0); v.len()];
        assert!(crate::format::unit16_rows(v, h, per_row, &mut out));
        out
    }

    pub(crate) fn pack(wt: &GateWeights<'_>, input: usize, hidden: usize) -> Packed {
        Packed {
            w: pack_matrix(wt.w, hidden, input),
            r: pack_matrix(wt.r, hidden, hidden),
            bx: unit_major(wt.bias_x, hidden, 1),
            bh: unit_major(wt.bias_h, hidden, 1),
            qx: unit_major(wt.rq_x, hidden, 2),
            qh: unit_major(wt.rq_h, hidden, 2),
        }
    }

    #[test]
    fn index_covers_each_padded_element_once() {
        for k in [1usize, 3, 4, 5, 8, 13, 20, 28] {
            let (kp, h) = (unit16_kp(k), 3);
            let mut seen = std::vec![0u8; 4 * h * kp];
            for u in 0..h {
                for g in 0..4 {
                    for c in 0..kp {
                        seen[unit16_index(kp, u, g, c)] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "k = {k}");
        }
        // Column pairs in `sxtb16` order, four gates a pair: unit 1, gate 2, column 5.
        assert_eq!(unit16_index(8, 1, 2, 5), 32 + (3 * 4 + 2) * 2);
        assert_eq!(unit16_index(8, 1, 2, 6), 32 + (2 * 4 + 2) * 2 + 1);
    }

    /// The independent oracle: the unit16 op on packed operands gives exactly what the int8
    /// op gives on the originals, through the active kernel level and the reference alike.
    #[test]
    fn unit16_equals_the_int8_lstm() {
        use crate::kernels::force_reference;
        let mut rng = SelfTestRng::new(0x9e37_79b9);
        let mut case = 0;
        for &(ni, nh) in &[
            (28usize, 20usize),
            (16, 8),
            (5, 12),
            (1, 4),
            (40, 6),
            (12, 32),
        ] {
            for steps in [1usize, 3, 7] {
                for reverse in [false, true] {
                    case += 1;
                    let g = 4 * nh;
                    let mut w = std::vec![0i8; g * ni];
                    let mut r = std::vec![0i8; g * nh];
                    let mut x = std::vec![0i8; steps * ni];
                    rng.fill_i8(&mut w);
                    rng.fill_i8(&mut r);
                    rng.fill_i8(&mut x);
                    let mut bx = std::vec![I32::new(0); g];
                    let mut bh = std::vec![I32::new(0); g];
                    let mut qx = std::vec![I32::new(0); 2 * g];
                    let mut qh = std::vec![I32::new(0); 2 * g];
                    rng.biases(case, &mut bx);
                    rng.biases(case + 1, &mut bh);
                    rng.pairs(case, &mut qx);
                    rng.pairs(case + 1, &mut qh);
                    let mut sig = [I16::new(0); crate::format::ACT_TABLE_LEN];
                    let mut tanh = [I16::new(0); crate::format::ACT_TABLE_LEN];
                    rng.table(&mut sig);
                    rng.table(&mut tanh);
                    let tabs = ActTables {
                        sig: &sig,
                        tanh: &tanh,
                    };
                    let p = LstmParams {
                        steps,
                        input: ni,
                        hidden: nh,
                        reverse,
                        h_zp: case as i32 % 7 - 3,
                        cell_exp: [0, 2, 3, 5][case as usize % 4],
                        hq_mult: 1 << 30 | (case as i32 * 7919),
                        hq_shift: 12 + (case % 9) as i32,
                    };
                    let wt = GateWeights {
                        w: &w,
                        r: &r,
                        bias_x: &bx,
                        bias_h: &bh,
                        rq_x: &qx,
                        rq_h: &qh,
                        #[cfg(kinglet_prep)]
                        prep: None,
                    };
                    let pk = pack(&wt, ni, nh);
                    let w16 = Unit16Weights {
                        w: &pk.w,
                        r: &pk.r,
                        bias_x: &pk.bx,
                        bias_h: &pk.bh,
                        rq_x: &pk.qx,
                        rq_h: &pk.qh,
                    };
                    let h0: Vec<i8> = (0..nh).map(|u| (u as i8).wrapping_mul(37)).collect();
                    let c0: Vec<i16> = (0..nh).map(|u| (u as i16 - 5) * 911).collect();
                    let mut sc = std::vec![0i16; g];
                    let mut sc16 = std::vec![0i16; UNIT16_SCRATCH_PER_UNIT * nh];
                    let (mut h, mut c, mut y) =
                        (h0.clone(), c0.clone(), std::vec![0i8; steps * nh]);
                    force_reference(true);
                    lstm_i8(&p, &wt, &tabs, &x, &mut h, &mut c, &mut y, &mut sc);
                    force_reference(false);
                    for reference in [false, true] {
                        force_reference(reference);
                        let (mut h2, mut c2, mut y2) =
                            (h0.clone(), c0.clone(), std::vec![0i8; steps * nh]);
                        lstm16_i8(&p, &w16, &tabs, &x, &mut h2, &mut c2, &mut y2, &mut sc16);
                        force_reference(false);
                        assert_eq!(
                            y2, y,
                            "I {ni} H {nh} T {steps} rev {reverse} ref {reference}"
                        );
                        assert_eq!(h2, h);
                        assert_eq!(c2, c);
                    }
                }
            }
        }
    }

    #[test]
    fn lstm16_self_test_agrees_with_the_reference() {
        assert_eq!(self_test_lstm16(0x2545_f491), 0);
    }
}
