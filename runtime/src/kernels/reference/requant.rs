//! Requantize int8 → int8 (`OP_REQUANT`): `y = clamp(y_zp + rq(x - x_zp, mult, shift))`,
//! clamped to `[-128, 127]`.
//!
//! Error bound: one rounding, within ½ LSB (+ 2^-30 relative) of `y_zp + (x - x_zp) · M`
//! (tested exhaustively over the 256 inputs).

use super::fixed::{clamp8, rq};

/// Quantization of a REQUANT op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequantParams {
    /// Input zero point.
    pub x_zp: i32,
    /// Output zero point.
    pub y_zp: i32,
    /// Multiplier, `[0, 2^31)`.
    pub mult: i32,
    /// Shift, `[-30, 31]`.
    pub shift: i32,
}

/// Requantizes `x` into `y` over their common length.
pub fn requant_i8(p: &RequantParams, x: &[i8], y: &mut [i8]) {
    for (out, &v) in y.iter_mut().zip(x) {
        let r = rq(v as i32 - p.x_zp, p.mult, p.shift);
        *out = clamp8(p.y_zp as i64 + r as i64, -128, 127);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::quantize_multiplier;

    #[test]
    fn requant_within_half_lsb() {
        for &m in &[0.01, 0.37, 1.0, 1.9, 7.3] {
            let (mult, shift) = quantize_multiplier(m);
            let p = RequantParams {
                x_zp: -5,
                y_zp: 9,
                mult,
                shift,
            };
            let x: std::vec::Vec<i8> = (-128..=127).collect();
            let mut y = [0i8; 256];
            requant_i8(&p, &x, &mut y);
            for (&q, &yq) in x.iter().zip(&y) {
                let exact = (9.0 + (q as f64 + 5.0) * m).clamp(-128.0, 127.0);
                assert!(
                    (yq as f64 - exact).abs() <= 0.5 + 1e-6,
                    "m {m} x {q}: {yq} vs {exact}"
                );
            }
        }
    }
}
