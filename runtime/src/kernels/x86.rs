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

#[cfg(kinglet_avx512)]
use super::matvec::CellGates;
#[cfg(kinglet_avx512)]
use super::reference::add::AddParams;
#[cfg(kinglet_avx512)]
use super::reference::attention::{AttentionParams, EXP2_LEN, MAX_DH};
#[cfg(kinglet_avx512)]
use super::reference::fc::FcParams;
use super::reference::fixed::dot_i8;
#[cfg(kinglet_avx512)]
use super::reference::layernorm::{LayerNormParams, MAX_D as LN_MAX_D};
#[cfg(kinglet_avx512)]
use super::reference::mean::{MeanParams, MAX_N as MEAN_MAX_N};
#[cfg(kinglet_avx512)]
use super::reference::{gru::GruParams, lstm::LstmParams, ActTable, ActTables};
use core::arch::x86_64::*;
#[cfg(kinglet_avx512)]
use zerocopy::little_endian::I32;

/// AVX2 matvec; see the module doc. Callers guarantee `m.len() ≥ acc.len() · v.len()`.
pub(super) fn avx2_matvec_i8(m: &[i8], v: &[i8], acc: &mut [i32]) {
    assert!(m.len() >= acc.len() * v.len());
    if let [v0] = *v {
        // SAFETY: as below; `m` holds `acc.len()` bytes (asserted).
        unsafe { avx2_matvec_i8_k1(m, v0, acc) };
        return;
    }
    // SAFETY: the dispatcher calls this only when `Isa::Avx2.is_available()`, i.e. the CPU
    // has AVX2 (detected at run time, or the crate was compiled with it); the slice lengths
    // the kernel relies on are asserted above.
    unsafe { avx2_matvec_i8_8x16(m, v, acc) }
}

/// AVX-512 VNNI matvec; see the module doc. Callers guarantee `m.len() ≥ acc.len() · v.len()`.
#[cfg(kinglet_avx512)]
pub(super) fn avx512vnni_matvec_i8(m: &[i8], v: &[i8], acc: &mut [i32]) {
    assert!(m.len() >= acc.len() * v.len());
    if let [v0] = *v {
        // SAFETY: AVX-512F implies AVX2; `m` holds `acc.len()` bytes (asserted).
        unsafe { avx2_matvec_i8_k1(m, v0, acc) };
        return;
    }
    // SAFETY: called only when `Isa::Avx512Vnni.is_available()` (avx512f, avx512bw and
    // avx512vnni present); lengths asserted above.
    unsafe { avx512vnni_matvec_i8_8x64(m, v, acc) }
}

/// `acc[j] = m[j] · v0`, the one-column product (the forecasters' input `W·x`): eight rows per
/// sign-extend and `vpmulld`, exact (|product| ≤ 2^14).
///
/// # Safety
/// The CPU must support AVX2, and `m.len() ≥ acc.len()`.
#[target_feature(enable = "avx2")]
unsafe fn avx2_matvec_i8_k1(m: &[i8], v0: i8, acc: &mut [i32]) {
    let n = acc.len();
    let x = _mm256_set1_epi32(v0 as i32);
    let mut j = 0;
    // SAFETY: AVX2 is enabled (the caller's contract); each step reads bytes `j..j + 8` of `m`
    // and writes `acc[j..j + 8]` with `j + 8 ≤ n ≤ m.len()`.
    unsafe {
        while j + 8 <= n {
            let w = _mm256_cvtepi8_epi32(_mm_loadl_epi64(m.as_ptr().add(j).cast()));
            _mm256_storeu_si256(acc.as_mut_ptr().add(j).cast(), _mm256_mullo_epi32(w, x));
            j += 8;
        }
    }
    for (a, &w) in acc[j..].iter_mut().zip(&m[j..n]) {
        *a = w as i32 * v0 as i32;
    }
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

/// `rq` ([`fixed::rq`](super::reference::fixed::rq)) of eight accumulators with eight
/// `(mult, shift)` pairs, one pair per 64-bit lane (`mult` low, `shift` high: the model file's
/// `[N, 2]` little-endian layout read as 64-bit lanes). The i64 definition, which the scalar fast
/// paths equal: `clamp32((acc · mult + 2^(30 + s)) >> (31 + s))` with `s = clamp(shift, -30, 31)`;
/// `vpmuldq` takes the low (signed) 32 bits of each lane, so it multiplies `acc` by `mult` exactly.
/// Results in i64 lanes, within i32.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn rq_i64x8(acc: __m256i, pairs: __m512i) -> __m512i {
    let prod = _mm512_mul_epi32(_mm512_cvtepi32_epi64(acc), pairs);
    let s = _mm512_min_epi64(
        _mm512_max_epi64(_mm512_srai_epi64::<32>(pairs), _mm512_set1_epi64(-30)),
        _mm512_set1_epi64(31),
    );
    let round = _mm512_sllv_epi64(
        _mm512_set1_epi64(1),
        _mm512_add_epi64(s, _mm512_set1_epi64(30)),
    );
    let v = _mm512_srav_epi64(
        _mm512_add_epi64(prod, round),
        _mm512_add_epi64(s, _mm512_set1_epi64(31)),
    );
    _mm512_min_epi64(
        _mm512_max_epi64(v, _mm512_set1_epi64(i32::MIN as i64)),
        _mm512_set1_epi64(i32::MAX as i64),
    )
}

/// `clamp(zp + rq(acc, mult, shift), -128, 127)` for sixteen i32 lanes with one pair, as i32
/// lanes: the int8 output of the recurrent cells (`fixed::clamp8_add`). In i64 the sum is exact,
/// and clamping it equals the scalar saturating i32 sum clamped to int8.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn rq_clamp8x16(acc: __m512i, pair: __m512i, zp: __m512i) -> __m512i {
    let lo8 = _mm512_set1_epi64(-128);
    let hi8 = _mm512_set1_epi64(127);
    let half = |r: __m512i| {
        _mm512_cvtepi64_epi32(_mm512_min_epi64(
            _mm512_max_epi64(_mm512_add_epi64(r, zp), lo8),
            hi8,
        ))
    };
    let lo = half(rq_i64x8(_mm512_castsi512_si256(acc), pair));
    let hi = half(rq_i64x8(_mm512_extracti64x4_epi64::<1>(acc), pair));
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// `out[i] = rq(bias[i] + out[i], pairs[2i], pairs[2i + 1])` (the bias add wrapping), eight
/// rows per step, the last step masked: the requantization of [`matvec_rq`]
/// (super::reference::fixed::matvec_rq) on AVX-512. Returns `false`, writing nothing, when
/// `bias` or `pairs` is shorter than `out` needs.
#[cfg(kinglet_avx512)]
pub(crate) fn avx512_requant_block(bias: &[I32], pairs: &[I32], out: &mut [i32]) -> bool {
    if bias.len() < out.len() || pairs.len() < 2 * out.len() {
        return false;
    }
    // SAFETY: called only when `Isa::Avx512Vnni` is the active level (avx512f present);
    // lengths checked above.
    unsafe { avx512_requant_8(bias, pairs, out) };
    true
}

/// See [`avx512_requant_block`].
///
/// # Safety
/// The CPU must support AVX-512F; `bias.len() ≥ out.len()`, `pairs.len() ≥ 2 · out.len()`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_requant_8(bias: &[I32], pairs: &[I32], out: &mut [i32]) {
    let n = out.len();
    let mut j = 0;
    let (two, span, one) = (
        _mm512_set1_epi32(2),
        _mm512_set1_epi32(29),
        _mm512_set1_epi32(1),
    );
    // Lane `l` of the result takes dword `2l + 1` of `a ++ b` (the high halves of the products).
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    // Sixteen rows per step. When every shift is in [2, 31] (every gate and FC of the committed
    // models), `rq`'s exact 32-bit path: `hi = ⌊acc · mult / 2^32⌋` is the high dword of the
    // `vpmuldq` product, which sits where the pair keeps its shift, so one `vpsravd` by
    // `shift - 2` lines up with it; then `(hi + 1) >> 1`. Otherwise the i64 definition.
    while j + 16 <= n {
        // SAFETY: reads rows `j..j + 16` of `out` and `bias` (64 bytes each) and of `pairs`
        // (128 bytes), writes those of `out`: `j + 16 ≤ n` and the contract's lengths.
        unsafe {
            let acc = _mm512_add_epi32(
                _mm512_loadu_si512(out.as_ptr().add(j).cast()),
                _mm512_loadu_si512(bias.as_ptr().add(j).cast()),
            );
            let p0 = _mm512_loadu_si512(pairs.as_ptr().add(2 * j).cast());
            let p1 = _mm512_loadu_si512(pairs.as_ptr().add(2 * j + 16).cast());
            let (s0, s1) = (_mm512_sub_epi32(p0, two), _mm512_sub_epi32(p1, two));
            // `shift - 2 ∈ [0, 29]` (unsigned) in the shift dwords of both halves.
            let ok = _mm512_mask_cmple_epu32_mask(0xAAAA, s0, span)
                & _mm512_mask_cmple_epu32_mask(0xAAAA, s1, span);
            let (lo, hi) = (
                _mm512_castsi512_si256(acc),
                _mm512_extracti64x4_epi64::<1>(acc),
            );
            let r = if ok == 0xAAAA {
                let t0 = _mm512_srav_epi32(_mm512_mul_epi32(_mm512_cvtepu32_epi64(lo), p0), s0);
                let t1 = _mm512_srav_epi32(_mm512_mul_epi32(_mm512_cvtepu32_epi64(hi), p1), s1);
                _mm512_srai_epi32::<1>(_mm512_add_epi32(
                    _mm512_permutex2var_epi32(t0, odd, t1),
                    one,
                ))
            } else {
                _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm512_cvtepi64_epi32(rq_i64x8(lo, p0))),
                    _mm512_cvtepi64_epi32(rq_i64x8(hi, p1)),
                )
            };
            _mm512_storeu_si512(out.as_mut_ptr().add(j).cast(), r);
        }
        j += 16;
    }
    while j < n {
        let mask = lanes_mask8(n - j);
        // SAFETY: the masked loads and store touch only rows `j..j + min(8, n - j)` of `out`,
        // `bias` (4 bytes each) and `pairs` (8 bytes each), in bounds by the contract;
        // `I32` is 4 little-endian bytes with alignment 1, and the loads are unaligned.
        unsafe {
            let acc = _mm512_maskz_loadu_epi32(mask.into(), out.as_ptr().add(j).cast());
            let b = _mm512_maskz_loadu_epi32(mask.into(), bias.as_ptr().add(j).cast());
            let acc = _mm256_add_epi32(_mm512_castsi512_si256(acc), _mm512_castsi512_si256(b));
            let p = _mm512_maskz_loadu_epi64(mask, pairs.as_ptr().add(2 * j).cast());
            _mm512_mask_cvtepi64_storeu_epi32(
                out.as_mut_ptr().add(j).cast(),
                mask,
                rq_i64x8(acc, p),
            );
        }
        j += 8;
    }
}

/// The low `min(n, 8)` bits set.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
fn lanes_mask8(n: usize) -> __mmask8 {
    if n >= 8 {
        0xff
    } else {
        (1u8 << n) - 1
    }
}

/// The low `min(n, 16)` bits set.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
fn lanes_mask16(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        (1u16 << n) - 1
    }
}

/// `lut16(tab, x)` ([`fixed::lut16`](super::reference::fixed::lut16)) for sixteen i32 lanes:
/// one 32-bit gather per lane reads `tab[i]` (low half) and `tab[i + 1]` (high half) at once.
///
/// # Safety
/// The CPU must support AVX-512F, and every lane of `x` must lie in `[-32768, 32767]` (so
/// `i ≤ 511` and the gather reads bytes `2i..2i + 4 ≤ 1026`, inside the 513-entry table).
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn lut16x16(tab: &ActTable, x: __m512i) -> __m512i {
    let i = _mm512_add_epi32(_mm512_srai_epi32::<7>(x), _mm512_set1_epi32(256));
    let f = _mm512_and_si512(x, _mm512_set1_epi32(127));
    // SAFETY: `i ∈ [0, 511]` by the contract: every 4-byte read is inside `tab`.
    let w = unsafe { _mm512_i32gather_epi32::<2>(i, tab.as_ptr().cast()) };
    let a = _mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(w));
    let b = _mm512_srai_epi32::<16>(w);
    let d = _mm512_add_epi32(
        _mm512_mullo_epi32(_mm512_sub_epi32(b, a), f),
        _mm512_set1_epi32(64),
    );
    _mm512_add_epi32(a, _mm512_srai_epi32::<7>(d))
}

/// Sixteen int16 at `s[off..]` (the first `min(16, s.len() - off)`, the rest 0) sign-extended to
/// i32 lanes.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512BW; `mask` selects only elements inside `s[off..]`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn load_i16x16(s: &[i16], off: usize, mask: __mmask16) -> __m512i {
    // SAFETY: masked-out elements are neither read nor faulted on; the rest are in bounds.
    unsafe {
        let v = _mm512_maskz_loadu_epi16(mask.into(), s.as_ptr().add(off).cast());
        _mm512_cvtepi16_epi32(_mm512_castsi512_si256(v))
    }
}

/// Sixteen i32 at `s[off..]` (the first `min(16, s.len() - off)`, the rest 0).
///
/// # Safety
/// The CPU must support AVX-512F; `mask` selects only elements inside `s[off..]`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load_i32x16(s: &[i32], off: usize, mask: __mmask16) -> __m512i {
    // SAFETY: masked-out elements are neither read nor faulted on; the rest are in bounds.
    unsafe { _mm512_maskz_loadu_epi32(mask, s.as_ptr().add(off).cast()) }
}

/// `v` clamped into int16, in i32 lanes.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn sat16x16(v: __m512i) -> __m512i {
    _mm512_min_epi32(
        _mm512_max_epi32(v, _mm512_set1_epi32(i16::MIN as i32)),
        _mm512_set1_epi32(i16::MAX as i32),
    )
}

/// `a.saturating_add(b)` lane by lane: the wrapping sum, replaced by `i32::MAX` / `i32::MIN`
/// (the sign of `a`) where it overflowed (`a` and `b` of one sign, the sum of the other).
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn adds_epi32x16(a: __m512i, b: __m512i) -> __m512i {
    let s = _mm512_add_epi32(a, b);
    let ov = _mm512_and_si512(_mm512_xor_si512(a, s), _mm512_xor_si512(b, s));
    let ov = _mm512_cmplt_epi32_mask(ov, _mm512_setzero_si512());
    let limit = _mm512_xor_si512(_mm512_srai_epi32::<31>(a), _mm512_set1_epi32(i32::MAX));
    _mm512_mask_blend_epi32(ov, s, limit)
}

/// Gate block `k` (rows `k·H + u..`), units `u..u + 16` of a GRU's `x` part (`which = 0`) or
/// `h` part (`1`), as int16 values in i32 lanes: the int16 scratch as stored, or the int32
/// products clamped as the scalar loop clamps them into that scratch.
///
/// # Safety
/// AVX-512F/BW; `mask` selects only units inside both parts' block `k`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn gru_gate(g: CellGates<'_>, which: usize, off: usize, mask: __mmask16) -> __m512i {
    // SAFETY: the caller's bounds, passed on.
    unsafe {
        match g {
            CellGates::I16(x, h) => load_i16x16(if which == 0 { x } else { h }, off, mask),
            CellGates::I32(x, h) => {
                sat16x16(load_i32x16(if which == 0 { x } else { h }, off, mask))
            }
        }
    }
}

/// An LSTM's gate at `off` for sixteen units, int16 in i32 lanes: the int16 scratch (`I16`'s
/// first slice) as stored, or `sat16(ax.saturating_add(ah))` of the products, as the scalar
/// loop fills that scratch.
///
/// # Safety
/// AVX-512F/BW; `mask` selects only elements inside the slices at `off`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn lstm_gate(g: CellGates<'_>, off: usize, mask: __mmask16) -> __m512i {
    // SAFETY: the caller's bounds, passed on.
    unsafe {
        match g {
            CellGates::I16(s, _) => load_i16x16(s, off, mask),
            CellGates::I32(ax, ah) => sat16x16(adds_epi32x16(
                load_i32x16(ax, off, mask),
                load_i32x16(ah, off, mask),
            )),
        }
    }
}

/// One GRU step's elementwise work (`reference::gru`, module doc), sixteen units per AVX-512
/// step, the last one masked: `gates` are the `3H` gates (`z`, `r`, `n`) of the `x` and `h`
/// products (int16 scratch, or the int32 products themselves), `h16` the Q0.15 state, updated
/// in place with `h` and `y` (int8). Bit-identical with the scalar loop in `gru_i8`: the same
/// i32 operations lane by lane. Returns `false`, writing nothing, when the lengths disagree.
#[cfg(kinglet_avx512)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn avx512_gru_cell(
    p: &GruParams,
    tabs: &ActTables<'_>,
    gates: CellGates<'_>,
    h16: &mut [i16],
    h: &mut [i8],
    y: &mut [i8],
) -> bool {
    let nh = h16.len();
    let (nx, nr) = match gates {
        CellGates::I16(x, r) => (x.len(), r.len()),
        CellGates::I32(x, r) => (x.len(), r.len()),
    };
    if nx != 3 * nh || nr != 3 * nh || h.len() != nh || y.len() != nh {
        return false;
    }
    // SAFETY: called only when `Isa::Avx512Vnni` is the active level (avx512f and avx512bw
    // present); lengths checked above.
    unsafe { avx512_gru_cell_16(p, tabs, gates, h16, h, y) };
    true
}

/// See [`avx512_gru_cell`].
///
/// # Safety
/// AVX-512F and AVX-512BW; both parts of `gates` hold `3 · h16.len()`, `h` and `y`
/// `h16.len()` elements.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn avx512_gru_cell_16(
    p: &GruParams,
    tabs: &ActTables<'_>,
    gates: CellGates<'_>,
    h16: &mut [i16],
    h: &mut [i8],
    y: &mut [i8],
) {
    let nh = h16.len();
    let lo16 = _mm512_set1_epi32(i16::MIN as i32);
    let hi16 = _mm512_set1_epi32(i16::MAX as i32);
    let sat = |v: __m512i| _mm512_min_epi32(_mm512_max_epi32(v, lo16), hi16);
    let half = _mm512_set1_epi32(1 << 14);
    let rsr15 = |v: __m512i| _mm512_srai_epi32::<15>(_mm512_add_epi32(v, half));
    let pair = _mm512_set1_epi64((p.hq_mult as u32 as i64) | ((p.hq_shift as i64) << 32));
    let zp = _mm512_set1_epi64(p.h_zp as i64);
    let mut u = 0;
    while u < nh {
        let mask = lanes_mask16(nh - u);
        // SAFETY: AVX-512F/BW enabled (the contract). Every masked load reads only units
        // `u..u + min(16, nh - u)` of a gate block (`k·nh + u..`, `k < 3`) of either part of
        // `gates` (`3·nh` long) or of `h16`; the masked stores write only those units of
        // `h16`, `h`, `y` (`nh` long). Every `lut16x16` operand is clamped into int16 (`sat`).
        unsafe {
            let gx = |k: usize| gru_gate(gates, 0, k * nh + u, mask);
            let gh = |k: usize| gru_gate(gates, 1, k * nh + u, mask);
            let z = lut16x16(tabs.sig, sat(_mm512_add_epi32(gx(0), gh(0))));
            let r = lut16x16(tabs.sig, sat(_mm512_add_epi32(gx(1), gh(1))));
            let n_in = _mm512_add_epi32(gx(2), rsr15(_mm512_mullo_epi32(r, gh(2))));
            let n = lut16x16(tabs.tanh, sat(n_in));
            let hs = load_i16x16(h16, u, mask);
            let mix = sat(_mm512_add_epi32(
                n,
                rsr15(_mm512_mullo_epi32(z, _mm512_sub_epi32(hs, n))),
            ));
            _mm512_mask_cvtepi32_storeu_epi16(h16.as_mut_ptr().add(u).cast(), mask, mix);
            let hq = rq_clamp8x16(mix, pair, zp);
            _mm512_mask_cvtepi32_storeu_epi8(h.as_mut_ptr().add(u).cast(), mask, hq);
            _mm512_mask_cvtepi32_storeu_epi8(y.as_mut_ptr().add(u).cast(), mask, hq);
        }
        u += 16;
    }
}

