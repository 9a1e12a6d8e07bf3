//! The interpolated int16 activation-table lookup ([`fixed::lut16`](super::reference::fixed::lut16))
//! on AVX-512 VBMI, 64 (or 32) int16 lanes per call, without gathers; bit-exact.
//!
//! For `x: i16`, `i = (x >> 7) + 256 ∈ [0, 511]`, `f = x & 127`,
//! `lut16(tab, x) = tab[i] + (((tab[i+1] − tab[i]) · f + 64) >> 7)`.
//!
//! **Table layout** ([`Lut16Prep`], 2,112 bytes, prepared once per op call): `tab[0..512]` as
//! two byte planes (low bytes, high bytes) of eight 64-byte registers each, register `r`
//! holding entries `64r .. 64r + 64`; two consecutive registers are one 128-entry segment for
//! `vpermi2b`, which indexes by the low seven bits of each byte. `tab[512]` is kept apart.
//!
//! **One 64-lane lookup** (`tab[i]` for the 64 words of two vectors):
//! - `vpmultishiftqb` (twice, the second merge-masked) puts bits 7..14 of every word (`i & 255`)
//!   into one byte vector. It can only move bits within a qword, so it reads the two vectors'
//!   qwords regrouped by `vpunpck{l,h}qdq` (per 128-bit lane, both first qwords, then both
//!   second ones), and the bytes come out in an interleaved order: in 128-bit lane `L`, byte
//!   `16L + j` is word `8L + j` of the first vector and byte `16L + 8 + j` word `8L + j` of the
//!   second (`j < 8`). Every byte vector below uses that order.
//! - The segment `i >> 7` is bit 7 of that byte (`vpmovb2m`) and the inverted sign of `x`
//!   (`vpmovb2m` of the words' high bytes, picked by one `vpermt2b`): four disjoint lane masks.
//! - Each plane is four `vpermi2b`, one per segment, independent of each other, merged by their
//!   segment masks in a tree of three blends (two deep; a chain of four merge-masked `vpermi2b`
//!   through the index register, the first version, added up their latencies on a recurrent
//!   step's critical path).
//! - `vpunpck{l,h}bw` of the low and high planes give the words of both vectors in natural
//!   order (the index order above is chosen for this: in-lane interleaves instead of two
//!   `vpermt2b` per plane pair).
//!
//! **Interpolation**: in [`lut16_x64`], `b = tab[i + 1]` comes from a second set of planes
//! holding `tab[1..513]` (`Lut16Prep::next`), looked up with `a`'s index bytes and segment
//! masks: one index computation for both. In [`lut16_x32`], `b` is the lookup of `x + 128`
//! (wrapping) in the same 64-lane pass as `a`, except for `x ≥ 32640` (`i = 511`) where it
//! wraps to `i = 0` and is replaced by `tab[512]`. Then `(d · f + 64) >> 7 = vpmulhrsw(d, f << 8)`
//! exactly for int16 `d = b − a` and `f ≤ 127` (`vpmulhrsw` is `((d · F >> 14) + 1) >> 1`, and
//! `|d · F| < 2^31`, no saturation), and the sum `a + r` lies between `a` and `b`, so the 16-bit
//! add cannot overflow. The one precondition is that `d` is int16: every step
//! `tab[j + 1] − tab[j]` within `[−32768, 32767]`; [`lut16_prep_avx512`] refuses other tables
//! (the caller keeps its gather path). Sigmoid and tanh tables step by at most about 1024.
//!
//! **Cost**, measured on the development host (AMD EPYC, AVX-512 VBMI, two shared cores) by the
//! ignored test `x86_lut_bench` (`cargo test -p kinglet --release --lib x86_lut_bench --
//! --ignored --nocapture`): 4.2 ns per 64 lookups for [`lut16_x64`] (one index computation, 16
//! `vpermi2b` per plane set, 32 plane loads), 6.1 ns for [`lut16_x32`] twice, against 17.2 ns
//! for four 16-lane `vpgatherdd` lookups (`x86::lut16x16`). (The first `lut16_x64`, which
//! looked up `x + 128` for `b` with its own index computation, took 5.5-6.1 ns.) With the
//! blend trees and the in-lane interleaves (above), three runs on 2026-12-04, when the same
//! test's gathers took 19.0-23.5 ns: 4.9-5.2 ns, the same ratio to the gathers as before; the
//! change is in the latency (a recurrent step's chain), not the throughput this test measures.

