//! Softmax over the last axis (`OP_SOFTMAX`), int8 in, int8 out at scale 1/256, zero point −128.
//!
//! With `m` the row maximum: `e[i] = table[m - x[i]]` where
//! `table[d] = round(exp(-s_x · d) · 65536)`, `s = Σ e`, and
//! `y[i] = clamp((e[i] · 256 + s / 2) / s - 128)` (integer division, i64).
//!
//! Error bound: the table is exact to ½ of 2^-16 relative to the row maximum, so for rows of up
//! to a few hundred elements the output is within 1 LSB (1/256) of the float softmax (tested:
//! ≤ 1 LSB + 1e-3). A table whose sum is not positive (impossible for a valid file, where
//! `table[0] = 65536`) yields −128 instead of dividing by zero.

use zerocopy::little_endian::I32;

/// Shape of a SOFTMAX op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftmaxParams {
    /// Rows processed (`steps × rows_per_step`).
    pub rows: usize,
    /// Row length (the softmax axis), ≥ 1.
    pub len: usize,
}

/// Row-wise softmax of `x [rows, len]` into `y`. Returns without writing if a slice length
/// disagrees with `p`.
pub fn softmax_i8(p: &SoftmaxParams, table: &[I32; 256], x: &[i8], y: &mut [i8]) {
    if p.len == 0 || Some(x.len()) != p.rows.checked_mul(p.len) || y.len() != x.len() {
        return;
    }
    super::for_rows(x, p.len, y, p.len, |xr, yr| {
        let m = xr.iter().copied().max().unwrap_or(0) as i32;
        // `m ≥ v`, so `m - v ∈ [0, 255]` and the `u8` cast is exact: an index the compiler
        // can see is in range.
        let e = |v: i8| table[(m - v as i32) as u8 as usize].get() as i64;
        let s: i64 = xr.iter().map(|&v| e(v)).sum();
        for (out, &v) in yr.iter_mut().zip(xr) {
            *out = if s > 0 {
                ((e(v) * 256 + s / 2) / s - 128).clamp(-128, 127) as i8
            } else {
                -128
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::Rng;

    #[test]
    fn softmax_within_one_lsb_of_float() {
        let mut rng = Rng::new(9);
        for &(rows, len, s_x) in &[(1, 1, 0.1), (3, 10, 0.05), (2, 100, 0.03), (1, 7, 0.5)] {
            let mut table = [I32::new(0); 256];
            for (d, t) in table.iter_mut().enumerate() {
                *t = I32::new((((-(s_x * d as f64)).exp()) * 65536.0).round() as i32);
            }
            let x = rng.i8s(rows * len);
            let mut y = std::vec![0i8; rows * len];
            softmax_i8(&SoftmaxParams { rows, len }, &table, &x, &mut y);
            for r in 0..rows {
                let row = &x[r * len..(r + 1) * len];
                let m = row.iter().copied().max().unwrap() as f64;
                let z: f64 = row.iter().map(|&v| (s_x * (v as f64 - m)).exp()).sum();
                for i in 0..len {
                    let exact = (s_x * (row[i] as f64 - m)).exp() / z;
                    let got = (y[r * len + i] as f64 + 128.0) / 256.0;
                    let tol = 1.0 / 256.0 + 1e-3;
                    assert!((got - exact).abs() <= tol || (y[r * len + i] == 127 && exact > 0.99));
                }
            }
        }
    }

    #[test]
    fn softmax_zero_table_does_not_divide_by_zero() {
        let mut y = [5i8; 3];
        softmax_i8(
            &SoftmaxParams { rows: 1, len: 3 },
            &[I32::new(0); 256],
            &[1, 2, 3],
            &mut y,
        );
        assert_eq!(y, [-128; 3]);
    }
}