/// One LSTM step's elementwise work (`reference::lstm`, module doc), sixteen units per AVX-512
/// step, the last one masked: `gates` are the `4H` gates (`i`, `o`, `f`, `c`: the int16 scratch,
/// or the int32 `x` and `h` products, summed as the scalar loop sums them), `c` the int16
/// cell, updated in place with `h` and `y` (int8). Bit-identical with the scalar `cell`:
/// the same i32 operations lane by lane. Returns `false`, writing nothing, when the lengths
/// disagree.
#[cfg(kinglet_avx512)]
pub(crate) fn avx512_lstm_cell(
    p: &LstmParams,
    tabs: &ActTables<'_>,
    gates: CellGates<'_>,
    c: &mut [i16],
    h: &mut [i8],
    y: &mut [i8],
) -> bool {
    let nh = c.len();
    let ok = match gates {
        CellGates::I16(g, _) => g.len() == 4 * nh,
        CellGates::I32(ax, ah) => ax.len() == 4 * nh && ah.len() == 4 * nh,
    };
    if !ok || h.len() != nh || y.len() != nh {
        return false;
    }
    // SAFETY: called only when `Isa::Avx512Vnni` is the active level (avx512f and avx512bw
    // present); lengths checked above.
    unsafe { avx512_lstm_cell_16(p, tabs, gates, c, h, y) };
    true
}

/// See [`avx512_lstm_cell`].
///
/// # Safety
/// AVX-512F and AVX-512BW; `gates` holds `4 · c.len()` (each slice of `I32`, the first of
/// `I16`), `h` and `y` `c.len()` elements.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn avx512_lstm_cell_16(
    p: &LstmParams,
    tabs: &ActTables<'_>,
    gates: CellGates<'_>,
    c: &mut [i16],
    h: &mut [i8],
    y: &mut [i8],
) {
    let nh = c.len();
    let cell_exp = p.cell_exp.min(15) as i32;
    let lo16 = _mm512_set1_epi32(i16::MIN as i32);
    let hi16 = _mm512_set1_epi32(i16::MAX as i32);
    let sat = |v: __m512i| _mm512_min_epi32(_mm512_max_epi32(v, lo16), hi16);
    // `rsr32(v, n)` for a fixed `n ≥ 1`: add `2^(n-1)` (wrapping), shift arithmetically.
    let rsr = |v: __m512i, n: i32| {
        _mm512_srav_epi32(
            _mm512_add_epi32(v, _mm512_set1_epi32(1 << (n - 1))),
            _mm512_set1_epi32(n),
        )
    };
    let pair = _mm512_set1_epi64((p.hq_mult as u32 as i64) | ((p.hq_shift as i64) << 32));
    let zp = _mm512_set1_epi64(p.h_zp as i64);
    let mut u = 0;
    while u < nh {
        let mask = lanes_mask16(nh - u);
        // SAFETY: AVX-512F/BW enabled (the contract). The masked loads read only units
        // `u..u + min(16, nh - u)` of a gate block (`k·nh + u..`, `k < 4`) of `gates` (`4·nh`
        // long, each slice read) or of `c`; the masked stores write only those units of `c`, `h`, `y`. Every
        // `lut16x16` operand is int16: a sign-extended load, or clamped (`sat`).
        unsafe {
            let ld = |k: usize| lstm_gate(gates, k * nh + u, mask);
            let i = lut16x16(tabs.sig, ld(0));
            let o = lut16x16(tabs.sig, ld(1));
            let f = lut16x16(tabs.sig, ld(2));
            let z = lut16x16(tabs.tanh, ld(3));
            let cc = load_i16x16(c, u, mask);
            let s = _mm512_add_epi32(
                rsr(_mm512_mullo_epi32(f, cc), 15),
                rsr(_mm512_mullo_epi32(i, z), 15 + cell_exp),
            );
            let cu = sat(s);
            _mm512_mask_cvtepi32_storeu_epi16(c.as_mut_ptr().add(u).cast(), mask, cu);
            let tc = if cell_exp >= 3 {
                sat(_mm512_sllv_epi32(cu, _mm512_set1_epi32(cell_exp - 3)))
            } else {
                rsr(cu, 3 - cell_exp)
            };
            let t = lut16x16(tabs.tanh, tc);
            let hq = rq_clamp8x16(_mm512_mullo_epi32(o, t), pair, zp);
            _mm512_mask_cvtepi32_storeu_epi8(h.as_mut_ptr().add(u).cast(), mask, hq);
            _mm512_mask_cvtepi32_storeu_epi8(y.as_mut_ptr().add(u).cast(), mask, hq);
        }
        u += 16;
    }
}

// ---------------------------------------------------------------------------------------------
// Transformer ops on AVX-512 (dispatched from `super::tfsimd`), each bit-identical with its
// scalar definition in `reference`.

/// `(lo as u16) | (hi as u16) << 16`: two int16 values as one dword, the operand layout of
/// `vpdpwssd` (`lo` pairs with the other operand's low half).
#[cfg(kinglet_avx512)]
#[inline]
fn pair_i16(lo: i32, hi: i32) -> u32 {
    (lo as u16 as u32) | ((hi as u16 as u32) << 16)
}

/// Dwords of each of the attention kernel's packed stack operands (keys transposed, their
/// biases, values in quads of rows); shapes that need more take the scalar loop.
#[cfg(kinglet_avx512)]
pub(crate) const ATT_PACK: usize = 4096;
/// Largest key count of the AVX-512 attention (its score and weight rows live on the stack).
#[cfg(kinglet_avx512)]
pub(crate) const ATT_MAX_TK: usize = 512;
/// Query rows of one pass of the AVX-512 attention: every packed key and value vector loaded
/// serves this many rows.
#[cfg(kinglet_avx512)]
const ATT_ROWS: usize = 4;

/// Whether the `exp2` table is one the AVX-512 attention's exactness argument covers: what
/// parse accepts (`exp2[0] = 65536`, every entry in `[0, 65536]`).
/// Sixteen entries per compare (an unsigned `≤ 65536` also rejects the negative ones).
///
/// # Safety
/// AVX-512F.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f")]
unsafe fn exp2_table_ok(exp2: &[I32; EXP2_LEN]) -> bool {
    let max = _mm512_set1_epi32(65536);
    let mut bad = 0u16;
    for c in (0..EXP2_LEN).step_by(16) {
        // SAFETY: entries `c..c + 16 ≤ EXP2_LEN` of the table (`I32` is 4 bytes, alignment 1).
        let e = unsafe { _mm512_loadu_si512(exp2.as_ptr().add(c).cast()) };
        bad |= _mm512_cmpgt_epu32_mask(e, max);
    }
    exp2[0].get() == 65536 && bad == 0
}

/// `round(2^(−a/32) · 2^31)`, `a < 32`: the high factor of [`exp2_q16_x16`].
#[cfg(kinglet_avx512)]
const EXP2_HI: [u32; 32] = [
    2147483648, 2101467502, 2056437387, 2012372174, 1969251188, 1927054196, 1885761398, 1845353420,
    1805811301, 1767116489, 1729250827, 1692196547, 1655936265, 1620452965, 1585730000, 1551751076,
    1518500250, 1485961921, 1454120821, 1422962010, 1392470869, 1362633090, 1333434672, 1304861917,
    1276901417, 1249540052, 1222764986, 1196563654, 1170923762, 1145833280, 1121280436, 1097253708,
];
/// `round(2^(−b/1024) · 2^31)`, `b < 32`: the low factor of [`exp2_q16_x16`].
#[cfg(kinglet_avx512)]
const EXP2_LO: [u32; 32] = [
    2147483648, 2146030505, 2144578345, 2143127168, 2141676973, 2140227759, 2138779525, 2137332272,
    2135885998, 2134440703, 2132996386, 2131553046, 2130110682, 2128669295, 2127228883, 2125789446,
    2124350982, 2122913493, 2121476975, 2120041430, 2118606857, 2117173254, 2115740621, 2114308957,
    2112878262, 2111448536, 2110019777, 2108591984, 2107165158, 2105739297, 2104314402, 2102890470,
];

/// The quantizer's `exp2` table as [`exp2_q16_x16`] computes it (at compile time):
/// `⌊(EXP2_HI[i >> 5] · EXP2_LO[i & 31] + 2^45) / 2^46⌋`.
#[cfg(kinglet_avx512)]
const EXP2_Q16: [i32; EXP2_LEN] = {
    let mut t = [0i32; EXP2_LEN];
    let mut i = 0;
    while i < EXP2_LEN {
        t[i] = ((EXP2_HI[i >> 5] as u64 * EXP2_LO[i & 31] as u64 + (1 << 45)) >> 46) as i32;
        i += 1;
    }
    t
};

/// [`EXP2_HI`] and [`EXP2_LO`] in registers (each as its two halves), for [`exp2_q16_x16`].
#[cfg(kinglet_avx512)]
#[derive(Clone, Copy)]
struct Exp2Factors([__m512i; 4]);

impl Exp2Factors {
    /// Loads the two factor tables.
    ///
    /// # Safety
    /// AVX-512F.
    #[cfg(kinglet_avx512)]
    #[allow(clippy::incompatible_msrv)]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load() -> Exp2Factors {
        // SAFETY: 64-byte loads at offsets 0 and 16 of the two 32-entry tables.
        unsafe {
            Exp2Factors([
                _mm512_loadu_si512(EXP2_HI.as_ptr().cast()),
                _mm512_loadu_si512(EXP2_HI.as_ptr().add(16).cast()),
                _mm512_loadu_si512(EXP2_LO.as_ptr().cast()),
                _mm512_loadu_si512(EXP2_LO.as_ptr().add(16).cast()),
            ])
        }
    }
}

/// `⌊(H[i >> 5 & 31] · L[i & 31] + 2^45) / 2^46⌋` for sixteen lanes `i` ([`EXP2_HI`] `H`,
/// [`EXP2_LO`] `L`, by `vpermi2d`, which reads the low five bits of each index; the product by
/// `vpmuludq`, exact below 2^62): `round(2^(16 − i/1024))` for `i < 1024` to within `2^-14` of
/// the exact value, which no entry comes closer than 0.002 to a half: the quantizer's `exp2`
/// table, as [`exp2_is_product`] checks entry by entry. Lanes hold `i mod 1024` in bits 0..10
/// (higher bits are ignored).
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn exp2_q16_x16(i: __m512i, f: Exp2Factors) -> __m512i {
    let [h0, h1, l0, l1] = f.0;
    let h = _mm512_permutex2var_epi32(h0, _mm512_srli_epi32::<5>(i), h1);
    let l = _mm512_permutex2var_epi32(l0, i, l1);
    let round = _mm512_set1_epi64(1 << 45);
    let even = _mm512_add_epi64(_mm512_mul_epu32(h, l), round);
    let odd = _mm512_add_epi64(
        _mm512_mul_epu32(_mm512_srli_epi64::<32>(h), _mm512_srli_epi64::<32>(l)),
        round,
    );
    // (Below 2^17: the even lanes' quotients in their low dwords, the odd lanes' in the high.)
    _mm512_mask_blend_epi32(
        0xAAAA,
        _mm512_srli_epi64::<46>(even),
        _mm512_srli_epi64::<14>(odd),
    )
}

/// Whether `exp2` is [`EXP2_Q16`], what [`exp2_q16_x16`] computes (the quantizer's table,
/// `round(2^(−i/1024) · 2^16)`): then the attention computes its entries instead of gathering
/// them, and any other table parse accepts takes the gathers.
///
/// # Safety
/// AVX-512F.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f")]
unsafe fn exp2_is_product(exp2: &[I32; EXP2_LEN]) -> bool {
    let mut bad = 0u16;
    for c in (0..EXP2_LEN).step_by(16) {
        // SAFETY: entries `c..c + 16 ≤ EXP2_LEN` of both tables.
        let (e, q) = unsafe {
            (
                _mm512_loadu_si512(exp2.as_ptr().add(c).cast()),
                _mm512_loadu_si512(EXP2_Q16.as_ptr().add(c).cast()),
            )
        };
        bad |= _mm512_cmpneq_epi32_mask(e, q);
    }
    bad == 0
}

/// ATTENTION ([`attention_i8`](super::reference::attention::attention_i8)) on AVX-512 VNNI,
/// bit-identical with the scalar loop. Per block of `steps`, the keys are packed once as
/// unsigned bytes `k + 128`, four columns per dword, transposed to `[head][quad][key]`, with
/// each key's `−q_zp · Σ_c k_c` per head beside them, and the values as raw bytes of four
/// consecutive rows per dword, `[row quad][column]`; then [`ATT_ROWS`] query rows at a time,
/// head by head (each key and value vector loaded serves every row of the pass):
///
/// - scores, sixteen keys per vector: `vpdpbusd` of the packed keys with four of the query's
///   raw bytes broadcast, started from the key's bias: `u_j = Σ_c (k_jc + 128) q_c − q_zp Σ_c
///   k_jc`, which is `s_j` plus a constant of the row (`Σ (q − q_zp)(k − k_zp)` expanded; the
///   terms that do not depend on `j` cancel in `m − s_j`), `|u_j| < 2^26`, exact in i32;
/// - the weights `p_j`: `rq` of `m − s_j` in i64 lanes (the definition, which the scalar `rq`
///   equals), the `exp2` entry computed by [`exp2_q16_x16`] when the table is the quantizer's
///   (checked once per call, [`exp2_is_product`]), else by gather, `rsr` as `(e >> n) + ((e >>
///   (n − 1)) & 1)`; `l = Σ p_j ≤ 2^25` in i32;
/// - `P·V` sixteen columns per vector: `p_j = 256 · ph_j + pl_j` with the bytes `pl = p & 255`
///   and `ph = min(p >> 8, 255)` (so a weight of exactly `2^16` is short by 256), four keys' bytes
///   broadcast against the packed values: `vpdpbusd` sums `A_h = Σ ph_j v_j` and `A_l = Σ pl_j
///   v_j` exactly in i32 (each `< 512 · 255 · 128 < 2^24`); the keys with `p_j = 2^16` (at least
///   the maximum; a bit mask per sixteen keys) add their `v_j` to `A_h` once more, one
///   sign-extended load each; `a = Σ p_j (v_j − v_zp) = 256 · A_h + A_l − v_zp · l` in f64
///   (exact: `|v_zp · l| ≤ 2^32`, `|a| ≤ 255 · l < 2^33`);
/// - `div_round(a · 2^16, l)` in f64: the numerator `|a| · 2^16 + ⌊l/2⌋ < 2^50` is exact, and
///   its product with a reciprocal `2^-51` high ([`recip_high51`]) truncates to the exact floor;
///   then `rq` (its 32-bit path with `y_zp` folded in, when the shift allows) and the int8
///   clamp as a saturating store.
///
/// Returns `false`, writing nothing, for shapes beyond the stack buffers ([`ATT_PACK`],
/// [`ATT_MAX_TK`]), slices that disagree with `p`, or an `exp2` table parse would refuse.
#[cfg(kinglet_avx512)]
pub(crate) fn avx512_attention(
    p: &AttentionParams,
    exp2: &[I32; EXP2_LEN],
    q: &[i8],
    k: &[i8],
    v: &[i8],
    y: &mut [i8],
) -> bool {
    let Some(w) = p.width() else { return false };
    let (tq, tk, dh, heads) = (p.tq, p.tk, p.dh, p.heads);
    let dp = dh.div_ceil(2);
    let tkp = tk.next_multiple_of(16);
    let ok = tq > 0
        && (1..=ATT_MAX_TK).contains(&tk)
        && p.score_mult >= 0
        && (1..=MAX_DH).contains(&dh)
        && heads > 0
        && heads * dp * tkp <= ATT_PACK
        && tk.div_ceil(2) * w <= ATT_PACK
        && [p.q_zp, p.k_zp, p.v_zp]
            .iter()
            .all(|z| (-128..=127).contains(z))
        && Some(q.len()) == tq.checked_mul(w).and_then(|n| n.checked_mul(p.steps))
        && Some(k.len()) == tk.checked_mul(w).and_then(|n| n.checked_mul(p.steps))
        && v.len() == k.len()
        && y.len() == q.len();
    if !ok {
        return false;
    }
    // SAFETY: called only when `Isa::Avx512Vnni` is the active level (avx512f).
    let product = unsafe { exp2_is_product(exp2) };
    // SAFETY: as above.
    if !product && !unsafe { exp2_table_ok(exp2) } {
        return false;
    }
    // Small shapes get small buffers (a quarter or half of `ATT_PACK`): zeroing 48 KB would
    // cost as much as their whole op. (`heads · tkp ≤ heads · ⌈dh/4⌉ · tkp`: the key biases
    // fit too.)
    let need = (heads * dh.div_ceil(4) * tkp).max(tk.div_ceil(4) * w);
    if need <= ATT_PACK / 4 {
        attention_packed::<{ ATT_PACK / 4 }>(p, (exp2, product), q, k, v, y);
    } else if need <= ATT_PACK / 2 {
        attention_packed::<{ ATT_PACK / 2 }>(p, (exp2, product), q, k, v, y);
    } else {
        attention_packed::<ATT_PACK>(p, (exp2, product), q, k, v, y);
    }
    true
}

/// A stack buffer of the AVX-512 kernels, 64-byte aligned so that their 64-byte loads and stores
/// never straddle two cache lines (a straddling load costs two L1 accesses: packed products ran
/// about 1.8x slower from a buffer at a 32-byte offset in a scratch timing loop: 0.237 against
/// 0.134 ns per `vpdpbusd`).
#[cfg(kinglet_avx512)]
#[repr(C, align(64))]
pub(crate) struct Align64<T>(pub(crate) T);

/// One block's packed operands of [`avx512_attention`].
#[cfg(kinglet_avx512)]
struct AttOperands<'a> {
    /// Keys as bytes `k + 128`, four columns per dword (`0x80` past `dh`),
    /// `kq[(h·dq + c)·tkp + j]` for head `h`, quad `c < dq = ⌈dh/4⌉`, key `j < tkp`.
    kq: &'a [u32],
    /// `kbias[h·tkp + j] = −q_zp · Σ_c k[j, h·dh + c]`.
    kbias: &'a [i32],
    /// `vq[r·w + c]`: the bytes `v[4r + i, c]`, `i < 4` (0 past the last row).
    vq: &'a [u32],
    /// The block's values as stored (`tk · w` bytes), for the keys of weight `2^16`.
    vb: &'a [i8],
    /// The `exp2` table is [`exp2_q16_x16`]'s: its entries are computed, not gathered.
    product: bool,
}