#![allow(unsafe_code)]

use super::reference::ActTable;
use core::arch::x86_64::*;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A 513-entry int16 activation table prepared for [`lut16_x64`] / [`lut16_x32`]; see the
/// module doc. 2,112 bytes, 64-byte aligned; build it once per op call, on the stack.
/// Plain bytes (`zerocopy`), so that a session can keep one in its prepared operands
/// ([`RnnPrep`](super::x86_rnn::RnnPrep)).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(64))]
pub(crate) struct Lut16Prep {
    /// `planes[r]` (`r < 8`): the low bytes of `tab[64r .. 64r + 64]`; `planes[8 + r]`: the
    /// high bytes.
    planes: [[u8; 64]; 16],
    /// The same of `tab[1..513]` (`next[r]` holds `tab[64r + 1 .. 64r + 65]`): `tab[i + 1]`
    /// looked up with `tab[i]`'s index and segment masks ([`lut16_x64`]).
    next: [[u8; 64]; 16],
    /// `tab[512]`.
    last: i16,
    /// Zero: the struct's size without implicit padding.
    pad: [u8; 62],
}

/// Prepares `tab`, or `None` when some step `tab[j + 1] − tab[j]` is outside int16 (the
/// interpolation would not be exact; see the module doc). The sigmoid and tanh tables of a
/// model are always accepted.
#[cfg(test)]
pub(crate) fn lut16_prep(tab: &ActTable) -> Option<Lut16Prep> {
    let steps_fit = tab.windows(2).all(|w| {
        let d = w[1].get() as i32 - w[0].get() as i32;
        i16::try_from(d).is_ok()
    });
    if !steps_fit {
        return None;
    }
    let (mut planes, mut next) = ([[0u8; 64]; 16], [[0u8; 64]; 16]);
    for (j, (e, f)) in tab.iter().zip(&tab[1..]).enumerate() {
        let ([lo, hi], [nlo, nhi]) = (e.get().to_le_bytes(), f.get().to_le_bytes());
        planes[j / 64][j % 64] = lo;
        planes[8 + j / 64][j % 64] = hi;
        next[j / 64][j % 64] = nlo;
        next[8 + j / 64][j % 64] = nhi;
    }
    Some(Lut16Prep {
        planes,
        next,
        last: tab[512].get(),
        pad: [0; 62],
    })
}

/// [`lut16_prep`] sixty-four entries at a time, written in place at `out`: the steps checked by
/// comparing the wrapping and the saturating differences of neighbouring entries (equal exactly
/// when the step fits int16), the byte planes narrowed out of the words by `vpmovwb`. Returns
/// whether the table is accepted; then every field of `*out` is written, with the same values
/// as [`lut16_prep`]'s (in place: the caller keeps the 2,112 bytes where they are used, no
/// moves).
///
/// # Safety
/// AVX-512F/BW; `out` valid for writes of a `Lut16Prep`.
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn lut16_prep_avx512(tab: &ActTable, out: *mut Lut16Prep) -> bool {
    let t = tab.as_ptr();
    let mut bad = 0u32;
    for r in 0..8 {
        let (mut half, mut nhalf) = ([_mm256_setzero_si256(); 4], [_mm256_setzero_si256(); 4]);
        for q in 0..2 {
            let j = 64 * r + 32 * q;
            // SAFETY: entries `j .. j + 33 ≤ 513` of the table (`I16` is two bytes, alignment 1).
            let (a, b) = unsafe {
                (
                    _mm512_loadu_si512(t.add(j).cast()),
                    _mm512_loadu_si512(t.add(j + 1).cast()),
                )
            };
            bad |= _mm512_cmpneq_epi16_mask(_mm512_sub_epi16(b, a), _mm512_subs_epi16(b, a));
            half[q] = _mm512_cvtepi16_epi8(a);
            half[2 + q] = _mm512_cvtepi16_epi8(_mm512_srli_epi16::<8>(a));
            nhalf[q] = _mm512_cvtepi16_epi8(b);
            nhalf[2 + q] = _mm512_cvtepi16_epi8(_mm512_srli_epi16::<8>(b));
        }
        let join = |h: &[__m256i; 4], i: usize| {
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(h[i]), h[i + 1])
        };
        // SAFETY: planes `r` and `8 + r` (`r < 8`) of `*out`'s two plane sets, 64 bytes each
        // (the contract).
        unsafe {
            let (planes, next) = (&raw mut (*out).planes, &raw mut (*out).next);
            _mm512_storeu_si512((*planes)[r].as_mut_ptr().cast(), join(&half, 0));
            _mm512_storeu_si512((*planes)[8 + r].as_mut_ptr().cast(), join(&half, 2));
            _mm512_storeu_si512((*next)[r].as_mut_ptr().cast(), join(&nhalf, 0));
            _mm512_storeu_si512((*next)[8 + r].as_mut_ptr().cast(), join(&nhalf, 2));
        }
    }
    // SAFETY: as above.
    unsafe {
        (&raw mut (*out).last).write(tab[512].get());
        (&raw mut (*out).pad).write([0; 62]);
    }
    bad == 0
}

