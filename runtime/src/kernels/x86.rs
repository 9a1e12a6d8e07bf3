//! x86_64 kernels for [`matvec_i8`](super::matvec::matvec_i8): AVX2 and AVX-512 VNNI.
//!
//! Both are bit-exact with the reference: every product and partial sum is exact, and the final
//! sums wrap modulo 2^32 exactly like `dot_i8` (integer addition modulo 2^32 is associative, so
//! the order in which lanes and rows are summed does not matter).
//!
//! Rows go in blocks so each load of `v` serves many rows, and so the horizontal sums, which
//! dominate the short products of the recurrent gates (`K` = 40 or 64 columns: one or two
//! steps per row), are shared: a block of `B` accumulator registers is reduced to one register
//! holding the `B` row sums by a transpose-and-add tree (`unpacklo/hi_epi32`, `_epi64`, then
//! 128-bit lane shuffles), `log2 B` levels of `B - 1` adds in all, and stored with one
//! instruction. The rows left over after the last full block take four at a time, then one.
//!
//! - AVX2 (`avx2_matvec_i8_8x16`, 8 rows per block): `vpmovsxbw` sign-extends 16 int8 to
//!   int16, `vpmaddwd` multiplies pairs and adds each pair into an int32 lane. A pair sum is at
//!   most `2 · 128 · 128 = 2^15`, far inside int32. (`vpmaddubsw` would be faster but it is
//!   unsigned × signed with int16 saturation: not exact for int8 × int8.) A remaining chunk of
//!   8 columns is one more (half-width) step; the last `K mod 8` go through the scalar loop.
//! - AVX-512 VNNI (`avx512vnni_matvec_i8_8x64`, 8 rows per block): `vpdpbusd` multiplies
//!   unsigned bytes by signed bytes, four products into each int32 lane, without saturation.
//!   The weights are made unsigned by flipping their sign bit (`w ^ 0x80 = w + 128`), so the
//!   lane sums `Σ (w + 128) · v = Σ w · v + 128 · Σ v`; the correction `128 · Σ v` is the same
//!   for every row and is computed once per call. Four products are at most
//!   `4 · 255 · 128 < 2^17`. The tail uses masked loads, whose masked-out bytes are 0 in `v`, so
//!   they add nothing.
//!
//! The AVX-512 intrinsics are stable from Rust 1.89; `build.rs` sets `kinglet_avx512` only for
//! such compilers, so the crate still builds (without this kernel) on its older MSRV. The code
//! keeps to what 1.85 accepts otherwise: `unsafe fn` helpers, intrinsic calls inside `unsafe`.

#![allow(unsafe_code)]

use super::reference::fixed::dot_i8;
use core::arch::x86_64::*;

/// AVX2 matvec; see the module doc. Callers guarantee `m.len() ≥ acc.len() · v.len()`.
pub(super) fn avx2_matvec_i8(m: &[i8], v: &[i8], acc: &mut [i32]) {
    assert!(m.len() >= acc.len() * v.len());
    // SAFETY: the dispatcher calls this only when `Isa::Avx2.is_available()`, i.e. the CPU
    // has AVX2 (detected at run time, or the crate was compiled with it); the slice lengths
    // the kernel relies on are asserted above.
    unsafe { avx2_matvec_i8_8x16(m, v, acc) }
}

/// AVX-512 VNNI matvec; see the module doc. Callers guarantee `m.len() ≥ acc.len() · v.len()`.
#[cfg(kinglet_avx512)]
pub(super) fn avx512vnni_matvec_i8(m: &[i8], v: &[i8], acc: &mut [i32]) {
    assert!(m.len() >= acc.len() * v.len());
    // SAFETY: called only when `Isa::Avx512Vnni.is_available()` (avx512f, avx512bw and
    // avx512vnni present); lengths asserted above.
    unsafe { avx512vnni_matvec_i8_8x64(m, v, acc) }
}

