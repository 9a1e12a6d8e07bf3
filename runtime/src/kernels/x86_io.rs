//! x86_64: the I/O tensors' float conversions ([`TensorInfo::quantize`],
//! [`TensorInfo::dequantize`](crate::model::TensorInfo::dequantize)) compiled for the widest
//! vectors this CPU has. The loops are the portable ones ([`quantize_loop`],
//! [`dequantize_loop`]), inlined into functions with more target features: every step is an
//! IEEE operation per element (divide, clamp, the magic-number rounding, compares), so the
//! bytes are the same at every width. The baseline build (SSE2) ran `kws_lstm`'s 1,960-value
//! input at four lanes, about a tenth of a float-in, float-out call (`perf`, `kinglet bench`).
//!
//! [`TensorInfo::quantize`]: crate::model::TensorInfo::quantize

#![allow(unsafe_code)]

use super::matvec::{active_isa, Isa};
use crate::model::{dequantize_loop, quantize_loop};

/// [`quantize_loop`] at the active level's width; `false` (nothing written) at the levels
/// without one (the caller runs the portable loop).
pub(crate) fn quantize_wide(scale: f32, zp: i32, x: &[f32], out: &mut [i8]) -> bool {
    match active_isa() {
        #[cfg(kinglet_avx512)]
        // SAFETY: the AVX-512 VNNI level implies AVX-512F and BW (its detection).
        Isa::Avx512Vnni => unsafe { quantize_avx512(scale, zp, x, out) },
        // SAFETY: the AVX2 level is detected AVX2.
        Isa::Avx2 => unsafe { quantize_avx2(scale, zp, x, out) },
        _ => return false,
    }
    true
}

/// [`dequantize_loop`] at the active level's width; `false` as [`quantize_wide`].
pub(crate) fn dequantize_wide(scale: f32, zp: i32, q: &[i8], out: &mut [f32]) -> bool {
    match active_isa() {
        #[cfg(kinglet_avx512)]
        // SAFETY: as in `quantize_wide`.
        Isa::Avx512Vnni => unsafe { dequantize_avx512(scale, zp, q, out) },
        // SAFETY: as in `quantize_wide`.
        Isa::Avx2 => unsafe { dequantize_avx2(scale, zp, q, out) },
        _ => return false,
    }
    true
}

/// # Safety
/// AVX-512F/BW.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_avx512(scale: f32, zp: i32, x: &[f32], out: &mut [i8]) {
    quantize_loop(scale, zp, x, out)
}

/// # Safety
/// AVX2.
#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2(scale: f32, zp: i32, x: &[f32], out: &mut [i8]) {
    quantize_loop(scale, zp, x, out)
}

/// # Safety
/// AVX-512F/BW.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn dequantize_avx512(scale: f32, zp: i32, q: &[i8], out: &mut [f32]) {
    dequantize_loop(scale, zp, q, out)
}

/// # Safety
/// AVX2.
#[target_feature(enable = "avx2")]
unsafe fn dequantize_avx2(scale: f32, zp: i32, q: &[i8], out: &mut [f32]) {
    dequantize_loop(scale, zp, q, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::Rng;
    use std::vec::Vec;

    /// Every width against the portable loop, element by element: random values over several
    /// scales and zero points, the rounding ties (`k + 0.5` of the scale, both signs), the
    /// clamps' edges, zeros of both signs, infinities, NaN, subnormals; lengths that leave
    /// every remainder of the vector widths.
    #[test]
    fn wide_conversions_match_the_portable_loops() {
        let mut rng = Rng::new(0x10);
        let mut checked = 0;
        for &(scale, zp) in &[
            (0.093243f32, 20),
            (0.003922, -128),
            (1.0, 0),
            (0.5, 127),
            (1e-30, -3),
            (3.0e4, 5),
        ] {
            let mut x: Vec<f32> = (0..997)
                .map(|i| match i % 7 {
                    0 => (rng.i32_in(-300, 300) as f32 + 0.5) * scale,
                    1 => rng.i32_in(-140, 140) as f32 * scale,
                    2 => f32::from_bits(rng.next_u64() as u32),
                    _ => (rng.next_u64() as u32 as f32 / u32::MAX as f32 - 0.5) * 400.0 * scale,
                })
                .collect();
            x.extend_from_slice(&[
                0.0,
                -0.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                f32::MIN_POSITIVE / 4.0,
                -f32::MIN_POSITIVE / 4.0,
                1024.5 * scale,
                -1024.5 * scale,
                f32::MAX,
                f32::MIN,
            ]);
            for len in [0, 1, 7, 15, 16, 17, 31, 33, 64, x.len()] {
                let x = &x[..len];
                let mut want = std::vec![0i8; len];
                quantize_loop(scale, zp, x, &mut want);
                let q: Vec<i8> = (0..len).map(|_| rng.i8()).collect();
                let mut fwant = std::vec![0f32; len];
                dequantize_loop(scale, zp, &q, &mut fwant);
                let mut got = std::vec![0x55i8; len];
                let mut fgot = std::vec![0f32; len];
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 detected.
                    unsafe {
                        quantize_avx2(scale, zp, x, &mut got);
                        dequantize_avx2(scale, zp, &q, &mut fgot);
                    }
                    assert_eq!(got, want, "avx2, scale {scale} zp {zp} len {len}");
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&fgot), bits(&fwant), "avx2 dequantize");
                    checked += 1;
                }
                #[cfg(kinglet_avx512)]
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                {
                    got.fill(0x55);
                    // SAFETY: AVX-512F/BW detected.
                    unsafe {
                        quantize_avx512(scale, zp, x, &mut got);
                        dequantize_avx512(scale, zp, &q, &mut fgot);
                    }
                    assert_eq!(got, want, "avx512, scale {scale} zp {zp} len {len}");
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&fgot), bits(&fwant), "avx512 dequantize");
                    checked += 1;
                }
                // And through the dispatch, whatever the level.
                got.fill(0x55);
                if quantize_wide(scale, zp, x, &mut got) {
                    assert_eq!(got, want, "dispatch, scale {scale} zp {zp} len {len}");
                }
            }
        }
        std::eprintln!("{checked} wide conversions checked");
    }
}
