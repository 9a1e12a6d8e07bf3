//! LayerNorm over the last axis (`OP_LAYERNORM`), integer only (I-BERT style).
//!
//! For each row `x [d]` (int8; its zero point cancels and is never read):
//!
//! ```text
//! sum    = Σ x                                  diff_i = x_i · d − sum = d · (x_i − μ)
//! var    = Σ diff_i² / d + eps_q                (i64, floor division; exact, as d | Σ diff_i²)
//! sd     = isqrt(var)                           (floor square root)
//! n_i    = div_round(diff_i · 4096, sd)         (0 when sd = 0)      ≈ (x_i − μ) / σ in Q.12
//! y_i    = clamp(beta[i] + rq(n_i, gamma_rq[i]))
//! ```
//!
//! With `eps_q = round(eps · d² / s_x²)`, `var = d² (σ² + eps) / s_x²` and `sd = d √(σ² + eps) /
//! s_x` (σ² the population variance of the dequantized row), so `n_i` is the normalized value in
//! Q.12. `gamma_rq[i] ≈ γ_i / (s_y · 4096)` may have a negative multiplier (negative γ,
//! `mult ∈ (−2^31, 2^31)`): `rq`'s i64 product `n · mult` is at most `2^21 · 2^31` in magnitude
//! and its floor shift still rounds half up. `beta[i] = round(β_i / s_y) + y_zp`, added in i64.
//!
//! Overflow (parse validates `1 ≤ d ≤ 2^15`, `eps_q ≥ 0`): `|sum| ≤ 128 d ≤ 2^22`,
//! `|diff_i| ≤ 255 d < 2^23`, `Σ diff_i² ≤ 65025 d³ < 2^16 · 2^45 = 2^61`, plus `eps_q < 2^31`:
//! all i64. `|diff_i · 4096| < 2^35`. And `n_i` fits i32 with room: `diff_i² ≤ d · var` and
//! `var < (sd + 1)² ≤ 4 sd²` (when `sd ≥ 1`), so `|n_i| ≤ 8192 √d + ½ < 2^21`.
//!
//! Error bound, in output LSB, against `γ (x − μ) / √(σ² + eps) + β` on the dequantized row
//! (the same int8 row): ½ from `rq`, ½ from `beta`'s own rounding, `|γ / s_y| · 2^-13` from
//! `n_i`'s rounding, and `|γ / s_y| · |x̂_i| / sd` from `sd`'s floor (relative error below
//! `1 / sd`, with `x̂_i` the normalized value); plus `2^-30` relative from the multipliers.
//! `sd = d √(σ² + eps) / s_x` grows with the row's spread and length, so the floor's share is
//! small for wide rows and can reach ~0.3 LSB for short, narrow ones (d = 7, a spread of 80
//! LSB, `|γ / s_y| ≈ 64`). Tested, each element against this bound: random rows
//! d ∈ {1, 7, 32, 40, 64}, measured worst 1.07 LSB (1.01 on full-range rows); constant rows
//! (and every d = 1 row) give exactly `clamp(beta)`; rows of ±127 stay within 1 LSB.

use super::fixed::{clamp8, rq_at};
use super::DivRound;
use zerocopy::little_endian::I32;

/// Largest row length parse accepts (keeps `Σ diff_i²` below 2^61; see the module doc).
pub const MAX_D: usize = 1 << 15;

/// Shape and output range of a LAYERNORM op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerNormParams {
    /// Rows processed (`steps × rows_per_step`).
    pub rows: usize,
    /// Row length (the normalized axis), `1 ≤ d ≤ 2^15`.
    pub d: usize,
    /// `eps` in the row's integer variance units, `≥ 0`.
    pub eps_q: i32,
    /// Lower clamp of the output, in `[-128, act_max]`.
    pub act_min: i32,
    /// Upper clamp of the output, in `[act_min, 127]`.
    pub act_max: i32,
}

