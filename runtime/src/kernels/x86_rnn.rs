//! x86_64 AVX-512 VNNI sequence kernels for the recurrent ops (`reference::lstm::lstm_i8`,
//! `reference::gru::gru_i8`), reached through `matvec::lstm_seq_simd` / `gru_seq_simd`.
//!
//! The gate products of a step are short (`K` = 1 to 64 columns) and were the larger part of a
//! recurrent step on AVX-512 (54 % of `kws_lstm`'s time in `perf`, the rest the cell and the
//! requantization): a row-at-a-time VNNI product spends most of its work on the horizontal sum
//! of each row's sixteen lanes. Here each op repacks `W` and `R` once, before its first step,
//! with the FC kernel's repack in column-major order
//! ([`avx512_pack_strided`](super::x86::avx512_pack_strided): sixteen rows × four columns per
//! 64-byte vector, `pack[(c·nb + b)·16 + i] = w[16b + i, 4c .. 4c + 4]` for `nb = ⌈rows/16⌉`
//! blocks, so that the blocks of a pass sit at fixed offsets from one pointer), so
//! that every step's product is, per block of sixteen rows, `⌈K/4⌉` `vpdpbusd` of a packed
//! vector against the broadcast dword of four inputs, with the sixteen row sums already in
//! their lanes: no horizontal sums, four blocks at a time sharing each broadcast. `vpdpbusd`
//! multiplies unsigned by signed bytes, so the inputs are made unsigned (`x ^ 0x80 = x + 128`)
//! and the repack's `corr[j] = 128 · Σ_k w[j, k]` comes off each row. Sums wrap modulo 2^32
//! like the reference's (`Σ (x + 128) · w − 128 · Σ w = Σ x · w` exactly in modular
//! arithmetic), so the products are bit-identical. Each block of sixteen sums is requantized in
//! registers before it is stored, on one path for every shift ([`rq16`], constants laid out per
//! op by [`RqRows`]); the input products of eight steps run in one pass over `W`
//! ([`packed_matmat`]); the LSTM's recurrent product also forms the int16 gates
//! ([`gate_store`]).
//!
//! The cells run in int16 lanes, 64 units per pass ([`lstm_cell_w32`], [`gru_cell_w32`]), with
//! the activation tables read by AVX-512 VBMI permutes ([`x86_lut`](super::x86_lut)) where the
//! CPU has VBMI and the tables' steps fit int16, else by gathers. They are exact when the
//! sigmoid table holds no -32768 (checked per op); other tables keep the i32 cells
//! ([`avx512_lstm_cell`](super::x86::avx512_lstm_cell),
//! [`avx512_gru_cell`](super::x86::avx512_gru_cell)). docs/decisions.md has the measurements
//! and what was tried and dropped.
//!
//! The packed matrices live on the stack, at most [`PACK`] dwords (16 KB) each: a cell with
//! `G·H ≤ 256` gate rows and `⌈G·H/16⌉ · 16 · ⌈K/4⌉ ≤ 4096` (LSTM or GRU with `H = 64` and
//! `K ≤ 64`: 16 KB for `R`). Larger cells take the general path. The repack costs about one
//! product per matrix, paid once per op call rather than once per step, or once per session
//! when the session keeps the operands prepared ([`RnnPrep`], `Model::prepared_bytes`).

#![allow(unsafe_code)]

use super::matvec::has_vbmi;
use super::matvec::CellGates;
use super::reference::fixed::MATVEC_BLOCK;
use super::reference::{
    gru::GruParams, lstm::LstmParams, step_index, ActTable, ActTables, GateWeights,
};
use super::x86::{avx512_gru_cell, avx512_lstm_cell, avx512_pack_strided, lut16x16, Align64};
use super::x86_lut::{lut16_prep_avx512, lut16_x32, lut16_x64, Lut16Prep};
use core::arch::x86_64::*;
use core::mem::MaybeUninit;
use zerocopy::little_endian::I32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Dwords of one packed matrix on the stack (16 KB).
const PACK: usize = 4096;

/// A packed matrix's stack buffer, 64-byte aligned: every packed vector then sits in one cache
/// line (a 64-byte load that straddles two lines costs two L1 accesses: the products ran about
/// 1.8x slower from a buffer at a 32-byte offset in a scratch timing loop: 0.237 against 0.134 ns
/// per `vpdpbusd`).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(64))]
struct PackBuf([u32; PACK]);
/// Widest input (`I` or `H`) taken: the unsigned copy of the vector.
const KMAX: usize = 256;

/// Whether a `[rows, k]` matrix packs into [`PACK`] dwords.
fn packs(rows: usize, k: usize) -> bool {
    k > 0 && k <= KMAX && rows.div_ceil(16) * 16 * k.div_ceil(4) <= PACK
}

/// A matrix repacked by `avx512_pack_strided` (column-major), with its row corrections.
struct Packed<'a> {
    pack: &'a [u32],
    corr: &'a [i32],
    k: usize,
}

/// The requantization of one product's rows, `rq(bias[j] + Σ_k w[j, k] · x[k], pairs[j])`, in
/// the kernels' vector layout, built once per op call ([`RqRows::new`]): `bc[j] = bias[j] −
/// corr[j]` (wrapping: the packed product's unsigned-input correction folded into the bias),
/// `m[j]` the multiplier and `n1[j] = 30 + clamp(shift, −30, 31)`, so that for every shift
/// `rq(acc) = sat32(((acc · m >> n1) + 1) >> 1)` ([`rq16`]); `clamp` is whether any row has a
/// negative shift, the only rows whose result can leave int32 (for shift 0, `|acc| ≤ 2^31` and
/// `m < 2^31` keep `(acc · m + 2^30) >> 31` within `[−2^31 + 1, 2^31 − 2]`).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(64))]
struct RqRows {
    bc: [i32; MATVEC_BLOCK],
    m: [i32; MATVEC_BLOCK],
    n1: [i32; MATVEC_BLOCK],
    /// The shifts themselves, for [`rq16_fast`].
    s: [i32; MATVEC_BLOCK],
    /// 1 or 0 (plain bytes: a session keeps these in its prepared operands, [`RnnPrep`]).
    clamp: u32,
    /// 1 when [`rq16_fast`] is exact for every row (every shift in `[0, 31]`, every sum within
    /// `±(2^29 − 1)`), else 0.
    fast: u32,
    /// Zero: the struct's size without implicit padding.
    pad: [u32; 14],
}

impl RqRows {
    /// The constants of the first `corr.len()` rows (the rest zero) of a product over `k`
    /// int8 columns; `None` when `bias` or `pairs` is shorter than that, there are more than
    /// [`MATVEC_BLOCK`] rows or `k > KMAX`.
    fn new(bias: &[I32], pairs: &[I32], corr: &[i32], k: usize) -> Option<Self> {
        let n = corr.len();
        if n > MATVEC_BLOCK || bias.len() < n || pairs.len() < 2 * n || k > KMAX {
            return None;
        }
        let mut r = RqRows {
            bc: [0; MATVEC_BLOCK],
            m: [0; MATVEC_BLOCK],
            n1: [0; MATVEC_BLOCK],
            s: [0; MATVEC_BLOCK],
            clamp: 0,
            fast: 0,
            pad: [0; 14],
        };
        // SAFETY: AVX-512 VNNI is the active level (the caller's dispatch: AVX-512F); lengths
        // checked above.
        let (negative, fast) = unsafe { rq_rows_fill(&mut r, 0, bias, pairs, corr, k) };
        (r.clamp, r.fast) = (negative as u32, fast as u32);
        Some(r)
    }
}

/// [`RqRows::new`]'s rows, sixteen at a time, written from row `dst` on: the pairs
/// de-interleaved by two `vpermt2d`. Returns whether any shift is negative, and whether
/// [`rq16_fast`] is exact for every row: every shift in `[0, 31]` and `|bias| ≤ 2^29 − 1 −
/// 16384 · k`, so that the exact sum `bias + Σ_k w · x` of int8 operands stays within
/// `±(2^29 − 1)` (each product is at most `128 · 128` in magnitude).
///
/// # Safety
/// AVX-512F; `dst + corr.len() ≤ MATVEC_BLOCK`, `bias.len() ≥ corr.len()`, `pairs.len() ≥ 2 ·
/// corr.len()`, `k ≤ KMAX`.
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f")]
unsafe fn rq_rows_fill(
    r: &mut RqRows,
    dst: usize,
    bias: &[I32],
    pairs: &[I32],
    corr: &[i32],
    k: usize,
) -> (bool, bool) {
    let n = corr.len();
    // `k ≤ KMAX = 256`: the limit is positive.
    let limit = _mm512_set1_epi32((1 << 29) - 1 - 16384 * k as i32);
    let mut slow = 0u16;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    let (lo, hi, base) = (
        _mm512_set1_epi32(-30),
        _mm512_set1_epi32(31),
        _mm512_set1_epi32(30),
    );
    let mut negative = 0u16;
    for j in (0..n).step_by(16) {
        let mask: __mmask16 = if n - j >= 16 {
            0xffff
        } else {
            (1 << (n - j)) - 1
        };
        // SAFETY: the masks keep every access inside rows `j..n`: of `bias` and `corr`, of
        // `pairs` (two dwords a row, the halves' masks taken from `mask`), and rows
        // `dst + j .. dst + n` of the `MATVEC_BLOCK`-long arrays of `r`.
        unsafe {
            let pp = pairs.as_ptr().add(2 * j);
            let p0 = _mm512_maskz_loadu_epi64(mask as __mmask8, pp.cast());
            let p1 = _mm512_maskz_loadu_epi64((mask >> 8) as __mmask8, pp.add(16).cast());
            let m = _mm512_permutex2var_epi32(p0, even, p1);
            let sh = _mm512_permutex2var_epi32(p0, odd, p1);
            negative |= _mm512_mask_cmplt_epi32_mask(mask, sh, _mm512_setzero_si512());
            let n1 = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(sh, lo), hi), base);
            let b = _mm512_maskz_loadu_epi32(mask, bias.as_ptr().add(j).cast());
            // `|b|` as unsigned (`|i32::MIN|` is 2^31 there, above the limit).
            slow |= _mm512_mask_cmpgt_epu32_mask(mask, _mm512_abs_epi32(b), limit)
                | _mm512_mask_cmpgt_epu32_mask(mask, sh, _mm512_set1_epi32(31));
            _mm512_mask_storeu_epi32(r.s.as_mut_ptr().add(dst + j).cast(), mask, sh);
            let c = _mm512_maskz_loadu_epi32(mask, corr.as_ptr().add(j).cast());
            _mm512_mask_storeu_epi32(
                r.bc.as_mut_ptr().add(dst + j).cast(),
                mask,
                _mm512_sub_epi32(b, c),
            );
            _mm512_mask_storeu_epi32(r.m.as_mut_ptr().add(dst + j).cast(), mask, m);
            _mm512_mask_storeu_epi32(r.n1.as_mut_ptr().add(dst + j).cast(), mask, n1);
        }
    }
    (negative != 0, slow == 0)
}

/// `rq(acc + bc, m, shift)` ([`fixed::rq`](super::reference::fixed::rq)) for sixteen i32 lanes,
/// every shift on one path: the 64-bit products of the even and odd lanes (`vpmuldq`),
/// `((v >> n1) + 1) >> 1 = (v + 2^(n1)) >> (n1 + 1)` (the added power of two is a multiple of
/// `2^n1`, so flooring first changes nothing), the low dwords blended back; with `clamp`,
/// saturated to int32 first. Equal to `rq` for every shift: `rq`'s 32-bit paths are this
/// formula's value (its doc), and its general path is this formula.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn rq16(acc: __m512i, bc: __m512i, m: __m512i, n1: __m512i, clamp: bool) -> __m512i {
    let acc = _mm512_add_epi32(acc, bc);
    let one = _mm512_set1_epi64(1);
    let pe = _mm512_mul_epi32(acc, m);
    let po = _mm512_mul_epi32(_mm512_srli_epi64::<32>(acc), _mm512_srli_epi64::<32>(m));
    let ne = _mm512_and_si512(n1, _mm512_set1_epi64(0xFFFF_FFFF));
    let no = _mm512_srli_epi64::<32>(n1);
    let mut ve = _mm512_srai_epi64::<1>(_mm512_add_epi64(_mm512_srav_epi64(pe, ne), one));
    let mut vo = _mm512_srai_epi64::<1>(_mm512_add_epi64(_mm512_srav_epi64(po, no), one));
    if clamp {
        let (lo, hi) = (
            _mm512_set1_epi64(i32::MIN as i64),
            _mm512_set1_epi64(i32::MAX as i64),
        );
        ve = _mm512_min_epi64(_mm512_max_epi64(ve, lo), hi);
        vo = _mm512_min_epi64(_mm512_max_epi64(vo, lo), hi);
    }
    // The odd lanes' low dwords into the high halves of their qwords (a shift and a blend, no
    // shuffle: the permute unit is the cells' bottleneck).
    _mm512_mask_blend_epi32(0xAAAA, ve, _mm512_slli_epi64::<32>(vo))
}