/// Sum of the eight int32 lanes of each of `a`..`d`, as the four lanes of the result.
///
/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn hsum4_epi32(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m128i {
    // SAFETY: register-only AVX2 intrinsics; AVX2 is enabled for this function.
    #[allow(unused_unsafe)]
    unsafe {
        let ab = _mm256_hadd_epi32(a, b); // a01 a23 b01 b23 | a45 a67 b45 b67
        let cd = _mm256_hadd_epi32(c, d);
        let abcd = _mm256_hadd_epi32(ab, cd); // a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7
        _mm_add_epi32(
            _mm256_castsi256_si128(abcd),
            _mm256_extracti128_si256::<1>(abcd),
        )
    }
}

/// The sums of the eight int32 lanes of each of `a[0]`..`a[7]`, as the eight lanes of the
/// result (lane `r` = Σ `a[r]`): a transpose-and-add tree of 7 + 7 + ... adds, 21 instructions
/// for eight rows.
///
/// # Safety
/// The CPU must support AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn hsum8_epi32(a: &[__m256i; 8]) -> __m256i {
    // SAFETY: register-only AVX2 intrinsics; AVX2 is enabled for this function.
    #[allow(unused_unsafe)]
    unsafe {
        // Per 128-bit half: [x0 y0 x1 y1] + [x2 y2 x3 y3] = partial sums of x and y.
        // (Macros, not closures: a closure would not inherit the target feature.)
        macro_rules! pair {
            ($x:expr, $y:expr) => {
                _mm256_add_epi32(_mm256_unpacklo_epi32($x, $y), _mm256_unpackhi_epi32($x, $y))
            };
        }
        let (t01, t23) = (pair!(a[0], a[1]), pair!(a[2], a[3]));
        let (t45, t67) = (pair!(a[4], a[5]), pair!(a[6], a[7]));
        // Per half: rows 0-3 (resp. 4-7) partial sums.
        macro_rules! quad {
            ($x:expr, $y:expr) => {
                _mm256_add_epi32(_mm256_unpacklo_epi64($x, $y), _mm256_unpackhi_epi64($x, $y))
            };
        }
        let (u0, u1) = (quad!(t01, t23), quad!(t45, t67));
        // Low half: rows 0-3 (both halves of u0 added); high half: rows 4-7.
        _mm256_add_epi32(
            _mm256_permute2x128_si256::<0x20>(u0, u1),
            _mm256_permute2x128_si256::<0x31>(u0, u1),
        )
    }
}

/// `acc[j] = Σ m[j·K..][k] · v[k]`: eight rows per block (then four, then one), 16 columns per
/// step, one 8-column step, a scalar tail of `K mod 8`.
///
/// # Safety
/// The CPU must support AVX2, and `m.len() ≥ acc.len() · v.len()`.
#[target_feature(enable = "avx2")]
unsafe fn avx2_matvec_i8_8x16(m: &[i8], v: &[i8], acc: &mut [i32]) {
    let k = v.len();
    let k16 = k - k % 16;
    // Columns covered by the vector steps: `k16`, plus 8 when at least 8 remain.
    let kv = if k - k16 >= 8 { k16 + 8 } else { k16 };
    let vp = v.as_ptr();
    let tail = &v[kv..];
    // Accumulates the vector columns `0..kv` of the `$n` rows starting at `$p` (row `i` at
    // `$p + i·K`) into `$a`. Every load reads 16 (or, at column `k16 ≤ k - 8`, 8) bytes at a
    // column `c` with `c + 16 ≤ k16 ≤ k` of `v` or of one of the rows, which the caller took
    // from a block of `$n · K` bytes of `m`: in bounds. `vpmovsxbw` of an 8-byte load leaves
    // the upper 8 int16 lanes zero, so they add nothing.
    macro_rules! rows_dot {
        ($a:ident, $p:expr, $n:expr) => {
            let mut c = 0;
            while c < k16 {
                let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(vp.add(c).cast()));
                for i in 0..$n {
                    let w = _mm256_cvtepi8_epi16(_mm_loadu_si128($p.add(i * k + c).cast()));
                    $a[i] = _mm256_add_epi32($a[i], _mm256_madd_epi16(w, x));
                }
                c += 16;
            }
            if kv > k16 {
                let x = _mm256_cvtepi8_epi16(_mm_loadl_epi64(vp.add(k16).cast()));
                for i in 0..$n {
                    let w = _mm256_cvtepi8_epi16(_mm_loadl_epi64($p.add(i * k + k16).cast()));
                    $a[i] = _mm256_add_epi32($a[i], _mm256_madd_epi16(w, x));
                }
            }
        };
    }
    // SAFETY: AVX2 is enabled for this function (the caller's contract), which every intrinsic
    // below needs; the memory accesses are `rows_dot!`'s loads (in bounds, above) and the
    // stores into the local `sums`.
    unsafe {
        let mut j = 0;
        let mut blocks = acc.chunks_exact_mut(8);
        for out in &mut blocks {
            let blk = &m[j * k..(j + 8) * k];
            let p = blk.as_ptr();
            let mut a = [_mm256_setzero_si256(); 8];
            rows_dot!(a, p, 8);
            let mut sums = [0i32; 8];
            _mm256_storeu_si256(sums.as_mut_ptr().cast(), hsum8_epi32(&a));
            for ((o, s), r) in out.iter_mut().zip(sums).zip(blk.chunks_exact(k)) {
                *o = s.wrapping_add(dot_i8(&r[kv..], tail));
            }
            j += 8;
        }
        let mut quads = blocks.into_remainder().chunks_exact_mut(4);
        for out in &mut quads {
            let blk = &m[j * k..(j + 4) * k];
            let p = blk.as_ptr();
            let mut a = [_mm256_setzero_si256(); 4];
            rows_dot!(a, p, 4);
            let mut sums = [0i32; 4];
            _mm_storeu_si128(
                sums.as_mut_ptr().cast(),
                hsum4_epi32(a[0], a[1], a[2], a[3]),
            );
            for ((o, s), r) in out.iter_mut().zip(sums).zip(blk.chunks_exact(k)) {
                *o = s.wrapping_add(dot_i8(&r[kv..], tail));
            }
            j += 4;
        }
        for o in quads.into_remainder() {
            let r = &m[j * k..(j + 1) * k];
            let p = r.as_ptr();
            let z = _mm256_setzero_si256();
            let mut a = [z];
            rows_dot!(a, p, 1);
            let mut sums = [0i32; 4];
            _mm_storeu_si128(sums.as_mut_ptr().cast(), hsum4_epi32(a[0], z, z, z));
            *o = sums[0].wrapping_add(dot_i8(&r[kv..], tail));
            j += 1;
        }
    }
}