/// Eight little-endian qwords of a 64-byte vector constant.
const fn qwords(b: [u8; 64]) -> [i64; 8] {
    let mut q = [0i64; 8];
    let mut k = 0;
    while k < 8 {
        let mut v = 0u64;
        let mut j = 0;
        while j < 8 {
            v |= (b[8 * k + j] as u64) << (8 * j);
            j += 1;
        }
        q[k] = v as i64;
        k += 1;
    }
    q
}

/// Byte position, in the interleaved order (module doc), of lane `w` of vector `half`.
const fn interleaved(half: usize, w: usize) -> usize {
    16 * (w / 8) + 8 * half + w % 8
}

/// `vpermt2b` selector of the high byte of every word of two vectors, in the interleaved order.
const HIGH_BYTES: [i64; 8] = {
    let mut b = [0u8; 64];
    let mut half = 0;
    while half < 2 {
        let mut w = 0;
        while w < 32 {
            b[interleaved(half, w)] = (64 * half + 2 * w + 1) as u8;
            w += 1;
        }
        half += 1;
    }
    qwords(b)
};

/// `vpmultishiftqb` control: bits 7..14 of each of a qword's four words, twice.
const INDEX_BITS: i64 = 0x3727_1707_3727_1707;

/// A vector constant from its qwords.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn vec(q: [i64; 8]) -> __m512i {
    _mm512_set_epi64(q[7], q[6], q[5], q[4], q[3], q[2], q[1], q[0])
}

/// The sixteen plane registers of `p`.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn planes(rows: &[[u8; 64]; 16]) -> [__m512i; 16] {
    // (A plain loop: `array::map` here was left out of line, copying the planes per call.)
    let mut t = [_mm512_setzero_si512(); 16];
    for (v, r) in t.iter_mut().zip(rows) {
        // SAFETY: each row of `planes` is 64 bytes at a 64-byte-aligned offset of the
        // 64-byte-aligned struct, so every load is in bounds and aligned.
        *v = unsafe { _mm512_load_si512(r.as_ptr().cast()) };
    }
    t
}

/// `tab[i(x0[w])]` and `tab[i(x1[w])]` for the 64 words of `x0`, `x1`, natural order.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
fn lookup_x64(t: &[__m512i; 16], x0: __m512i, x1: __m512i) -> (__m512i, __m512i) {
    let ix = index_x64(x0, x1);
    chains_x64(t, &ix)
}

/// The index bytes and segment masks of a 64-lane lookup (module doc).
#[allow(clippy::incompatible_msrv)]
struct Index64 {
    idx: __m512i,
    seg: [__mmask64; 4],
}