/// `isqrt(v) = ⌊√v⌋`, exact for every `u64`: the bitwise (digit-by-digit, base 4) method, with
/// no division or multiplication (cheap on cores without a divider, and deterministic).
#[inline]
pub fn isqrt(v: u64) -> u64 {
    let mut rem = v;
    let mut root = 0u64;
    let mut bit = 1u64 << 62;
    while bit > rem {
        bit >>= 2;
    }
    while bit != 0 {
        // With `bit = 4^k`, `root = P · 4^(k+1)` where `P ≤ √v / 2^(k+1)` holds the root's
        // leading digits: `root ≤ 2^(k+1) √v < 2^(k+33)` (0 for k = 31), so `root + bit < 2^64`.
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

/// Row-wise LayerNorm of `x [rows, d]` into `y` with `gamma_rq [d, 2]` and `beta [d]`. Returns
/// without writing if a slice length disagrees with `p`. Runs on the active SIMD level where it
/// has a kernel (bit-identical); [`layernorm_i8_reference`] is the scalar loop alone.
pub fn layernorm_i8(p: &LayerNormParams, x: &[i8], gamma_rq: &[I32], beta: &[I32], y: &mut [i8]) {
    layernorm_on(p, x, gamma_rq, beta, y, true);
}

/// [`layernorm_i8`] with the scalar loop whatever the CPU: the definition the SIMD kernels are
/// tested against.
pub fn layernorm_i8_reference(
    p: &LayerNormParams,
    x: &[i8],
    gamma_rq: &[I32],
    beta: &[I32],
    y: &mut [i8],
) {
    layernorm_on(p, x, gamma_rq, beta, y, false);
}

#[inline(always)]
fn layernorm_on(
    p: &LayerNormParams,
    x: &[i8],
    gamma_rq: &[I32],
    beta: &[I32],
    y: &mut [i8],
    simd: bool,
) {
    let ok = p.d > 0
        && p.d <= MAX_D
        && p.act_min <= p.act_max
        && Some(x.len()) == p.rows.checked_mul(p.d)
        && y.len() == x.len()
        && gamma_rq.len() == 2 * p.d
        && beta.len() == p.d;
    if !ok {
        return;
    }
    if simd && crate::kernels::tfsimd::layernorm_simd(p, x, gamma_rq, beta, y) {
        return;
    }
    let d = p.d as i64;
    super::for_rows(x, p.d, y, p.d, |xr, yr| {
        let sum: i64 = xr.iter().map(|&v| v as i64).sum();
        let diff = |v: i8| v as i64 * d - sum;
        let ss: i64 = xr.iter().map(|&v| diff(v) * diff(v)).sum();
        let var = ss / d + p.eps_q.max(0) as i64;
        let sd = isqrt(var as u64) as i64;
        // `div_round(·, sd)` (0 when `sd = 0`), one reciprocal per row.
        let by_sd = DivRound::new(sd);
        for (i, (out, &v)) in yr.iter_mut().zip(xr).enumerate() {
            let n = by_sd.div(diff(v) * 4096);
            let n = n.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
            let b = beta.get(i).map_or(0, |b| b.get()) as i64;
            *out = clamp8(b + rq_at(gamma_rq, i, n) as i64, p.act_min, p.act_max);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{le32, quantize_multiplier, Rng};
    use std::vec::Vec;

    #[test]
    fn isqrt_is_the_exact_floor() {
        let mut rng = Rng::new(31);
        let check = |v: u64| {
            let r = isqrt(v);
            assert_eq!(r, v.isqrt(), "isqrt({v})");
            assert!(r * r <= v && (r + 1).checked_mul(r + 1).is_none_or(|s| s > v));
        };
        for v in 0..100_000u64 {
            check(v);
        }
        for r in [
            1u64 << 16,
            1 << 31,
            3_037_000_499,
            (1 << 32) - 2,
            (1 << 32) - 1,
        ] {
            let sq = r * r;
            for v in [sq - 1, sq, sq + 1, sq + 2 * r, sq.saturating_add(2 * r + 1)] {
                check(v);
            }
        }
        for _ in 0..100_000 {
            check(rng.next_u64());
            check(rng.next_u64() >> (rng.next_u64() % 64));
        }
        check(u64::MAX);
        check(u64::MAX - 1);
        check(1 << 62);
        check(1 << 63);
    }

    struct Case {
        gamma: Vec<f64>,
        beta: Vec<f64>,
        eps: f64,
        s_x: f64,
        z_x: i32,
        s_y: f64,
        z_y: i32,
    }

    impl Case {
        fn random(rng: &mut Rng, d: usize) -> Case {
            Case {
                gamma: (0..d)
                    .map(|i| {
                        // Both signs, and exact zeros now and then.
                        if i % 9 == 4 {
                            0.0
                        } else {
                            rng.f64_in(-1.5, 1.5)
                        }
                    })
                    .collect(),
                beta: (0..d).map(|_| rng.f64_in(-0.5, 0.5)).collect(),
                eps: 1e-5,
                s_x: rng.f64_in(0.005, 0.1),
                z_x: rng.i32_in(-20, 20),
                s_y: 6.0 / 255.0,
                z_y: 3,
            }
        }

        /// Runs the kernel on `x [rows, d]`; returns `(got, exact, bound)` in output LSB (exact
        /// clamped; bound per element, from the module doc).
        fn run(&self, x: &[i8]) -> (Vec<i8>, Vec<f64>, Vec<f64>) {
            let d = self.gamma.len();
            let rows = x.len() / d;
            let mut grq = Vec::new();
            for &g in &self.gamma {
                let (m, s) = quantize_multiplier((g / self.s_y / 4096.0).abs());
                grq.extend([if g < 0.0 { -m } else { m }, s]);
            }
            let beta: Vec<i32> = self
                .beta
                .iter()
                .map(|b| (b / self.s_y).round() as i32 + self.z_y)
                .collect();
            let eps_q = (self.eps * (d * d) as f64 / (self.s_x * self.s_x)).round() as i32;
            let p = LayerNormParams {
                rows,
                d,
                eps_q,
                act_min: -128,
                act_max: 127,
            };
            let mut y = std::vec![0i8; x.len()];
            layernorm_i8(&p, x, &le32(&grq), &le32(&beta), &mut y);
            let mut exact = Vec::new();
            let mut bound = Vec::new();
            for xr in x.chunks(d) {
                // The kernel's own integer sd, for the floor's share of the bound.
                let sum: i64 = xr.iter().map(|&v| v as i64).sum();
                let ss: i64 = xr.iter().map(|&v| (v as i64 * d as i64 - sum).pow(2)).sum();
                let sd = isqrt((ss / d as i64 + eps_q as i64) as u64) as f64;
                let xf: Vec<f64> = xr
                    .iter()
                    .map(|&v| self.s_x * (v as i32 - self.z_x) as f64)
                    .collect();
                let mu = xf.iter().sum::<f64>() / d as f64;
                let var = xf.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d as f64;
                for (i, v) in xf.iter().enumerate() {
                    let xhat = (v - mu) / (var + self.eps).sqrt();
                    let yf = self.gamma[i] * xhat + self.beta[i];
                    exact.push((yf / self.s_y + self.z_y as f64).clamp(-128.0, 127.0));
                    let floor = if sd > 0.0 { xhat.abs() / sd } else { 0.0 };
                    let g = self.gamma[i].abs() / self.s_y;
                    bound.push(1.0 + g * (2f64.powi(-13) + floor) + 1e-6);
                }
            }
            (y, exact, bound)
        }
    }

    /// Worst error in LSB, after checking every element against its bound.
    fn worst(got: &[i8], exact: &[f64], bound: &[f64]) -> f64 {
        let mut w = 0f64;
        for ((&g, &e), &b) in got.iter().zip(exact).zip(bound) {
            let err = (g as f64 - e).abs();
            assert!(err <= b, "{g} vs {e}: error {err} above the bound {b}");
            w = w.max(err);
        }
        w
    }

    #[test]
    fn layernorm_within_two_lsb_of_float() {
        let mut rng = Rng::new(32);
        let mut all = 0f64;
        let mut wide = 0f64;
        for &d in &[1usize, 7, 32, 40, 64] {
            for _ in 0..20 {
                let case = Case::random(&mut rng, d);
                let rows = 1 + rng.usize_below(4);
                // Full-range rows and narrow ones (a small spread around an offset).
                let x: Vec<i8> = (0..rows * d)
                    .map(|i| {
                        if (i / d) % 2 == 0 {
                            rng.i8()
                        } else {
                            rng.i32_in(-30, 50) as i8
                        }
                    })
                    .collect();
                let (got, exact, bound) = case.run(&x);
                let w = worst(&got, &exact, &bound);
                assert!(w <= 2.0, "d {d}: worst {w} LSB");
                all = all.max(w);
                // Full-range rows alone: sd ≥ d · 50, the floor's share is small.
                for r in (0..rows).step_by(2) {
                    let s = r * d..(r + 1) * d;
                    wide = wide.max(worst(&got[s.clone()], &exact[s.clone()], &bound[s]));
                }
            }
        }
        assert!(wide <= 1.0 + 0.05, "full-range rows: worst {wide} LSB");
        std::println!("layernorm: worst {all:.3} LSB over random rows ({wide:.3} full-range)");
    }

    #[test]
    fn layernorm_edge_cases() {
        let mut rng = Rng::new(33);
        for &d in &[1usize, 7, 32, 40, 64] {
            let case = Case::random(&mut rng, d);
            let beta_q: Vec<i8> = case
                .beta
                .iter()
                .map(|b| ((b / case.s_y).round() as i32 + case.z_y).clamp(-128, 127) as i8)
                .collect();
            // Constant rows (every length-1 row is one): exactly beta, with or without eps.
            for c in [-128i8, -1, 0, 77, 127] {
                let x = std::vec![c; d];
                let (got, exact, bound) = case.run(&x);
                assert_eq!(got, beta_q, "d {d} constant {c}");
                assert!(worst(&got, &exact, &bound) <= 0.5 + 1e-9);
                let mut no_eps = Case::random(&mut rng, d);
                no_eps.eps = 0.0;
                no_eps.beta.clone_from(&case.beta);
                no_eps.s_y = case.s_y;
                no_eps.z_y = case.z_y;
                assert_eq!(no_eps.run(&x).0, beta_q, "d {d} constant {c}, eps 0");
            }
            // Large magnitudes: rows of ±127 (and -128), random signs and half/half.
            for _ in 0..10 {
                let x: Vec<i8> = (0..d)
                    .map(|_| if rng.i8() < 0 { -127 } else { 127 })
                    .collect();
                let (got, exact, bound) = case.run(&x);
                let w = worst(&got, &exact, &bound);
                assert!(w <= 1.0, "d {d} ±127: worst {w}");
            }
            let x: Vec<i8> = (0..d)
                .map(|i| if i % 2 == 0 { -128 } else { 127 })
                .collect();
            let (got, exact, bound) = case.run(&x);
            assert!(
                worst(&got, &exact, &bound) <= 1.0,
                "d {d} alternating extremes"
            );
        }
        // Saturation: a large γ pushes outliers to the clamp, not past it.
        let case = Case {
            gamma: std::vec![100.0; 8],
            beta: std::vec![0.0; 8],
            eps: 1e-5,
            s_x: 0.02,
            z_x: 0,
            s_y: 1.0 / 255.0,
            z_y: 0,
        };
        let (got, exact, bound) = case.run(&[-128, 127, 0, 0, 1, -1, 5, -5]);
        assert_eq!(&got[..2], &[-128, 127]);
        worst(&got, &exact, &bound);
    }

    #[test]
    fn layernorm_rejects_mismatched_slices() {
        let p = LayerNormParams {
            rows: 1,
            d: 4,
            eps_q: 0,
            act_min: -128,
            act_max: 127,
        };
        let mut y = [9i8; 4];
        layernorm_i8(&p, &[1, 2, 3], &le32(&[0; 8]), &le32(&[0; 4]), &mut y[..3]);
        layernorm_i8(&p, &[1, 2, 3, 4], &le32(&[0; 6]), &le32(&[0; 4]), &mut y);
        assert_eq!(y, [9; 4]);
    }
}
