//! Elementwise int8 → int8 lookup (`OP_LUT8`): `y[i] = table[x[i] + 128]`.
//!
//! The quantizer fills the 256 entries from the exact float function between the input's and
//! the output's quantizations, so the result is exactly the correctly rounded output for every
//! int8 input: error ≤ ½ LSB of the output, by construction (tested below for sigmoid).

/// `y[i] = table[x[i] + 128]` over the common length of `x` and `y`, through the active SIMD
/// level where it has a kernel (bit-identical).
pub fn lut8_i8(table: &[i8; 256], x: &[i8], y: &mut [i8]) {
    if crate::kernels::tfsimd::lut8_simd(table, x, y) {
        return;
    }
    for (out, &v) in y.iter_mut().zip(x) {
        *out = table[(v as i32 + 128) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::quantize;

    #[test]
    fn lut8_sigmoid_within_half_lsb() {
        let (s_x, z_x, s_y, z_y) = (8.0 / 255.0, 0, 1.0 / 256.0, -128);
        let mut table = [0i8; 256];
        for (i, e) in table.iter_mut().enumerate() {
            let xf = s_x * (i as i32 - 128 - z_x) as f64;
            *e = quantize(1.0 / (1.0 + (-xf).exp()), s_y, z_y);
        }
        let x: std::vec::Vec<i8> = (-128..=127).collect();
        let mut y = [0i8; 256];
        lut8_i8(&table, &x, &mut y);
        for (&q, &yq) in x.iter().zip(&y) {
            let exact = 1.0 / (1.0 + (-(s_x * (q as i32 - z_x) as f64)).exp());
            let got = s_y * (yq as i32 - z_y) as f64;
            assert!(
                (got - exact).abs() <= 0.5 * s_y + 1e-12 || yq == 127,
                "{q}: {got} vs {exact}"
            );
        }
    }
}