/// [`rq16`] in 32-bit lanes, for an op whose rows all qualify ([`RqRows::fast`]): with
/// `|v| ≤ 2^29 − 1` (`v = acc + bc`) and `0 ≤ shift ≤ 31`, `hi = (4v · m) >> 32 = ⌊v · m /
/// 2^30⌋` (the high dwords of two `vpmuldq`), and `rq = ((hi >> shift) + 1) >> 1`:
/// `⌊⌊y / 2^30⌋ / 2^s⌋ = ⌊y / 2^(30 + s)⌋` for `y = v · m`, so this is `⌊(y + 2^(30 + s)) /
/// 2^(31 + s)⌋`, the single rounding `rq` defines for every shift (for `s ≥ 2` its 32-bit
/// path `((y >> 32) >> (s − 2) + 1) >> 1`, the same floor). Ten operations against fifteen,
/// one fewer load.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn rq16_fast(acc: __m512i, bc: __m512i, m: __m512i, s: __m512i) -> __m512i {
    let v4 = _mm512_slli_epi32::<2>(_mm512_add_epi32(acc, bc));
    let pe = _mm512_mul_epi32(v4, m);
    let po = _mm512_mul_epi32(_mm512_srli_epi64::<32>(v4), _mm512_srli_epi64::<32>(m));
    let hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64::<32>(pe), po);
    let r = _mm512_add_epi32(_mm512_srav_epi32(hi, s), _mm512_set1_epi32(1));
    _mm512_srai_epi32::<1>(r)
}

/// The sixteen sums `acc` of rows `r..r + 16` requantized by `rq` ([`rq16`], or
/// [`rq16_fast`] with `FAST`, which the caller chose from `rq.fast`).
///
/// # Safety
/// AVX-512F; `mask` selects only rows `< MATVEC_BLOCK`.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn rq_rows<const FAST: bool>(
    rq: &RqRows,
    r: usize,
    mask: __mmask16,
    acc: __m512i,
) -> __m512i {
    // SAFETY: the caller's bounds: the masked loads read rows `r..` of the
    // `MATVEC_BLOCK`-long arrays.
    unsafe {
        let ld = |a: &[i32; MATVEC_BLOCK]| _mm512_maskz_loadu_epi32(mask, a.as_ptr().add(r).cast());
        if FAST {
            rq16_fast(acc, ld(&rq.bc), ld(&rq.m), ld(&rq.s))
        } else {
            rq16(acc, ld(&rq.bc), ld(&rq.m), ld(&rq.n1), rq.clamp != 0)
        }
    }
}

/// [`rq_rows`], the lanes of `mask` stored at `out`.
///
/// # Safety
/// AVX-512F; `mask` selects only rows `< MATVEC_BLOCK` and only elements inside the slice `out`
/// points into.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn rq_store<const FAST: bool>(
    rq: &RqRows,
    r: usize,
    mask: __mmask16,
    acc: __m512i,
    out: *mut i32,
) {
    // SAFETY: the caller's bounds.
    unsafe { _mm512_mask_storeu_epi32(out.cast(), mask, rq_rows::<FAST>(rq, r, mask, acc)) };
}

/// `sat32(a + b)` of sixteen i32 lanes: the wrapping sum, except where it overflowed
/// (`(a ^ s) & (b ^ s)` negative), where it is the int32 bound of `a`'s sign (`a` and `b` then
/// share it).
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn adds_epi32(a: __m512i, b: __m512i) -> __m512i {
    let s = _mm512_add_epi32(a, b);
    let ovf = _mm512_cmplt_epi32_mask(
        _mm512_ternarylogic_epi32::<0x42>(a, b, s),
        _mm512_setzero_si512(),
    );
    let bound = _mm512_xor_si512(_mm512_srai_epi32::<31>(a), _mm512_set1_epi32(i32::MAX));
    _mm512_mask_blend_epi32(ovf, s, bound)
}

/// The LSTM gates of rows `r..r + 16` from their recurrent sums: `sat16(sat32(ax + rq(acc)))`
/// (the scalar loop's int16 scratch) stored at `gates` for the lanes of `mask`.
///
/// # Safety
/// AVX-512F; `mask` selects only rows `< MATVEC_BLOCK` and only elements inside the slices `ax`
/// and `gates` point into.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn gate_store<const FAST: bool>(
    rq: &RqRows,
    r: usize,
    mask: __mmask16,
    acc: __m512i,
    ax: *const i32,
    gates: *mut i16,
) {
    // SAFETY: the caller's bounds; masked-out lanes are neither read nor written.
    unsafe {
        let a = _mm512_maskz_loadu_epi32(mask, ax.cast());
        let v = adds_epi32(a, rq_rows::<FAST>(rq, r, mask, acc));
        _mm512_mask_cvtsepi32_storeu_epi16(gates.cast(), mask, v);
    }
}

/// Repacks `w [rows, k]` into `buf` and `corr`. The caller checked [`packs`] and
/// `w.len() = rows · k`, `corr.len() = rows`, and that AVX-512 VNNI is the active level.
fn pack<'a>(
    w: &[i8],
    rows: usize,
    k: usize,
    buf: &'a mut MaybeUninit<PackBuf>,
    corr: &'a mut [i32],
) -> Packed<'a> {
    let words = rows.div_ceil(16) * 16 * k.div_ceil(4);
    // SAFETY: the active level is AVX-512 VNNI (the caller's dispatch); `w.len() = rows · k`,
    // `corr.len() = rows`, and `buf` holds `PACK ≥ words` dwords, all of which
    // `avx512_pack_strided` writes (its contract: every dword of `pack[..⌈rows/16⌉ · k4 · 16]`), so
    // the slice covers initialised words only.
    let pack = unsafe {
        let p = buf.as_mut_ptr().cast::<u32>();
        avx512_pack_strided(w, k, rows, p, corr, (1, rows.div_ceil(16)));
        core::slice::from_raw_parts(p, words)
    };
    Packed { pack, corr, k }
}

/// [`pack`] into a session's prepared operands ([`RnnPrep`]).
///
/// # Safety
/// AVX-512 VNNI; [`packs`]`(rows, k)`, `w.len() = rows · k`, `corr.len() = rows`.
unsafe fn pack_into(w: &[i8], rows: usize, k: usize, buf: &mut PackBuf, corr: &mut [i32]) {
    // SAFETY: the contract; `buf` holds `PACK` dwords, at least the `⌈rows/16⌉ · 16 · ⌈k/4⌉`
    // that `avx512_pack_strided` writes (`packs`).
    unsafe { avx512_pack_strided(w, k, rows, buf.0.as_mut_ptr(), corr, (1, rows.div_ceil(16))) };
}

/// The packed matrix of [`pack_into`] (`rows` rows of `k` columns) and its corrections.
fn packed_of<'a>(buf: &'a PackBuf, corr: &'a [i32], rows: usize, k: usize) -> Packed<'a> {
    let words = rows.div_ceil(16) * 16 * k.div_ceil(4);
    Packed {
        pack: buf.0.get(..words).unwrap_or_default(),
        corr: corr.get(..rows).unwrap_or_default(),
        k,
    }
}

/// `out[j] = Σ_k w[j, k] · x[k]` (wrapping) for `j < out.len()` from the packed `m`, eight
/// (then four, then one) blocks of sixteen rows per pass; with `rq = Some(rows)` (built from
/// `m`'s corrections), requantized in the same pass, `out[j] = rq(bias[j] + Σ_k w[j, k] ·
/// x[k], pairs[j])` ([`rq16`]). Returns `false`, writing nothing, when the lengths disagree
/// (`x.len() = k`, `out.len() ≤ corr.len() ≤ MATVEC_BLOCK`, the pack holding every row block).
#[cfg(test)]
fn packed_matvec(m: &Packed<'_>, x: &[i8], out: &mut [i32], rq: Option<&RqRows>) -> bool {
    let (k, n) = (m.k, out.len());
    let ok = x.len() == k
        && k <= KMAX
        && n <= m.corr.len()
        && n <= MATVEC_BLOCK
        && m.pack.len() >= n.div_ceil(16) * 16 * k.div_ceil(4);
    if !ok {
        return false;
    }
    // SAFETY: the active level is AVX-512 VNNI (the caller's dispatch); lengths checked above.
    unsafe { packed_matvec_avx512(m, x, out, rq) };
    true
}

/// See [`packed_matvec`].
///
/// # Safety
/// AVX-512F/BW/VNNI; `x.len() = m.k ≤ KMAX`, `out.len() ≤ m.corr.len()`, `out.len() ≤
/// MATVEC_BLOCK`, `m.pack` holding `⌈out.len()/16⌉ · 16 · ⌈k/4⌉` dwords.
#[cfg(test)]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn packed_matvec_avx512(m: &Packed<'_>, x: &[i8], out: &mut [i32], rq: Option<&RqRows>) {
    let mut xb = [0u32; KMAX / 4];
    // SAFETY: the contract (`x.len() = m.k ≤ KMAX`, the packed and output lengths), passed on.
    unsafe {
        unsigned_dwords(x, &mut xb);
        let blocks = 0..out.len().div_ceil(16);
        if rq.is_some_and(|r| r.fast != 0) {
            packed_blocks::<true>(m, &xb, blocks, out, rq, None);
        } else {
            packed_blocks::<false>(m, &xb, blocks, out, rq, None);
        }
    }
}

/// The row blocks `blocks` of [`packed_matvec`]'s product (rows `16·b .. min(16·b + 16, n)` for
/// `b` in `blocks`, `n = out.len()`, written at the same rows of `out`) against `xb`, the input
/// made unsigned by [`unsigned_dwords`].
///
/// # Safety
/// As [`packed_matvec_avx512`], with `blocks.end ≤ ⌈out.len()/16⌉`; `gates`' slices at least
/// `out.len()` long.
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn packed_blocks<const FAST: bool>(
    m: &Packed<'_>,
    xb: &[u32; KMAX / 4],
    blocks: core::ops::Range<usize>,
    out: &mut [i32],
    rq: Option<&RqRows>,
    gates: Option<(&[i32], &mut [i16])>,
) {
    let (k, n) = (m.k, out.len());
    // With `gates = Some((ax, g))` (and `rq`), the LSTM's gates instead of `out`
    // ([`gate_store`]; `ax`, `g` at least `n` long, the contract).
    let fuse = gates.map(|(ax, g)| (ax.as_ptr(), g.as_mut_ptr()));
    let k4 = k.div_ceil(4);
    let xb = &xb[..k4];
    let pk = m.pack.as_ptr();
    let nb = n.div_ceil(16);
    // The packed vector of block `b + j` at input group `c`, `q` pointing at block `b`'s: the
    // blocks of one group are adjacent (column-major layout, [`pack`]), so a pass's loads are
    // fixed offsets from one pointer.
    macro_rules! wv {
        ($q:expr, $j:expr) => {
            // SAFETY: `q = pk + (c·nb + b)·16` with `b + j < nb`, `c < k4`, so the vector ends
            // by `⌈n/16⌉ · 16 · k4 ≤ m.pack.len()` (the contract).
            unsafe { _mm512_loadu_si512($q.add($j * 16).cast()) }
        };
    }
    // Block `b`'s vector of group `c`.
    // SAFETY (of the pointer arithmetic, used by `wv!` only): `(c·nb + b)·16 < m.pack.len()`.
    let at = |b: usize, c: usize| pk.wrapping_add((c * nb + b) * 16);
    // Stores block `b`'s sixteen sums less their corrections (masked past `n`). (A macro, not
    // a closure, so that it compiles with this function's target features.)
    macro_rules! store {
        ($b:expr, $acc:expr) => {{
            let r = 16 * $b;
            let mask: __mmask16 = if n - r >= 16 {
                0xffff
            } else {
                (1u16 << (n - r)) - 1
            };
            // SAFETY: the mask keeps every access inside rows `r..n` of `corr`, `out`, the
            // fused `ax` and gates, and `rq`'s arrays (`n ≤` each of their lengths, the
            // contract).
            unsafe {
                let o = out.as_mut_ptr().add(r);
                if let (Some(rq), Some((ax, g))) = (rq, fuse) {
                    gate_store::<FAST>(rq, r, mask, $acc, ax.add(r), g.add(r));
                } else if let Some(rq) = rq {
                    rq_store::<FAST>(rq, r, mask, $acc, o);
                } else {
                    let corr = _mm512_maskz_loadu_epi32(mask, m.corr.as_ptr().add(r).cast());
                    _mm512_mask_storeu_epi32(o.cast(), mask, _mm512_sub_epi32($acc, corr));
                }
            }
        }};
    }
    let (mut b, end) = (blocks.start, blocks.end);
    // One pass over the inputs for the blocks `b + j` of the listed accumulators: they share
    // each broadcast, then each is finished into the sink.
    macro_rules! pass {
        ($($a:ident $j:literal),+) => {{
            $(let mut $a = _mm512_setzero_si512();)+
            for (c, &d) in xb.iter().enumerate() {
                let (xv, q) = (_mm512_set1_epi32(d as i32), at(b, c));
                $($a = _mm512_dpbusd_epi32($a, xv, wv!(q, $j));)+
            }
            $(store!(b + $j, $a);)+
        }};
    }
    // Eight blocks (128 rows) per pass: eight independent `vpdpbusd` chains share each
    // broadcast, enough to cover the instruction's latency. (Named accumulators and one column
    // offset, not an array indexed by block: LLVM vectorized the array's address arithmetic
    // into extracts that cost more than the products.)
    while b + 8 <= end {
        pass!(a0 0, a1 1, a2 2, a3 3, a4 4, a5 5, a6 6, a7 7);
        b += 8;
    }
    while b + 4 <= end {
        pass!(a0 0, a1 1, a2 2, a3 3);
        b += 4;
    }
    while b + 2 <= end {
        pass!(a0 0, a1 1);
        b += 2;
    }
    while b < end {
        pass!(a0 0);
        b += 1;
    }
}

