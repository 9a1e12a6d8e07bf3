//! Mean over the middle axis of `[outer, n, inner]` (`OP_MEAN`):
//! `y[o, i] = clamp(y_zp + rq(Σ_k (x[o, k, i] − x_zp), mult, shift))`, clamped to
//! `[-128, 127]`, with `(mult, shift) ≈ s_x / (n · s_y)`. Rows `o` run over
//! `steps × outer`.
//!
//! Overflow: `|x − x_zp| ≤ 255` and parse validates `n ≤ 2^23`, so the i32 sum stays below
//! `255 · 2^23 < 2^31`.
//!
//! Error bound: one rounding, within ½ LSB (plus `2^-30` relative, from the 31-bit multiplier)
//! of `y_zp + mean(x̃) / s_y` on the dequantized inputs, clamped (tested).

use super::fixed::{clamp8, rq};

/// Largest reduced length parse accepts.
pub const MAX_N: usize = 1 << 23;

/// Shape and quantization of a MEAN op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeanParams {
    /// Outer rows processed (`steps × outer`).
    pub rows: usize,
    /// Length of the reduced axis, `1 ≤ n ≤ 2^23`.
    pub n: usize,
    /// Inner length, `≥ 1`.
    pub inner: usize,
    /// Input zero point.
    pub x_zp: i32,
    /// Output zero point.
    pub y_zp: i32,
    /// Multiplier, `[0, 2^31)`.
    pub mult: i32,
    /// Shift, `[-30, 31]`.
    pub shift: i32,
}

/// `y [rows, inner] = mean over k of x [rows, n, inner]`. Returns without writing if a slice
/// length disagrees with `p`, or `n` or `x_zp` is outside what parse accepts. Runs on the
/// active SIMD level where it has a kernel (bit-identical); [`mean_i8_reference`] is the
/// scalar loop alone.
pub fn mean_i8(p: &MeanParams, x: &[i8], y: &mut [i8]) {
    mean_on(p, x, y, true);
}

/// [`mean_i8`] with the scalar loop whatever the CPU: the definition the SIMD kernels are
/// tested against.
pub fn mean_i8_reference(p: &MeanParams, x: &[i8], y: &mut [i8]) {
    mean_on(p, x, y, false);
}

#[inline(always)]
fn mean_on(p: &MeanParams, x: &[i8], y: &mut [i8], simd: bool) {
    let Some(block) = p.n.checked_mul(p.inner) else {
        return;
    };
    let ok = p.inner > 0
        && (1..=MAX_N).contains(&p.n)
        && (-128..=127).contains(&p.x_zp)
        && Some(x.len()) == p.rows.checked_mul(block)
        && Some(y.len()) == p.rows.checked_mul(p.inner);
    if !ok {
        return;
    }
    if simd && crate::kernels::tfsimd::mean_simd(p, x, y) {
        return;
    }
    super::for_rows(x, block, y, p.inner, |xb, yr| {
        for (i, out) in yr.iter_mut().enumerate() {
            let acc: i32 = xb
                .iter()
                .skip(i)
                .step_by(p.inner)
                .map(|&v| v as i32 - p.x_zp)
                .sum();
            *out = clamp8(p.y_zp as i64 + rq(acc, p.mult, p.shift) as i64, -128, 127);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{quantize_multiplier, Rng};

    #[test]
    fn mean_within_half_lsb_of_float() {
        let mut rng = Rng::new(51);
        let mut worst = 0f64;
        for &(rows, n, inner) in &[
            (1usize, 1usize, 1usize),
            (1, 17, 1),
            (2, 5, 8),
            (3, 64, 16),
            (1, 1000, 3),
        ] {
            for _ in 0..10 {
                let (s_x, z_x) = (rng.f64_in(0.01, 0.1), rng.i32_in(-30, 30));
                let (s_y, z_y) = (s_x * rng.f64_in(0.3, 1.5), rng.i32_in(-30, 30));
                let (mult, shift) = quantize_multiplier(s_x / (n as f64 * s_y));
                let p = MeanParams {
                    rows,
                    n,
                    inner,
                    x_zp: z_x,
                    y_zp: z_y,
                    mult,
                    shift,
                };
                let x = rng.i8s(rows * n * inner);
                let mut y = std::vec![0i8; rows * inner];
                mean_i8(&p, &x, &mut y);
                for o in 0..rows {
                    for i in 0..inner {
                        let m = (0..n)
                            .map(|k| s_x * (x[(o * n + k) * inner + i] as i32 - z_x) as f64)
                            .sum::<f64>()
                            / n as f64;
                        let exact = (m / s_y + z_y as f64).clamp(-128.0, 127.0);
                        let err = (y[o * inner + i] as f64 - exact).abs();
                        assert!(err <= 0.5 + 1e-6, "{rows} {n} {inner}: {err}");
                        worst = worst.max(err);
                    }
                }
            }
        }
        std::println!("mean: worst {worst:.3} LSB");
    }

    #[test]
    fn mean_extremes_and_mismatches() {
        // The longest reduction at the extremes: Σ = 255 · 2^23 < 2^31, mean = 255.
        let n = MAX_N;
        let x = std::vec![127i8; n];
        let (mult, shift) = quantize_multiplier(1.0 / n as f64);
        let p = MeanParams {
            rows: 1,
            n,
            inner: 1,
            x_zp: -128,
            y_zp: -128,
            mult,
            shift,
        };
        let mut y = [0i8; 1];
        mean_i8(&p, &x, &mut y);
        assert_eq!(y, [127]);
        let p = MeanParams {
            rows: 1,
            n: 4,
            inner: 2,
            ..p
        };
        let mut y = [5i8; 2];
        mean_i8(&p, &[0; 7], &mut y);
        mean_i8(&p, &[0; 8], &mut y[..1]);
        assert_eq!(y, [5; 2]);
    }
}