/// The two 256-bit halves of `x` added lane-wise.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn fold_512(x: __m512i) -> __m256i {
    _mm256_add_epi32(_mm512_castsi512_si256(x), _mm512_extracti64x4_epi64::<1>(x))
}

/// Sums of the sixteen int32 lanes of each of `a`..`d`, as the four lanes of the result.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn hsum4_epi32x16(a: __m512i, b: __m512i, c: __m512i, d: __m512i) -> __m128i {
    // SAFETY: avx512f implies the AVX2 that `hsum4_epi32` needs.
    unsafe { hsum4_epi32(fold_512(a), fold_512(b), fold_512(c), fold_512(d)) }
}

/// The sums of the sixteen int32 lanes of each of `a[0]`..`a[7]`, as the eight lanes of the
/// result (lane `r` = Σ `a[r]`): a transpose-and-add tree, 23 instructions for eight rows.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn hsum8_epi32x16(a: &[__m512i; 8]) -> __m256i {
    // (Macros, not closures: a closure would not inherit the target features.)
    // Per 128-bit chunk: [x0 y0 x1 y1] + [x2 y2 x3 y3] = partial sums of x and y.
    macro_rules! pair {
        ($x:expr, $y:expr) => {
            _mm512_add_epi32(_mm512_unpacklo_epi32($x, $y), _mm512_unpackhi_epi32($x, $y))
        };
    }
    // Per 128-bit chunk: the partial sums of four rows.
    macro_rules! quad {
        ($x:expr, $y:expr) => {
            _mm512_add_epi32(_mm512_unpacklo_epi64($x, $y), _mm512_unpackhi_epi64($x, $y))
        };
    }
    // Chunks (x0 + x1, x2 + x3, y0 + y1, y2 + y3), chunk `i` of `x` written `xi`.
    macro_rules! fold {
        ($x:expr, $y:expr) => {
            _mm512_add_epi32(
                _mm512_shuffle_i32x4::<0b10_00_10_00>($x, $y),
                _mm512_shuffle_i32x4::<0b11_01_11_01>($x, $y),
            )
        };
    }
    // Each chunk of u0 holds partial sums of rows 0-3, of u1 rows 4-7.
    let u0 = quad!(pair!(a[0], a[1]), pair!(a[2], a[3]));
    let u1 = quad!(pair!(a[4], a[5]), pair!(a[6], a[7]));
    // Chunks: rows 0-3 (two halves of the sum), rows 4-7 (two halves).
    let w = fold!(u0, u1);
    // Low 256 bits: rows 0-3, rows 4-7, whole.
    _mm512_castsi512_si256(fold!(w, w))
}