/// The LSTM op on AVX-512 VNNI with `W` and `R` repacked once (module doc); returns `false`,
/// writing nothing, when the shapes do not fit (`4H ≤ 256`, both matrices within [`PACK`]) or
/// a length disagrees. Bit-identical with `lstm_i8`'s loop.
#[allow(clippy::too_many_arguments)]
pub(crate) fn avx512_lstm_seq(
    p: &LstmParams,
    wt: &GateWeights<'_>,
    tabs: &ActTables<'_>,
    x: &[i8],
    h: &mut [i8],
    c: &mut [i16],
    y: &mut [i8],
) -> bool {
    let cached = prepared(wt, 4, p.input, p.hidden);
    let exact = match cached {
        Some(pp) => pp.exact(),
        None => lstm_cell_w32_exact(tabs),
    };
    let shape = Seq {
        cell_hb: exact,
        fuse: exact,
        gates: 4,
        input: p.input,
        hidden: p.hidden,
        steps: p.steps,
        reverse: p.reverse,
    };
    if c.len() != p.hidden {
        return false;
    }
    let nh = p.hidden;
    macro_rules! word_cell {
        ($cell:ident, $luts:expr) => {
            run_seq(&shape, wt, cached, x, h, y, |_ax, _ah, g16, h, yt, hb| {
                let ok = g16.len() == 4 * nh && h.len() == nh && yt.len() == nh;
                // SAFETY: AVX-512 VNNI is the active level (the caller's dispatch: F and BW),
                // and VBMI where the VBMI tables exist (`VbmiLuts::new` checked it); lengths
                // checked.
                ok && {
                    unsafe {
                        if nh <= 32 {
                            $cell::<1>(p, $luts, g16, c, h, yt, hb.as_mut_ptr().cast())
                        } else {
                            $cell::<2>(p, $luts, g16, c, h, yt, hb.as_mut_ptr().cast())
                        }
                    };
                    true
                }
            })
        };
    }
    if exact {
        let mut slot = MaybeUninit::uninit();
        let luts = match cached {
            Some(pp) => pp.luts(),
            None => VbmiLuts::new(tabs, &mut slot),
        };
        return match luts {
            Some(l) => word_cell!(lstm_cell_w32_vbmi, l),
            None => word_cell!(lstm_cell_w32, tabs),
        };
    }
    run_seq(&shape, wt, cached, x, h, y, |ax, ah, _g16, h, yt, _hb| {
        avx512_lstm_cell(p, tabs, CellGates::I32(ax, ah), c, h, yt)
    })
}

/// `lut16(tab, x)` ([`fixed::lut16`](super::reference::fixed::lut16)) for the 32 int16 lanes of
/// `x`, two 16-lane 32-bit gathers each reading `tab[i]` (low half) and `tab[i + 1]` (high half).
///
/// # Safety
/// AVX-512F/BW.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn lut16_gather_w32(tab: &ActTable, x: __m512i) -> __m512i {
    let halves = [_mm512_castsi512_si256(x), _mm512_extracti64x4_epi64::<1>(x)];
    // SAFETY: the caller's features; the lanes are int16, `lut16x16`'s contract.
    let [lo, hi] =
        halves.map(|v| unsafe { _mm512_cvtepi32_epi16(lut16x16(tab, _mm512_cvtepi16_epi32(v))) });
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// 32 int16 lanes from two halves of sixteen.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn join16(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// `clamp8(zp + rq(p, mult, shift))` for the sixteen i32 lanes of `p`, in i64 lanes (no int32
/// clamp needed first: `clamp8(zp + sat32(v)) = clamp8(zp + v)`), as i32 lanes.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn rq_clamp8(p: __m512i, m: __m512i, n1: __m512i, zp: __m512i) -> __m512i {
    let one = _mm512_set1_epi64(1);
    let (lo, hi) = (_mm512_set1_epi64(-128), _mm512_set1_epi64(127));
    let pe = _mm512_mul_epi32(p, m);
    let po = _mm512_mul_epi32(_mm512_srli_epi64::<32>(p), m);
    let fin = |v: __m512i| {
        let r = _mm512_srai_epi64::<1>(_mm512_add_epi64(_mm512_srav_epi64(v, n1), one));
        _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(r, zp), lo), hi)
    };
    _mm512_mask_blend_epi32(0xAAAA, fin(pe), _mm512_slli_epi64::<32>(fin(po)))
}

/// The output requantization `clamp8(zp + rq(v, mult, shift))` of the word cells as
/// [`rq_clamp8`]'s broadcast operands: `(mult, 30 + clamp(shift, −30, 31), zp)` in i64 lanes.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
fn hq_consts(mult: i32, shift: i32, zp: i32) -> (__m512i, __m512i, __m512i) {
    (
        _mm512_set1_epi64(mult as i64),
        _mm512_set1_epi64(30 + shift.clamp(-30, 31) as i64),
        _mm512_set1_epi64(zp as i64),
    )
}

/// The lane masks of a word cell's pass over `NV` vectors of 32 units with `left` units to go:
/// one 32-lane mask per vector (the lanes past the last unit clear), and whether the second
/// vector holds any unit.
#[allow(clippy::incompatible_msrv)]
fn unit_masks<const NV: usize>(left: usize) -> ([__mmask32; 2], bool) {
    let m64: u64 = if left >= 32 * NV {
        !0 >> (64 - 32 * NV)
    } else {
        (1u64 << left) - 1
    };
    (
        [m64 as __mmask32, (m64 >> 32) as __mmask32],
        NV == 2 && left > 32,
    )
}

/// Stores the new `h` of 32 units from the word cells: `qa`, `qb` the int8 values in i32 lanes
/// (`vpunpcklwd` / `vpunpckhwd` order, which `vpackssdw` undoes), at unit `at` of `h` and `y`
/// (the lanes of `mask`), and `h ^ 0x80` at `hb` (the next step's recurrent input, as
/// `unsigned_dwords` makes it).
///
/// # Safety
/// AVX-512F/BW; `mask` selects only units inside `h`, `y` and the bytes behind `hb` from `at`.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn store_h(
    qa: __m512i,
    qb: __m512i,
    mask: __mmask32,
    at: usize,
    h: &mut [i8],
    y: &mut [i8],
    hb: *mut u8,
) {
    let hq = _mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_packs_epi32(qa, qb)));
    let flipped = _mm512_xor_si512(hq, _mm512_set1_epi8(i8::MIN));
    let mb = mask as __mmask64;
    // SAFETY: the caller's bounds; masked-out bytes are neither written nor faulted on.
    unsafe {
        _mm512_mask_storeu_epi8(h.as_mut_ptr().wrapping_add(at).cast(), mb, hq);
        _mm512_mask_storeu_epi8(y.as_mut_ptr().wrapping_add(at).cast(), mb, hq);
        _mm512_mask_storeu_epi8(hb.wrapping_add(at).cast(), mb, flipped);
    }
}

/// Whether [`lstm_cell_w32`] is exact for these parameters: it computes `rsr(f · c, 15)` (and,
/// for `cell_exp = 0`, `rsr(i · z, 15)`) with `vpmulhrsw`, which differs from the i32
/// definition only for `-32768 · -32768`; the sigmoid outputs `i`, `f` lie between entries of
/// the sigmoid table, so a table without `-32768` rules that out.
fn lstm_cell_w32_exact(tabs: &ActTables<'_>) -> bool {
    // A fold without early exit: it vectorizes (the scan runs once per op call).
    !tabs
        .sig
        .iter()
        .fold(false, |any, e| any | (e.get() == i16::MIN))
}

/// The sigmoid and tanh tables prepared for [`lut16_x64`] and [`lut16_x32`] (AVX-512 VBMI), 2 × 2,112 bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct VbmiLuts {
    sig: Lut16Prep,
    tanh: Lut16Prep,
}

impl VbmiLuts {
    /// Both tables prepared in `slot`, when this CPU has AVX-512 VBMI and both tables' steps
    /// fit int16 ([`lut16_prep_avx512`]); otherwise `None` (the cells gather). In place: the
    /// 2,176 bytes are written once, where the cells read them.
    fn new<'a>(tabs: &ActTables<'_>, slot: &'a mut MaybeUninit<VbmiLuts>) -> Option<&'a VbmiLuts> {
        if !has_vbmi() {
            return None;
        }
        let p = slot.as_mut_ptr();
        // SAFETY: VBMI (checked above) comes with AVX-512F/BW on every CPU that has it, and the
        // caller's level is AVX-512 VNNI (F, BW); both field pointers are valid for writes.
        let ok = unsafe {
            lut16_prep_avx512(tabs.sig, &raw mut (*p).sig)
                && lut16_prep_avx512(tabs.tanh, &raw mut (*p).tanh)
        };
        // SAFETY: both accepted, so every field of both tables was written.
        ok.then(|| unsafe { slot.assume_init_ref() })
    }
}

/// The sigmoid of two vectors of 32 int16 lanes (of the first only, the second returned as it
/// is, unless `both`), gathered.
///
/// # Safety
/// AVX-512F/BW.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn sig_gather(
    l: &ActTables<'_>,
    x0: __m512i,
    x1: __m512i,
    both: bool,
) -> (__m512i, __m512i) {
    // SAFETY: the caller's features.
    unsafe {
        let y1 = if both {
            lut16_gather_w32(l.sig, x1)
        } else {
            x1
        };
        (lut16_gather_w32(l.sig, x0), y1)
    }
}

/// The tanh of two vectors of 32 int16 lanes (the first only unless `both`), gathered.
///
/// # Safety
/// AVX-512F/BW.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn tanh_gather(
    l: &ActTables<'_>,
    x0: __m512i,
    x1: __m512i,
    both: bool,
) -> (__m512i, __m512i) {
    // SAFETY: the caller's features.
    unsafe {
        let y1 = if both {
            lut16_gather_w32(l.tanh, x1)
        } else {
            x1
        };
        (lut16_gather_w32(l.tanh, x0), y1)
    }
}

/// The sigmoid of two vectors of 32 int16 lanes by permutes, one 64-lane lookup (the table's
/// planes loaded once for both); of the first only (one 32-lane lookup) unless `both`.
///
/// # Safety
/// AVX-512F/BW/VBMI.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn sig_vbmi(l: &VbmiLuts, x0: __m512i, x1: __m512i, both: bool) -> (__m512i, __m512i) {
    // SAFETY: the caller's features.
    unsafe {
        // The planes are read where they are used: a pointer the optimiser cannot see
        // through keeps it from copying both tables' 32 planes to the stack at every call.
        let t = &core::hint::black_box(l).sig;
        if both {
            lut16_x64(t, x0, x1)
        } else {
            (lut16_x32(t, x0), x1)
        }
    }
}

/// The tanh of two vectors of 32 int16 lanes by permutes, as [`sig_vbmi`] (the first only
/// unless `both`).
///
/// # Safety
/// AVX-512F/BW/VBMI.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn tanh_vbmi(l: &VbmiLuts, x0: __m512i, x1: __m512i, both: bool) -> (__m512i, __m512i) {
    // SAFETY: the caller's features.
    unsafe {
        // The planes are read where they are used: a pointer the optimiser cannot see
        // through keeps it from copying both tables' 32 planes to the stack at every call.
        let t = &core::hint::black_box(l).tanh;
        if both {
            lut16_x64(t, x0, x1)
        } else {
            (lut16_x32(t, x0), x1)
        }
    }
}