/// [`Index64`] of the 64 words of `(x0, x1)`.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
fn index_x64(x0: __m512i, x1: __m512i) -> Index64 {
    let ctl = _mm512_set1_epi64(INDEX_BITS);
    // Per 128-bit lane, the first qwords of both vectors, then their second qwords: each
    // byte of the index then comes from its own qword (module doc).
    let (first, second) = (_mm512_unpacklo_epi64(x0, x1), _mm512_unpackhi_epi64(x0, x1));
    let idx = _mm512_multishift_epi64_epi8(ctl, first);
    let idx = _mm512_mask_multishift_epi64_epi8(idx, 0xF0F0_F0F0_F0F0_F0F0, ctl, second);
    // `x < 0` ⇔ `i < 256` (bit 8 of `i` clear); bit 7 of `i` is bit 7 of the index byte.
    let neg = _mm512_movepi8_mask(_mm512_permutex2var_epi8(x0, vec(HIGH_BYTES), x1));
    let b7 = _mm512_movepi8_mask(idx);
    Index64 {
        idx,
        seg: [!b7 & neg, b7 & neg, !(b7 | neg), b7 & !neg],
    }
}

/// The words of plane set `t` at the index of `ix`, in natural order.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
fn chains_x64(t: &[__m512i; 16], ix: &Index64) -> (__m512i, __m512i) {
    // The four segments looked up independently, then merged by their masks in a tree of
    // blends (two deep): the permutes' latencies overlap instead of adding up, which matters
    // on a recurrent step's chain.
    let chain = |t: &[__m512i]| {
        let r: [__m512i; 4] =
            core::array::from_fn(|s| _mm512_permutex2var_epi8(t[2 * s], ix.idx, t[2 * s + 1]));
        let lo = _mm512_mask_blend_epi8(ix.seg[1], r[0], r[1]);
        let hi = _mm512_mask_blend_epi8(ix.seg[3], r[2], r[3]);
        _mm512_mask_blend_epi8(ix.seg[2] | ix.seg[3], lo, hi)
    };
    let lo = chain(&t[..8]);
    let hi = chain(&t[8..]);
    // Bytes `16L + j` (`j < 8`) are the first vector's words `8L + j`, bytes `16L + 8 + j` the
    // second's: the in-lane byte interleaves give both in natural order.
    (_mm512_unpacklo_epi8(lo, hi), _mm512_unpackhi_epi8(lo, hi))
}

/// `a + ((b' − a) · f + 64) >> 7` with `b' = b`, or `tab[512]` where `i = 511`.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn interpolate(x: __m512i, a: __m512i, b: __m512i, last: __m512i) -> __m512i {
    let top = _mm512_cmpgt_epi16_mask(x, _mm512_set1_epi16(32639));
    let b = _mm512_mask_mov_epi16(b, top, last);
    let f8 = _mm512_and_si512(_mm512_slli_epi16::<8>(x), _mm512_set1_epi16(0x7F00));
    _mm512_add_epi16(a, _mm512_mulhrs_epi16(_mm512_sub_epi16(b, a), f8))
}

/// `y[k] = lut16(tab, x[k])` for the 64 int16 lanes of `(x0, x1)` (32 words each, natural
/// order in and out), `p = lut16_prep(tab)`. Bit-exact for every `x`.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX-512VBMI.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub(crate) unsafe fn lut16_x64(p: &Lut16Prep, x0: __m512i, x1: __m512i) -> (__m512i, __m512i) {
    // `tab[i]` from the planes and `tab[i + 1]` from the next-entry planes, both at `i`'s index
    // and segments (one index computation; `tab[512]` is the last next-entry).
    let ix = index_x64(x0, x1);
    let (a0, a1) = chains_x64(&planes(&p.planes), &ix);
    let (b0, b1) = chains_x64(&planes(&p.next), &ix);
    let mix = |x: __m512i, a: __m512i, b: __m512i| {
        let f8 = _mm512_and_si512(_mm512_slli_epi16::<8>(x), _mm512_set1_epi16(0x7F00));
        _mm512_add_epi16(a, _mm512_mulhrs_epi16(_mm512_sub_epi16(b, a), f8))
    };
    (mix(x0, a0, b0), mix(x1, a1, b1))
}

