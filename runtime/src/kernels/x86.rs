//! x86_64 kernels for [`matvec_i8`](super::matvec::matvec_i8): AVX2 and AVX-512 VNNI.
//!
//! Both process four rows at a time so each load of `v` serves four rows, and both are
//! bit-exact with the reference: every product and partial sum is exact, and the final sums
//! wrap modulo 2^32 exactly like `dot_i8`.
//!
//! - AVX2 (`avx2_matvec_i8_4x16`): `vpmovsxbw` sign-extends 16 int8 to int16, `vpmaddwd`
//!   multiplies pairs and adds each pair into an int32 lane. A pair sum is at most
//!   `2 · 128 · 128 = 2^15`, far inside int32. (`vpmaddubsw` would be faster but it is
//!   unsigned × signed with int16 saturation: not exact for int8 × int8.) Columns past the last
//!   multiple of 16 go through the scalar loop.
//! - AVX-512 VNNI (`avx512vnni_matvec_i8_4x64`): `vpdpbusd` multiplies unsigned bytes by signed
//!   bytes, four products into each int32 lane, without saturation. The weights are made
//!   unsigned by flipping their sign bit (`w ^ 0x80 = w + 128`), so the lane sums
//!   `Σ (w + 128) · v = Σ w · v + 128 · Σ v`; the correction `128 · Σ v` is the same for every
//!   row and is computed once per call. Four products are at most `4 · 255 · 128 < 2^17`. The
//!   tail uses masked loads, whose masked-out bytes are 0 in `v`, so they add nothing.
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
    unsafe { avx2_matvec_i8_4x16(m, v, acc) }
}

/// AVX-512 VNNI matvec; see the module doc. Callers guarantee `m.len() ≥ acc.len() · v.len()`.
#[cfg(kinglet_avx512)]
pub(super) fn avx512vnni_matvec_i8(m: &[i8], v: &[i8], acc: &mut [i32]) {
    assert!(m.len() >= acc.len() * v.len());
    // SAFETY: called only when `Isa::Avx512Vnni.is_available()` (avx512f, avx512bw and
    // avx512vnni present); lengths asserted above.
    unsafe { avx512vnni_matvec_i8_4x64(m, v, acc) }
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

/// `acc[j] = Σ m[j·K..][k] · v[k]`, four rows per pass, 16 columns per step.
///
/// # Safety
/// The CPU must support AVX2, and `m.len() ≥ acc.len() · v.len()`.
#[target_feature(enable = "avx2")]
unsafe fn avx2_matvec_i8_4x16(m: &[i8], v: &[i8], acc: &mut [i32]) {
    let k = v.len();
    let k16 = k - k % 16;
    let vp = v.as_ptr();
    // Sign-extends the 16 int8 at `p` to int16. Every `p` below points at column `c` of `v`
    // or of a row, with `c + 16 ≤ k16 ≤ k` where `v` and every row hold `k` bytes, so the
    // unaligned 16-byte load is in bounds.
    macro_rules! load {
        ($p:expr) => {
            _mm256_cvtepi8_epi16(_mm_loadu_si128($p.cast()))
        };
    }
    // SAFETY: AVX2 is enabled for this function (the caller's contract), which every intrinsic
    // below needs; the only memory accesses are `load!` (in bounds, above) and the 16-byte
    // stores into the local `sums`.
    unsafe {
        let mut blocks = acc.chunks_exact_mut(4);
        let mut row = 0;
        for out in &mut blocks {
            let rows = [
                &m[row * k..(row + 1) * k],
                &m[(row + 1) * k..(row + 2) * k],
                &m[(row + 2) * k..(row + 3) * k],
                &m[(row + 3) * k..(row + 4) * k],
            ];
            let mut a = [_mm256_setzero_si256(); 4];
            let mut c = 0;
            while c < k16 {
                let x = load!(vp.add(c));
                for (a, r) in a.iter_mut().zip(rows) {
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(load!(r.as_ptr().add(c)), x));
                }
                c += 16;
            }
            let mut sums = [0i32; 4];
            _mm_storeu_si128(
                sums.as_mut_ptr().cast(),
                hsum4_epi32(a[0], a[1], a[2], a[3]),
            );
            let tail = &v[k16..];
            for ((o, s), r) in out.iter_mut().zip(sums).zip(rows) {
                *o = s.wrapping_add(dot_i8(&r[k16..], tail));
            }
            row += 4;
        }
        for o in blocks.into_remainder() {
            let r = &m[row * k..(row + 1) * k];
            let z = _mm256_setzero_si256();
            let mut a = z;
            let mut c = 0;
            while c < k16 {
                let x = load!(vp.add(c));
                a = _mm256_add_epi32(a, _mm256_madd_epi16(load!(r.as_ptr().add(c)), x));
                c += 16;
            }
            let mut sums = [0i32; 4];
            _mm_storeu_si128(sums.as_mut_ptr().cast(), hsum4_epi32(a, z, z, z));
            *o = sums[0].wrapping_add(dot_i8(&r[k16..], &v[k16..]));
            row += 1;
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

/// `acc[j] = Σ m[j·K..][k] · v[k]`, four rows per pass, 64 columns per step, masked tail.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX-512 VNNI, and
/// `m.len() ≥ acc.len() · v.len()`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
unsafe fn avx512vnni_matvec_i8_4x64(m: &[i8], v: &[i8], acc: &mut [i32]) {
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
    // One chunk of four rows at column `c` (full or masked), accumulated into `a`.
    macro_rules! step4 {
        ($a:ident, $rows:expr, $c:ident, $load:ident, $($mask:expr)?) => {{
            let x = $load($($mask,)? vp.add($c).cast());
            for (a, r) in $a.iter_mut().zip($rows) {
                let w = _mm512_xor_si512($load($($mask,)? r.as_ptr().add($c).cast()), flip);
                *a = _mm512_dpbusd_epi32(*a, w, x);
            }
        }};
    }
    let mut blocks = acc.chunks_exact_mut(4);
    let mut row = 0;
    for out in &mut blocks {
        let rows = [
            &m[row * k..(row + 1) * k],
            &m[(row + 1) * k..(row + 2) * k],
            &m[(row + 2) * k..(row + 3) * k],
            &m[(row + 3) * k..(row + 4) * k],
        ];
        let mut a = [_mm512_setzero_si512(); 4];
        let mut c = 0;
        while c < k64 {
            // SAFETY: `c + 64 ≤ k64 ≤ k`; `v` and each row hold `k` bytes.
            unsafe { step4!(a, rows, c, _mm512_loadu_si512,) };
            c += 64;
        }
        if c < k {
            // SAFETY: masked loads read only bytes `c..k` (the mask has `k - c` low bits set),
            // all in bounds; masked-out lanes are zero and fault-suppressed.
            unsafe { step4!(a, rows, c, _mm512_maskz_loadu_epi8, tail_mask) };
        }
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
        row += 4;
    }
    for o in blocks.into_remainder() {
        let rows = [&m[row * k..(row + 1) * k]];
        let mut a = [_mm512_setzero_si512()];
        let mut c = 0;
        while c < k64 {
            // SAFETY: as above.
            unsafe { step4!(a, rows, c, _mm512_loadu_si512,) };
            c += 64;
        }
        if c < k {
            // SAFETY: as above, masked to bytes `c..k`.
            unsafe { step4!(a, rows, c, _mm512_maskz_loadu_epi8, tail_mask) };
        }
        *o = _mm512_reduce_add_epi32(a[0]).wrapping_sub(correction);
        row += 1;
    }
}