/// The stack scratch of one pass of [`ATT_ROWS`] query rows of [`avx512_attention`] (64-byte
/// aligned, as [`Align64`]).
#[cfg(kinglet_avx512)]
#[repr(C, align(64))]
struct AttScratch {
    /// Scores of one head, `tkp` per row.
    sc: [i32; ATT_ROWS * ATT_MAX_TK],
    /// Weight bytes of one head, four keys per dword: `pb[r]` the low bytes `p & 255` of row
    /// `r`, `pb[ATT_ROWS + r]` the high bytes `min(p >> 8, 255)` (0 past the row's keys).
    pb: [[u32; ATT_MAX_TK / 4]; 2 * ATT_ROWS],
    /// The query rows as raw bytes, four columns per dword, each head's last dword padded with
    /// 0 (`heads · ⌈dh/4⌉ ≤ 256`).
    qq: [[u32; 256]; ATT_ROWS],
    /// Per row and block of sixteen keys, the keys whose weight is `2^16`.
    em: [[u16; ATT_MAX_TK / 16]; ATT_ROWS],
}

/// The body of [`avx512_attention`] with stack buffers of `N` dwords.
///
/// `p` and the slices accepted by [`avx512_attention`], with `heads · ⌈dh/4⌉ · ⌈tk/16⌉·16 ≤ N`
/// and `⌈tk/4⌉ · heads · dh ≤ N`; runs only where `Isa::Avx512Vnni` is the active level.
#[cfg(kinglet_avx512)]
fn attention_packed<const N: usize>(
    p: &AttentionParams,
    (exp2, product): (&[I32; EXP2_LEN], bool),
    q: &[i8],
    k: &[i8],
    v: &[i8],
    y: &mut [i8],
) {
    let w = p.heads * p.dh;
    let (tq, tk, dh) = (p.tq, p.tk, p.dh);
    let dq = dh.div_ceil(4);
    let tkp = tk.next_multiple_of(16);
    let (mut kqa, mut kba, mut vqa) = (Align64([0u32; N]), Align64([0i32; N]), Align64([0u32; N]));
    let (kq, kbias, vq) = (&mut kqa.0[..], &mut kba.0[..], &mut vqa.0[..]);
    // Zeroed in place (a struct literal of arrays is built, then copied).
    let mut scratch = core::mem::MaybeUninit::<AttScratch>::zeroed();
    // SAFETY: every field is an array of integers, for which all zero bytes are a value.
    let scratch = unsafe { scratch.assume_init_mut() };
    for s in 0..p.steps {
        let kb = &k[s * tk * w..(s + 1) * tk * w];
        let vb = &v[s * tk * w..(s + 1) * tk * w];
        if dh % 4 == 0 {
            // SAFETY: called only when `Isa::Avx512Vnni` is the active level (avx512f,
            // avx512bw); `kq` holds `heads · dq · tkp = (w / 4) · tkp ≤ N` dwords, `kb` `tk · w`
            // bytes.
            unsafe { avx512_pack_key_quads(kb, w, tk, kq) };
        } else {
            for (j, kr) in kb.chunks_exact(w).enumerate() {
                for (h, kh) in kr.chunks_exact(dh).enumerate() {
                    for (c, four) in kh.chunks(4).enumerate() {
                        let mut b = [0x80u8; 4];
                        for (o, &x) in b.iter_mut().zip(four) {
                            *o = x as u8 ^ 0x80;
                        }
                        kq[(h * dq + c) * tkp + j] = u32::from_le_bytes(b);
                    }
                }
            }
        }
        // SAFETY: as above (and avx512vnni); `kq` packed for `heads · dq` quads of `tkp` keys,
        // `kbias` holds `heads · tkp ≤ N`, `vq` `⌈tk/4⌉ · w ≤ N` dwords, `vb` `tk · w` bytes.
        unsafe {
            avx512_key_bias(kq, p.heads, dq, tkp, p.q_zp, kbias);
            avx512_pack_value_quads(vb, w, vq);
        }
        let ops = AttOperands {
            kq,
            kbias,
            vq,
            vb,
            product,
        };
        let qb = &q[s * tq * w..(s + 1) * tq * w];
        let yb = &mut y[s * tq * w..(s + 1) * tq * w];
        let mut i0 = 0;
        while i0 < tq {
            let rows = (tq - i0).min(ATT_ROWS);
            // SAFETY: as above; rows `i0..i0 + rows ≤ tq` of this block, `ops` packed for it.
            unsafe {
                match rows {
                    4 => att_rows::<4>(p, exp2, qb, yb, i0, &ops, scratch),
                    3 => att_rows::<3>(p, exp2, qb, yb, i0, &ops, scratch),
                    2 => att_rows::<2>(p, exp2, qb, yb, i0, &ops, scratch),
                    _ => att_rows::<1>(p, exp2, qb, yb, i0, &ops, scratch),
                }
            }
            i0 += rows;
        }
    }
}

/// The 16 × 16 dword transpose: `out[d]` lane `i` is `r[i]` lane `d` (`vpunpck*`, then 128-bit
/// lane shuffles).
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose_16x16_epi32(r: &[__m512i; 16]) -> [__m512i; 16] {
    // Per 128-bit lane `L`: `a[g][m]` holds rows `4g .. 4g + 4` of dword `4L + m`.
    let mut a = [[_mm512_setzero_si512(); 4]; 4];
    for (g, ag) in a.iter_mut().enumerate() {
        let (l0, h0) = (
            _mm512_unpacklo_epi32(r[4 * g], r[4 * g + 1]),
            _mm512_unpackhi_epi32(r[4 * g], r[4 * g + 1]),
        );
        let (l1, h1) = (
            _mm512_unpacklo_epi32(r[4 * g + 2], r[4 * g + 3]),
            _mm512_unpackhi_epi32(r[4 * g + 2], r[4 * g + 3]),
        );
        *ag = [
            _mm512_unpacklo_epi64(l0, l1),
            _mm512_unpackhi_epi64(l0, l1),
            _mm512_unpacklo_epi64(h0, h1),
            _mm512_unpackhi_epi64(h0, h1),
        ];
    }
    let mut out = [_mm512_setzero_si512(); 16];
    #[allow(clippy::needless_range_loop)] // `m` indexes the inner arrays of `a`
    for m in 0..4 {
        let ab_lo = _mm512_shuffle_i32x4::<0b01_00_01_00>(a[0][m], a[1][m]);
        let ab_hi = _mm512_shuffle_i32x4::<0b11_10_11_10>(a[0][m], a[1][m]);
        let cd_lo = _mm512_shuffle_i32x4::<0b01_00_01_00>(a[2][m], a[3][m]);
        let cd_hi = _mm512_shuffle_i32x4::<0b11_10_11_10>(a[2][m], a[3][m]);
        out[m] = _mm512_shuffle_i32x4::<0b10_00_10_00>(ab_lo, cd_lo);
        out[4 + m] = _mm512_shuffle_i32x4::<0b11_01_11_01>(ab_lo, cd_lo);
        out[8 + m] = _mm512_shuffle_i32x4::<0b10_00_10_00>(ab_hi, cd_hi);
        out[12 + m] = _mm512_shuffle_i32x4::<0b11_01_11_01>(ab_hi, cd_hi);
    }
    out
}

/// The key packing of [`avx512_attention`] for `dh` a multiple of 4: a key row as bytes
/// `k + 128` is its `w / 4` quads in `[head][quad]` order, so `kq[d·tkp + j]` (`tkp =
/// ⌈tk/16⌉·16`) is dword `d` of row `j`: sixteen keys × sixteen dwords at a time, a 16 × 16
/// dword transpose; keys `tk..tkp` are `0x80` bytes.
///
/// # Safety
/// AVX-512F/BW; `w` a multiple of 4, `k.len() = tk · w`, `kq.len() ≥ (w / 4) · tkp`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn avx512_pack_key_quads(k: &[i8], w: usize, tk: usize, kq: &mut [u32]) {
    let tkp = tk.next_multiple_of(16);
    let dwords = w / 4;
    let flip = _mm512_set1_epi8(i8::MIN);
    for j0 in (0..tkp).step_by(16) {
        for d0 in (0..dwords).step_by(16) {
            // Bytes `4·d0 .. 4·d0 + 64` of each of the sixteen keys.
            let bytes = w - 4 * d0;
            let mask: __mmask64 = if bytes >= 64 { !0 } else { (1u64 << bytes) - 1 };
            let mut r = [_mm512_setzero_si512(); 16];
            // All sixteen, keys past `tk` with empty masks (a fixed count keeps `r` in
            // registers).
            for (i, v) in r.iter_mut().enumerate() {
                let m = if j0 + i < tk { mask } else { 0 };
                // SAFETY: masked to bytes `4·d0 .. min(4·d0 + 64, w)` of key `j0 + i < tk`;
                // nothing is read past `tk` (the address formed with `wrapping_add`).
                let x = unsafe {
                    _mm512_maskz_loadu_epi8(
                        m,
                        k.as_ptr().wrapping_add((j0 + i) * w + 4 * d0).cast(),
                    )
                };
                *v = _mm512_xor_si512(x, flip);
            }
            for (dd, &v) in transpose_16x16_epi32(&r).iter().enumerate() {
                let d = d0 + dd;
                if d < dwords {
                    // SAFETY: `d·tkp + j0 + 16 ≤ (w / 4) · tkp ≤ kq.len()`.
                    unsafe { _mm512_storeu_si512(kq.as_mut_ptr().add(d * tkp + j0).cast(), v) };
                }
            }
        }
    }
}

/// `kbias[h·tkp + j] = −q_zp · Σ_c k[j, h·dh + c]` from the packed keys: the head's bytes
/// (`k + 128`, the padding `0x80`) summed by `vpdpbusd` against ones, less `4 · 128` per quad.
/// Wrapping i32, exact (`|Σ k| ≤ 2^15`).
///
/// # Safety
/// AVX-512F/BW/VNNI; `kq` holds `heads · dq` quad rows of `tkp` keys (a multiple of 16),
/// `kbias.len() ≥ heads · tkp`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn avx512_key_bias(
    kq: &[u32],
    heads: usize,
    dq: usize,
    tkp: usize,
    q_zp: i32,
    kbias: &mut [i32],
) {
    let ones = _mm512_set1_epi8(1);
    let off = _mm512_set1_epi32(512 * dq as i32);
    let nzp = _mm512_set1_epi32(q_zp.wrapping_neg());
    for h in 0..heads {
        for j in (0..tkp).step_by(16) {
            let mut s = _mm512_setzero_si512();
            for c in 0..dq {
                // SAFETY: quad row `h·dq + c < heads · dq`, keys `j..j + 16 ≤ tkp`.
                let kv =
                    unsafe { _mm512_loadu_si512(kq.as_ptr().add((h * dq + c) * tkp + j).cast()) };
                s = _mm512_dpbusd_epi32(s, kv, ones);
            }
            let b = _mm512_mullo_epi32(_mm512_sub_epi32(s, off), nzp);
            // SAFETY: `h·tkp + j + 16 ≤ heads · tkp ≤ kbias.len()`.
            unsafe { _mm512_storeu_si512(kbias.as_mut_ptr().add(h * tkp + j).cast(), b) };
        }
    }
}

/// `vq[r·w + c]` = the bytes `v[4r + i, c]`, `i < 4` (0 past the last row): sixteen columns per
/// step, each row zero-extended to dwords and shifted into its byte.
///
/// # Safety
/// AVX-512F/BW; `v.len()` a multiple of `w ≥ 1`, `vq.len() ≥ ⌈v.len() / w / 4⌉ · w`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn avx512_pack_value_quads(v: &[i8], w: usize, vq: &mut [u32]) {
    let rows = v.len() / w;
    for r in 0..rows.div_ceil(4) {
        let mut c = 0;
        while c < w {
            let mask = lanes_mask16(w - c);
            let mut d = _mm512_setzero_si512();
            for i in 0..4 {
                if 4 * r + i < rows {
                    // SAFETY: masked to columns `c..min(c + 16, w)` of row `4r + i < rows`.
                    let x = unsafe {
                        _mm512_maskz_loadu_epi8(
                            mask.into(),
                            v.as_ptr().add((4 * r + i) * w + c).cast(),
                        )
                    };
                    let x = _mm512_cvtepu8_epi32(_mm512_castsi512_si128(x));
                    d = _mm512_or_si512(d, _mm512_sllv_epi32(x, _mm512_set1_epi32(8 * i as i32)));
                }
            }
            // SAFETY: the same columns of quad row `r < ⌈rows/4⌉`: in bounds by the contract.
            unsafe { _mm512_mask_storeu_epi32(vq.as_mut_ptr().add(r * w + c).cast(), mask, d) };
            c += 16;
        }
    }
}

/// `(1 / den) · (1 − 2^-48)`, rounded: a reciprocal a little low, for [`ln_norm_x16`].
#[cfg(kinglet_avx512)]
#[inline]
fn recip_low(den: f64) -> f64 {
    (1.0 / den) * (1.0 - 1.0 / 281_474_976_710_656.0)
}

/// `(1 / den) · (1 + 2^-51)`, rounded: a reciprocal a little high, for the attention's weighted
/// means. For integral `num < 2^50` and `den ≥ 1`, `num · recip_high51(den)` (rounded) is `x (1 +
/// 2^-51 + ε)` with `x = num / den` and `|ε| ≤ 3.01 · 2^-53 < 2^-51` (three roundings), so in
/// `(x, x + 1.76 · 2^-51 · x]`, and `1.76 · 2^-51 · x < 0.88 / den`, while the next integer above
/// a non-integral `x` is at least `1 / den` away: its truncation is `⌊x⌋` exactly.
#[cfg(kinglet_avx512)]
#[inline]
fn recip_high51(den: f64) -> f64 {
    (1.0 / den) * (1.0 + 1.0 / 2_251_799_813_685_248.0)
}