/// Defines a word-lane LSTM cell ([`lstm_cell_w32`]'s doc) with the given target features and
/// table lookups (`$sig(luts, x)`, `$tanh(luts, x)`: 32 int16 lanes each).
macro_rules! lstm_cell_w32_fn {
    ($(#[$doc:meta])* $name:ident, $feat:literal, $luts:ty, $sig:ident, $tanh:ident) => {
        $(#[$doc])*
        #[allow(clippy::incompatible_msrv)]
        #[target_feature(enable = $feat)]
        unsafe fn $name<const NV: usize>(
            p: &LstmParams,
            luts: &$luts,
            gates: &[i16],
            c: &mut [i16],
            h: &mut [i8],
            y: &mut [i8],
            hb: *mut u8,
        ) {
            let nh = c.len();
            let e = p.cell_exp.min(15);
            let (m, n1, zp) = hq_consts(p.hq_mult, p.hq_shift, p.h_zp);
            let mut u = 0;
            while u < nh {
                // Two vectors of 32 units, the lanes past `nh` masked off (their addresses
                // formed with `wrapping_add`, nothing read or written there).
                let (mq, both) = unit_masks::<NV>(nh - u);
                // SAFETY: the masks select units `u..min(u + 64, nh)`: inside gate block `k` of
                // `gates` (`4·nh` long) at `k·nh + u`, and inside `c`, `h`, `y`, `hb` (`nh`
                // long) at `u`.
                unsafe {
                    let nv = if both { 2 } else { 1 };
                    let gate = |k: usize, v: usize| {
                        if v >= nv {
                            return _mm512_setzero_si512();
                        }
                        let g = gates.as_ptr().wrapping_add(k * nh + u + 32 * v);
                        _mm512_maskz_loadu_epi16(mq[v], g.cast())
                    };
                    let (i0, i1) = $sig(luts, gate(0, 0), gate(0, 1), both);
                    let (o0, o1) = $sig(luts, gate(1, 0), gate(1, 1), both);
                    let (f0, f1) = $sig(luts, gate(2, 0), gate(2, 1), both);
                    let (z0, z1) = $tanh(luts, gate(3, 0), gate(3, 1), both);
                    let mut tc = [_mm512_setzero_si512(); 2];
                    let ifz = [(i0, f0, z0), (i1, f1, z1)];
                    for (v, (i, f, z)) in ifz.into_iter().enumerate().take(nv) {
                        let cp = c.as_mut_ptr().wrapping_add(u + 32 * v);
                        let cc = _mm512_maskz_loadu_epi16(mq[v], cp.cast());
                        let t1 = _mm512_mulhrs_epi16(f, cc);
                        let t2 = match e {
                            0 => _mm512_mulhrs_epi16(i, z),
                            1 => _mm512_add_epi16(
                                _mm512_mulhi_epi16(i, z),
                                _mm512_srli_epi16::<15>(_mm512_mullo_epi16(i, z)),
                            ),
                            _ => _mm512_srai_epi16::<1>(_mm512_add_epi16(
                                _mm512_sra_epi16(
                                    _mm512_mulhi_epi16(i, z),
                                    _mm_cvtsi32_si128(e as i32 - 2),
                                ),
                                _mm512_set1_epi16(1),
                            )),
                        };
                        let cu = _mm512_adds_epi16(t1, t2);
                        _mm512_mask_storeu_epi16(cp.cast(), mq[v], cu);
                        tc[v] = if e >= 3 {
                            let k = e as i32 - 3;
                            let sh = _mm512_sll_epi16(cu, _mm_cvtsi32_si128(k));
                            let over = _mm512_cmpgt_epi16_mask(cu, _mm512_set1_epi16(i16::MAX >> k));
                            let under = _mm512_cmplt_epi16_mask(cu, _mm512_set1_epi16(i16::MIN >> k));
                            let sh = _mm512_mask_mov_epi16(sh, over, _mm512_set1_epi16(i16::MAX));
                            _mm512_mask_mov_epi16(sh, under, _mm512_set1_epi16(i16::MIN))
                        } else {
                            let n = 3 - e as i32;
                            _mm512_add_epi16(
                                _mm512_sra_epi16(cu, _mm_cvtsi32_si128(n)),
                                _mm512_and_si512(
                                    _mm512_sra_epi16(cu, _mm_cvtsi32_si128(n - 1)),
                                    _mm512_set1_epi16(1),
                                ),
                            )
                        };
                    }
                    let (t0, t1) = $tanh(luts, tc[0], tc[1], both);
                    for (v, (o, t)) in [(o0, t0), (o1, t1)].into_iter().enumerate().take(nv) {
                        let (lo, hi) = (_mm512_mullo_epi16(o, t), _mm512_mulhi_epi16(o, t));
                        let qa = rq_clamp8(_mm512_unpacklo_epi16(lo, hi), m, n1, zp);
                        let qb = rq_clamp8(_mm512_unpackhi_epi16(lo, hi), m, n1, zp);
                        store_h(qa, qb, mq[v], u + 32 * v, h, y, hb);
                    }
                }
                u += 32 * NV;
            }
        }
    };
}

lstm_cell_w32_fn!(
    /// One LSTM step's cell (`reference::lstm`, module doc) in int16 lanes, 64 units per pass
    /// (two vectors, the last lanes masked; one vector when `NV = 1`), bit-identical with the
    /// scalar `cell` when [`lstm_cell_w32_exact`]: `gates` the step's `4H` gates, `c` (int16),
    /// `h` and `y` (int8) updated.
    /// Per unit, with `e = min(cell_exp, 15)` and int16 operands:
    ///
    /// - `gates`: `sat16(sat32(ax + ah))` as int16, formed by the recurrent product's epilogue
    ///   ([`gate_store`]); the four lookups;
    /// - `rsr(f · c, 15) = vpmulhrsw(f, c)`;
    /// - `rsr(i · z, 15 + e)` from the high and low words of `p = i · z`: `vpmulhrsw` for `e = 0`,
    ///   `hi + (lo >> 15)` (logical) for `e = 1`, `((hi >> (e − 2)) + 1) >> 1` for `e ≥ 2` (the
    ///   rounding term `2^(14 + e)` is then a multiple of `2^16`);
    /// - `c = sat16(sum)` by `vpaddsw` (both terms are int16);
    /// - `tc = sat16(c << (e − 3))` (shifted, then the lanes beyond `±2^(15 − (e − 3))` set to the
    ///   bounds) or `rsr(c, 3 − e) = (c >> n) + ((c >> (n − 1)) & 1)`;
    /// - `h = clamp8(h_zp + rq(o · tanh(tc)))` in i64 lanes from the products' 32-bit halves
    ///   interleaved per 128-bit lane, packed back in order by `vpackssdw`; `h ^ 0x80` also at
    ///   `hb` (the next step's recurrent input, as `unsigned_dwords` makes it).
    ///
    /// # Safety
    /// AVX-512F/BW; `gates.len() = 4 · c.len()`, `h.len() = y.len() = c.len()`, `hb` valid for
    /// writes of `c.len()` bytes.
    lstm_cell_w32,
    "avx512f,avx512bw",
    ActTables<'_>,
    sig_gather,
    tanh_gather
);
lstm_cell_w32_fn!(
    /// [`lstm_cell_w32`] with the lookups by permutes ([`x86_lut`](super::x86_lut)).
    ///
    /// # Safety
    /// As [`lstm_cell_w32`], and AVX-512 VBMI.
    lstm_cell_w32_vbmi,
    "avx512f,avx512bw,avx512vbmi",
    VbmiLuts,
    sig_vbmi,
    tanh_vbmi
);

/// Sixteen i32 rows at `a` (the lanes of `mask`, the rest 0) narrowed to int16 with saturation.
///
/// # Safety
/// AVX-512F; `mask` selects only elements inside the slice `a` points into.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn sat16_load(a: *const i32, mask: __mmask16) -> __m256i {
    // SAFETY: the caller's bounds; masked-out lanes are neither read nor faulted on.
    _mm512_cvtsepi32_epi16(unsafe { _mm512_maskz_loadu_epi32(mask, a.cast()) })
}

/// The 32 int16 lanes of `v` sign-extended to i32 in the order of `vpunpcklwd` / `vpunpckhwd`
/// (per 128-bit lane, words 0-3 then 4-7), which `vpackssdw` undoes.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn widen_unpacked(v: __m512i) -> (__m512i, __m512i) {
    let sign = _mm512_srai_epi16::<15>(v);
    (
        _mm512_unpacklo_epi16(v, sign),
        _mm512_unpackhi_epi16(v, sign),
    )
}

/// `a · b` for the 32 int16 lanes of `a` and `b` as i32, in [`widen_unpacked`]'s order.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn mul_unpacked(a: __m512i, b: __m512i) -> (__m512i, __m512i) {
    let (lo, hi) = (_mm512_mullo_epi16(a, b), _mm512_mulhi_epi16(a, b));
    (_mm512_unpacklo_epi16(lo, hi), _mm512_unpackhi_epi16(lo, hi))
}

/// Whether [`gru_cell_w32`] is exact for these tables: `rsr(r · gh, 15)` by `vpmulhrsw` needs
/// `r ≠ -32768`, and `|z · (h16 − n)| < 2^31 − 2^14` needs `z ≠ -32768`; both lie between
/// sigmoid table entries.
fn gru_cell_w32_exact(tabs: &ActTables<'_>) -> bool {
    lstm_cell_w32_exact(tabs)
}