/// `acc[j] = Σ m[j·K..][k] · v[k]`: eight rows per block (then four, then one), 64 columns per
/// step, masked tail.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX-512 VNNI, and
/// `m.len() ≥ acc.len() · v.len()`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
unsafe fn avx512vnni_matvec_i8_8x64(m: &[i8], v: &[i8], acc: &mut [i32]) {
    let k = v.len();
    let k64 = k - k % 64;
    // Bytes `0..k % 64` of the last, partial chunk.
    let tail_mask: __mmask64 = (1u64 << (k % 64)).wrapping_sub(1);
    let flip = _mm512_set1_epi8(i8::MIN);
    let vp = v.as_ptr();
    // The bias each row's sum carries from `w ^ 0x80`: 128 · Σ v, wrapping like the sums.
    let correction = v
        .iter()
        .fold(0i32, |s, &x| s.wrapping_add(x as i32))
        .wrapping_mul(128);
    // Every column of the `$n` rows starting at `$p` (row `i` at `$p + i·K`, taken by the
    // caller from a block of `$n · K` bytes of `m`), accumulated into `$a`.
    macro_rules! rows_dot {
        ($a:ident, $p:expr, $n:expr) => {
            let mut c = 0;
            while c < k64 {
                // SAFETY: `c + 64 ≤ k64 ≤ k`; `v` and each row hold `k` bytes.
                unsafe {
                    let x = _mm512_loadu_si512(vp.add(c).cast());
                    for i in 0..$n {
                        let w = _mm512_loadu_si512($p.add(i * k + c).cast());
                        $a[i] = _mm512_dpbusd_epi32($a[i], _mm512_xor_si512(w, flip), x);
                    }
                }
                c += 64;
            }
            if c < k {
                // SAFETY: masked loads read only bytes `c..k` of `v` and of each row (the mask
                // has `k - c` low bits set), all in bounds; masked-out lanes are zero and
                // fault-suppressed.
                unsafe {
                    let x = _mm512_maskz_loadu_epi8(tail_mask, vp.add(c).cast());
                    for i in 0..$n {
                        let w = _mm512_maskz_loadu_epi8(tail_mask, $p.add(i * k + c).cast());
                        $a[i] = _mm512_dpbusd_epi32($a[i], _mm512_xor_si512(w, flip), x);
                    }
                }
            }
        };
    }
    let mut j = 0;
    let mut blocks = acc.chunks_exact_mut(8);
    for out in &mut blocks {
        let p = m[j * k..(j + 8) * k].as_ptr();
        let mut a = [_mm512_setzero_si512(); 8];
        rows_dot!(a, p, 8);
        let sums = _mm256_sub_epi32(hsum8_epi32x16(&a), _mm256_set1_epi32(correction));
        // SAFETY: `out` holds exactly 8 i32 (32 bytes); unaligned store.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), sums) };
        j += 8;
    }
    let mut quads = blocks.into_remainder().chunks_exact_mut(4);
    for out in &mut quads {
        let p = m[j * k..(j + 4) * k].as_ptr();
        let mut a = [_mm512_setzero_si512(); 4];
        rows_dot!(a, p, 4);
        let mut sums = [0i32; 4];
        // SAFETY: avx512f (so avx2) is enabled; `sums` holds 16 bytes.
        unsafe {
            _mm_storeu_si128(
                sums.as_mut_ptr().cast(),
                hsum4_epi32x16(a[0], a[1], a[2], a[3]),
            )
        };
        for (o, s) in out.iter_mut().zip(sums) {
            *o = s.wrapping_sub(correction);
        }
        j += 4;
    }
    for o in quads.into_remainder() {
        let p = m[j * k..(j + 1) * k].as_ptr();
        let mut a = [_mm512_setzero_si512()];
        rows_dot!(a, p, 1);
        *o = _mm512_reduce_add_epi32(a[0]).wrapping_sub(correction);
        j += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::super::matvec::{reference_matvec_i8, Isa};
    use crate::kernels::testutil::Rng;
    use std::vec::Vec;

    /// Every row count up to three 16-row blocks plus remainders, against the reference, for
    /// column counts that exercise each step kind (16- or 64-wide, the 8-wide AVX2 step, the
    /// masked tail, the scalar tail).
    #[test]
    fn row_blocks_and_tails_match_the_reference() {
        let mut rng = Rng::new(0xB10C);
        type Kernel = fn(&[i8], &[i8], &mut [i32]);
        let kernels: [(Isa, Kernel); 2] = [
            (Isa::Avx2, super::avx2_matvec_i8),
            #[cfg(kinglet_avx512)]
            (Isa::Avx512Vnni, super::avx512vnni_matvec_i8),
            #[cfg(not(kinglet_avx512))]
            (Isa::Reference, reference_matvec_i8),
        ];
        for (isa, kernel) in kernels {
            if !isa.is_available() {
                std::eprintln!("x86 blocks: {} not on this CPU, skipped", isa.name());
                continue;
            }
            for cols in [1, 7, 8, 9, 16, 23, 24, 40, 47, 64, 65, 104, 128, 200] {
                for rows in 0..=52 {
                    let m: Vec<i8> = (0..rows * cols).map(|_| rng.i8()).collect();
                    let v: Vec<i8> = (0..cols).map(|_| rng.i8()).collect();
                    let mut want = std::vec![0i32; rows];
                    reference_matvec_i8(&m, &v, &mut want);
                    let mut got = std::vec![0x5A5A_5A5Ai32; rows];
                    kernel(&m, &v, &mut got);
                    assert_eq!(got, want, "{} rows {rows} cols {cols}", isa.name());
                }
            }
        }
    }
}
