//! Elementwise add with rescaling (`OP_ADD`):
//! `y = clamp(y_zp + rsr((a - a_zp) · a_mult + (b - b_zp) · b_mult, shift))` in i64,
//! `shift ∈ [1, 62]`.
//!
//! `b` broadcasts: for step `s` the kernel reads `b[s · b_step ..][.. b_len]` and repeats it over
//! the step's `len` elements (`b_len` divides `len`). `b_step = 0` is a broadcast constant-shape
//! `b` ("repeats with period `b_len`"); `b_step = b_len = len` is a `b` that advances with the
//! steps like `a` does.
//!
//! Error bound: the multipliers are `round(s_a / s_y · 2^shift)` and `round(s_b / s_y ·
//! 2^shift)` with `shift` chosen so the larger is ≥ 2^29; the result is within ½ LSB plus
//! `255 · 2^-29 · 2` (≈ 1e-6) LSB of the exact rescaled sum (tested).

use super::fixed::{clamp8, rsr};

/// Shape and quantization of an ADD op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddParams {
    /// Steps processed.
    pub steps: usize,
    /// Elements of `a` and `y` per step.
    pub len: usize,
    /// Elements of `b` per period (divides `len`).
    pub b_len: usize,
    /// Elements `b` advances per step (0 or `b_len`).
    pub b_step: usize,
    /// Zero point of `a`.
    pub a_zp: i32,
    /// Zero point of `b`.
    pub b_zp: i32,
    /// Zero point of `y`.
    pub y_zp: i32,
    /// Multiplier of `a - a_zp`.
    pub a_mult: i32,
    /// Multiplier of `b - b_zp`.
    pub b_mult: i32,
    /// Rounding right shift, `1 ≤ shift ≤ 62`.
    pub shift: u32,
    /// Lower clamp.
    pub act_min: i32,
    /// Upper clamp.
    pub act_max: i32,
}

/// `y [steps, len] = a + b` with broadcasting as described in the module doc. Returns without
/// writing if a slice length disagrees with `p`. Runs on the active SIMD level where it has a
/// kernel (bit-identical); [`add_i8_reference`] is the scalar loop alone.
pub fn add_i8(p: &AddParams, a: &[i8], b: &[i8], y: &mut [i8]) {
    add_on(p, a, b, y, true);
}

/// [`add_i8`] with the scalar loop whatever the CPU: the definition the SIMD kernels are
/// tested against.
pub fn add_i8_reference(p: &AddParams, a: &[i8], b: &[i8], y: &mut [i8]) {
    add_on(p, a, b, y, false);
}

#[inline(always)]
fn add_on(p: &AddParams, a: &[i8], b: &[i8], y: &mut [i8], simd: bool) {
    let b_need = p
        .steps
        .saturating_sub(1)
        .checked_mul(p.b_step)
        .and_then(|v| v.checked_add(p.b_len));
    let ok = p.len > 0
        && p.b_len > 0
        && p.act_min <= p.act_max
        && p.len % p.b_len == 0
        && Some(a.len()) == p.steps.checked_mul(p.len)
        && y.len() == a.len()
        && b_need.is_some_and(|n| b.len() >= n);
    if !ok {
        return;
    }
    if simd && crate::kernels::tfsimd::add_simd(p, a, b, y) {
        return;
    }
    // `b`'s block for the current step; it advances by `b_step` (0 for a broadcast `b`).
    let mut b_from = 0usize;
    super::for_rows(a, p.len, y, p.len, |ar, yr| {
        // In range by the check above (`b_need`); an empty block would only skip the step.
        let bs = b
            .get(b_from..)
            .and_then(|r| r.get(..p.b_len))
            .unwrap_or(&[]);
        b_from = b_from.wrapping_add(p.b_step);
        for ((av, yv), bv) in ar.iter().zip(yr.iter_mut()).zip(bs.iter().cycle()) {
            // |(a - a_zp) · a_mult| < 2^40 each: the sum cannot overflow i64.
            let acc = (*av as i64 - p.a_zp as i64) * p.a_mult as i64
                + (*bv as i64 - p.b_zp as i64) * p.b_mult as i64;
            *yv = clamp8(p.y_zp as i64 + rsr(acc, p.shift), p.act_min, p.act_max);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::Rng;

    #[test]
    fn add_within_half_lsb_of_float() {
        let mut rng = Rng::new(5);
        for &(steps, len, b_len, b_step) in
            &[(1, 8, 8, 0), (3, 12, 4, 0), (4, 6, 6, 6), (1, 1, 1, 0)]
        {
            let (s_a, s_b, s_y) = (0.02, 0.05, 0.06);
            let (a_zp, b_zp, y_zp) = (3, -7, 1);
            let shift = 30u32;
            let am = (s_a / s_y * 2f64.powi(shift as i32)).round() as i32;
            let bm = (s_b / s_y * 2f64.powi(shift as i32)).round() as i32;
            let a = rng.i8s(steps * len);
            let b = rng.i8s(if b_step == 0 { b_len } else { steps * b_len });
            let p = AddParams {
                steps,
                len,
                b_len,
                b_step,
                a_zp,
                b_zp,
                y_zp,
                a_mult: am,
                b_mult: bm,
                shift,
                act_min: -128,
                act_max: 127,
            };
            let mut y = std::vec![0i8; steps * len];
            add_i8(&p, &a, &b, &mut y);
            for s in 0..steps {
                for i in 0..len {
                    let bv = b[s * b_step + i % b_len];
                    let real = s_a * (a[s * len + i] as i32 - a_zp) as f64
                        + s_b * (bv as i32 - b_zp) as f64;
                    let exact = (y_zp as f64 + real / s_y).clamp(-128.0, 127.0);
                    let got = y[s * len + i] as f64;
                    assert!((got - exact).abs() <= 0.5 + 1e-6, "{got} vs {exact}");
                }
            }
        }
    }
}