/// Defines a word-lane GRU cell ([`gru_cell_w32`]'s doc) with the given target features and
/// table lookups, as [`lstm_cell_w32_fn`].
macro_rules! gru_cell_w32_fn {
    ($(#[$doc:meta])* $name:ident, $feat:literal, $luts:ty, $sig:ident, $tanh:ident) => {
        $(#[$doc])*
        #[allow(clippy::incompatible_msrv, clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        unsafe fn $name<const NV: usize>(
            p: &GruParams,
            luts: &$luts,
            ax: &[i32],
            ah: &[i32],
            h16: &mut [i16],
            h: &mut [i8],
            y: &mut [i8],
            hb: *mut u8,
        ) {
            let nh = h16.len();
            let (m, n1, zp) = hq_consts(p.hq_mult, p.hq_shift, p.h_zp);
            let round = _mm512_set1_epi32(1 << 14);
            let mut u = 0;
            while u < nh {
                // Two vectors of 32 units, as in the LSTM cell.
                let (mq, both) = unit_masks::<NV>(nh - u);
                // SAFETY: the masks select units `u..min(u + 64, nh)`: inside gate block `k` of
                // `ax` and `ah` (`3·nh` long) at `k·nh + u`, and inside `h16`, `h`, `y`, `hb`
                // (`nh` long) at `u`.
                unsafe {
                    let nv = if both { 2 } else { 1 };
                    let g = |src: &[i32], k: usize, v: usize| {
                        if v >= nv {
                            return _mm512_setzero_si512();
                        }
                        let a = src.as_ptr().wrapping_add(k * nh + u + 32 * v);
                        let mv = mq[v];
                        join16(
                            sat16_load(a, mv as __mmask16),
                            sat16_load(a.wrapping_add(16), (mv >> 16) as __mmask16),
                        )
                    };
                    let sum = |k: usize, v: usize| _mm512_adds_epi16(g(ax, k, v), g(ah, k, v));
                    let (z0, z1) = $sig(luts, sum(0, 0), sum(0, 1), both);
                    let (r0, r1) = $sig(luts, sum(1, 0), sum(1, 1), both);
                    let n_in = |r: __m512i, v: usize| {
                        _mm512_adds_epi16(g(ax, 2, v), _mm512_mulhrs_epi16(r, g(ah, 2, v)))
                    };
                    let (n0, n1v) = $tanh(luts, n_in(r0, 0), n_in(r1, 1), both);
                    for (v, (z, n)) in [(z0, n0), (z1, n1v)].into_iter().enumerate().take(nv) {
                        let hp = h16.as_mut_ptr().wrapping_add(u + 32 * v);
                        let hs = _mm512_maskz_loadu_epi16(mq[v], hp.cast());
                        let (zh_a, zh_b) = mul_unpacked(z, hs);
                        let (zn_a, zn_b) = mul_unpacked(z, n);
                        let (n_a, n_b) = widen_unpacked(n);
                        let mix = |zh: __m512i, zn: __m512i, n: __m512i| {
                            let d = _mm512_sub_epi32(zh, zn);
                            _mm512_add_epi32(n, _mm512_srai_epi32::<15>(_mm512_add_epi32(d, round)))
                        };
                        let (mix_a, mix_b) = (mix(zh_a, zn_a, n_a), mix(zh_b, zn_b, n_b));
                        let mixw = _mm512_packs_epi32(mix_a, mix_b);
                        _mm512_mask_storeu_epi16(hp.cast(), mq[v], mixw);
                        let (wa, wb) = widen_unpacked(mixw);
                        let qa = rq_clamp8(wa, m, n1, zp);
                        let qb = rq_clamp8(wb, m, n1, zp);
                        store_h(qa, qb, mq[v], u + 32 * v, h, y, hb);
                    }
                }
                u += 32 * NV;
            }
        }
    };
}

gru_cell_w32_fn!(
    /// One GRU step's cell (`reference::gru`, module doc) in int16 lanes, 64 units per pass
    /// (two vectors, the last lanes masked; one vector when `NV = 1`), bit-identical with the
    /// scalar loop when [`gru_cell_w32_exact`]: `ax`, `ah` the step's requantized products
    /// (`3H` each), `h16` (Q0.15), `h` and `y` (int8) updated. Per
    /// unit: `gx`, `gh` saturated to int16; `z`, `r` the sigmoid of `vpaddsw` sums;
    /// `n = tanh(sat16(gx + vpmulhrsw(r, gh)))`; `h16 = sat16(n + rsr(z·h16 − z·n, 15))` in i32
    /// lanes (`|z · (h16 − n)| < 2^31 − 2^14`), packed back by `vpackssdw`;
    /// `h = clamp8(h_zp + rq(h16))` in i64 lanes.
    ///
    /// # Safety
    /// AVX-512F/BW; `ax.len() = ah.len() = 3 · h16.len()`, `h.len() = y.len() = h16.len()`,
    /// `hb` valid for writes of `h16.len()` bytes (`h ^ 0x80`, as in [`lstm_cell_w32`]).
    gru_cell_w32,
    "avx512f,avx512bw",
    ActTables<'_>,
    sig_gather,
    tanh_gather
);
gru_cell_w32_fn!(
    /// [`gru_cell_w32`] with the lookups by permutes ([`x86_lut`](super::x86_lut)).
    ///
    /// # Safety
    /// As [`gru_cell_w32`], and AVX-512 VBMI.
    gru_cell_w32_vbmi,
    "avx512f,avx512bw,avx512vbmi",
    VbmiLuts,
    sig_vbmi,
    tanh_vbmi
);

/// The GRU op on AVX-512 VNNI with `W` and `R` repacked once (module doc); returns `false`,
/// writing nothing, when the shapes do not fit (`3H ≤ 256`, both matrices within [`PACK`]) or
/// a length disagrees. Bit-identical with `gru_i8`'s loop.
#[allow(clippy::too_many_arguments)]
pub(crate) fn avx512_gru_seq(
    p: &GruParams,
    wt: &GateWeights<'_>,
    tabs: &ActTables<'_>,
    x: &[i8],
    h: &mut [i8],
    h16: &mut [i16],
    y: &mut [i8],
) -> bool {
    let cached = prepared(wt, 3, p.input, p.hidden);
    let exact = match cached {
        Some(pp) => pp.exact(),
        None => gru_cell_w32_exact(tabs),
    };
    let shape = Seq {
        cell_hb: exact,
        fuse: false,
        gates: 3,
        input: p.input,
        hidden: p.hidden,
        steps: p.steps,
        reverse: p.reverse,
    };
    if h16.len() != p.hidden {
        return false;
    }
    let nh = p.hidden;
    // As in `avx512_lstm_seq`.
    macro_rules! word_cell {
        ($cell:ident, $luts:expr) => {
            run_seq(&shape, wt, cached, x, h, y, |ax, ah, _g16, h, yt, hb| {
                let ok =
                    ax.len() == 3 * nh && ah.len() == 3 * nh && h.len() == nh && yt.len() == nh;
                // SAFETY: as in `avx512_lstm_seq`.
                ok && {
                    unsafe {
                        if nh <= 32 {
                            $cell::<1>(p, $luts, ax, ah, h16, h, yt, hb.as_mut_ptr().cast())
                        } else {
                            $cell::<2>(p, $luts, ax, ah, h16, h, yt, hb.as_mut_ptr().cast())
                        }
                    };
                    true
                }
            })
        };
    }
    if exact {
        let mut slot = MaybeUninit::uninit();
        let luts = match cached {
            Some(pp) => pp.luts(),
            None => VbmiLuts::new(tabs, &mut slot),
        };
        return match luts {
            Some(l) => word_cell!(gru_cell_w32_vbmi, l),
            None => word_cell!(gru_cell_w32, tabs),
        };
    }
    run_seq(&shape, wt, cached, x, h, y, |ax, ah, _g16, h, yt, _hb| {
        avx512_gru_cell(p, tabs, CellGates::I32(ax, ah), h16, h, yt)
    })
}

/// The shape of a recurrent op: `gates · hidden` gate rows.
struct Seq {
    /// Whether the cell also writes the next step's unsigned recurrent input (`hb`, from `h`):
    /// then `run_seq` makes it from `h` before the first step only.
    cell_hb: bool,
    /// Whether the recurrent product forms the LSTM gates `sat16(sat32(ax + ah))` itself
    /// ([`gate_store`]) for a cell that reads them as int16.
    fuse: bool,
    gates: usize,
    input: usize,
    hidden: usize,
    steps: usize,
    reverse: bool,
}

/// Steps whose input products run in one pass over `W` ([`packed_matmat`]): each packed weight
/// vector is loaded once per four steps instead of once per step.
const XSTEPS: usize = 8;

/// The unsigned bytes `x ^ 0x80` of one input row, four to a dword (the bytes past `x.len()`,
/// which meet zero weights, 0x80); `x.len() ≤ KMAX`.
///
/// # Safety
/// AVX-512F/BW; `x.len() ≤ KMAX`.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn unsigned_dwords(x: &[i8], xb: &mut [u32; KMAX / 4]) {
    let flip = _mm512_set1_epi8(0x80u8 as i8);
    for (i, chunk) in x.chunks(64).enumerate() {
        let mask: __mmask64 = if chunk.len() >= 64 {
            !0
        } else {
            (1u64 << chunk.len()) - 1
        };
        // SAFETY: the mask keeps the load inside `chunk`; the store writes dwords
        // `16i .. 16i + 16` of `xb`, inside it (`x.len() ≤ KMAX`, so `i < KMAX / 64`).
        unsafe {
            let v = _mm512_maskz_loadu_epi8(mask, chunk.as_ptr().cast());
            _mm512_storeu_si512(
                xb.as_mut_ptr().add(16 * i).cast(),
                _mm512_xor_si512(v, flip),
            );
        }
    }
}

/// `out[s][j] = rq(bias[j] + Σ_k w[j, k] · x_s[k])` for rows `j < n` and the steps `s < 4 ·
/// quads` of `xb` (each row of `xb` an input made unsigned by [`unsigned_dwords`]), from the
/// packed `m`: four steps and up to four blocks of sixteen rows per pass, so each packed
/// vector is loaded once for four `vpdpbusd`.
///
/// # Safety
/// AVX-512F/BW/VNNI; `m.k ≤ KMAX`, `n ≤ m.corr.len()`, `n ≤ MATVEC_BLOCK`, `m.pack` holding
/// `⌈n/16⌉ · 16 · ⌈k/4⌉` dwords, `4 · quads ≤ XSTEPS`.
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn packed_matmat<const FAST: bool>(
    m: &Packed<'_>,
    xb: &[[u32; KMAX / 4]; XSTEPS],
    quads: usize,
    n: usize,
    rq: &RqRows,
    out: &mut [[i32; MATVEC_BLOCK]; XSTEPS],
) {
    let k4 = m.k.div_ceil(4);
    let nb = n.div_ceil(16);
    let pk = m.pack.as_ptr();
    // One pass: steps `s0..s0 + 4`, blocks `b..b + NB`.
    macro_rules! pass {
        ($nbk:literal, $s0:expr, $b:expr) => {{
            let (s0, b) = ($s0, $b);
            let mut a = [[_mm512_setzero_si512(); $nbk]; 4];
            for c in 0..k4 {
                // SAFETY: `q = pk + (c·nb + b)·16` and block `b + j < nb`, `c < k4`: the vector
                // ends by `⌈n/16⌉ · 16 · k4 ≤ m.pack.len()` (the contract); `s0 + s < XSTEPS`
                // and `c < k4 ≤ KMAX / 4` index inside `xb`.
                unsafe {
                    let q = pk.add((c * nb + b) * 16);
                    let mut w = [_mm512_setzero_si512(); $nbk];
                    for (j, wj) in w.iter_mut().enumerate() {
                        *wj = _mm512_loadu_si512(q.add(16 * j).cast());
                    }
                    for (s, aj) in a.iter_mut().enumerate() {
                        let xv = _mm512_set1_epi32(*xb.get_unchecked(s0 + s).get_unchecked(c) as i32);
                        for (acc, &wj) in aj.iter_mut().zip(&w) {
                            *acc = _mm512_dpbusd_epi32(*acc, xv, wj);
                        }
                    }
                }
            }
            for (s, aj) in a.iter().enumerate() {
                for (j, &acc) in aj.iter().enumerate() {
                    let r = 16 * (b + j);
                    let mask = if n - r >= 16 { 0xffff } else { (1u16 << (n - r)) - 1 };
                    // SAFETY: `r < n ≤ MATVEC_BLOCK` and the mask keeps rows below `n`, inside
                    // `rq`'s arrays and row `s0 + s < XSTEPS` of `out`.
                    unsafe { rq_store::<FAST>(rq, r, mask, acc, out[s0 + s].as_mut_ptr().add(r)) };
                }
            }
        }};
    }
    for quad in 0..quads {
        let s0 = 4 * quad;
        let mut b = 0;
        while b + 4 <= nb {
            pass!(4, s0, b);
            b += 4;
        }
        while b + 2 <= nb {
            pass!(2, s0, b);
            b += 2;
        }
        while b < nb {
            pass!(1, s0, b);
            b += 1;
        }
    }
}

/// A recurrent op's operands prepared once per session, in the bytes the session keeps for
/// them past its arena ([`Model::prepared_bytes`](crate::Model::prepared_bytes)): `W` and `R`
/// repacked with their corrections, both requantizations' constants, the VBMI tables and the
/// exactness checks' verdicts: everything [`run_seq`] and the cells otherwise redo at every op
/// call (about a tenth of `kws_lstm`'s time in `perf`). Plain bytes (`zerocopy`), read back
/// only when `meta` names the same shape ([`prepared`]); the values are numbers the kernels
/// compute with, never addresses or lengths, so no contents can make a kernel read or write
/// outside its operands, and the one flag that picks instructions (the VBMI tables) is checked
/// against the CPU again where it is read.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(64))]
pub(crate) struct RnnPrep {
    w: PackBuf,
    r: PackBuf,
    wcorr: [i32; MATVEC_BLOCK],
    rcorr: [i32; MATVEC_BLOCK],
    rqx: RqRows,
    rqh: RqRows,
    luts: VbmiLuts,
    /// `[PREP_MAGIC, gates, input, hidden, exact, luts, 0, ..]`: `exact` the word cell's
    /// precondition ([`lstm_cell_w32_exact`], [`gru_cell_w32_exact`]), `luts` whether `luts`
    /// holds both tables ([`VbmiLuts::new`]).
    meta: [u32; 16],
}

/// Bytes of one op's [`RnnPrep`] (45,376).
pub(crate) const RNN_PREP_BYTES: usize = core::mem::size_of::<RnnPrep>();

/// `meta[0]` of a prepared [`RnnPrep`].
const PREP_MAGIC: u32 = u32::from_le_bytes(*b"KRNN");

/// Prepares the operands of an LSTM (`gates = 4`) or GRU (`gates = 3`) op with `input` inputs
/// and `hidden` units in `slot` ([`RNN_PREP_BYTES`] long, 64-byte aligned). Returns whether it
/// did; otherwise (the shapes take the general path, or `slot` does not fit) `slot` is marked
/// unprepared and the op prepares per call as before. AVX-512 VNNI must be the active level.
pub(crate) fn avx512_rnn_prepare(
    gates: usize,
    input: usize,
    hidden: usize,
    wt: &GateWeights<'_>,
    tabs: &ActTables<'_>,
    slot: &mut [u8],
) -> bool {
    let Ok(pp) = RnnPrep::mut_from_bytes(slot) else {
        return false;
    };
    pp.meta = [0; 16];
    let g = gates * hidden;
    let ok = (gates == 3 || gates == 4)
        && hidden > 0
        && g <= MATVEC_BLOCK
        && packs(g, input)
        && packs(g, hidden)
        && wt.fits(gates, input, hidden);
    if !ok {
        return false;
    }
    // SAFETY: the active level is AVX-512 VNNI (the caller's contract); `packs` and `fits`
    // checked the shapes `pack_into` requires.
    unsafe {
        pack_into(wt.w, g, input, &mut pp.w, &mut pp.wcorr[..g]);
        pack_into(wt.r, g, hidden, &mut pp.r, &mut pp.rcorr[..g]);
    }
    let (Some(rqx), Some(rqh)) = (
        RqRows::new(wt.bias_x, wt.rq_x, &pp.wcorr[..g], input),
        RqRows::new(wt.bias_h, wt.rq_h, &pp.rcorr[..g], hidden),
    ) else {
        return false;
    };
    (pp.rqx, pp.rqh) = (rqx, rqh);
    let exact = if gates == 4 {
        lstm_cell_w32_exact(tabs)
    } else {
        gru_cell_w32_exact(tabs)
    };
    // SAFETY: VBMI (checked first) comes with AVX-512F/BW; both field pointers are valid for
    // writes (fields of `*pp`).
    let luts = has_vbmi()
        && unsafe {
            lut16_prep_avx512(tabs.sig, &raw mut pp.luts.sig)
                && lut16_prep_avx512(tabs.tanh, &raw mut pp.luts.tanh)
        };
    pp.meta[..6].copy_from_slice(&[
        PREP_MAGIC,
        gates as u32,
        input as u32,
        hidden as u32,
        exact as u32,
        luts as u32,
    ]);
    true
}

/// The op's prepared operands ([`RnnPrep`]), when `wt` carries a slot prepared for this shape.
fn prepared<'w>(
    wt: &GateWeights<'w>,
    gates: usize,
    input: usize,
    hidden: usize,
) -> Option<&'w RnnPrep> {
    let pp = RnnPrep::ref_from_bytes(wt.prep?).ok()?;
    let want = [PREP_MAGIC as usize, gates, input, hidden];
    (pp.meta[..4].iter().zip(want).all(|(&m, w)| m as usize == w)).then_some(pp)
}

