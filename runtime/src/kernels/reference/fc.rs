//! Fully connected int8 layer (`OP_FC`).
//!
//! `y[r, n] = clamp(y_zp + rq(bias[n] + Σ_k w[n, k] · x[r, k], rq[n]))` for `r < rows`, with
//! `rows = steps × rows_per_step`. The input zero point is folded into `bias` by the quantizer,
//! so the inner loop is the plain int8 matrix-vector product (`matvec_rq`: SIMD where
//! available, bit-identical to `dot_i8`). The i32 accumulator cannot overflow for
//! `k < 2^17` (validated at parse); the bias add wraps.
//!
//! Error bound: with the same int8 weights and bias, the result is within 1/2 LSB (plus
//! `|acc| · 2^-61`, from the 31-bit multiplier) of the exact rescaled float value, clamped —
//! one rounding.

use super::fixed::{matvec_rq, MATVEC_BLOCK};
use zerocopy::little_endian::I32;

/// Shape and output quantization of an FC op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FcParams {
    /// Input rows processed (`steps × rows_per_step`).
    pub rows: usize,
    /// Inputs per row, `1 ≤ k < 2^17`.
    pub k: usize,
    /// Outputs per row, `n ≥ 1`.
    pub n: usize,
    /// Output zero point.
    pub y_zp: i32,
    /// Lower clamp of the output, in `[-128, act_max]`.
    pub act_min: i32,
    /// Upper clamp of the output, in `[act_min, 127]`.
    pub act_max: i32,
}

/// `y [rows, n] = FC(x [rows, k])` with `w [n, k]`, `bias [n]`, `rq [n, 2]`. Returns without
/// writing if a slice length disagrees with `p`. Many rows go through the active SIMD level's
/// matrix-matrix kernel where it has one (bit-identical); [`fc_i8_rows`] is the row-at-a-time
/// path alone.
pub fn fc_i8(p: &FcParams, x: &[i8], w: &[i8], bias: &[I32], rq: &[I32], y: &mut [i8]) {
    fc_on(p, x, w, bias, rq, y, true);
}

/// [`fc_i8`] one row at a time (each product through the dispatched `matvec_rq`): the
/// definition the matrix-matrix kernels are tested against.
pub fn fc_i8_rows(p: &FcParams, x: &[i8], w: &[i8], bias: &[I32], rq: &[I32], y: &mut [i8]) {
    fc_on(p, x, w, bias, rq, y, false);
}

#[inline(always)]
fn fc_on(p: &FcParams, x: &[i8], w: &[i8], bias: &[I32], rq: &[I32], y: &mut [i8], simd: bool) {
    let ok = p.k > 0
        && p.n > 0
        && Some(x.len()) == p.rows.checked_mul(p.k)
        && Some(y.len()) == p.rows.checked_mul(p.n)
        && Some(w.len()) == p.n.checked_mul(p.k)
        && bias.len() == p.n
        && rq.len() == 2 * p.n;
    if !ok {
        return;
    }
    if simd && crate::kernels::tfsimd::fc_simd(p, x, w, bias, rq, y) {
        return;
    }
    let mut acc = [0i32; MATVEC_BLOCK];
    for (xr, yr) in x.chunks_exact(p.k).zip(y.chunks_exact_mut(p.n)) {
        for (b, yb) in yr.chunks_mut(MATVEC_BLOCK).enumerate() {
            let acc = &mut acc[..yb.len()];
            matvec_rq(w, bias, rq, xr, b * MATVEC_BLOCK, acc);
            for (out, &a) in yb.iter_mut().zip(acc.iter()) {
                // A saturating i32 sum clamps to the same int8 as the exact one.
                let v = p.y_zp.saturating_add(a).max(p.act_min).min(p.act_max);
                *out = v.clamp(-128, 127) as i8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{le32, quantize_multiplier, Rng};
    use std::vec::Vec;

    fn check(rows: usize, k: usize, n: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        let x = rng.i8s(rows * k);
        let w: Vec<i8> = (0..n * k).map(|_| rng.i32_in(-127, 127) as i8).collect();
        let bias: Vec<i32> = (0..n).map(|_| rng.i32_in(-5000, 5000)).collect();
        // Per-channel multipliers that keep the outputs mostly in range.
        let ms: Vec<f64> = (0..n)
            .map(|_| rng.f64_in(0.2, 1.0) / (128.0 * (k as f64).sqrt() * 8.0))
            .collect();
        let rq: Vec<i32> = ms
            .iter()
            .flat_map(|&m| {
                let (a, b) = quantize_multiplier(m);
                [a, b]
            })
            .collect();
        let p = FcParams {
            rows,
            k,
            n,
            y_zp: rng.i32_in(-20, 20),
            act_min: -128,
            act_max: 100,
        };
        let mut y = std::vec![0i8; rows * n];
        fc_i8(&p, &x, &w, &le32(&bias), &le32(&rq), &mut y);
        let mut worst = 0f64;
        for r in 0..rows {
            for j in 0..n {
                let acc: i64 = bias[j] as i64
                    + (0..k)
                        .map(|c| w[j * k + c] as i64 * x[r * k + c] as i64)
                        .sum::<i64>();
                let exact = (p.y_zp as f64 + acc as f64 * ms[j]).clamp(-128.0, 100.0);
                worst = worst.max((y[r * n + j] as f64 - exact).abs());
            }
        }
        assert!(
            worst <= 0.5 + 1e-3,
            "rows {rows} k {k} n {n}: worst {worst} LSB"
        );
    }

    #[test]
    fn fc_within_half_lsb_of_float() {
        for (i, &(rows, k, n)) in [
            (1, 1, 1),
            (1, 7, 3),
            (3, 16, 8),
            (2, 33, 17),
            (1, 1000, 4),
            (5, 64, 64),
        ]
        .iter()
        .enumerate()
        {
            check(rows, k, n, i as u64 + 10);
        }
    }

    #[test]
    fn fc_bad_lengths_write_nothing() {
        let p = FcParams {
            rows: 2,
            k: 3,
            n: 2,
            y_zp: 0,
            act_min: -128,
            act_max: 127,
        };
        let mut y = [7i8; 4];
        fc_i8(
            &p,
            &[1; 5],
            &[1; 6],
            &le32(&[0, 0]),
            &le32(&[1 << 30, 0, 1 << 30, 0]),
            &mut y,
        );
        assert_eq!(y, [7; 4]);
    }
}