/// `y[k] = lut16(tab, x[k])` for the 32 int16 lanes of `x`, `p = lut16_prep(tab)`: `tab[i]`
/// and `tab[i + 1]` in one 64-lane lookup. Bit-exact for every `x`.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX-512VBMI.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub(crate) unsafe fn lut16_x32(p: &Lut16Prep, x: __m512i) -> __m512i {
    let t = planes(&p.planes);
    let (a, b) = lookup_x64(&t, x, _mm512_add_epi16(x, _mm512_set1_epi16(128)));
    interpolate(x, a, b, _mm512_set1_epi16(p.last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::matvec::has_vbmi;
    use crate::kernels::reference::fixed::lut16;
    use crate::kernels::testutil::{sigmoid_table, tanh_table, Rng};
    use crate::kernels::x86::lut16x16;
    use std::vec::Vec;
    use zerocopy::little_endian::I16;

    fn vbmi() -> bool {
        let ok = has_vbmi();
        if !ok {
            std::eprintln!("x86_lut: avx512vbmi not on this CPU, skipped");
        }
        ok
    }

    /// Random walks whose steps fit int16 (the clamp only shortens a step), with runs of
    /// extreme steps, plateaus at ±32767 / −32768 and the limit steps ±32767 and −32768.
    fn random_tables() -> Vec<(std::string::String, ActTable)> {
        let mut rng = Rng::new(0x1u64 << 40 | 0x7AB);
        let mut out = Vec::new();
        for n in 0..6 {
            let mut t = [I16::new(0); 513];
            let mut v = rng.i32_in(-32768, 32767);
            for e in t.iter_mut() {
                let s = match (n, rng.usize_below(8)) {
                    (0, _) => rng.i32_in(-32768, 32767),
                    (1, k) => [-32768, 32767, -32767, 32767, 0, 1, -1, -32768][k],
                    (2, _) => rng.i32_in(-300, 300),
                    (_, 0) => -32768,
                    (_, 1) => 32767,
                    (_, _) => rng.i32_in(-4096, 4096),
                };
                v = (v + s).clamp(-32768, 32767);
                *e = I16::new(v as i16);
            }
            out.push((std::format!("random {n}"), t));
        }
        // Alternating between the extremes by the largest legal steps.
        let alt = core::array::from_fn(|j| I16::new(if j % 2 == 0 { -32768 } else { -1 }));
        out.push(("alternating -32768 / -1".into(), alt));
        let alt = core::array::from_fn(|j| I16::new(if j % 2 == 0 { 32767 } else { 0 }));
        out.push(("alternating 32767 / 0".into(), alt));
        out
    }

    fn all_tables() -> Vec<(std::string::String, ActTable)> {
        let mut v = std::vec![
            ("sigmoid".into(), sigmoid_table()),
            ("tanh".into(), tanh_table())
        ];
        v.extend(random_tables());
        v
    }

    fn to_vec(v: &[i16; 32]) -> __m512i {
        // SAFETY: 64 bytes read from a 64-byte array (SSE2/AVX-512F: the callers checked).
        unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
    }
    fn from_vec(v: __m512i) -> [i16; 32] {
        let mut o = [0i16; 32];
        // SAFETY: 64 bytes written into a 64-byte array.
        unsafe { _mm512_storeu_si512(o.as_mut_ptr().cast(), v) };
        o
    }

    /// Every `x` in every lane position of both kernels, for the real and random tables.
    #[test]
    fn x86_lut_exhaustive_every_lane() {
        if !vbmi() {
            return;
        }
        for (name, tab) in all_tables() {
            let p = lut16_prep(&tab).unwrap_or_else(|| panic!("{name}: refused"));
            let want: Vec<i16> = (i16::MIN..=i16::MAX)
                .map(|x| lut16(&tab, x) as i16)
                .collect();
            // Block `n` of 64 consecutive `x` goes in rotated by `rot`: over all `rot` each `x`
            // visits every lane of the 64-lane kernel (and, by `rot mod 32`, of the 32-lane).
            for rot in 0..64 {
                for blk in 0..1024 {
                    let mut xs = [[0i16; 32]; 2];
                    for k in 0..64 {
                        let l = (k + rot) % 64;
                        xs[l / 32][l % 32] = (blk * 64 + k) as u16 as i16 ^ i16::MIN;
                    }
                    // SAFETY: VBMI (with F and BW) checked above.
                    let (y0, y1) = unsafe { lut16_x64(&p, to_vec(&xs[0]), to_vec(&xs[1])) };
                    let ys = [from_vec(y0), from_vec(y1)];
                    for h in 0..2 {
                        // SAFETY: as above.
                        let y32 = from_vec(unsafe { lut16_x32(&p, to_vec(&xs[h])) });
                        for l in 0..32 {
                            let x = xs[h][l];
                            let w = want[(x as i32 + 32768) as usize];
                            assert_eq!(ys[h][l], w, "{name}: x64 x {x} lane {}", 32 * h + l);
                            assert_eq!(y32[l], w, "{name}: x32 x {x} lane {l}");
                        }
                    }
                }
            }
        }
    }

    /// The prepared table is what the module doc says it is.
    #[test]
    fn x86_lut_prep_layout() {
        assert_eq!(core::mem::size_of::<Lut16Prep>(), 2112);
        assert_eq!(core::mem::align_of::<Lut16Prep>(), 64);
        let t = tanh_table();
        let p = lut16_prep(&t).unwrap_or_else(|| panic!("tanh refused"));
        for (j, e) in t.iter().enumerate().take(512) {
            let v = u16::from_le_bytes([p.planes[j / 64][j % 64], p.planes[8 + j / 64][j % 64]]);
            assert_eq!(v as i16, e.get(), "entry {j}");
        }
        assert_eq!(p.last, t[512].get());
    }

    /// The vector preparation equals the scalar one, for accepted and refused tables (a step
    /// just outside int16 at every position of a vector).
    #[test]
    fn prep_avx512_equals_prep() {
        if !crate::kernels::matvec::has_vbmi() {
            std::eprintln!("x86_lut: avx512vbmi not on this CPU, skipped");
            return;
        }
        let same = |t: &ActTable| {
            let mut out = core::mem::MaybeUninit::<Lut16Prep>::uninit();
            // SAFETY: the CPU has VBMI, hence AVX-512F/BW; `out` is a `Lut16Prep`.
            let ok = unsafe { lut16_prep_avx512(t, out.as_mut_ptr()) };
            match lut16_prep(t) {
                None => !ok,
                // SAFETY: accepted, so every field was written.
                Some(a) => {
                    ok && {
                        let b = unsafe { out.assume_init_ref() };
                        a.planes == b.planes && a.next == b.next && a.last == b.last
                    }
                }
            }
        };
        assert!(same(&sigmoid_table()) && same(&tanh_table()));
        for j in 0..512 {
            let mut t = tanh_table();
            t[j] = I16::new(-20000);
            t[j + 1] = I16::new(if j % 2 == 0 { 12768 } else { 12767 });
            assert!(same(&t), "step at {j}");
        }
    }

    /// `lut16_prep` refuses exactly the tables with a step outside int16, anywhere.
    #[test]
    fn x86_lut_prep_refuses_steps_outside_int16() {
        assert!(lut16_prep(&sigmoid_table()).is_some());
        assert!(lut16_prep(&tanh_table()).is_some());
        for (name, tab) in random_tables() {
            assert!(lut16_prep(&tab).is_some(), "{name}");
        }
        for j in [0usize, 5, 127, 128, 255, 256, 511] {
            for (a, b, ok) in [
                (-32768, 0, false),
                (0, -32768, true),
                (32767, -1, true),
                (32767, -2, false),
                (-32768, -1, true),
                (-32768, 32767, false),
                (-1, 32767, false),
            ] {
                let mut t = [I16::new(a); 513];
                for e in &mut t[j + 1..] {
                    *e = I16::new(b);
                }
                assert_eq!(lut16_prep(&t).is_some(), ok, "step {a} -> {b} at {j}");
            }
        }
    }

    const BENCH_VECS: usize = 1024;

    #[allow(clippy::incompatible_msrv)]
    #[inline(never)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    fn run_x64(p: &Lut16Prep, xs: &[__m512i], sink: &mut __m512i) {
        let mut acc = *sink;
        for c in xs.chunks_exact(2) {
            // SAFETY: the features are enabled on this function.
            let (y0, y1) = unsafe { lut16_x64(p, c[0], c[1]) };
            acc = _mm512_xor_si512(acc, _mm512_xor_si512(y0, y1));
        }
        *sink = acc;
    }

    /// As `run_x64`, but the table registers are loaded on every call (`black_box` hides that
    /// `p` is the same), as in a caller that cannot keep them.
    #[allow(clippy::incompatible_msrv)]
    #[inline(never)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    fn run_x64_reload(p: &Lut16Prep, xs: &[__m512i], sink: &mut __m512i) {
        let mut acc = *sink;
        for c in xs.chunks_exact(2) {
            let p = std::hint::black_box(p);
            // SAFETY: the features are enabled on this function.
            let (y0, y1) = unsafe { lut16_x64(p, c[0], c[1]) };
            acc = _mm512_xor_si512(acc, _mm512_xor_si512(y0, y1));
        }
        *sink = acc;
    }

    #[allow(clippy::incompatible_msrv)]
    #[inline(never)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    fn run_x32(p: &Lut16Prep, xs: &[__m512i], sink: &mut __m512i) {
        let mut acc = *sink;
        for &x in xs {
            // SAFETY: the features are enabled on this function.
            acc = _mm512_xor_si512(acc, unsafe { lut16_x32(p, x) });
        }
        *sink = acc;
    }

    /// Four 16-lane gathers per 64 lookups, on the same words sign-extended to i32 lanes.
    #[allow(clippy::incompatible_msrv)]
    #[inline(never)]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn run_gather(tab: &ActTable, xs: &[__m512i], sink: &mut __m512i) {
        let mut acc = *sink;
        for &x in xs {
            let lo = _mm512_cvtepi16_epi32(_mm512_castsi512_si256(x));
            let hi = _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64::<1>(x));
            // SAFETY: AVX-512F is enabled on this function; the lanes are int16.
            let (y0, y1) = unsafe { (lut16x16(tab, lo), lut16x16(tab, hi)) };
            acc = _mm512_xor_si512(acc, _mm512_xor_si512(y0, y1));
        }
        *sink = acc;
    }

    /// Timing, not an assertion: `cargo test --release -p kinglet x86_lut_bench -- --ignored
    /// --nocapture`. Prints ns per 64 lookups (throughput over 1024 vectors, best of 20).
    #[test]
    #[ignore]
    fn x86_lut_bench() {
        if !vbmi() {
            return;
        }
        let tab = tanh_table();
        let p = lut16_prep(&tab).unwrap_or_else(|| panic!("tanh refused"));
        let mut rng = Rng::new(7);
        let xs: Vec<__m512i> = (0..BENCH_VECS)
            .map(|_| {
                let v: [i16; 32] = core::array::from_fn(|_| rng.i32_in(-32768, 32767) as i16);
                to_vec(&v)
            })
            .collect();
        let mut sink = to_vec(&[0; 32]);
        let time = |f: &mut dyn FnMut()| {
            let mut best = f64::MAX;
            for _ in 0..20 {
                let t0 = std::time::Instant::now();
                for _ in 0..20 {
                    f();
                }
                let ns = t0.elapsed().as_nanos() as f64 / 20.0;
                best = best.min(ns / (BENCH_VECS as f64 / 2.0));
            }
            best
        };
        // SAFETY (three closures): VBMI (with F and BW) checked above.
        let x64 = time(&mut || unsafe { run_x64(&p, &xs, &mut sink) });
        // SAFETY: as above.
        let x64_reload = time(&mut || unsafe { run_x64_reload(&p, &xs, &mut sink) });
        let x32 = time(&mut || unsafe { run_x32(&p, &xs, &mut sink) });
        let gather = time(&mut || unsafe { run_gather(&tab, &xs, &mut sink) });
        std::eprintln!(
            "ns per 64 lookups: lut16_x64 {x64:.2} (tables reloaded per call {x64_reload:.2}), \
             lut16_x32 ×2 {x32:.2}, 4 gathers {gather:.2} \
             (sink {:?})",
            from_vec(sink)[0]
        );
    }
}