/// Scores of `R` query rows × `NB` blocks of sixteen keys from block `b0`, for one head, from
/// the keys' biases; stored to `sc` (row `r` at `r·tkp`), and each row's maximum over its
/// visible keys (`ns[r]`) taken into `mx[r]`. `kq_h` the head's packed keys (`dq` quad rows of
/// `tkp`), `kb_h` its key biases, `qq[r]` row `r`'s quads of this head. Separate accumulators,
/// so the `vpdpbusd` chains overlap, and each key vector serves `R` rows.
///
/// # Safety
/// AVX-512F/BW/VNNI; `(b0 + NB) · 16 ≤ tkp`, `kq_h` valid for `dq · tkp` dwords, `kb_h` for
/// `tkp`, each `qq[r]` for `dq`, `sc` for `R · tkp` i32.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv, clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn att_score_tile<const R: usize, const NB: usize>(
    kq_h: *const u32,
    kb_h: *const i32,
    qq: [*const u32; R],
    (dq, tkp, b0): (usize, usize, usize),
    ns: &[usize; R],
    sc: *mut i32,
    mx: &mut [__m512i; R],
) {
    let mut acc = [[_mm512_setzero_si512(); NB]; R];
    for b in 0..NB {
        // SAFETY: keys `(b0 + b)·16 .. + 16 ≤ tkp` of the biases.
        let kb = unsafe { _mm512_loadu_si512(kb_h.add((b0 + b) * 16).cast()) };
        for a in acc.iter_mut() {
            a[b] = kb;
        }
    }
    for c in 0..dq {
        let mut kv = [_mm512_setzero_si512(); NB];
        for (b, x) in kv.iter_mut().enumerate() {
            // SAFETY: quad row `c < dq`, keys `(b0 + b)·16 .. + 16 ≤ tkp`.
            *x = unsafe { _mm512_loadu_si512(kq_h.add(c * tkp + (b0 + b) * 16).cast()) };
        }
        for (a, &qr) in acc.iter_mut().zip(&qq) {
            // SAFETY: quad `c < dq` of the row.
            let qv = _mm512_set1_epi32(unsafe { qr.add(c).read() } as i32);
            for (ab, &x) in a.iter_mut().zip(&kv) {
                *ab = _mm512_dpbusd_epi32(*ab, x, qv);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        for (b, &s) in a.iter().enumerate() {
            let j = (b0 + b) * 16;
            mx[r] = _mm512_mask_max_epi32(mx[r], lanes_mask16(ns[r].saturating_sub(j)), mx[r], s);
            // SAFETY: `r·tkp + j + 16 ≤ R · tkp`.
            unsafe { _mm512_storeu_si512(sc.add(r * tkp + j).cast(), s) };
        }
    }
}

/// `R` query rows from `i0` of one block of [`avx512_attention`], head by head: scores and
/// maxima ([`att_score_tile`]), the weights of each row, then `P·V` (each value vector serving
/// the `R` rows) and the outputs.
///
/// # Safety
/// AVX-512F/BW/VNNI; `p` accepted by [`avx512_attention`], `1 ≤ R ≤ ATT_ROWS`, `i0 + R ≤ tq`,
/// `qb` and `yb` the block's `tq · w` query and output bytes, `ops` packed by it for this block.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv, clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
unsafe fn att_rows<const R: usize>(
    p: &AttentionParams,
    exp2: &[I32; EXP2_LEN],
    qb: &[i8],
    yb: &mut [i8],
    i0: usize,
    ops: &AttOperands<'_>,
    scratch: &mut AttScratch,
) {
    let (dh, heads, tk) = (p.dh, p.heads, p.tk);
    let w = heads * dh;
    let dq = dh.div_ceil(4);
    let tkp = tk.next_multiple_of(16);
    // Visible keys per row (with `causal`, later rows see more).
    let ns: [usize; R] = core::array::from_fn(|r| if p.causal { (i0 + r + 1).min(tk) } else { tk });
    let nmax = ns[R - 1];
    let blocks = nmax.div_ceil(16);
    let quads = nmax.div_ceil(4);
    let AttScratch { sc, pb, qq, em } = scratch;
    // The query rows as raw bytes, four columns per dword, each head's last quad padded with 0
    // (it meets the keys' `0x80` padding: adds nothing).
    for (r, qd) in qq.iter_mut().enumerate().take(R) {
        let qr = &qb[(i0 + r) * w..(i0 + r + 1) * w];
        if dh % 4 == 0 {
            for (d, four) in qd.iter_mut().zip(qr.chunks_exact(4)) {
                *d = u32::from_le_bytes([
                    four[0] as u8,
                    four[1] as u8,
                    four[2] as u8,
                    four[3] as u8,
                ]);
            }
        } else {
            for (h, qh) in qr.chunks_exact(dh).enumerate() {
                for (c, four) in qh.chunks(4).enumerate() {
                    let mut b = [0u8; 4];
                    for (o, &x) in b.iter_mut().zip(four) {
                        *o = x as u8;
                    }
                    qd[h * dq + c] = u32::from_le_bytes(b);
                }
            }
        }
    }
    // `rq` of the score gaps for `acc ≥ 0`, `mult ∈ [0, 2^31)`: the product and rounding term
    // are below 2^62 as u64, the result non-negative, clamped to `i32::MAX`; even and odd lanes
    // in turn.
    let s = p.score_shift.clamp(-30, 31);
    let mult = _mm512_set1_epi64(p.score_mult as i64);
    let round = _mm512_set1_epi64(1i64 << (30 + s));
    let shift = _mm512_set1_epi64((31 + s) as i64);
    let imax = _mm512_set1_epi64(i32::MAX as i64);
    let shift_hi = _mm512_set1_epi32((s - 1).max(0));
    // For `s ≥ 2` the rounding term `2^(30 + s)` is `2^(s − 2)` in the high dword.
    let round_hi = _mm512_set1_epi32(1 << (s - 2).max(0));
    let one = _mm512_set1_epi32(1);
    let full = _mm512_set1_epi32(65536);
    // SAFETY: AVX-512F, enabled here.
    let factors = unsafe { Exp2Factors::load() };
    // The output's constants.
    let out_pair = _mm512_set1_epi64(((p.out_shift as i64) << 32) | p.out_mult as u32 as i64);
    // The short output path: `rq`'s 32-bit path with `y_zp` folded into its final rounding,
    // `y_zp + ((X + 1) >> 1) = (X + 1 + 2 y_zp) >> 1` (`|X| ≤ 2^23` for `|mean| < 2^24`, so
    // exact in i32 for `|y_zp| ≤ 2^28`), then the saturating `vpmovsdb` store as the clamp.
    let out_fast = (2..=31).contains(&p.out_shift);
    let out_short = out_fast && (-(1 << 28)..=1 << 28).contains(&p.y_zp);
    let out_rq = (
        _mm512_set1_epi32(p.out_mult),
        _mm512_set1_epi64(p.out_mult as i64),
        _mm512_set1_epi32(p.out_shift - 2),
    );
    let out_round = _mm512_set1_epi32(1i32.wrapping_add(p.y_zp.wrapping_mul(2)));
    let small_zp = (-(1 << 29)..=1 << 29).contains(&p.y_zp);
    let y_zp = _mm512_set1_epi32(p.y_zp);
    let scp = sc.as_mut_ptr();
    for h in 0..heads {
        // Pass 1: scores and each row's maximum.
        let kq_h = ops.kq.as_ptr().wrapping_add(h * dq * tkp);
        let kb_h = ops.kbias.as_ptr().wrapping_add(h * tkp);
        let qh: [*const u32; R] = core::array::from_fn(|r| qq[r].as_ptr().wrapping_add(h * dq));
        let mut mx = [_mm512_set1_epi32(i32::MIN); R];
        let mut b0 = 0;
        while b0 < blocks {
            let nb = (blocks - b0).min(4);
            let g = (dq, tkp, b0);
            // SAFETY: `(b0 + nb)·16 ≤ blocks · 16 ≤ tkp`; head `h < heads` of the packed keys
            // (`heads · dq` quad rows of `tkp`) and biases (`heads · tkp`); quads `h·dq ..
            // (h + 1)·dq ≤ 256` of each row; `sc` holds `ATT_ROWS · ATT_MAX_TK ≥ R · tkp`.
            unsafe {
                match nb {
                    1 => att_score_tile::<R, 1>(kq_h, kb_h, qh, g, &ns, scp, &mut mx),
                    2 => att_score_tile::<R, 2>(kq_h, kb_h, qh, g, &ns, scp, &mut mx),
                    3 => att_score_tile::<R, 3>(kq_h, kb_h, qh, g, &ns, scp, &mut mx),
                    _ => att_score_tile::<R, 4>(kq_h, kb_h, qh, g, &ns, scp, &mut mx),
                }
            }
            b0 += nb;
        }
        // Pass 2: weights `p_j = pow2(rq(m − s_j))` (0 past the row's keys), their sums, their
        // bytes, the keys of weight 2^16.
        let mut sums = [0i64; R];
        for r in 0..R {
            let m = _mm512_set1_epi32(_mm512_reduce_max_epi32(mx[r]));
            let mut l = _mm512_setzero_si512();
            for (b, emb) in em[r].iter_mut().enumerate().take(blocks) {
                let j = b * 16;
                // SAFETY: `r·tkp + j + 16 ≤ R · tkp`, written in pass 1.
                let d = _mm512_sub_epi32(m, unsafe {
                    _mm512_loadu_si512(scp.add(r * tkp + j).cast())
                });
                let t = if s >= 2 {
                    // `⌊v / 2^(31 + s)⌋ = ⌊⌊v / 2^32⌋ / 2^(s − 1)⌋`, and `⌊v / 2^32⌋ = ⌊d · mult
                    // / 2^32⌋ + 2^(s − 2)` (the rounding term a whole multiple of 2^32): the
                    // products' high dwords (below 2^25) plus that, shifted; no clamp needed.
                    let even = _mm512_mul_epu32(d, mult);
                    let odd = _mm512_mul_epu32(_mm512_srli_epi64::<32>(d), mult);
                    let hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64::<32>(even), odd);
                    _mm512_srlv_epi32(_mm512_add_epi32(hi, round_hi), shift_hi)
                } else if s == 1 {
                    let even = _mm512_add_epi64(_mm512_mul_epu32(d, mult), round);
                    let odd =
                        _mm512_add_epi64(_mm512_mul_epu32(_mm512_srli_epi64::<32>(d), mult), round);
                    // As above with the rounding term `2^31` inside the 64-bit sums.
                    let hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64::<32>(even), odd);
                    _mm512_srlv_epi32(hi, shift_hi)
                } else {
                    let even = _mm512_add_epi64(_mm512_mul_epu32(d, mult), round);
                    let odd =
                        _mm512_add_epi64(_mm512_mul_epu32(_mm512_srli_epi64::<32>(d), mult), round);
                    let fin = |v: __m512i| _mm512_min_epu64(_mm512_srlv_epi64(v, shift), imax);
                    _mm512_or_si512(fin(even), _mm512_slli_epi64::<32>(fin(odd)))
                };
                let sh = _mm512_srli_epi32::<10>(t);
                // Lanes whose weight is not 0: visible keys with `sh < 31`. Only they are looked
                // up (a gather is slow; many lanes of a sharp softmax are dead).
                let live = lanes_mask16(ns[r].saturating_sub(j))
                    & _mm512_cmplt_epu32_mask(sh, _mm512_set1_epi32(31));
                let e = if ops.product {
                    // The entry computed from `t`'s low ten bits.
                    exp2_q16_x16(t, factors)
                } else if live == 0 {
                    _mm512_setzero_si512()
                } else {
                    // SAFETY: every index is in `0..1024`, inside the 1024-entry table; lanes
                    // outside `live` are not read.
                    let idx = _mm512_and_si512(t, _mm512_set1_epi32(1023));
                    unsafe {
                        _mm512_mask_i32gather_epi32::<4>(
                            _mm512_setzero_si512(),
                            live,
                            idx,
                            exp2.as_ptr().cast(),
                        )
                    }
                };
                // `rsr(e, sh) = (e + ⌊2^sh / 2⌋) >> sh` for `e ∈ [0, 2^16]`, `sh ≤ 30` (below
                // 2^31), 0 outside `live` (past the row's keys, or `sh ≥ 31`, whose weight is 0).
                let pj = _mm512_maskz_srlv_epi32(
                    live,
                    _mm512_add_epi32(e, _mm512_srli_epi32::<1>(_mm512_sllv_epi32(one, sh))),
                    sh,
                );
                l = _mm512_add_epi32(l, pj);
                *emb = _mm512_cmpeq_epi32_mask(pj, full);
                // SAFETY: four dwords at `j / 4 + 4 ≤ tkp / 4 ≤ ATT_MAX_TK / 4` of each row.
                unsafe {
                    _mm_storeu_si128(
                        pb[r].as_mut_ptr().add(j / 4).cast(),
                        _mm512_cvtepi32_epi8(pj),
                    );
                    _mm_storeu_si128(
                        pb[ATT_ROWS + r].as_mut_ptr().add(j / 4).cast(),
                        _mm512_cvtusepi32_epi8(_mm512_srli_epi32::<8>(pj)),
                    );
                }
            }
            sums[r] = _mm512_reduce_add_epi32(l) as i64; // [2^16, 2^25]
        }
        // Pass 3: P·V sixteen columns per step, every row at once, then the outputs.
        let col0 = h * dh;
        let mut c = 0;
        while c < dh {
            let mask = lanes_mask16(dh - c);
            let mut al = [_mm512_setzero_si512(); R];
            let mut ah = [_mm512_setzero_si512(); R];
            let vcol = ops.vq.as_ptr().wrapping_add(col0 + c);
            for qd in 0..quads {
                // SAFETY: columns `col0 + c .. col0 + min(c + 16, dh) ≤ w` of quad row
                // `qd < ⌈tk/4⌉`, masked.
                let x = unsafe { _mm512_maskz_loadu_epi32(mask, vcol.add(qd * w).cast()) };
                for r in 0..R {
                    // SAFETY: `qd < quads ≤ tkp / 4`.
                    let (bl, bh) = unsafe {
                        (
                            *pb.get_unchecked(r).get_unchecked(qd),
                            *pb.get_unchecked(ATT_ROWS + r).get_unchecked(qd),
                        )
                    };
                    al[r] = _mm512_dpbusd_epi32(al[r], _mm512_set1_epi32(bl as i32), x);
                    ah[r] = _mm512_dpbusd_epi32(ah[r], _mm512_set1_epi32(bh as i32), x);
                }
            }
            for r in 0..R {
                // The keys of weight 2^16, short by 256 · v in `ah`.
                let mut corr = _mm512_setzero_si512();
                for (b, &e) in em[r].iter().enumerate().take(blocks) {
                    let mut e = e;
                    while e != 0 {
                        let j = b * 16 + e.trailing_zeros() as usize;
                        // SAFETY: key `j < ns[r] ≤ tk` (weight 0 past it), columns `col0 + c
                        // .. col0 + min(c + 16, dh) ≤ w` of its row, masked.
                        let x = unsafe {
                            _mm512_maskz_loadu_epi8(
                                mask.into(),
                                ops.vb.as_ptr().add(j * w + col0 + c).cast(),
                            )
                        };
                        corr =
                            _mm512_add_epi32(corr, _mm512_cvtepi8_epi32(_mm512_castsi512_si128(x)));
                        e &= e - 1;
                    }
                }
                let ah = _mm512_add_epi32(ah[r], corr);
                let l = sums[r];
                let inv = _mm512_set1_pd(recip_high51(l as f64));
                let half_l = _mm512_set1_pd((l >> 1) as f64);
                let zl = _mm512_set1_pd(-(p.v_zp as i64 * l) as f64);
                // `mean = div_round(a · 2^16, l)` with `a = 256 · A_h + A_l − v_zp · l`, in
                // f64, eight columns at a time: `a` (`< 2^33`) and `num = |a| · 2^16 + ⌊l/2⌋ <
                // 2^50` are exact, and `num · recip_high51(l)` truncates to `⌊num / l⌋` (see
                // `recip_high51`); the sign applied before the truncation toward zero.
                let mean8 = |h8: __m256i, l8: __m256i| {
                    let af = _mm512_fmadd_pd(
                        _mm512_cvtepi32_pd(h8),
                        _mm512_set1_pd(256.0),
                        _mm512_add_pd(_mm512_cvtepi32_pd(l8), zl),
                    );
                    let num = _mm512_fmadd_pd(_mm512_abs_pd(af), _mm512_set1_pd(65536.0), half_l);
                    let q = _mm512_mul_pd(num, inv);
                    let neg = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(af, _mm512_setzero_pd());
                    _mm512_cvttpd_epi32(_mm512_mask_sub_pd(q, neg, _mm512_setzero_pd(), q))
                };
                let mean = _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(mean8(
                        _mm512_castsi512_si256(ah),
                        _mm512_castsi512_si256(al[r]),
                    )),
                    mean8(
                        _mm512_extracti64x4_epi64::<1>(ah),
                        _mm512_extracti64x4_epi64::<1>(al[r]),
                    ),
                );
                let o = if out_short {
                    let (mult, mult_odd, sh2) = out_rq;
                    let ev = _mm512_mul_epi32(mean, mult);
                    let od = _mm512_mul_epi32(_mm512_srli_epi64::<32>(mean), mult_odd);
                    let hi32 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64::<32>(ev), od);
                    _mm512_srai_epi32::<1>(_mm512_add_epi32(
                        _mm512_srav_epi32(hi32, sh2),
                        out_round,
                    ))
                } else {
                    let o = rq_i32x16(mean, out_pair, out_pair, out_fast);
                    // `y_zp + o` saturating in i32: the saturating store below gives what the
                    // exact i64 sum would. (The 32-bit `rq` path gives `|o| ≤ 2^29 + 1`: with a
                    // small `y_zp` no overflow.)
                    if out_fast && small_zp {
                        _mm512_add_epi32(y_zp, o)
                    } else {
                        adds_epi32x16(y_zp, o)
                    }
                };
                // SAFETY: the mask covers only columns `col0 + c .. col0 + min(c + 16, dh)` of
                // output row `i0 + r < tq` of the block; `vpmovsdb` saturates to int8 (the
                // clamp).
                unsafe {
                    _mm512_mask_cvtsepi32_storeu_epi8(
                        yb.as_mut_ptr().add((i0 + r) * w + col0 + c).cast(),
                        mask,
                        o,
                    )
                };
            }
            c += 16;
        }
    }
}

/// `⌊√v⌋` exactly ([`isqrt`](super::reference::layernorm::isqrt)'s result) for `v < 2^62`:
/// the f64 square root of `v` (rounded) is within one of it, and one integer step each way
/// corrects that (`r ≤ 2^31`, so `(r + 1)²` fits a u64). The square root is SSE2's `sqrtpd`
/// (correctly rounded, as `f64::sqrt` is): `f64::sqrt` needs `std`, and the crate also builds
/// without it for x86_64 (the firmware's build script runs it on the host).
#[cfg(kinglet_avx512)]
pub(crate) fn isqrt_below_2_62(v: u64) -> u64 {
    // SAFETY: SSE2 is part of every x86_64 CPU; register-only. (`unsafe` is needed before Rust
    // 1.87 made baseline intrinsics safe to call.)
    #[allow(unused_unsafe)]
    let s = unsafe { _mm_cvtsd_f64(_mm_sqrt_pd(_mm_set_sd(v as f64))) };
    let mut r = s as u64;
    while r * r > v {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= v {
        r += 1;
    }
    r
}

/// LAYERNORM ([`layernorm_i8`](super::reference::layernorm::layernorm_i8)) on AVX-512,
/// bit-identical with the scalar loop. Per row: `S = Σ x` and `Q = Σ x²` with `vpmaddwd` (exact
/// i32: `|S| ≤ 2^22`, `Q ≤ 2^29`), and `var = Σ diff² / d + eps_q = d·Q − S² + eps_q` (the same
/// integer: `Σ (d·x − S)² = d² Q − d S²`); `sd` by [`isqrt_below_2_62`] (`var < 2^61 + 2^31`);
/// then, eight rows at a time and sixteen columns per step (each column's multiplier, shift and
/// `beta` loaded once for the eight rows): `n_i = div_round(diff_i · 4096, sd)` in f64
/// ([`ln_norm_fast_x16`] for `sd ≤ 2^22`, else [`ln_norm_x16`]), `rq` by its 32-bit path when
/// every shift is in `[2, 31]` ([`rq_fast_x16`]) or else in i64 lanes (the definition, which the
/// scalar `rq` equals, negative multipliers included), `beta`, and the two clamps. Returns
/// `false`, writing nothing, when a length disagrees with `p`.
#[cfg(kinglet_avx512)]
pub(crate) fn avx512_layernorm(
    p: &LayerNormParams,
    x: &[i8],
    gamma_rq: &[I32],
    beta: &[I32],
    y: &mut [i8],
) -> bool {
    let ok = (1..=LN_MAX_D).contains(&p.d)
        && p.act_min <= p.act_max
        && Some(x.len()) == p.rows.checked_mul(p.d)
        && y.len() == x.len()
        && gamma_rq.len() == 2 * p.d
        && beta.len() == p.d;
    if !ok {
        return false;
    }
    let small_beta = beta
        .iter()
        .all(|b| (-(1 << 29)..=1 << 29).contains(&b.get()));
    let fast = gamma_rq
        .chunks_exact(2)
        .all(|g| (2..=31).contains(&g[1].get()));
    // Eight rows at a time: their statistics first, then their outputs, so the rows' long
    // dependency chains (sums, square root, reciprocal) overlap.
    for (xs, ys) in x.chunks(8 * p.d).zip(y.chunks_mut(8 * p.d)) {
        let rows = xs.len() / p.d;
        // SAFETY: called only when `Isa::Avx512Vnni` is the active level (avx512f, avx512bw);
        // `xs` holds `rows ≤ 8` rows of `d`.
        let stats = unsafe { avx512_layernorm_stats(p, xs) };
        // SAFETY: as above; `xs`, `ys` hold `rows ≤ 8` rows of `d`, `beta` `d` elements and
        // `gamma_rq` `2d` (checked above), `fast` says every shift is in `[2, 31]`.
        unsafe {
            avx512_layernorm_out(
                p,
                xs,
                &stats[..rows],
                gamma_rq,
                (beta, small_beta, fast),
                ys,
            )
        };
    }
    true
}

/// `(Σ x, sd)` of each of the up to eight rows `xs` of [`avx512_layernorm`] (entries past the
/// last row `(0, 0)`): the rows' `vpmaddwd` sums, reduced eight rows at once by
/// [`hsum8_epi32x16`].
///
/// # Safety
/// AVX-512F/BW; `xs` holds at most eight rows of `p.d ≤ 2^15`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn avx512_layernorm_stats(p: &LayerNormParams, xs: &[i8]) -> [(i32, u64); 8] {
    let d = p.d;
    let ones = _mm512_set1_epi16(1);
    let mut s = [_mm512_setzero_si512(); 8];
    let mut q = [_mm512_setzero_si512(); 8];
    for ((sr, qr), xr) in s.iter_mut().zip(q.iter_mut()).zip(xs.chunks_exact(d)) {
        let mut c = 0;
        while c < d {
            let mask: __mmask64 = if d - c >= 64 {
                !0
            } else {
                (1u64 << (d - c)) - 1
            };
            // SAFETY: the masked load reads bytes `c..min(c + 64, d)` of `xr` only.
            let v = unsafe { _mm512_maskz_loadu_epi8(mask, xr.as_ptr().add(c).cast()) };
            for half in [_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v)] {
                let x16 = _mm512_cvtepi8_epi16(half);
                *sr = _mm512_add_epi32(*sr, _mm512_madd_epi16(x16, ones));
                *qr = _mm512_add_epi32(*qr, _mm512_madd_epi16(x16, x16));
            }
            c += 64;
        }
    }
    let (mut sums, mut sqs) = ([0i32; 8], [0i32; 8]);
    // SAFETY: two 32-byte stores into the eight-lane arrays.
    unsafe {
        _mm256_storeu_si256(sums.as_mut_ptr().cast(), hsum8_epi32x16(&s));
        _mm256_storeu_si256(sqs.as_mut_ptr().cast(), hsum8_epi32x16(&q));
    }
    let mut out = [(0i32, 0u64); 8];
    for ((o, &sum), &sq) in out.iter_mut().zip(&sums).zip(&sqs).take(xs.len() / d) {
        let var = d as i64 * sq as i64 - sum as i64 * sum as i64 + p.eps_q.max(0) as i64;
        *o = (sum, isqrt_below_2_62(var as u64));
    }
    out
}