impl RnnPrep {
    /// Whether the word cell is exact for the op's tables.
    fn exact(&self) -> bool {
        self.meta[4] != 0
    }

    /// The prepared VBMI tables, if any, and if this CPU has VBMI: the slot's bytes decide
    /// numbers only, never which instructions run (`GateWeights::prep` is public, so a slot
    /// need not come from [`avx512_rnn_prepare`] on this CPU).
    fn luts(&self) -> Option<&VbmiLuts> {
        (self.meta[5] != 0 && has_vbmi()).then_some(&self.luts)
    }
}

/// The step loop shared by the LSTM and GRU: repacks `W` and `R` and builds their
/// requantization constants, then per [`XSTEPS`] steps the requantized input products
/// `ax = rq(bias_x + W·x_t)` in one pass ([`packed_matmat`]), and per step the recurrent one
/// `ah = rq(bias_h + R·h)` and `cell(ax, ah, h, y_t)`, which updates the state and writes the
/// step's output. Returns `false`, writing nothing, when the shapes do not fit or a length
/// disagrees (checked before anything is written; `cell` must accept every step once the
/// first is accepted, as the AVX-512 cells do for these lengths).
///
/// (Tried and dropped: running a step by unit groups of 32, each group's recurrent product
/// followed by its cell so that the core could overlap a cell with the next group's product.
/// The shorter passes over `R` cost more than the overlap gave: kws_gru 9.5 → 11.9 µs,
/// forecast_lstm 19.3 → 21.8 µs, `kinglet bench`, alternating builds.)
fn run_seq(
    s: &Seq,
    wt: &GateWeights<'_>,
    cached: Option<&RnnPrep>,
    x: &[i8],
    h: &mut [i8],
    y: &mut [i8],
    mut cell: impl FnMut(&[i32], &[i32], &[i16], &mut [i8], &mut [i8], &mut [u32; KMAX / 4]) -> bool,
) -> bool {
    let (ni, nh, steps) = (s.input, s.hidden, s.steps);
    let g = s.gates * nh;
    let ok = nh > 0
        && g <= MATVEC_BLOCK
        && packs(g, ni)
        && packs(g, nh)
        && wt.fits(s.gates, ni, nh)
        && Some(x.len()) == steps.checked_mul(ni)
        && Some(y.len()) == steps.checked_mul(nh)
        && h.len() == nh;
    if !ok {
        return false;
    }
    // The operands prepared once per session, or here, once per call (the local buffers
    // initialised on that path only: a prepared call does not clear them).
    let (mut wbuf, mut rbuf) = (MaybeUninit::uninit(), MaybeUninit::uninit());
    let (mut wcorr, mut rcorr): ([i32; MATVEC_BLOCK], [i32; MATVEC_BLOCK]);
    let local;
    let (wp, rp, rqx, rqh) = match cached {
        Some(pp) => (
            packed_of(&pp.w, &pp.wcorr, g, ni),
            packed_of(&pp.r, &pp.rcorr, g, nh),
            &pp.rqx,
            &pp.rqh,
        ),
        None => {
            (wcorr, rcorr) = ([0; MATVEC_BLOCK], [0; MATVEC_BLOCK]);
            let wp = pack(wt.w, g, ni, &mut wbuf, &mut wcorr[..g]);
            let rp = pack(wt.r, g, nh, &mut rbuf, &mut rcorr[..g]);
            let (Some(rqx), Some(rqh)) = (
                RqRows::new(wt.bias_x, wt.rq_x, wp.corr, ni),
                RqRows::new(wt.bias_h, wt.rq_h, rp.corr, nh),
            ) else {
                return false;
            };
            local = (rqx, rqh);
            (wp, rp, &local.0, &local.1)
        }
    };
    let mut xb = Align64([[0u32; KMAX / 4]; XSTEPS]);
    let xb = &mut xb.0;
    let mut ax = Align64([[0i32; MATVEC_BLOCK]; XSTEPS]);
    let ax = &mut ax.0;
    let mut hb = Align64([0u32; KMAX / 4]);
    let hb = &mut hb.0;
    let mut ah = Align64([0i32; MATVEC_BLOCK]);
    let ah = &mut ah.0[..g];
    let mut g16 = Align64([0i16; MATVEC_BLOCK]);
    let g16 = &mut g16.0[..if s.fuse { g } else { 0 }];
    let mut it = 0;
    while it < steps {
        let chunk = (steps - it).min(XSTEPS);
        for (i, xbi) in xb.iter_mut().enumerate().take(chunk) {
            let t = step_index(it + i, steps, s.reverse);
            // In bounds by the checks above.
            let Some(xt) = x.get(t * ni..(t + 1) * ni) else {
                return true;
            };
            // SAFETY: AVX-512 VNNI is the active level (the caller's dispatch); `ni ≤ KMAX`
            // (`packs`).
            unsafe { unsigned_dwords(xt, xbi) };
        }
        // SAFETY: as above; `wp` packs `g ≤ MATVEC_BLOCK` rows of `ni ≤ KMAX` columns, and
        // `⌈chunk/4⌉ · 4 ≤ XSTEPS` (XSTEPS is a multiple of four).
        unsafe {
            if rqx.fast != 0 {
                packed_matmat::<true>(&wp, xb, chunk.div_ceil(4), g, rqx, ax);
            } else {
                packed_matmat::<false>(&wp, xb, chunk.div_ceil(4), g, rqx, ax);
            }
        }
        for (i, axi) in ax.iter().enumerate().take(chunk) {
            let t = step_index(it + i, steps, s.reverse);
            // In bounds by the checks above; the cell re-checks its lengths and cannot fail for
            // these operands.
            let Some(yt) = y.get_mut(t * nh..(t + 1) * nh) else {
                return true;
            };
            // SAFETY: as above; `rp` packs the `g` rows of `ah` with `nh ≤ KMAX` columns.
            unsafe {
                if !s.cell_hb || it + i == 0 {
                    unsigned_dwords(h, hb);
                }
                let fused = s.fuse.then_some((&axi[..g], &mut *g16));
                let blocks = 0..g.div_ceil(16);
                if rqh.fast != 0 {
                    packed_blocks::<true>(&rp, hb, blocks, ah, Some(rqh), fused);
                } else {
                    packed_blocks::<false>(&rp, hb, blocks, ah, Some(rqh), fused);
                }
            }
            if !cell(&axi[..g], ah, g16, h, yt, hb) {
                return true;
            }
        }
        it += chunk;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::matvec::reference_matvec_i8;
    use crate::kernels::reference::fixed::matvec_rq_row;
    use crate::kernels::testutil::Rng;
    use crate::kernels::{best_isa, Isa};
    use std::vec::Vec;

    /// A random int16 activation table without `-32768` (the word cell's precondition), with
    /// runs at the int16 bounds and arbitrary steps between entries.
    fn tame_table(rng: &mut Rng) -> ActTable {
        use zerocopy::little_endian::I16;
        let mut t = [I16::new(0); crate::format::ACT_TABLE_LEN];
        for (i, e) in t.iter_mut().enumerate() {
            *e = I16::new(match i % 5 {
                0 => i16::MAX,
                1 => -32767,
                _ => rng.i32_in(-32767, 32767) as i16,
            });
        }
        t
    }

    /// The word cell's pieces against their scalar definitions lane by lane: the saturating
    /// sum of the LSTM gates (`saturating_add`, then `sat16_add`; sums that overflow int32
    /// among them) and the gathered lookup (`lut16`,
    /// every lane, random inputs and the int16 bounds).
    #[test]
    fn gate_sum_and_lookup_match_scalar() {
        use crate::kernels::reference::fixed::{lut16, sat16_add};
        use crate::kernels::testutil::tanh_table;
        if best_isa() != Isa::Avx512Vnni {
            std::eprintln!("adds_epi32: skipped, AVX-512 not on this CPU");
            return;
        }
        let mut rng = Rng::new(0x6A7E);
        let edge = [i32::MAX, i32::MIN, i32::MAX - 20_000, 40_000, -40_000, 0];
        for trial in 0..2000 {
            let val = |rng: &mut Rng| match rng.usize_below(4) {
                0 => edge[rng.usize_below(edge.len())],
                1 => rng.next_u64() as i32,
                _ => rng.i32_in(-40_000, 40_000),
            };
            let a: Vec<i32> = (0..16).map(|_| val(&mut rng)).collect();
            let b: Vec<i32> = (0..16).map(|_| val(&mut rng)).collect();
            let mut got = [0i32; 16];
            // SAFETY: AVX-512 present (checked above); 16 elements behind each pointer.
            unsafe {
                let (va, vb) = (
                    _mm512_loadu_si512(a.as_ptr().cast()),
                    _mm512_loadu_si512(b.as_ptr().cast()),
                );
                _mm512_storeu_si512(got.as_mut_ptr().cast(), adds_epi32(va, vb));
            }
            for l in 0..16 {
                assert_eq!(
                    got[l],
                    a[l].saturating_add(b[l]),
                    "trial {trial}: {} + {}",
                    a[l],
                    b[l]
                );
                assert_eq!(got[l].clamp(-32768, 32767) as i16, sat16_add(a[l], b[l]));
            }
        }
        let (tanh, tame) = (tanh_table(), tame_table(&mut rng));
        for trial in 0..2000 {
            let tab = if trial % 2 == 0 { &tanh } else { &tame };
            let xs: Vec<i16> = (0..32)
                .map(|l| match (trial + l) % 9 {
                    0 => i16::MIN,
                    1 => i16::MAX,
                    _ => rng.i32_in(-32768, 32767) as i16,
                })
                .collect();
            let mut got = [0i16; 32];
            // SAFETY: AVX-512 present (checked above); 32 int16 behind each pointer.
            unsafe {
                let v = _mm512_loadu_si512(xs.as_ptr().cast());
                _mm512_storeu_si512(got.as_mut_ptr().cast(), lut16_gather_w32(tab, v));
            }
            for l in 0..32 {
                assert_eq!(
                    got[l] as i32,
                    lut16(tab, xs[l]),
                    "trial {trial}: x {}",
                    xs[l]
                );
            }
        }
    }

    /// A random walk within `[-32767, 32767]` whose steps fit int16 (the VBMI lookup's
    /// precondition) and reach its bounds.
    fn walk_table(rng: &mut Rng) -> ActTable {
        use zerocopy::little_endian::I16;
        let mut t = [I16::new(0); crate::format::ACT_TABLE_LEN];
        let mut v = 0i32;
        for e in t.iter_mut() {
            v = (v + rng.i32_in(-32767, 32767)).clamp(-32767, 32767);
            *e = I16::new(v as i16);
        }
        t
    }

    /// A 64-byte-aligned [`RNN_PREP_BYTES`] slot inside `buf` (`RNN_PREP_BYTES + 64` long).
    fn aligned_slot(buf: &mut [u8]) -> &mut [u8] {
        let at = buf.as_ptr().align_offset(64);
        &mut buf[at..at + RNN_PREP_BYTES]
    }

    /// The word-lane LSTM cell against the scalar definition (`reference::lstm`, module doc)
    /// unit by unit: every `cell_exp` from 0 to 17 (capped at 15 as in the scalar cell), `H`
    /// from 1 to 64, the real tables and tame random ones, products at and beyond the gate
    /// range (sums that overflow int32 among them), cells at the int16 bounds, output
    /// requantizations on every rq path.
    #[test]
    fn lstm_cell_w32_matches_scalar() {
        use crate::kernels::reference::fixed::{clamp8_add, lut16, rq, rsr32, sat16_add};
        use crate::kernels::testutil::{sigmoid_table, tanh_table};
        if best_isa() != Isa::Avx512Vnni {
            std::eprintln!("lstm_cell_w32: skipped, AVX-512 not on this CPU");
            return;
        }
        let mut rng = Rng::new(0xCE11);
        let (sig, tanh) = (sigmoid_table(), tanh_table());
        let (tsig, ttanh) = (tame_table(&mut rng), tame_table(&mut rng));
        let (wsig, wtanh) = (walk_table(&mut rng), walk_table(&mut rng));
        let (mut units, mut vbmi_units) = (0, 0);
        for cell_exp in 0..=17u32 {
            for nh in [1usize, 5, 16, 20, 31, 32, 33, 47, 64] {
                let tabs = match (cell_exp + nh as u32) % 3 {
                    0 => ActTables {
                        sig: &tsig,
                        tanh: &ttanh,
                    },
                    1 => ActTables {
                        sig: &wsig,
                        tanh: &wtanh,
                    },
                    _ => ActTables {
                        sig: &sig,
                        tanh: &tanh,
                    },
                };
                assert!(lstm_cell_w32_exact(&tabs));
                let (hq_mult, hq_shift) = match nh % 4 {
                    0 => (1_140_850_688, 9),
                    1 => (i32::MAX, -3),
                    2 => (1 << 30, 1),
                    _ => (rng.i32_in(1 << 30, i32::MAX), 16),
                };
                let p = LstmParams {
                    steps: 1,
                    input: 1,
                    hidden: nh,
                    reverse: false,
                    h_zp: rng.i32_in(-128, 127),
                    cell_exp,
                    hq_mult,
                    hq_shift,
                };
                let prod = |rng: &mut Rng| match rng.usize_below(6) {
                    0 => [i32::MAX, i32::MIN, 40_000, -40_000][rng.usize_below(4)],
                    1 => rng.next_u64() as i32,
                    _ => rng.i32_in(-40_000, 40_000),
                };
                let ax: Vec<i32> = (0..4 * nh).map(|_| prod(&mut rng)).collect();
                let ah: Vec<i32> = (0..4 * nh).map(|_| prod(&mut rng)).collect();
                // The gates as the recurrent product's epilogue forms them.
                let g16: Vec<i16> = ax.iter().zip(&ah).map(|(&a, &b)| sat16_add(a, b)).collect();
                let c0: Vec<i16> = (0..nh)
                    .map(|u| match u % 7 {
                        0 => i16::MIN,
                        1 => i16::MAX,
                        _ => rng.i32_in(-32768, 32767) as i16,
                    })
                    .collect();
                let (mut c, mut h, mut y) = (c0.clone(), std::vec![0i8; nh], std::vec![0i8; nh]);
                let (mut hb, mut hb1, mut hb2) = ([0u8; 64], [0u8; 64], [0u8; 64]);
                // SAFETY: AVX-512 present (checked above); lengths as the contract asks.
                unsafe {
                    lstm_cell_w32::<2>(&p, &tabs, &g16, &mut c, &mut h, &mut y, hb.as_mut_ptr())
                };
                // One vector per pass: the same bits.
                let (mut c1, mut h1, mut y1) = (c0.clone(), std::vec![0i8; nh], std::vec![0i8; nh]);
                // SAFETY: as above.
                unsafe {
                    lstm_cell_w32::<1>(&p, &tabs, &g16, &mut c1, &mut h1, &mut y1, hb1.as_mut_ptr())
                };
                assert_eq!(
                    (&c1, &h1, &y1),
                    (&c, &h, &y),
                    "one vector: cell_exp {cell_exp} H {nh}"
                );
                // The VBMI lookups, where this CPU and the tables allow them: the same bits.
                let mut slot = MaybeUninit::uninit();
                if let Some(l) = VbmiLuts::new(&tabs, &mut slot) {
                    let (mut c2, mut h2, mut y2) =
                        (c0.clone(), std::vec![0i8; nh], std::vec![0i8; nh]);
                    // SAFETY: as above, and VBMI (`VbmiLuts::new` checked it).
                    unsafe {
                        if nh <= 32 {
                            lstm_cell_w32_vbmi::<1>(
                                &p,
                                l,
                                &g16,
                                &mut c2,
                                &mut h2,
                                &mut y2,
                                hb2.as_mut_ptr(),
                            )
                        } else {
                            lstm_cell_w32_vbmi::<2>(
                                &p,
                                l,
                                &g16,
                                &mut c2,
                                &mut h2,
                                &mut y2,
                                hb2.as_mut_ptr(),
                            )
                        }
                    };
                    assert_eq!(
                        (&c2, &h2, &y2),
                        (&c, &h, &y),
                        "vbmi: cell_exp {cell_exp} H {nh}"
                    );
                    vbmi_units += nh;
                }
                let e = cell_exp.min(15);
                for u in 0..nh {
                    let g = |k: usize| sat16_add(ax[k * nh + u], ah[k * nh + u]);
                    let i = lut16(tabs.sig, g(0));
                    let o = lut16(tabs.sig, g(1));
                    let f = lut16(tabs.sig, g(2));
                    let z = lut16(tabs.tanh, g(3));
                    let s = rsr32(f * c0[u] as i32, 15) + rsr32(i * z, 15 + e);
                    let cu = s.clamp(-32768, 32767);
                    let tc = if e >= 3 {
                        (cu << (e - 3)).clamp(-32768, 32767)
                    } else {
                        rsr32(cu, 3 - e)
                    };
                    let hq = clamp8_add(
                        p.h_zp,
                        rq(o * lut16(tabs.tanh, tc as i16), hq_mult, hq_shift),
                    );
                    let at = std::format!("cell_exp {cell_exp} H {nh} unit {u}");
                    assert_eq!(c[u] as i32, cu, "c: {at}");
                    assert_eq!((h[u], y[u]), (hq, hq), "h: {at}");
                    assert_eq!(hb[u], hq as u8 ^ 0x80, "unsigned h: {at}");
                    assert_eq!(hb1[u], hb[u], "unsigned h, one vector: {at}");
                    units += 1;
                }
            }
        }
        assert!(units > 3000, "{units}");
        assert!(!has_vbmi() || vbmi_units > 1500, "{vbmi_units}");
        // A sigmoid table holding -32768 is refused (the caller keeps the i32 cell).
        let mut bad = sig;
        bad[7] = zerocopy::little_endian::I16::new(i16::MIN);
        assert!(!lstm_cell_w32_exact(&ActTables {
            sig: &bad,
            tanh: &tanh
        }));
    }

    /// The word-lane GRU cell against the scalar definition (`reference::gru`, module doc) unit
    /// by unit: `H` from 1 to 64, the real tables and tame random ones (negative and near-one
    /// `z`, so `z · (h16 − n)` spans its whole range), products beyond int16, states at the
    /// int16 bounds, output requantizations on every rq path.
    #[test]
    fn gru_cell_w32_matches_scalar() {
        use crate::kernels::reference::fixed::{clamp8_add, lut16, rq, rsr32, sat16_add};
        use crate::kernels::testutil::{sigmoid_table, tanh_table};
        if best_isa() != Isa::Avx512Vnni {
            std::eprintln!("gru_cell_w32: skipped, AVX-512 not on this CPU");
            return;
        }
        let mut rng = Rng::new(0x62F);
        let (sig, tanh) = (sigmoid_table(), tanh_table());
        let (tsig, ttanh) = (tame_table(&mut rng), tame_table(&mut rng));
        let (wsig, wtanh) = (walk_table(&mut rng), walk_table(&mut rng));
        let (mut units, mut vbmi_units) = (0, 0);
        for round in 0..12 {
            for nh in [1usize, 5, 16, 20, 31, 32, 33, 48, 64, 80] {
                let tabs = match (round + nh) % 3 {
                    0 => ActTables {
                        sig: &tsig,
                        tanh: &ttanh,
                    },
                    1 => ActTables {
                        sig: &wsig,
                        tanh: &wtanh,
                    },
                    _ => ActTables {
                        sig: &sig,
                        tanh: &tanh,
                    },
                };
                assert!(gru_cell_w32_exact(&tabs));
                let (hq_mult, hq_shift) = match (round + nh) % 4 {
                    0 => (1_140_850_688, 9),
                    1 => (i32::MAX, -3),
                    2 => (1 << 30, 1),
                    _ => (rng.i32_in(1 << 30, i32::MAX), 16),
                };
                let p = GruParams {
                    steps: 1,
                    input: 1,
                    hidden: nh,
                    reverse: false,
                    h_zp: rng.i32_in(-128, 127),
                    hin_mult: 0,
                    hin_shift: 0,
                    hq_mult,
                    hq_shift,
                };
                let prod = |rng: &mut Rng| match rng.usize_below(6) {
                    0 => [i32::MAX, i32::MIN, 40_000, -40_000][rng.usize_below(4)],
                    1 => rng.next_u64() as i32,
                    _ => rng.i32_in(-40_000, 40_000),
                };
                let ax: Vec<i32> = (0..3 * nh).map(|_| prod(&mut rng)).collect();
                let ah: Vec<i32> = (0..3 * nh).map(|_| prod(&mut rng)).collect();
                let s0: Vec<i16> = (0..nh)
                    .map(|u| match u % 7 {
                        0 => i16::MIN,
                        1 => i16::MAX,
                        _ => rng.i32_in(-32768, 32767) as i16,
                    })
                    .collect();
                let (mut hs, mut h, mut y) = (s0.clone(), std::vec![0i8; nh], std::vec![0i8; nh]);
                let (mut hb, mut hb1, mut hb2) = ([0u8; 80], [0u8; 80], [0u8; 80]);
                // SAFETY: AVX-512 present (checked above); lengths as the contract asks.
                unsafe {
                    gru_cell_w32::<2>(
                        &p,
                        &tabs,
                        &ax,
                        &ah,
                        &mut hs,
                        &mut h,
                        &mut y,
                        hb.as_mut_ptr(),
                    )
                };
                // One vector per pass: the same bits.
                let (mut hs1, mut h1, mut y1) =
                    (s0.clone(), std::vec![0i8; nh], std::vec![0i8; nh]);
                // SAFETY: as above.
                unsafe {
                    gru_cell_w32::<1>(
                        &p,
                        &tabs,
                        &ax,
                        &ah,
                        &mut hs1,
                        &mut h1,
                        &mut y1,
                        hb1.as_mut_ptr(),
                    )
                };
                assert_eq!(
                    (&hs1, &h1, &y1),
                    (&hs, &h, &y),
                    "one vector: round {round} H {nh}"
                );
                let mut slot = MaybeUninit::uninit();
                if let Some(l) = VbmiLuts::new(&tabs, &mut slot) {
                    let (mut hs2, mut h2, mut y2) =
                        (s0.clone(), std::vec![0i8; nh], std::vec![0i8; nh]);
                    // SAFETY: as above, and VBMI (`VbmiLuts::new` checked it).
                    unsafe {
                        if nh <= 32 {
                            gru_cell_w32_vbmi::<1>(
                                &p,
                                l,
                                &ax,
                                &ah,
                                &mut hs2,
                                &mut h2,
                                &mut y2,
                                hb2.as_mut_ptr(),
                            )
                        } else {
                            gru_cell_w32_vbmi::<2>(
                                &p,
                                l,
                                &ax,
                                &ah,
                                &mut hs2,
                                &mut h2,
                                &mut y2,
                                hb2.as_mut_ptr(),
                            )
                        }
                    };
                    assert_eq!(
                        (&hs2, &h2, &y2),
                        (&hs, &h, &y),
                        "vbmi: round {round} H {nh}"
                    );
                    vbmi_units += nh;
                }
                for u in 0..nh {
                    let gx = |k: usize| ax[k * nh + u].clamp(-32768, 32767);
                    let gh = |k: usize| ah[k * nh + u].clamp(-32768, 32767);
                    let z = lut16(tabs.sig, sat16_add(gx(0), gh(0)));
                    let r = lut16(tabs.sig, sat16_add(gx(1), gh(1)));
                    let n = lut16(tabs.tanh, sat16_add(gx(2) + rsr32(r * gh(2), 15), 0));
                    let mix = sat16_add(n, rsr32(z * (s0[u] as i32 - n), 15));
                    let hq = clamp8_add(p.h_zp, rq(mix as i32, hq_mult, hq_shift));
                    let at = std::format!("round {round} H {nh} unit {u}");
                    assert_eq!(hs[u], mix, "h16: {at}");
                    assert_eq!((h[u], y[u]), (hq, hq), "h: {at}");
                    assert_eq!(hb[u], hq as u8 ^ 0x80, "unsigned h: {at}");
                    assert_eq!(hb1[u], hb[u], "unsigned h, one vector: {at}");
                    units += 1;
                }
            }
        }
        assert!(units > 2000, "{units}");
        assert!(!has_vbmi() || vbmi_units > 1000, "{vbmi_units}");
    }

    /// Whole LSTM and GRU ops through the sequence kernels against the same ops with the
    /// reference forced, `H` 20 to 64, one- and forty-column inputs, one step and more than [`XSTEPS`], both directions,
    /// real tables (the word cells, by permutes where VBMI is present) and random ones.
    #[test]
    fn sequences_match_the_reference() {
        use crate::kernels::force_reference;
        use crate::kernels::reference::{gru::gru_i8, lstm::lstm_i8};
        use crate::kernels::testutil::{sigmoid_table, tanh_table};
        if best_isa() != Isa::Avx512Vnni {
            std::eprintln!("sequences: skipped, AVX-512 VNNI not on this CPU");
            return;
        }
        let mut rng = Rng::new(0x5E0);
        let (sig, tanh) = (sigmoid_table(), tanh_table());
        let (wsig, wtanh) = (walk_table(&mut rng), walk_table(&mut rng));
        let (mut cases, mut fast_cases) = (0, 0);
        for &nh in &[20usize, 32, 48, 64] {
            for &ni in &[1usize, 40] {
                for &steps in &[1usize, 11] {
                    for (gates, reverse) in [(4, false), (4, true), (3, false), (3, true)] {
                        let tabs = if cases % 3 == 2 {
                            ActTables {
                                sig: &wsig,
                                tanh: &wtanh,
                            }
                        } else {
                            ActTables {
                                sig: &sig,
                                tanh: &tanh,
                            }
                        };
                        let g = gates * nh;
                        let w: Vec<i8> = (0..g * ni).map(|_| rng.i8()).collect();
                        let r: Vec<i8> = (0..g * nh).map(|_| rng.i8()).collect();
                        let bias = |rng: &mut Rng| -> Vec<I32> {
                            (0..g)
                                .map(|_| I32::new(rng.i32_in(-300_000, 300_000)))
                                .collect()
                        };
                        // Every other case without negative shifts: the 32-bit requantization
                        // (`rq16_fast`); the others on the i64 path.
                        let low = if cases % 2 == 0 { 0 } else { -1 };
                        let pairs = |rng: &mut Rng| -> Vec<I32> {
                            (0..g)
                                .flat_map(|_| {
                                    [
                                        I32::new(rng.i32_in(1 << 30, i32::MAX)),
                                        I32::new(rng.i32_in(low, 12)),
                                    ]
                                })
                                .collect()
                        };
                        let (bx, bh, qx, qh) = (
                            bias(&mut rng),
                            bias(&mut rng),
                            pairs(&mut rng),
                            pairs(&mut rng),
                        );
                        let wt = GateWeights {
                            w: &w,
                            r: &r,
                            bias_x: &bx,
                            bias_h: &bh,
                            rq_x: &qx,
                            rq_h: &qh,
                            prep: None,
                        };
                        let x: Vec<i8> = (0..steps * ni).map(|_| rng.i8()).collect();
                        let h0: Vec<i8> = (0..nh).map(|_| rng.i8()).collect();
                        let s0: Vec<i16> =
                            (0..nh).map(|_| rng.i32_in(-32768, 32767) as i16).collect();
                        let run = |forced: bool, wt: &GateWeights<'_>| {
                            let (mut h, mut st, mut y) =
                                (h0.clone(), s0.clone(), std::vec![0i8; steps * nh]);
                            let mut scratch = std::vec![0i16; 2 * g];
                            force_reference(forced);
                            if gates == 4 {
                                let p = LstmParams {
                                    steps,
                                    input: ni,
                                    hidden: nh,
                                    reverse,
                                    h_zp: -3,
                                    cell_exp: (cases % 16) as u32,
                                    hq_mult: 1_140_850_688,
                                    hq_shift: 9,
                                };
                                lstm_i8(
                                    &p,
                                    wt,
                                    &tabs,
                                    &x,
                                    &mut h,
                                    &mut st,
                                    &mut y,
                                    &mut scratch[..g],
                                );
                            } else {
                                let p = GruParams {
                                    steps,
                                    input: ni,
                                    hidden: nh,
                                    reverse,
                                    h_zp: 5,
                                    hin_mult: 0,
                                    hin_shift: 0,
                                    hq_mult: 1_140_850_688,
                                    hq_shift: 9,
                                };
                                gru_i8(&p, wt, &tabs, &x, &mut h, &mut st, &mut y, &mut scratch);
                            }
                            force_reference(false);
                            (h, st, y)
                        };
                        let ok = |q: &[I32], b: &[I32], k| {
                            RqRows::new(b, q, &std::vec![0; g], k).map(|r| r.fast)
                        };
                        fast_cases +=
                            usize::from(ok(&qx, &bx, ni) == Some(1) && ok(&qh, &bh, nh) == Some(1));
                        let (simd, reference) = (run(false, &wt), run(true, &wt));
                        let case =
                            std::format!("H {nh} I {ni} T {steps} gates {gates} reverse {reverse}");
                        assert_eq!(simd, reference, "{case}");
                        // With the operands prepared once (a session's `RnnPrep` slot): the
                        // same. Prepared from other weights (`R` negated), the kernels run
                        // those: the slot is what they read.
                        let mut buf = std::vec![0u8; RNN_PREP_BYTES + 64];
                        let slot = aligned_slot(&mut buf);
                        assert!(avx512_rnn_prepare(gates, ni, nh, &wt, &tabs, slot));
                        let with = GateWeights {
                            prep: Some(slot),
                            ..wt
                        };
                        assert_eq!(run(false, &with), reference, "{case}: prepared");
                        let r2: Vec<i8> = r.iter().map(|&v| v.wrapping_neg()).collect();
                        let wt2 = GateWeights { r: &r2, ..wt };
                        let mut buf2 = std::vec![0u8; RNN_PREP_BYTES + 64];
                        let slot2 = aligned_slot(&mut buf2);
                        assert!(avx512_rnn_prepare(gates, ni, nh, &wt2, &tabs, slot2));
                        let other = GateWeights {
                            prep: Some(slot2),
                            ..wt
                        };
                        let want = run(true, &wt2);
                        assert_ne!(want, reference, "{case}: R negated changes the outputs");
                        assert_eq!(run(false, &other), want, "{case}: the slot is read");
                        // A slot for another shape is not.
                        let shape = if gates == 4 { 3 } else { 4 };
                        let mut buf3 = std::vec![0u8; RNN_PREP_BYTES + 64];
                        let slot3 = aligned_slot(&mut buf3);
                        let prepared3 = avx512_rnn_prepare(shape, ni, nh, &wt, &tabs, slot3);
                        assert!(!prepared3, "{case}: weights of the wrong length");
                        let stale = GateWeights {
                            prep: Some(slot3),
                            ..wt
                        };
                        assert_eq!(run(false, &stale), reference, "{case}: unprepared slot");
                        cases += 1;
                    }
                }
            }
        }
        assert_eq!(cases, 64);
        assert!(
            fast_cases >= 16,
            "{fast_cases} cases on the 32-bit requantization"
        );
    }

    /// The packed product against the reference loop over edge shapes (rows not a multiple of
    /// 16, one to eight blocks and more, `K` of 1 to 256 with every remainder mod 4 and 64),
    /// random and extreme values.
    #[test]
    fn packed_matvec_matches_the_reference() {
        use crate::kernels::reference::fixed::sat16_add;
        if best_isa() != Isa::Avx512Vnni {
            std::eprintln!("packed_matvec: skipped, AVX-512 VNNI not on this CPU");
            return;
        }
        let mut rng = Rng::new(0xA5A5);
        let mut cases = 0;
        for &rows in &[1usize, 15, 16, 17, 63, 64, 100, 128, 129, 192, 256] {
            for &k in &[1usize, 2, 3, 4, 5, 20, 28, 40, 63, 64, 65, 128, 200, 256] {
                if !packs(rows, k) {
                    continue;
                }
                // Mode 3: shifts 0 to 2 only, extreme values and biases: the unclamped path
                // at the edge of int32 (shift 0). Mode 4: shifts 0 to 31 and biases up to the
                // 32-bit path's limit (`rq16_fast`), `-128 · -128` products in some rows.
                for mode in 0..5 {
                    let val = |rng: &mut Rng| match mode {
                        0 => rng.i8(),
                        1 => -128,
                        _ => [-128, 127, 0, rng.i8()][rng.usize_below(4)],
                    };
                    let w: Vec<i8> = (0..rows * k).map(|_| val(&mut rng)).collect();
                    let x: Vec<i8> = (0..k).map(|_| val(&mut rng)).collect();
                    let mut want = std::vec![0i32; rows];
                    reference_matvec_i8(&w, &x, &mut want);
                    let mut buf = MaybeUninit::uninit();
                    let mut corr = std::vec![0i32; rows];
                    let m = pack(&w, rows, k, &mut buf, &mut corr);
                    let mut got = std::vec![0x5A5A_5A5Ai32; rows];
                    assert!(packed_matvec(&m, &x, &mut got, None));
                    assert_eq!(got, want, "rows {rows} k {k} mode {mode}");
                    // Requantized in the same pass: against `matvec_rq_row`, with shifts from
                    // -3 to 33 (the clamped and unclamped `rq16`) and wrapping bias adds.
                    let limit = (1 << 29) - 1 - 16384 * k as i32;
                    let bias: Vec<I32> = (0..rows)
                        .map(|j| {
                            I32::new(match (mode, j % 5) {
                                (4, 0) => limit,
                                (4, 1) => -limit,
                                (4, _) => rng.i32_in(-limit, limit),
                                (_, 0) => i32::MAX - 3,
                                (3, 1) => i32::MIN,
                                (3, 2) => i32::MAX,
                                _ => rng.next_u64() as i32 >> 8,
                            })
                        })
                        .collect();
                    let pairs: Vec<I32> = (0..rows)
                        .flat_map(|j| {
                            let shift = match mode {
                                2 => (j % 37) as i32 - 3,
                                3 => (j % 3) as i32,
                                4 => (j % 32) as i32,
                                _ => 2 + (j % 30) as i32,
                            };
                            [
                                I32::new(((rng.next_u64() as u32) >> 1 | (1 << 30)) as i32),
                                I32::new(shift),
                            ]
                        })
                        .collect();
                    let rq = RqRows::new(&bias, &pairs, m.corr, k).expect("rows fit");
                    assert_eq!(rq.clamp != 0, mode == 2);
                    assert_eq!(rq.fast != 0, mode == 4, "mode {mode}");
                    assert!(packed_matvec(&m, &x, &mut got, Some(&rq)));
                    for (j, &g) in got.iter().enumerate() {
                        assert_eq!(g, matvec_rq_row(&w, &bias, &pairs, &x, j), "rq row {j}");
                    }
                    // The LSTM gates formed in the same pass: `sat16(sat32(ax + rq(..)))`, with
                    // `ax` at the int32 bounds in some rows (the sum overflows).
                    let ax: Vec<i32> = (0..rows)
                        .map(|j| match j % 4 {
                            0 => i32::MAX - 5,
                            1 => i32::MIN + 5,
                            _ => rng.next_u64() as i32 >> (j % 24),
                        })
                        .collect();
                    let mut g16 = std::vec![0x5A5Ai16; rows];
                    let mut xb = [0u32; KMAX / 4];
                    // SAFETY: AVX-512 VNNI present (checked above); `k ≤ KMAX`, the pack holds
                    // `rows` rows, `ax` and `g16` are `rows` long.
                    unsafe {
                        unsigned_dwords(&x, &mut xb);
                        let nb = rows.div_ceil(16);
                        let gates = Some((&ax[..], &mut g16[..]));
                        if rq.fast != 0 {
                            packed_blocks::<true>(&m, &xb, 0..nb, &mut got, Some(&rq), gates);
                        } else {
                            packed_blocks::<false>(&m, &xb, 0..nb, &mut got, Some(&rq), gates);
                        }
                    }
                    for (j, &g) in g16.iter().enumerate() {
                        let want = sat16_add(ax[j], matvec_rq_row(&w, &bias, &pairs, &x, j));
                        assert_eq!(g, want, "gate row {j}");
                    }
                    // Four to eight steps in one pass over the weights: each step's row as the
                    // one-step product gives it (the same `x` in every other step, so a step
                    // read from the wrong row shows).
                    let xs: Vec<Vec<i8>> = (0..XSTEPS)
                        .map(|s| {
                            if s % 3 == 1 {
                                x.clone()
                            } else {
                                (0..k).map(|_| val(&mut rng)).collect()
                            }
                        })
                        .collect();
                    let mut xb = [[0u32; KMAX / 4]; XSTEPS];
                    for (xbi, xi) in xb.iter_mut().zip(&xs) {
                        // SAFETY: the level is AVX-512 VNNI (checked above); `k ≤ KMAX`.
                        unsafe { unsigned_dwords(xi, xbi) };
                    }
                    let mut out = [[0x5A5A_5A5Ai32; MATVEC_BLOCK]; XSTEPS];
                    let quads = 1 + cases % 2;
                    // SAFETY: as above; `rows ≤ MATVEC_BLOCK`, `m` packs them, `4·quads ≤ XSTEPS`.
                    unsafe {
                        if rq.fast != 0 {
                            packed_matmat::<true>(&m, &xb, quads, rows, &rq, &mut out);
                        } else {
                            packed_matmat::<false>(&m, &xb, quads, rows, &rq, &mut out);
                        }
                    }
                    for (s, (o, xi)) in out.iter().zip(&xs).enumerate().take(4 * quads) {
                        for (j, &g) in o[..rows].iter().enumerate() {
                            assert_eq!(
                                g,
                                matvec_rq_row(&w, &bias, &pairs, xi, j),
                                "step {s} row {j}"
                            );
                        }
                    }
                    cases += 1;
                }
            }
        }
        assert!(cases > 100, "{cases} cases");
        // Wrong lengths write nothing.
        let (w, x) = ([1i8; 32], [1i8; 2]);
        let mut buf = MaybeUninit::uninit();
        let mut corr = [0i32; 16];
        let m = pack(&w, 16, 2, &mut buf, &mut corr);
        let mut out = [7i32; 17];
        assert!(!packed_matvec(&m, &x, &mut out, None));
        assert!(!packed_matvec(&m, &x[..1], &mut out[..16], None));
        let short = [I32::new(0); 31];
        assert!(RqRows::new(&short[..15], &short, &corr, 2).is_none());
        assert!(RqRows::new(&short, &short, &corr, 2).is_none());
        assert!(RqRows::new(&short, &short, &corr[..15], KMAX + 1).is_none());
        assert_eq!(out, [7; 17]);
    }
}