/// The outputs of up to eight rows of [`avx512_layernorm`], given their
/// [`avx512_layernorm_stats`]: column block by column block, each block's `rq` pairs and `beta`
/// loaded once for every row.
///
/// # Safety
/// AVX-512F/BW; `xs` and `ys` of `stats.len() ≤ 8` rows of `p.d` elements, `beta` of `p.d`,
/// `gamma_rq` of `2 · p.d`, `p.d ≤ 2^15`; `stats` the rows' statistics; `fast` only when every
/// shift of `gamma_rq` is in `[2, 31]`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn avx512_layernorm_out(
    p: &LayerNormParams,
    xs: &[i8],
    stats: &[(i32, u64)],
    gamma_rq: &[I32],
    (beta, small_beta, fast): (&[I32], bool, bool),
    ys: &mut [i8],
) {
    let d = p.d;
    let dv = _mm512_set1_epi32(d as i32);
    // `clamp(clamp(v, act_min, act_max), -128, 127)` with `act_min ≤ act_max` (checked) is one
    // clamp to the bounds clamped into int8.
    let (lo, hi) = (p.act_min.clamp(-128, 127), p.act_max.clamp(-128, 127));
    let narrow = lo > -128 || hi < 127;
    let (lo, hi) = (_mm512_set1_epi32(lo), _mm512_set1_epi32(hi));
    // Per row: the sum, and the reciprocal for `ln_norm_fast_x16` (`sd ≤ 2^22`).
    let mut sums = [_mm512_setzero_si512(); 8];
    let mut invs = [(_mm512_setzero_pd(), _mm512_setzero_pd()); 8];
    for ((s, inv), &(sum, sd)) in sums.iter_mut().zip(invs.iter_mut()).zip(stats) {
        *s = _mm512_set1_epi32(sum);
        if (1..=1 << 22).contains(&sd) {
            *inv = (
                _mm512_set1_pd(recip_high(sd as f64)),
                _mm512_set1_pd((sd >> 1) as f64),
            );
        }
    }
    let (even, odd) = (
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
        _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
    );
    let mut c = 0;
    while c < d {
        let m16 = lanes_mask16(d - c);
        // SAFETY: the masked loads read elements `c..min(c + 16, d)` of `beta` and `gamma_rq`
        // (pairs): in bounds.
        let (b, (p0, p1, chunk_fast)) = unsafe {
            (
                _mm512_maskz_loadu_epi32(m16, beta.as_ptr().add(c).cast()),
                rq_pairs_x16(gamma_rq.as_ptr().add(2 * c), m16),
            )
        };
        // The multipliers and shifts as sixteen i32 lanes, for `rq_fast_x16`, and its rounding
        // term with `beta` folded in.
        let b2 = _mm512_add_epi32(_mm512_slli_epi32::<1>(b), _mm512_set1_epi32(1));
        let mult = _mm512_permutex2var_epi32(p0, even, p1);
        let fm = (
            mult,
            _mm512_srli_epi64::<32>(mult),
            _mm512_sub_epi32(_mm512_permutex2var_epi32(p0, odd, p1), _mm512_set1_epi32(2)),
        );
        for (r, &(_, sd)) in stats.iter().enumerate() {
            let off = r * d + c;
            // SAFETY: the masked load reads elements `c..min(c + 16, d)` of row `r` of `xs`, the
            // masked store writes those of `ys`: in bounds.
            unsafe {
                let xv = _mm512_maskz_loadu_epi8(m16.into(), xs.as_ptr().add(off).cast());
                let diff = _mm512_sub_epi32(
                    _mm512_mullo_epi32(_mm512_cvtepi8_epi32(_mm512_castsi512_si128(xv)), dv),
                    sums[r],
                );
                let n = if sd == 0 {
                    _mm512_setzero_si512()
                } else if sd <= 1 << 22 {
                    ln_norm_fast_x16(diff, invs[r])
                } else {
                    ln_norm_x16(diff, sd)
                };
                let v = if fast && small_beta {
                    // `beta` folded into the rounding (`|n| < 2^21`, so `|hi| ≤ 2^20` and
                    // `|X + 1 + 2 beta| < 2^31`).
                    rq_fast_x16(n, fm, b2)
                } else {
                    let v = rq_i32x16(n, p0, p1, chunk_fast);
                    // `beta + rq` saturating in i32: the clamps below give what the exact i64
                    // sum would. (The 32-bit `rq` path gives `|r| ≤ 2^29 + 1`: with small betas
                    // no overflow.)
                    if chunk_fast && small_beta {
                        _mm512_add_epi32(b, v)
                    } else {
                        adds_epi32x16(b, v)
                    }
                };
                // The clamp to int8 is the saturating `vpmovsdb` store; narrower bounds first.
                let v = if narrow {
                    _mm512_min_epi32(_mm512_max_epi32(v, lo), hi)
                } else {
                    v
                };
                _mm512_mask_cvtsepi32_storeu_epi8(ys.as_mut_ptr().add(off).cast(), m16, v);
            }
        }
        c += 16;
    }
}

/// `(1 / den) · (1 + 2^-44)`, rounded: a reciprocal a little high, for [`ln_norm_fast_x16`].
#[cfg(kinglet_avx512)]
#[inline]
fn recip_high(den: f64) -> f64 {
    (1.0 / den) * (1.0 + 1.0 / 17_592_186_044_416.0)
}

/// [`ln_norm_x16`] for `1 ≤ sd ≤ 2^22`, given `(recip_high(sd), ⌊sd/2⌋)`: with `num = |diff| ·
/// 4096 + ⌊sd/2⌋ < 2^36` (exact) and `x = num / sd < 2^21`, the product `num · recip_high(sd)`
/// is `x (1 + 2^-44)` to within three roundings (relative `3 · 2^-53 < 2^-44`), so in `(x, x +
/// x · 2^-43] ⊂ (x, x + 2^-22)`; the next integer above a non-integral `x` is at least `1 / sd
/// ≥ 2^-22` away, so the truncation is `⌊x⌋` exactly, with no correction step.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn ln_norm_fast_x16(diff: __m512i, (inv, half_sd): (__m512d, __m512d)) -> __m512i {
    let estimate = |df: __m512d| {
        let num = _mm512_fmadd_pd(_mm512_abs_pd(df), _mm512_set1_pd(4096.0), half_sd);
        _mm512_cvttpd_epi32(_mm512_mul_pd(num, inv))
    };
    let ql = estimate(_mm512_cvtepi32_pd(_mm512_castsi512_si256(diff)));
    let qh = estimate(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64::<1>(diff)));
    let q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(ql), qh);
    let neg = _mm512_cmplt_epi32_mask(diff, _mm512_setzero_si512());
    _mm512_mask_sub_epi32(q, neg, _mm512_setzero_si512(), q)
}

/// `rq(acc[i], mult[i], shift[i]) + z[i]` by the scalar `rq`'s 32-bit path, for sixteen i32
/// lanes whose shifts are all in `[2, 31]`, given `(mult, mult >> 32 as 64-bit lanes, shift −
/// 2)` and `round = 1 + 2z`: `hi = ⌊acc · mult / 2^32⌋` (the high dwords of the even and odd
/// lanes' `vpmuldq` products, `|hi| ≤ 2^30`), `X = ⌊hi / 2^(shift − 2)⌋`, then `(X + 1 + 2z) >> 1
/// = ((X + 1) >> 1) + z` (as [`rq_i32x16`]'s fast path, plus `z`; exact in i32 for `|z| ≤
/// 2^28`).
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn rq_fast_x16(
    acc: __m512i,
    (mult, mult_odd, sh2): (__m512i, __m512i, __m512i),
    round: __m512i,
) -> __m512i {
    let even = _mm512_mul_epi32(acc, mult);
    let odd = _mm512_mul_epi32(_mm512_srli_epi64::<32>(acc), mult_odd);
    let hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64::<32>(even), odd);
    _mm512_srai_epi32::<1>(_mm512_add_epi32(_mm512_srav_epi32(hi, sh2), round))
}

/// `div_round(diff · 4096, sd)` ([`div_round`](super::reference::div_round)) for sixteen i32
/// lanes `|diff| < 2^23` and `1 ≤ sd < 2^31`, whose quotients are below 2^21 (LayerNorm's `n_i`):
/// `±⌊num / sd⌋` with `num = |diff| · 4096 + ⌊sd/2⌋ < 2^36`. The estimate `trunc(num ·
/// recip_low(sd))` in f64 (exact operands; the product is `x (1 − 2^-48)` to within three
/// roundings, so below `x = num / sd` and above `x − 1`) is `⌊num / sd⌋` or one less,
/// so the remainder `num − q0 · sd` is in `[0, 2 sd) ⊂ [0, 2^32)` and its value modulo 2^32
/// (i32 lanes, wrapping) is exact: one unsigned compare with `sd` corrects the estimate.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn ln_norm_x16(diff: __m512i, sd: u64) -> __m512i {
    let inv = _mm512_set1_pd(recip_low(sd as f64));
    let half_sd = _mm512_set1_pd((sd >> 1) as f64);
    let (sd_i, half_sd_i) = (
        _mm512_set1_epi32(sd as i32),
        _mm512_set1_epi32((sd >> 1) as i32),
    );
    let estimate = |df: __m512d| {
        let num = _mm512_fmadd_pd(_mm512_abs_pd(df), _mm512_set1_pd(4096.0), half_sd);
        _mm512_cvttpd_epi32(_mm512_mul_pd(num, inv))
    };
    let ql = estimate(_mm512_cvtepi32_pd(_mm512_castsi512_si256(diff)));
    let qh = estimate(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64::<1>(diff)));
    let q0 = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(ql), qh);
    let num = _mm512_add_epi32(_mm512_slli_epi32::<12>(_mm512_abs_epi32(diff)), half_sd_i);
    let r = _mm512_sub_epi32(num, _mm512_mullo_epi32(q0, sd_i));
    let q = _mm512_mask_add_epi32(
        q0,
        _mm512_cmpge_epu32_mask(r, sd_i),
        q0,
        _mm512_set1_epi32(1),
    );
    let neg = _mm512_cmplt_epi32_mask(diff, _mm512_setzero_si512());
    _mm512_mask_sub_epi32(q, neg, _mm512_setzero_si512(), q)
}

/// Dwords of the FC kernel's repacked weights (on the stack): larger matrices take the
/// row-at-a-time path.
#[cfg(kinglet_avx512)]
pub(crate) const FC_PACK: usize = 8192;
/// Largest `k` of the FC kernel (its flipped input rows live on the stack).
#[cfg(kinglet_avx512)]
pub(crate) const FC_MAX_K: usize = 2048;
/// Largest `n` of the FC kernel (its column sums live on the stack).
#[cfg(kinglet_avx512)]
pub(crate) const FC_MAX_N: usize = 1024;

/// FC over many rows ([`fc_i8`](super::reference::fc::fc_i8)) on AVX-512 VNNI, as a
/// matrix-matrix product, bit-identical with the row-at-a-time path. The weights are repacked
/// once per call (`vpgatherdd`) to `[column block of 16][k / 4][16]` dwords, four consecutive
/// weights of one output per dword, zero past `k` and `n`; then for four input rows at a time
/// and up to four blocks of sixteen outputs, each step broadcasts four input bytes of each row
/// (flipped to unsigned, `x ^ 0x80 = x + 128`) and `vpdpbusd`s them into sixteen accumulators,
/// every weight vector serving four rows. `Σ (x + 128) · w = Σ x · w + 128 · Σ w` (wrapping,
/// like the reference sums), so `128 · Σ_k w[n, k]`, summed during the repack, comes off; then
/// the bias (wrapping), `rq` in i64 lanes (the definition, which the scalar `rq` equals), the
/// saturating `y_zp` add and the clamps. Returns `false`, writing nothing, when the shape
/// exceeds the stack buffers ([`FC_PACK`], [`FC_MAX_K`], [`FC_MAX_N`]) or a length disagrees
/// with `p`.
#[cfg(kinglet_avx512)]
pub(crate) fn avx512_fc(
    p: &FcParams,
    x: &[i8],
    w: &[i8],
    bias: &[I32],
    rq: &[I32],
    y: &mut [i8],
) -> bool {
    let (k, n) = (p.k, p.n);
    let ok = (1..=FC_MAX_K).contains(&k)
        && (1..=FC_MAX_N).contains(&n)
        && k.div_ceil(4) * n.next_multiple_of(16) <= FC_PACK
        && Some(x.len()) == p.rows.checked_mul(k)
        && Some(y.len()) == p.rows.checked_mul(n)
        && w.len() == n * k
        && bias.len() == n
        && rq.len() == 2 * n;
    if !ok {
        return false;
    }
    // Small shapes get small row and column-sum buffers (zeroing 12 KB costs as much as a
    // small product).
    if k <= 256 && n <= 256 {
        fc_with::<{ 4 * 256 }, 256>(p, x, w, bias, rq, y);
    } else {
        fc_with::<{ 4 * FC_MAX_K }, FC_MAX_N>(p, x, w, bias, rq, y);
    }
    true
}

/// The body of [`avx512_fc`] with an `XB`-byte buffer for four flipped input rows (`4 · 4 ·
/// ⌈k/4⌉ ≤ XB`) and `CN` column sums (`⌈n/16⌉ · 16 ≤ CN`); `p` and the slices as it accepts
/// them, run only where `Isa::Avx512Vnni` is the active level.
#[cfg(kinglet_avx512)]
fn fc_with<const XB: usize, const CN: usize>(
    p: &FcParams,
    x: &[i8],
    w: &[i8],
    bias: &[I32],
    rq: &[I32],
    y: &mut [i8],
) {
    let (k, n) = (p.k, p.n);
    // Left uninitialized: the pack writes every dword the row loop reads (32 KB of zeroing per
    // call would cost more than the small products themselves).
    let mut pack = core::mem::MaybeUninit::<Align64<[u32; FC_PACK]>>::uninit();
    let packed = k.div_ceil(4) * n.next_multiple_of(16);
    let mut corr = [0i32; CN];
    let mut xu = [0u8; XB];
    // SAFETY: AVX-512F/BW/VNNI are present (the caller's contract); the lengths and buffer
    // sizes the kernels rely on were checked by `avx512_fc` (`packed ≤ FC_PACK`) and the
    // choice of `XB`, `CN`. The pack writes all of `pack[..packed]`, so the slice made of it
    // is initialized.
    unsafe {
        let wp = pack.as_mut_ptr().cast::<u32>();
        avx512_fc_pack(w, k, n, wp, &mut corr);
        let pack = core::slice::from_raw_parts(wp.cast_const(), packed);
        avx512_fc_rows(p, x, pack, &corr, bias, rq, y, &mut xu);
    }
}

/// The weight repack of [`avx512_fc`]: `pack[(b·k4 + c)·16 + i] = w[16b + i, 4c .. 4c + 4]`
/// (zero bytes past `k`, zero dwords past `n`) for every `b < ⌈n/16⌉`, `c < k4 = ⌈k/4⌉` (all
/// of `pack[..⌈n/16⌉ · k4 · 16]` is written), `corr[j] = 128 · Σ_c w[j, c]` (wrapping). Sixteen
/// rows × 64 bytes at a time, as a 16 × 16 dword transpose (`vpunpck*`, then 128-bit lane
/// shuffles).
///
/// # Safety
/// AVX-512F/BW/VNNI; `w.len() = n · k`, `pack` valid for writes of `⌈n/16⌉ · k4 · 16` dwords,
/// `corr.len() ≥ n`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn avx512_fc_pack(
    w: &[i8],
    k: usize,
    n: usize,
    pack: *mut u32,
    corr: &mut [i32],
) {
    // SAFETY: the caller's contract, with the row-block-major strides.
    unsafe { avx512_pack_strided(w, k, n, pack, corr, (k.div_ceil(4), 1)) }
}

/// [`avx512_fc_pack`] with the 64-byte vector of row block `b`, column group `c` at vector
/// index `b·sb + c·sc` (`(sb, sc) = (k4, 1)`: row-block-major, the FC layout; `(1, ⌈n/16⌉)`:
/// column-major, the recurrent kernels' layout, where the blocks of one column group are
/// adjacent and a pass over several blocks addresses them at fixed offsets from one pointer).
///
/// # Safety
/// As [`avx512_fc_pack`]; `(sb, sc)` one of the two layouts above, so that the written vector
/// indices are exactly `0 .. ⌈n/16⌉ · k4`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) unsafe fn avx512_pack_strided(
    w: &[i8],
    k: usize,
    n: usize,
    pack: *mut u32,
    corr: &mut [i32],
    (sb, sc): (usize, usize),
) {
    let k4 = k.div_ceil(4);
    let ones = _mm512_set1_epi8(1);
    for b in 0..n.div_ceil(16) {
        let nrows = (n - 16 * b).min(16);
        let mut cs = _mm512_setzero_si512();
        let mut c0 = 0;
        while c0 < k4 {
            // Bytes `4·c0 .. 4·c0 + 64` of each of the block's rows (zero past `k`, zero rows
            // past `n`).
            let bytes = k - 4 * c0;
            let mask: __mmask64 = if bytes >= 64 { !0 } else { (1u64 << bytes) - 1 };
            let mut r = [_mm512_setzero_si512(); 16];
            // All sixteen, rows past `n` with an empty mask (a fixed count keeps `r` in
            // registers).
            for (i, v) in r.iter_mut().enumerate() {
                let m = if i < nrows { mask } else { 0 };
                // SAFETY: the mask keeps the load inside row `16b + i < n` of `w`, and reads
                // nothing for the rows past `n` (whose address is formed with `wrapping_add`).
                *v = unsafe {
                    _mm512_maskz_loadu_epi8(
                        m,
                        w.as_ptr().wrapping_add((16 * b + i) * k + 4 * c0).cast(),
                    )
                };
            }
            // (Macros, not closures: a closure would not inherit the target features.)
            macro_rules! lo32 {
                ($i:expr) => {
                    _mm512_unpacklo_epi32(r[$i], r[$i + 1])
                };
            }
            macro_rules! hi32 {
                ($i:expr) => {
                    _mm512_unpackhi_epi32(r[$i], r[$i + 1])
                };
            }
            // Per 128-bit lane `L`: `a[g][m]` holds rows `4g .. 4g + 4` of dword `4L + m`.
            let mut a = [[_mm512_setzero_si512(); 4]; 4];
            for (g, ag) in a.iter_mut().enumerate() {
                let (l0, h0) = (lo32!(4 * g), hi32!(4 * g));
                let (l1, h1) = (lo32!(4 * g + 2), hi32!(4 * g + 2));
                *ag = [
                    _mm512_unpacklo_epi64(l0, l1),
                    _mm512_unpackhi_epi64(l0, l1),
                    _mm512_unpacklo_epi64(h0, h1),
                    _mm512_unpackhi_epi64(h0, h1),
                ];
            }
            #[allow(clippy::needless_range_loop)] // `m` indexes the inner arrays of `a`
            for m in 0..4 {
                let ab_lo = _mm512_shuffle_i32x4::<0b01_00_01_00>(a[0][m], a[1][m]);
                let ab_hi = _mm512_shuffle_i32x4::<0b11_10_11_10>(a[0][m], a[1][m]);
                let cd_lo = _mm512_shuffle_i32x4::<0b01_00_01_00>(a[2][m], a[3][m]);
                let cd_hi = _mm512_shuffle_i32x4::<0b11_10_11_10>(a[2][m], a[3][m]);
                let cols = [
                    _mm512_shuffle_i32x4::<0b10_00_10_00>(ab_lo, cd_lo),
                    _mm512_shuffle_i32x4::<0b11_01_11_01>(ab_lo, cd_lo),
                    _mm512_shuffle_i32x4::<0b10_00_10_00>(ab_hi, cd_hi),
                    _mm512_shuffle_i32x4::<0b11_01_11_01>(ab_hi, cd_hi),
                ];
                // `cols[L]` is dword `4L + m` of the sixteen rows: group `c0 + 4L + m`.
                for (l, &v) in cols.iter().enumerate() {
                    let c = c0 + 4 * l + m;
                    if c < k4 {
                        cs = _mm512_dpbusd_epi32(cs, ones, v);
                        // SAFETY: `(b·sb + c·sc)·16 + 16 ≤ ⌈n/16⌉ · k4 · 16` for either
                        // layout, the caller's range.
                        unsafe { _mm512_storeu_si512(pack.add((b * sb + c * sc) * 16).cast(), v) };
                    }
                }
            }
            c0 += 16;
        }
        // SAFETY: the mask covers `corr[16b .. min(16b + 16, n)]`, inside `corr`.
        unsafe {
            _mm512_mask_storeu_epi32(
                corr.as_mut_ptr().add(16 * b).cast(),
                lanes_mask16(nrows),
                _mm512_slli_epi32::<7>(cs),
            )
        };
    }
}

/// Sixteen `(mult, shift)` pairs for [`rq_i32x16`], the first `min(16, ·)` at `pairs` selected
/// by `mask` (the others `(0, 2)`), as two vectors of eight 64-bit lanes, and whether every
/// shift is in `[2, 31]` (then `rq`'s exact 32-bit path applies).
///
/// # Safety
/// AVX-512F; `mask` selects only pairs inside the slice `pairs` points into.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn rq_pairs_x16(pairs: *const I32, mask: __mmask16) -> (__m512i, __m512i, bool) {
    let dummy = _mm512_set1_epi64(2 << 32);
    // SAFETY: the caller's bounds, passed on; masked-out pairs are neither read nor faulted on.
    let (p0, p1) = unsafe {
        (
            _mm512_mask_loadu_epi64(dummy, mask as __mmask8, pairs.cast()),
            _mm512_mask_loadu_epi64(dummy, (mask >> 8) as __mmask8, pairs.add(16).cast()),
        )
    };
    let (two, span) = (_mm512_set1_epi32(2), _mm512_set1_epi32(29));
    let ok = _mm512_mask_cmple_epu32_mask(0xAAAA, _mm512_sub_epi32(p0, two), span)
        & _mm512_mask_cmple_epu32_mask(0xAAAA, _mm512_sub_epi32(p1, two), span);
    (p0, p1, ok == 0xAAAA)
}

/// `rq(acc[i], mult[i], shift[i])` ([`fixed::rq`](super::reference::fixed::rq)) for sixteen
/// i32 lanes with pairs from [`rq_pairs_x16`]: when `fast`, the scalar `rq`'s 32-bit path (`hi
/// = ⌊acc · mult / 2^32⌋`, the high dword of the `vpmuldq` product, which sits where the pair
/// keeps its shift, so one `vpsravd` by `shift − 2` lines it up; then `(hi + 1) >> 1`, as in
/// [`avx512_requant_block`]); otherwise the i64 definition ([`rq_i64x8`]).
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn rq_i32x16(acc: __m512i, p0: __m512i, p1: __m512i, fast: bool) -> __m512i {
    let (lo, hi) = (
        _mm512_castsi512_si256(acc),
        _mm512_extracti64x4_epi64::<1>(acc),
    );
    if fast {
        let two = _mm512_set1_epi32(2);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let t0 = _mm512_srav_epi32(
            _mm512_mul_epi32(_mm512_cvtepu32_epi64(lo), p0),
            _mm512_sub_epi32(p0, two),
        );
        let t1 = _mm512_srav_epi32(
            _mm512_mul_epi32(_mm512_cvtepu32_epi64(hi), p1),
            _mm512_sub_epi32(p1, two),
        );
        _mm512_srai_epi32::<1>(_mm512_add_epi32(
            _mm512_permutex2var_epi32(t0, odd, t1),
            _mm512_set1_epi32(1),
        ))
    } else {
        let lo = _mm512_cvtepi64_epi32(rq_i64x8(lo, p0));
        let hi = _mm512_cvtepi64_epi32(rq_i64x8(hi, p1));
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
    }
}

/// The row loop of [`avx512_fc`]: four rows at a time (then one), up to four column blocks per
/// pass.
///
/// # Safety
/// AVX-512F/BW/VNNI; `p` and the slices accepted by [`avx512_fc`], `pack` and `corr` filled by
/// [`avx512_fc_pack`], `xu` zeroed and at least `4 · 4·⌈k/4⌉` bytes.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv, clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn avx512_fc_rows(
    p: &FcParams,
    x: &[i8],
    pack: &[u32],
    corr: &[i32],
    bias: &[I32],
    rq: &[I32],
    y: &mut [i8],
    xu: &mut [u8],
) {
    let (k, n) = (p.k, p.n);
    let nb = n.div_ceil(16);
    // Four input rows flipped to unsigned, at a stride of `4·k4` bytes, the padding past `k`
    // zero (it meets zero weights).
    let xs = 4 * k.div_ceil(4);
    let flip = _mm512_set1_epi8(i8::MIN);
    // Every shift in `[2, 31]` and `|y_zp| ≤ 2^28`: the short epilogue of `fc_tile`.
    let fast = (-(1 << 28)..=1 << 28).contains(&p.y_zp)
        && rq.chunks_exact(2).all(|g| (2..=31).contains(&g[1].get()));
    let mut r0 = 0;
    while r0 < p.rows {
        let nr = (p.rows - r0).min(4);
        for (r, xr) in xu.chunks_exact_mut(xs).enumerate().take(nr) {
            let src = &x[(r0 + r) * k..(r0 + r + 1) * k];
            let mut c = 0;
            while c < k {
                let mask: __mmask64 = if k - c >= 64 {
                    !0
                } else {
                    (1u64 << (k - c)) - 1
                };
                // SAFETY: masked to bytes `c..min(c + 64, k)` of `src` and of `xr` (which holds
                // `xs ≥ k` bytes).
                unsafe {
                    let v = _mm512_maskz_loadu_epi8(mask, src.as_ptr().add(c).cast());
                    _mm512_mask_storeu_epi8(
                        xr.as_mut_ptr().add(c).cast(),
                        mask,
                        _mm512_xor_si512(v, flip),
                    );
                }
                c += 64;
            }
        }
        let mut b0 = 0;
        while b0 < nb {
            let g = (nb - b0).min(4);
            // SAFETY: the tile's contract, from the checks above: rows `r0..r0 + nr`, blocks
            // `b0..b0 + g` exist.
            unsafe {
                match (nr, g) {
                    (4, 4) => fc_tile::<4, 4>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                    (4, 3) => fc_tile::<4, 3>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                    (4, 2) => fc_tile::<4, 2>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                    (4, _) => fc_tile::<4, 1>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                    (3, 4) => fc_tile::<3, 4>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                    (3, 3) => fc_tile::<3, 3>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                    (3, 2) => fc_tile::<3, 2>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                    (3, _) => fc_tile::<3, 1>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                    (2, 4) => fc_tile::<2, 4>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                    (2, 3) => fc_tile::<2, 3>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                    (2, 2) => fc_tile::<2, 2>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                    (2, _) => fc_tile::<2, 1>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                    (_, 4) => fc_tile::<1, 4>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                    (_, 3) => fc_tile::<1, 3>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                    (_, 2) => fc_tile::<1, 2>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                    (_, _) => fc_tile::<1, 1>(p, xu, xs, pack, corr, bias, (rq, fast), y, r0, b0),
                }
            }
            b0 += g;
        }
        r0 += nr;
    }
}

/// `R` rows from `r0` × `G` column blocks from `b0` of [`avx512_fc_rows`], requantized and
/// stored. The accumulators start from `bias − corr` (wrapping, like `bias + Σ w·x`). When
/// `fast` (every shift of `rq` in `[2, 31]`, `|y_zp| ≤ 2^28`), the epilogue is `rq`'s 32-bit
/// path with `y_zp` folded into its final rounding: `y_zp + ((X + 1) >> 1) = (X + 1 + 2·y_zp)
/// >> 1` with `X = ⌊hi / 2^(shift − 2)⌋`, `|hi| ≤ 2^30` (exact in i32: `|X + 1 + 2 y_zp| ≤ 2^30
/// + 1 + 2^29`); four blocks of a row leave through two saturating packs (which are the clamp
/// to int8) and one 64-byte store, fewer blocks through saturating `vpmovsdb`; `min` / `max`
/// only when the activation bounds are narrower than int8. Otherwise the general `rq` of
/// [`rq_i32x16`] and the saturating `y_zp` add.
///
/// # Safety
/// AVX-512F/BW/VNNI; rows `r0..r0 + R` and blocks `b0..b0 + G` exist (`R ≤ 4`), rows `..R` of
/// `xu` (stride `xs = 4·⌈k/4⌉`) hold those rows flipped, `pack` / `corr` as
/// [`avx512_fc_pack`] fills them; `fast` only as above.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv, clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn fc_tile<const R: usize, const G: usize>(
    p: &FcParams,
    xu: &[u8],
    xs: usize,
    pack: &[u32],
    corr: &[i32],
    bias: &[I32],
    (rq, fast): (&[I32], bool),
    y: &mut [i8],
    r0: usize,
    b0: usize,
) {
    let (k, n) = (p.k, p.n);
    let k4 = k.div_ceil(4);
    let mut bc = [_mm512_setzero_si512(); G];
    for (g, v) in bc.iter_mut().enumerate() {
        let j = (b0 + g) * 16;
        // SAFETY: the mask covers outputs `j..min(j + 16, n)`: inside `bias`; `corr` holds
        // `⌈n/16⌉ · 16` (the caller's buffer).
        *v = unsafe {
            _mm512_sub_epi32(
                _mm512_maskz_loadu_epi32(lanes_mask16(n - j), bias.as_ptr().add(j).cast()),
                _mm512_loadu_si512(corr.as_ptr().add(j).cast()),
            )
        };
    }
    let mut acc = [bc; R];
    let wp = pack.as_ptr();
    for c in 0..k4 {
        let mut wv = [_mm512_setzero_si512(); G];
        for (g, v) in wv.iter_mut().enumerate() {
            // SAFETY: block `b0 + g < ⌈n/16⌉`, group `c < k4`: inside the packed weights.
            *v = unsafe { _mm512_loadu_si512(wp.add(((b0 + g) * k4 + c) * 16).cast()) };
        }
        for (r, a) in acc.iter_mut().enumerate() {
            // SAFETY: bytes `4c..4c + 4 ≤ 4·k4 = xs` of row `r < R ≤ 4` of the row buffer.
            let xb = _mm512_set1_epi32(unsafe {
                xu.as_ptr()
                    .add(r * xs + 4 * c)
                    .cast::<i32>()
                    .read_unaligned()
            });
            for (ag, &v) in a.iter_mut().zip(&wv) {
                *ag = _mm512_dpbusd_epi32(*ag, xb, v);
            }
        }
    }
    // `clamp(clamp(v, act_min, act_max), -128, 127)` (the second clamp after `max` / `min`, as
    // the scalar loop does, so also for `act_min > act_max`) is `v` clamped to the two bounds
    // clamped into int8.
    let (lo, hi) = (p.act_min.clamp(-128, 127), p.act_max.clamp(-128, 127));
    let narrow = lo > -128 || hi < 127;
    let (lo, hi) = (_mm512_set1_epi32(lo), _mm512_set1_epi32(hi));
    let mut out = [[_mm512_setzero_si512(); G]; R];
    if fast {
        let (even, odd) = (
            _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
            _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
        );
        let round = _mm512_set1_epi32(1 + 2 * p.y_zp);
        for g in 0..G {
            let j = (b0 + g) * 16;
            // SAFETY: the mask covers the pairs of outputs `j..min(j + 16, n)`, inside `rq`.
            let (p0, p1, _) = unsafe { rq_pairs_x16(rq.as_ptr().add(2 * j), lanes_mask16(n - j)) };
            let mult = _mm512_permutex2var_epi32(p0, even, p1);
            let mult_odd = _mm512_srli_epi64::<32>(mult);
            let sh2 =
                _mm512_sub_epi32(_mm512_permutex2var_epi32(p0, odd, p1), _mm512_set1_epi32(2));
            for (o, a) in out.iter_mut().zip(&acc) {
                let ev = _mm512_mul_epi32(a[g], mult);
                let od = _mm512_mul_epi32(_mm512_srli_epi64::<32>(a[g]), mult_odd);
                let hi32 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64::<32>(ev), od);
                o[g] =
                    _mm512_srai_epi32::<1>(_mm512_add_epi32(_mm512_srav_epi32(hi32, sh2), round));
            }
        }
    } else {
        let zp = _mm512_set1_epi32(p.y_zp);
        // The 32-bit `rq` path gives `|r| ≤ 2^29 + 1`, so with a small `y_zp` the sum cannot
        // overflow and needs no saturation.
        let small_zp = (-(1 << 29)..=1 << 29).contains(&p.y_zp);
        for g in 0..G {
            let j = (b0 + g) * 16;
            // SAFETY: the mask covers the pairs of outputs `j..min(j + 16, n)`, inside `rq`.
            let (p0, p1, chunk_fast) =
                unsafe { rq_pairs_x16(rq.as_ptr().add(2 * j), lanes_mask16(n - j)) };
            for (o, a) in out.iter_mut().zip(&acc) {
                let t = rq_i32x16(a[g], p0, p1, chunk_fast);
                o[g] = if chunk_fast && small_zp {
                    _mm512_add_epi32(zp, t)
                } else {
                    adds_epi32x16(zp, t)
                };
            }
        }
    }
    // Four blocks of a row: the packs interleave the blocks' dwords per 128-bit lane, one
    // `vpermd` puts them in order.
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    for (r, o) in out.iter().enumerate() {
        let mut o = *o;
        if narrow {
            for v in o.iter_mut() {
                *v = _mm512_min_epi32(_mm512_max_epi32(*v, lo), hi);
            }
        }
        let row = y.as_mut_ptr().wrapping_add((r0 + r) * n + b0 * 16);
        if G == 4 {
            let b = _mm512_packs_epi16(
                _mm512_packs_epi32(o[0], o[1 % G]),
                _mm512_packs_epi32(o[2 % G], o[3 % G]),
            );
            let bytes = n - b0 * 16;
            let m64: __mmask64 = if bytes >= 64 { !0 } else { (1u64 << bytes) - 1 };
            // SAFETY: the mask covers outputs `b0·16 .. min(b0·16 + 64, n)` of row `r0 + r`.
            unsafe { _mm512_mask_storeu_epi8(row.cast(), m64, _mm512_permutexvar_epi32(order, b)) };
        } else {
            for (g, &v) in o.iter().enumerate() {
                let j = (b0 + g) * 16;
                // SAFETY: the mask covers outputs `j..min(j + 16, n)` of row `r0 + r`.
                unsafe {
                    _mm512_mask_cvtsepi32_storeu_epi8(
                        row.add(16 * g).cast(),
                        lanes_mask16(n - j),
                        v,
                    )
                };
            }
        }
    }
}

/// LUT8 (`y[i] = table[x[i] + 128]` over the common length) on AVX-512 VBMI: per 64 inputs,
/// the index `x ^ 0x80` selects from the table's halves with two `vpermi2b` (each 128 entries
/// in two registers, by the index's low seven bits) and its top bit picks the half. Returns
/// `false`, writing nothing, without VBMI. Bit-identical with the scalar lookup.
#[cfg(kinglet_avx512)]
pub(crate) fn avx512_lut8(table: &[i8; 256], x: &[i8], y: &mut [i8]) -> bool {
    if !super::matvec::has_vbmi() {
        return false;
    }
    // SAFETY: the active level is AVX-512 VNNI (avx512f, avx512bw; the caller's dispatch) and
    // VBMI was detected above.
    unsafe { avx512_lut8_vbmi(table, x, y) };
    true
}

/// See [`avx512_lut8`].
///
/// # Safety
/// AVX-512F/BW/VBMI.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn avx512_lut8_vbmi(table: &[i8; 256], x: &[i8], y: &mut [i8]) {
    let n = x.len().min(y.len());
    // SAFETY: four 64-byte loads at offsets 0, 64, 128, 192 of the 256-byte table.
    let t = unsafe {
        let p = table.as_ptr();
        [0, 64, 128, 192].map(|o| _mm512_loadu_si512(p.add(o).cast()))
    };
    let flip = _mm512_set1_epi8(i8::MIN);
    let mut i = 0;
    while i < n {
        let mask: __mmask64 = if n - i >= 64 {
            !0
        } else {
            (1u64 << (n - i)) - 1
        };
        // SAFETY: the mask keeps the load and the store inside elements `i..n` of `x` and `y`.
        unsafe {
            let idx = _mm512_xor_si512(
                _mm512_maskz_loadu_epi8(mask, x.as_ptr().add(i).cast()),
                flip,
            );
            let lo = _mm512_permutex2var_epi8(t[0], idx, t[1]);
            let hi = _mm512_permutex2var_epi8(t[2], idx, t[3]);
            let r = _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi);
            _mm512_mask_storeu_epi8(y.as_mut_ptr().add(i).cast(), mask, r);
        }
        i += 64;
    }
}

/// ADD ([`add_i8`](super::reference::add::add_i8)) on AVX-512, bit-identical with the scalar
/// loop: eight elements per i64 vector, `(a − a_zp) · a_mult + (b − b_zp) · b_mult` by
/// `vpmuldq` (exact: the differences are within ±255 and the multipliers i32), `rsr` by
/// `vpsravq` with the same wrapping round term, then `y_zp` and the clamps. A `b` period of one
/// element is broadcast; longer periods run span by span. Returns `false`, writing nothing, when
/// a length disagrees with `p` or a zero point of `a` / `b` is outside int8 (parse refuses it;
/// the products would then need more than 32 bits).
#[cfg(kinglet_avx512)]
pub(crate) fn avx512_add(p: &AddParams, a: &[i8], b: &[i8], y: &mut [i8]) -> bool {
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
        && b_need.is_some_and(|n| b.len() >= n)
        && (-128..=127).contains(&p.a_zp)
        && (-128..=127).contains(&p.b_zp);
    if !ok {
        return false;
    }
    for (s, (ar, yr)) in a
        .chunks_exact(p.len)
        .zip(y.chunks_exact_mut(p.len))
        .enumerate()
    {
        let bs = &b[s * p.b_step..s * p.b_step + p.b_len];
        if let [b0] = *bs {
            // SAFETY: called only when `Isa::Avx512Vnni` is the active level (avx512f);
            // `ar` and `yr` have one length, and a broadcast `b` reads nothing.
            unsafe { avx512_add_span(p, ar, None, b0, yr) };
        } else {
            for (ac, yc) in ar.chunks_exact(p.b_len).zip(yr.chunks_exact_mut(p.b_len)) {
                // SAFETY: as above; `bs`, `ac`, `yc` all hold `b_len` elements.
                unsafe { avx512_add_span(p, ac, Some(bs), 0, yc) };
            }
        }
    }
    true
}

/// The multipliers of an ADD split for [`avx512_add_span_i32`]: `m = hi · 2^16 + lo` with both
/// halves in int16 (`lo ∈ [-2^15, 2^15)`), as the dword pairs `(a's, b's)` for `vpmaddwd`;
/// `None` when a multiplier does not split so (within 2^15 of `i32::MAX`), the shift is outside
/// `[16, 31]` or `|y_zp| > 2^29` (then the i64 path runs).
#[cfg(kinglet_avx512)]
fn add_split(p: &AddParams) -> Option<(u32, u32)> {
    let split = |m: i32| {
        let (hi, lo) = (m >> 16, m & 0xffff);
        let (hi, lo) = if lo >= 1 << 15 {
            (hi + 1, lo - (1 << 16))
        } else {
            (hi, lo)
        };
        (hi < 1 << 15).then_some((hi, lo))
    };
    let ((ah, al), (bh, bl)) = (split(p.a_mult)?, split(p.b_mult)?);
    let ok = (16..=31).contains(&p.shift) && (-(1 << 29)..=1 << 29).contains(&p.y_zp);
    ok.then_some((pair_i16(ah, bh), pair_i16(al, bl)))
}

/// [`avx512_add_span`] in i32, 32 elements per step, for the ADDs [`add_split`] accepts: with
/// `d = (a − a_zp, b − b_zp)` (within ±255) as an int16 pair, `H = d · (a_hi, b_hi)` and `L = d
/// · (a_lo, b_lo)` by `vpmaddwd` (exact, `|H|, |L| < 2^24`), the i64 sum is `H · 2^16 + L`, and
/// `rsr(H · 2^16 + L, s) = ⌊(H + ⌊(L + 2^(s−1)) / 2^16⌋) / 2^(s−16)⌋` for `s ∈ [16, 31]`
/// (nested floors of power-of-two divisions), every term below 2^31; `|r| < 2^25` and `|y_zp| ≤
/// 2^29`, so `y_zp + r` is exact too. The pairs come from the 32 differences as int16 by
/// `vpunpck{l,h}wd` (elements `8L..8L + 4` and `8L + 4..8L + 8` of each 128-bit lane `L`), and
/// one saturating `vpackssdw` puts the two halves' results back in order as int16 (saturation
/// then the clamp to int8 bounds is the clamp).
///
/// # Safety
/// AVX-512F/BW; `y.len() = a.len()`, `b` (when given) at least as long; `k = add_split(p)`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn avx512_add_span_i32(
    p: &AddParams,
    (k_hi, k_lo): (u32, u32),
    a: &[i8],
    b: Option<&[i8]>,
    b0: i8,
    y: &mut [i8],
) {
    let n = a.len();
    let (kh, kl) = (
        _mm512_set1_epi32(k_hi as i32),
        _mm512_set1_epi32(k_lo as i32),
    );
    let round = _mm512_set1_epi32(1 << (p.shift - 1));
    let sh = _mm_cvtsi32_si128(p.shift as i32 - 16);
    let zp = _mm512_set1_epi32(p.y_zp);
    // (The differences `a − a_zp`, `b − b_zp` are within ±255: int16.)
    let (a_zp, b_zp) = (
        _mm512_set1_epi16(p.a_zp as i16),
        _mm512_set1_epi16(p.b_zp as i16),
    );
    let (lo, hi) = (
        _mm512_set1_epi16(p.act_min.clamp(-128, 127) as i16),
        _mm512_set1_epi16(p.act_max.clamp(-128, 127) as i16),
    );
    let bconst = _mm512_set1_epi16((b0 as i32 - p.b_zp) as i16);
    let mut i = 0;
    while i < n {
        let m: __mmask32 = if n - i >= 32 {
            !0
        } else {
            (1u32 << (n - i)) - 1
        };
        // SAFETY: the masked loads read elements `i..min(i + 32, n)` of `a` (and `b`, which is
        // at least as long), the masked store writes those of `y`.
        unsafe {
            let av = _mm512_maskz_loadu_epi8(m.into(), a.as_ptr().add(i).cast());
            let da = _mm512_sub_epi16(_mm512_cvtepi8_epi16(_mm512_castsi512_si256(av)), a_zp);
            let db = match b {
                Some(b) => {
                    let bv = _mm512_maskz_loadu_epi8(m.into(), b.as_ptr().add(i).cast());
                    _mm512_sub_epi16(_mm512_cvtepi8_epi16(_mm512_castsi512_si256(bv)), b_zp)
                }
                None => bconst,
            };
            let half = |d: __m512i| {
                let h = _mm512_madd_epi16(d, kh);
                let l = _mm512_madd_epi16(d, kl);
                let t = _mm512_add_epi32(h, _mm512_srai_epi32::<16>(_mm512_add_epi32(l, round)));
                _mm512_add_epi32(_mm512_sra_epi32(t, sh), zp)
            };
            let r = _mm512_packs_epi32(
                half(_mm512_unpacklo_epi16(da, db)),
                half(_mm512_unpackhi_epi16(da, db)),
            );
            let v = _mm512_min_epi16(_mm512_max_epi16(r, lo), hi);
            _mm512_mask_cvtepi16_storeu_epi8(y.as_mut_ptr().add(i).cast(), m, v);
        }
        i += 32;
    }
}

/// `y[i] = ADD(a[i], b[i])` (or `b0` for every `i` when `b` is `None`).
///
/// # Safety
/// AVX-512F/BW; `y.len() = a.len()`, and `b` (when given) at least as long.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn avx512_add_span(p: &AddParams, a: &[i8], b: Option<&[i8]>, b0: i8, y: &mut [i8]) {
    let n = a.len();
    if let Some(k) = add_split(p) {
        // SAFETY: the caller's contract, passed on.
        unsafe { avx512_add_span_i32(p, k, a, b, b0, y) };
        return;
    }
    let (a_zp, b_zp) = (
        _mm512_set1_epi64(p.a_zp as i64),
        _mm512_set1_epi64(p.b_zp as i64),
    );
    let (am, bm) = (
        _mm512_set1_epi64(p.a_mult as i64),
        _mm512_set1_epi64(p.b_mult as i64),
    );
    let sh = p.shift.min(62);
    // `rsr(v, sh)`: `v` for `sh = 0`, else `(v + 2^(sh − 1)) >> sh` (wrapping add).
    let round = _mm512_set1_epi64(if sh == 0 { 0 } else { 1i64 << (sh - 1) });
    let shv = _mm512_set1_epi64(sh as i64);
    let zp = _mm512_set1_epi64(p.y_zp as i64);
    let (lo, hi) = (
        _mm512_set1_epi64(p.act_min as i64),
        _mm512_set1_epi64(p.act_max as i64),
    );
    let (lo8, hi8) = (_mm512_set1_epi64(-128), _mm512_set1_epi64(127));
    let bb = _mm512_mul_epi32(_mm512_sub_epi64(_mm512_set1_epi64(b0 as i64), b_zp), bm);
    let mut i = 0;
    while i < n {
        let m8 = lanes_mask8(n - i);
        // SAFETY: the masked loads read elements `i..min(i + 8, n)` of `a` (and `b`, which is
        // at least as long), the masked store writes those of `y`.
        unsafe {
            let av = _mm512_maskz_loadu_epi8(m8.into(), a.as_ptr().add(i).cast());
            let av = _mm512_sub_epi64(_mm512_cvtepi8_epi64(_mm512_castsi512_si128(av)), a_zp);
            let bt = match b {
                Some(b) => {
                    let bv = _mm512_maskz_loadu_epi8(m8.into(), b.as_ptr().add(i).cast());
                    let bv =
                        _mm512_sub_epi64(_mm512_cvtepi8_epi64(_mm512_castsi512_si128(bv)), b_zp);
                    _mm512_mul_epi32(bv, bm)
                }
                None => bb,
            };
            let acc = _mm512_add_epi64(_mm512_mul_epi32(av, am), bt);
            let r = _mm512_srav_epi64(_mm512_add_epi64(acc, round), shv);
            let v = _mm512_add_epi64(r, zp);
            let v = _mm512_min_epi64(_mm512_max_epi64(v, lo), hi);
            let v = _mm512_min_epi64(_mm512_max_epi64(v, lo8), hi8);
            _mm512_mask_cvtepi64_storeu_epi8(y.as_mut_ptr().add(i).cast(), m8, v);
        }
        i += 8;
    }
}

/// MEAN ([`mean_i8`](super::reference::mean::mean_i8)) on AVX-512, bit-identical with the
/// scalar loop: `Σ_k x[o, k, i]` sixteen columns at a time in i32 lanes (a row of one column:
/// `vpsadbw` over 64 bytes at a time, of `x ^ 0x80 = x + 128`), minus `n · x_zp` (the same
/// i32 as the scalar sum of `x − x_zp`: `|Σ| ≤ 255 · 2^23 < 2^31`), then `rq` (the scalar one
/// for a single column) and the clamp. Returns `false`, writing nothing, when a length
/// disagrees with `p` or `n`, `x_zp` are outside what parse accepts.
#[cfg(kinglet_avx512)]
pub(crate) fn avx512_mean(p: &MeanParams, x: &[i8], y: &mut [i8]) -> bool {
    let Some(block) = p.n.checked_mul(p.inner) else {
        return false;
    };
    let ok = p.inner > 0
        && (1..=MEAN_MAX_N).contains(&p.n)
        && (-128..=127).contains(&p.x_zp)
        && Some(x.len()) == p.rows.checked_mul(block)
        && Some(y.len()) == p.rows.checked_mul(p.inner);
    if !ok {
        return false;
    }
    let bias = (p.n as i32).wrapping_mul(p.x_zp);
    for (xb, yr) in x.chunks_exact(block).zip(y.chunks_exact_mut(p.inner)) {
        if let [out] = yr {
            // SAFETY: called only when `Isa::Avx512Vnni` is the active level (avx512f,
            // avx512bw).
            let sum = unsafe { avx512_sum_i8(xb) };
            let r = super::reference::fixed::rq(sum.wrapping_sub(bias), p.mult, p.shift);
            *out = super::reference::fixed::clamp8(p.y_zp as i64 + r as i64, -128, 127);
        } else {
            // SAFETY: as above; `xb` holds `n · inner` bytes and `yr` `inner`.
            unsafe { avx512_mean_columns(p, xb, bias, yr) };
        }
    }
    true
}

/// `Σ x` (exact for fewer than 2^23 elements).
///
/// # Safety
/// AVX-512F/BW.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn avx512_sum_i8(x: &[i8]) -> i32 {
    let flip = _mm512_set1_epi8(i8::MIN);
    let mut acc = _mm512_setzero_si512();
    let mut c = 0;
    while c < x.len() {
        let bytes = x.len() - c;
        let mask: __mmask64 = if bytes >= 64 { !0 } else { (1u64 << bytes) - 1 };
        // SAFETY: masked to bytes `c..min(c + 64, len)` of `x`. (The flipped masked-out bytes
        // are zeroed again below, so they add nothing; `128 · len` undoes the flip.)
        let v = unsafe { _mm512_maskz_loadu_epi8(mask, x.as_ptr().add(c).cast()) };
        let u = _mm512_maskz_mov_epi8(mask, _mm512_xor_si512(v, flip));
        acc = _mm512_add_epi64(acc, _mm512_sad_epu8(u, _mm512_setzero_si512()));
        c += 64;
    }
    (_mm512_reduce_add_epi64(acc) - 128 * x.len() as i64) as i32
}

/// The columns of one block of [`avx512_mean`], sixteen at a time.
///
/// # Safety
/// AVX-512F/BW; `xb.len() = p.n · yr.len()`, `bias = n · x_zp`.
#[cfg(kinglet_avx512)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn avx512_mean_columns(p: &MeanParams, xb: &[i8], bias: i32, yr: &mut [i8]) {
    let inner = yr.len();
    let pair = _mm512_set1_epi64(((p.shift as i64) << 32) | p.mult as u32 as i64);
    let fast = (2..=31).contains(&p.shift);
    let (zp, lo8, hi8) = (
        _mm512_set1_epi32(p.y_zp),
        _mm512_set1_epi32(-128),
        _mm512_set1_epi32(127),
    );
    let mut c = 0;
    while c < inner {
        let mask = lanes_mask16(inner - c);
        let mut acc = _mm512_setzero_si512();
        for k in 0..p.n {
            // SAFETY: masked to elements `c..min(c + 16, inner)` of row `k < n` of the block.
            let v = unsafe {
                _mm512_maskz_loadu_epi8(mask.into(), xb.as_ptr().add(k * inner + c).cast())
            };
            acc = _mm512_add_epi32(acc, _mm512_cvtepi8_epi32(_mm512_castsi512_si128(v)));
        }
        let r = rq_i32x16(
            _mm512_sub_epi32(acc, _mm512_set1_epi32(bias)),
            pair,
            pair,
            fast,
        );
        let o = _mm512_min_epi32(_mm512_max_epi32(adds_epi32x16(zp, r), lo8), hi8);
        // SAFETY: masked to elements `c..min(c + 16, inner)` of `yr`.
        unsafe { _mm512_mask_cvtepi32_storeu_epi8(yr.as_mut_ptr().add(c).cast(), mask, o) };
        c += 16;
    }
}

#[cfg(test)]
mod tests {
    use super::super::matvec::{reference_matvec_i8, Isa};
    use crate::kernels::testutil::Rng;
    #[cfg(kinglet_avx512)]
    use core::arch::x86_64::*;
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

    /// The one-column kernel (both levels) against the reference, every row count to 40 and
    /// the extreme operands.
    #[test]
    fn one_column_matches_the_reference() {
        let mut rng = Rng::new(0x0C01);
        for rows in 0..=40 {
            for v0 in [-128i8, -1, 0, 1, 127, rng.i8()] {
                let mut m: Vec<i8> = (0..rows).map(|_| rng.i8()).collect();
                if rows > 2 {
                    m[0] = -128;
                    m[1] = 127;
                }
                let mut want = std::vec![0i32; rows];
                reference_matvec_i8(&m, &[v0], &mut want);
                let mut got = std::vec![0x5A5A_5A5Ai32; rows];
                super::avx2_matvec_i8(&m, &[v0], &mut got);
                assert_eq!(got, want, "avx2 rows {rows} v0 {v0}");
                #[cfg(kinglet_avx512)]
                if Isa::Avx512Vnni.is_available() {
                    let mut got = std::vec![0x5A5A_5A5Ai32; rows];
                    super::avx512vnni_matvec_i8(&m, &[v0], &mut got);
                    assert_eq!(got, want, "avx512 rows {rows} v0 {v0}");
                }
            }
        }
    }

    /// The AVX-512 requantization against the scalar `rq`: every shift from -31 to 33 (the
    /// clamped ones included), extreme accumulators and multipliers (negative ones too: the
    /// definition is total), biases that make the i32 add wrap, every block length to 41
    /// (16-row steps on the 32-bit path or the i64 fallback, masked 8-row tails).
    #[cfg(kinglet_avx512)]
    #[test]
    fn avx512_requant_matches_scalar_rq() {
        use crate::kernels::reference::fixed::rq;
        use zerocopy::little_endian::I32;
        if !Isa::Avx512Vnni.is_available() {
            std::eprintln!("avx512 requant: not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(0x7E9);
        let edges = [i32::MIN, i32::MIN + 1, -65536, -1, 0, 1, 65535, i32::MAX];
        let mut cases = 0;
        for shift in -31..=33 {
            for n in 0..=41 {
                let acc: Vec<i32> = (0..n)
                    .map(|i| match i % 3 {
                        0 => edges[rng.usize_below(edges.len())],
                        _ => rng.i32_in(i32::MIN, i32::MAX),
                    })
                    .collect();
                let bias: Vec<I32> = (0..n)
                    .map(|i| {
                        I32::new(if i % 4 == 1 {
                            edges[rng.usize_below(8)]
                        } else {
                            rng.i32_in(-1 << 20, 1 << 20)
                        })
                    })
                    .collect();
                let pairs: Vec<I32> = (0..n)
                    .flat_map(|i| {
                        let mult = match i % 5 {
                            0 => edges[rng.usize_below(edges.len())],
                            1 => 1 << 30,
                            _ => rng.i32_in(0, i32::MAX),
                        };
                        // This shift, or (for a third of the shifts) some rows with
                        // others, so blocks of 16 take both the 32-bit path and the fallback.
                        let s = if i % 7 == 3 && shift % 3 == 0 {
                            rng.i32_in(-40, 40)
                        } else {
                            shift
                        };
                        [I32::new(mult), I32::new(s)]
                    })
                    .collect();
                let want: Vec<i32> = (0..n)
                    .map(|i| {
                        rq(
                            bias[i].get().wrapping_add(acc[i]),
                            pairs[2 * i].get(),
                            pairs[2 * i + 1].get(),
                        )
                    })
                    .collect();
                let mut got = acc.clone();
                assert!(super::avx512_requant_block(&bias, &pairs, &mut got));
                assert_eq!(got, want, "shift {shift} n {n}");
                cases += n;
            }
        }
        // Short tables are refused, nothing written.
        let mut out = [5i32; 3];
        assert!(!super::avx512_requant_block(
            &[I32::new(0); 2],
            &[I32::new(0); 6],
            &mut out
        ));
        assert_eq!(out, [5; 3]);
        std::eprintln!("avx512 requant: {cases} rows bit-exact");
    }

    /// A table with its extremes at both ends and random inner entries, so interpolation sees
    /// differences of ±65535.
    #[cfg(kinglet_avx512)]
    fn wild_table(rng: &mut Rng) -> crate::kernels::reference::ActTable {
        use zerocopy::little_endian::I16;
        let mut t = [I16::new(0); crate::format::ACT_TABLE_LEN];
        for (i, e) in t.iter_mut().enumerate() {
            *e = I16::new(match i % 4 {
                0 => i16::MIN,
                1 => i16::MAX,
                _ => rng.i32_in(-32768, 32767) as i16,
            });
        }
        t[0] = I16::new(i16::MAX);
        t[512] = I16::new(i16::MIN);
        t
    }

    /// The gathered table lookup against `lut16` for every int16 input, on the sigmoid and tanh
    /// tables and on a table of extremes (both ends included: `x = -32768` reads `tab[0..2]`,
    /// `x = 32767` reads `tab[511..513]`).
    #[cfg(kinglet_avx512)]
    #[test]
    fn avx512_lut_matches_lut16_everywhere() {
        use crate::kernels::reference::fixed::lut16;
        use crate::kernels::testutil::{sigmoid_table, tanh_table};
        if !Isa::Avx512Vnni.is_available() {
            std::eprintln!("avx512 lut: not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(0x1A7);
        for tab in [sigmoid_table(), tanh_table(), wild_table(&mut rng)] {
            for x0 in (i16::MIN as i32..=i16::MAX as i32).step_by(16) {
                let xs: [i32; 16] = core::array::from_fn(|l| x0 + l as i32);
                let mut got = [0i32; 16];
                // SAFETY: the test checked AVX-512F; every lane is an int16 value.
                unsafe {
                    let v = super::_mm512_loadu_si512(xs.as_ptr().cast());
                    super::_mm512_storeu_si512(got.as_mut_ptr().cast(), super::lut16x16(&tab, v));
                }
                for (l, &x) in xs.iter().enumerate() {
                    assert_eq!(got[l], lut16(&tab, x as i16), "x {x}");
                }
            }
        }
    }

    /// Random int16 gates with the extremes mixed in.
    #[cfg(kinglet_avx512)]
    fn gates(rng: &mut Rng, n: usize) -> Vec<i16> {
        (0..n)
            .map(|_| match rng.usize_below(6) {
                0 => i16::MIN,
                1 => i16::MAX,
                2 => rng.i32_in(-64, 64) as i16,
                _ => rng.i32_in(-32768, 32767) as i16,
            })
            .collect()
    }

    /// Random int32 products: mostly gate-sized, some far outside int16, some at the i32
    /// limits (so `ax + ah` overflows and saturates).
    #[cfg(kinglet_avx512)]
    fn products(rng: &mut Rng, n: usize) -> Vec<i32> {
        (0..n)
            .map(|_| match rng.usize_below(8) {
                0 => i32::MIN,
                1 => i32::MAX,
                2 => rng.i32_in(i32::MIN, i32::MAX),
                3 => rng.i32_in(-70000, 70000),
                _ => rng.i32_in(-40000, 40000),
            })
            .collect()
    }

    /// The AVX-512 GRU cell against the scalar definition (`reference::gru`, module doc) unit by
    /// unit: every `H` to 40 (masked tails), extreme gates and states, several output
    /// requantizations and zero points, wild tables.
    #[cfg(kinglet_avx512)]
    #[test]
    fn avx512_gru_cell_matches_scalar() {
        use crate::kernels::matvec::CellGates;
        use crate::kernels::reference::fixed::{clamp8_add, lut16, rq, rsr32, sat16_add};
        use crate::kernels::reference::{gru::GruParams, ActTables};
        use crate::kernels::testutil::{sigmoid_table, tanh_table};
        if !Isa::Avx512Vnni.is_available() {
            std::eprintln!("avx512 gru cell: not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(0x6C0);
        let (sig, tanh, wild) = (sigmoid_table(), tanh_table(), wild_table(&mut rng));
        for nh in 1..=40 {
            for (round, &(mult, shift, zp)) in [
                (1_140_850_688, 9, 0),
                (i32::MAX, -30, -128),
                (1 << 30, 2, 127),
                (
                    rng.i32_in(0, i32::MAX),
                    rng.i32_in(-31, 33),
                    rng.i32_in(-128, 127),
                ),
            ]
            .iter()
            .enumerate()
            {
                let tabs = if round == 3 {
                    ActTables {
                        sig: &wild,
                        tanh: &wild,
                    }
                } else {
                    ActTables {
                        sig: &sig,
                        tanh: &tanh,
                    }
                };
                let p = GruParams {
                    steps: 1,
                    input: 1,
                    hidden: nh,
                    reverse: false,
                    h_zp: zp,
                    hin_mult: 0,
                    hin_shift: 0,
                    hq_mult: mult,
                    hq_shift: shift,
                };
                // The products; the int16 scratch the scalar loop makes of them (a clamp).
                let (ax, ah, h16) = (
                    products(&mut rng, 3 * nh),
                    products(&mut rng, 3 * nh),
                    gates(&mut rng, nh),
                );
                let sat = |v: &i32| (*v).clamp(-32768, 32767) as i16;
                let gx: Vec<i16> = ax.iter().map(sat).collect();
                let gh: Vec<i16> = ah.iter().map(sat).collect();
                let (mut want16, mut want8) = (h16.clone(), std::vec![0i8; nh]);
                for u in 0..nh {
                    let z = lut16(tabs.sig, sat16_add(gx[u] as i32, gh[u] as i32));
                    let r = lut16(tabs.sig, sat16_add(gx[nh + u] as i32, gh[nh + u] as i32));
                    let n_in = gx[2 * nh + u] as i32 + rsr32(r * gh[2 * nh + u] as i32, 15);
                    let n = lut16(tabs.tanh, sat16_add(n_in, 0));
                    let mix = sat16_add(n, rsr32(z * (h16[u] as i32 - n), 15));
                    want16[u] = mix;
                    want8[u] = clamp8_add(zp, rq(mix as i32, mult, shift));
                }
                for g in [CellGates::I16(&gx, &gh), CellGates::I32(&ax, &ah)] {
                    let (mut got16, mut h, mut y) =
                        (h16.clone(), std::vec![7i8; nh], std::vec![9i8; nh]);
                    assert!(super::avx512_gru_cell(
                        &p, &tabs, g, &mut got16, &mut h, &mut y
                    ));
                    assert_eq!(got16, want16, "H {nh} round {round} {g:?}");
                    assert_eq!(h, want8, "H {nh} round {round}");
                    assert_eq!(y, want8, "H {nh} round {round}");
                }
            }
        }
        // Lengths that disagree: refused, nothing written.
        let p = GruParams {
            steps: 1,
            input: 1,
            hidden: 2,
            reverse: false,
            h_zp: 0,
            hin_mult: 0,
            hin_shift: 0,
            hq_mult: 1,
            hq_shift: 0,
        };
        let mut h16 = [3i16; 2];
        let tabs = ActTables {
            sig: &sig,
            tanh: &tanh,
        };
        assert!(!super::avx512_gru_cell(
            &p,
            &tabs,
            CellGates::I16(&[0; 5], &[0; 6]),
            &mut h16,
            &mut [0; 2],
            &mut [0; 2]
        ));
        assert_eq!(h16, [3; 2]);
    }

    /// The AVX-512 LSTM cell against the scalar definition (`reference::lstm`, module doc) unit
    /// by unit: every `cell_exp` from 0 to 17 (above 15 it is capped, as in the scalar cell),
    /// every `H` to 35, extreme gates and cells, several output requantizations, wild tables.
    #[cfg(kinglet_avx512)]
    #[test]
    fn avx512_lstm_cell_matches_scalar() {
        use crate::kernels::matvec::CellGates;
        use crate::kernels::reference::fixed::{clamp8_add, lut16, rq, rsr32, sat16_add};
        use crate::kernels::reference::{lstm::LstmParams, ActTables};
        use crate::kernels::testutil::{sigmoid_table, tanh_table};
        if !Isa::Avx512Vnni.is_available() {
            std::eprintln!("avx512 lstm cell: not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(0x157);
        let (sig, tanh, wild) = (sigmoid_table(), tanh_table(), wild_table(&mut rng));
        for cell_exp in 0..=17u32 {
            for nh in 1..=35 {
                let round = nh % 4;
                let (mult, shift, zp) = match round {
                    0 => (1_140_850_688, 9, 0),
                    1 => (i32::MAX, -30, -128),
                    2 => (1 << 30, 2, 127),
                    _ => (
                        rng.i32_in(0, i32::MAX),
                        rng.i32_in(-31, 33),
                        rng.i32_in(-128, 127),
                    ),
                };
                let tabs = if nh % 5 == 0 {
                    ActTables {
                        sig: &wild,
                        tanh: &wild,
                    }
                } else {
                    ActTables {
                        sig: &sig,
                        tanh: &tanh,
                    }
                };
                let p = LstmParams {
                    steps: 1,
                    input: 1,
                    hidden: nh,
                    reverse: false,
                    h_zp: zp,
                    cell_exp,
                    hq_mult: mult,
                    hq_shift: shift,
                };
                // The products; the int16 scratch the scalar loop makes of them.
                let (ax, ah, c) = (
                    products(&mut rng, 4 * nh),
                    products(&mut rng, 4 * nh),
                    gates(&mut rng, nh),
                );
                let g: Vec<i16> = ax.iter().zip(&ah).map(|(&a, &r)| sat16_add(a, r)).collect();
                let ce = cell_exp.min(15);
                let (mut want_c, mut want8) = (c.clone(), std::vec![0i8; nh]);
                for u in 0..nh {
                    let i = lut16(tabs.sig, g[u]);
                    let o = lut16(tabs.sig, g[nh + u]);
                    let f = lut16(tabs.sig, g[2 * nh + u]);
                    let z = lut16(tabs.tanh, g[3 * nh + u]);
                    let s = rsr32(f * c[u] as i32, 15) + rsr32(i * z, 15 + ce);
                    let cu = s.clamp(-32768, 32767);
                    want_c[u] = cu as i16;
                    let tc = if ce >= 3 {
                        (cu << (ce - 3)).clamp(-32768, 32767)
                    } else {
                        rsr32(cu, 3 - ce)
                    };
                    want8[u] = clamp8_add(zp, rq(o * lut16(tabs.tanh, tc as i16), mult, shift));
                }
                for gs in [CellGates::I16(&g, &[]), CellGates::I32(&ax, &ah)] {
                    let (mut got_c, mut h, mut y) =
                        (c.clone(), std::vec![7i8; nh], std::vec![9i8; nh]);
                    assert!(super::avx512_lstm_cell(
                        &p, &tabs, gs, &mut got_c, &mut h, &mut y
                    ));
                    assert_eq!(got_c, want_c, "cell_exp {cell_exp} H {nh} {gs:?}");
                    assert_eq!(h, want8, "cell_exp {cell_exp} H {nh}");
                    assert_eq!(y, want8, "cell_exp {cell_exp} H {nh}");
                }
            }
        }
    }

    /// The attention's computed `exp2` entries: the factor tables are what their doc says, the
    /// product reproduces the quantizer's table entry by entry, and any other table (one entry
    /// off by one, anywhere) is refused, so that it takes the gathers.
    #[cfg(kinglet_avx512)]
    #[test]
    fn exp2_product_is_the_quantizer_table() {
        for (a, &h) in super::EXP2_HI.iter().enumerate() {
            assert_eq!(
                h as f64,
                (2f64.powf(-(a as f64) / 32.0) * 2147483648.0).round(),
                "{a}"
            );
        }
        for (b, &l) in super::EXP2_LO.iter().enumerate() {
            assert_eq!(
                l as f64,
                (2f64.powf(-(b as f64) / 1024.0) * 2147483648.0).round(),
                "{b}"
            );
        }
        if !Isa::Avx512Vnni.is_available() {
            std::eprintln!("exp2 product: AVX-512 not on this CPU, skipped");
            return;
        }
        // The quantizer's table (`quantize.rs`).
        use super::{EXP2_LEN, I32};
        let table: [I32; EXP2_LEN] = core::array::from_fn(|i| {
            I32::new((2f64.powf(-(i as f64) / 1024.0) * 65536.0).round() as i32)
        });
        // SAFETY: AVX-512F is present (checked above).
        assert!(unsafe { super::exp2_is_product(&table) });
        // Every entry through the sixteen-lane kernel, indices with high bits set as `t` has
        // them (only the low ten bits count).
        for c in (0..EXP2_LEN).step_by(16) {
            let mut got = [0i32; 16];
            // SAFETY: as above; `got` is 64 bytes.
            unsafe {
                let i = _mm512_add_epi32(
                    _mm512_set1_epi32((c + 1024 * (c % 7)) as i32),
                    _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                );
                let e = super::exp2_q16_x16(i, super::Exp2Factors::load());
                _mm512_storeu_si512(got.as_mut_ptr().cast(), e);
            }
            for (l, &g) in got.iter().enumerate() {
                assert_eq!(g, table[c + l].get(), "entry {}", c + l);
            }
        }
        for i in [0usize, 1, 2, 15, 16, 31, 32, 33, 500, 1007, 1022, 1023] {
            for delta in [-1, 1] {
                let mut t = table;
                t[i] = I32::new(t[i].get() + delta);
                // SAFETY: as above.
                assert!(
                    !unsafe { super::exp2_is_product(&t) },
                    "entry {i} {delta:+}"
                );
            }
        }
    }

    /// `ln_norm_fast_x16` (no correction step) against `div_round(diff · 4096, sd)` for `sd`
    /// over its whole range `[1, 2^22]`, with numerators on, just below and just above multiples
    /// of `sd` and quotients up to LayerNorm's bound `2^21`; and `rq_fast_x16` against the
    /// scalar `rq` for every shift it takes.
    #[cfg(kinglet_avx512)]
    #[test]
    fn ln_norm_fast_and_rq_fast_are_exact() {
        use super::super::reference::{div_round, fixed::rq};
        if !Isa::Avx512Vnni.is_available() {
            std::eprintln!("ln_norm_fast: AVX-512 not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(0x1F4);
        let mut checked = 0;
        for round in 0..30_000 {
            let sd: u64 = match round % 4 {
                0 => 1 + rng.next_u64() % 64,
                1 => (1 << 22) - rng.next_u64() % 64,
                2 => 1 + (rng.next_u64() >> (42 + rng.usize_below(22))),
                _ => 1 + rng.next_u64() % (1 << 22),
            };
            let sd = sd.min(1 << 22);
            // `|diff| < 2^23` and quotients `< 2^21`: `|diff| · 4096 < 2^21 · sd`.
            let dmax = ((1u64 << 21) * sd / 4096).clamp(1, (1 << 23) - 1);
            let diffs: [i32; 16] = core::array::from_fn(|i| {
                let q = rng.next_u64() % ((dmax * 4096) / sd + 1);
                // `num = |diff| · 4096 + ⌊sd/2⌋` near `q · sd`: solve for `|diff|`.
                let target = (q * sd + [0, sd - 1, 1][i % 3]).saturating_sub(sd / 2);
                let ad = match i % 4 {
                    0 => target / 4096,
                    1 => target.div_ceil(4096),
                    2 => rng.next_u64() % (dmax + 1),
                    _ => dmax - rng.next_u64() % dmax.min(8),
                }
                .min(dmax) as i32;
                if rng.usize_below(2) == 0 {
                    ad
                } else {
                    -ad
                }
            });
            let mut got = [0i32; 16];
            // SAFETY: AVX-512F is present (checked above); `diffs` and `got` are 64 bytes.
            unsafe {
                let n = super::ln_norm_fast_x16(
                    _mm512_loadu_si512(diffs.as_ptr().cast()),
                    (
                        _mm512_set1_pd(super::recip_high(sd as f64)),
                        _mm512_set1_pd((sd >> 1) as f64),
                    ),
                );
                _mm512_storeu_si512(got.as_mut_ptr().cast(), n);
            }
            for (&df, &g) in diffs.iter().zip(&got) {
                let want = div_round(df as i64 * 4096, sd as i64);
                assert_eq!(g as i64, want, "{df} · 4096 / {sd}");
                checked += 1;
            }
        }
        for _ in 0..20_000 {
            let acc: [i32; 16] = core::array::from_fn(|i| match i % 4 {
                0 => rng.i32_in(i32::MIN, i32::MAX),
                1 => [i32::MIN, i32::MAX, 0, -1, 1][rng.usize_below(5)],
                _ => rng.i32_in(-(1 << 21), 1 << 21),
            });
            let mult: [i32; 16] = core::array::from_fn(|i| match i % 3 {
                0 => rng.i32_in(i32::MIN, i32::MAX),
                1 => [i32::MIN, i32::MAX, 0, -1, 1 << 30][rng.usize_below(5)],
                _ => rng.i32_in(1 << 30, i32::MAX),
            });
            let shift: [i32; 16] = core::array::from_fn(|_| rng.i32_in(2, 31));
            // Zero points folded into the rounding, up to the bound `2^28`.
            let z = [0, rng.i32_in(-128, 127), 1 << 28, -(1 << 28)][rng.usize_below(4)];
            let mut got = [0i32; 16];
            // SAFETY: as above; the arrays are 64 bytes.
            unsafe {
                let m = _mm512_loadu_si512(mult.as_ptr().cast());
                let r = super::rq_fast_x16(
                    _mm512_loadu_si512(acc.as_ptr().cast()),
                    (
                        m,
                        _mm512_srli_epi64::<32>(m),
                        _mm512_sub_epi32(
                            _mm512_loadu_si512(shift.as_ptr().cast()),
                            _mm512_set1_epi32(2),
                        ),
                    ),
                    _mm512_set1_epi32(1 + 2 * z),
                );
                _mm512_storeu_si512(got.as_mut_ptr().cast(), r);
            }
            for i in 0..16 {
                assert_eq!(
                    got[i] as i64,
                    rq(acc[i], mult[i], shift[i]) as i64 + z as i64,
                    "rq({}, {}, {}) + {z}",
                    acc[i],
                    mult[i],
                    shift[i]
                );
            }
        }
        std::eprintln!("ln_norm_fast: {checked} quotients exact");
    }

    /// `recip_high51` (the attention's means, no correction step) against integer division at
    /// and around every quotient boundary, for denominators over the range of `l` (`[2^16,
    /// 2^25]`) and beyond (down to 1), numerators up to its bound `2^50`.
    #[cfg(kinglet_avx512)]
    #[test]
    fn recip_high51_truncates_to_the_floor() {
        let mut rng = Rng::new(0xD1F);
        let mut checked = 0;
        for round in 0..200_000 {
            let den: u64 = match round % 4 {
                0 => 1 + rng.next_u64() % 64,
                1 => (1 << 16) + rng.next_u64() % ((1 << 25) - (1 << 16) + 1),
                2 => (1 << 25) - rng.next_u64() % 64,
                _ => 1 + (rng.next_u64() >> (39 + rng.usize_below(25))),
            };
            let qmax = ((1u64 << 50) - 1) / den;
            let q = match round % 3 {
                0 => rng.next_u64() % (qmax + 1),
                1 => qmax - rng.next_u64() % qmax.clamp(1, 16),
                _ => rng.next_u64() % 64.min(qmax + 1),
            };
            // On, just below and just above a multiple of `den`, inside `[0, 2^50)`.
            let base = q * den;
            let num = match rng.usize_below(4) {
                0 => base,
                1 => base.saturating_sub(1),
                2 => base + den - 1,
                _ => base + rng.next_u64() % den,
            }
            .min((1 << 50) - 1);
            let est = (num as f64 * super::recip_high51(den as f64)).trunc();
            assert_eq!(est, (num / den) as f64, "{num} / {den}");
            checked += 1;
        }
        std::eprintln!("recip_high51: {checked} quotients exact");
    }

    /// `ln_norm_x16` against `div_round` for random and boundary `(diff, sd)` within the
    /// LayerNorm bound `|diff · 4096 / sd| < 2^21`, including exact multiples (where the
    /// estimate is one low).
    #[cfg(kinglet_avx512)]
    #[test]
    fn ln_norm_is_div_round() {
        use super::super::reference::div_round;
        if !Isa::Avx512Vnni.is_available() {
            std::eprintln!("ln_norm: AVX-512 not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(0x1A);
        let mut checked = 0;
        for _ in 0..20_000 {
            let sd = match rng.usize_below(3) {
                0 => 1 + rng.next_u64() % 16,
                1 => 1 + (rng.next_u64() >> (33 + rng.usize_below(31))),
                _ => 1 + (rng.next_u64() >> 33),
            };
            // |diff| < 2^23 with |diff| · 4096 / sd < 2^21 - 1.
            let lim = ((sd as u128 * ((1 << 21) - 2)) / 4096).min((1 << 23) - 1) as i64;
            let mut diffs = [0i32; 16];
            for d in diffs.iter_mut() {
                let v = match rng.usize_below(3) {
                    // `|diff| · 4096 + ⌊sd/2⌋` an exact multiple of `sd`, when one is in range.
                    0 => {
                        let q = rng.next_u64() as i64 % (lim * 4096 / sd as i64 + 1);
                        (q * sd as i64 - (sd / 2) as i64) / 4096
                    }
                    1 => lim - (rng.next_u64() % 3) as i64,
                    _ => rng.next_u64() as i64 % (lim + 1),
                };
                let v = v.clamp(0, lim);
                *d = if rng.usize_below(2) == 0 {
                    -v as i32
                } else {
                    v as i32
                };
            }
            let mut got = [0i32; 16];
            // SAFETY: AVX-512F is present (checked above); the arrays are 64 bytes.
            unsafe {
                let n = super::ln_norm_x16(_mm512_loadu_si512(diffs.as_ptr().cast()), sd);
                _mm512_storeu_si512(got.as_mut_ptr().cast(), n);
            }
            for (&d, &g) in diffs.iter().zip(&got) {
                assert_eq!(
                    g as i64,
                    div_round(d as i64 * 4096, sd as i64),
                    "{d} / {sd}"
                );
                checked += 1;
            }
        }
        std::eprintln!("ln_norm: {checked} quotients exact");
    }
}
