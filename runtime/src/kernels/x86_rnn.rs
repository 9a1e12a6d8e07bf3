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
//! registers before it is stored (the FC kernel's `rq_i32x16`), and the cells are the existing
//! AVX-512 ones ([`avx512_lstm_cell`](super::x86::avx512_lstm_cell),
//! [`avx512_gru_cell`](super::x86::avx512_gru_cell)) on the int32 products.
//!
//! The packed matrices live on the stack, at most [`PACK`] dwords (16 KB) each: a cell with
//! `G·H ≤ 256` gate rows and `⌈G·H/16⌉ · 16 · ⌈K/4⌉ ≤ 4096` (LSTM or GRU with `H = 64` and
//! `K ≤ 64`: 16 KB for `R`). Larger cells take the general path. The repack costs about one
//! product per matrix, paid once per op call rather than once per step.

#![allow(unsafe_code)]

use super::matvec::CellGates;
use super::reference::fixed::MATVEC_BLOCK;
use super::reference::{gru::GruParams, lstm::LstmParams, step_index, ActTables, GateWeights};
use super::x86::{avx512_gru_cell, avx512_lstm_cell, avx512_pack_strided};
use core::arch::x86_64::*;
use core::mem::MaybeUninit;
use zerocopy::little_endian::I32;

/// Dwords of one packed matrix on the stack (16 KB).
const PACK: usize = 4096;
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
/// shift ≤ 0, the only rows whose result can leave int32 (`|acc · m| ≤ 2^62`).
struct RqRows {
    bc: [i32; MATVEC_BLOCK],
    m: [i32; MATVEC_BLOCK],
    n1: [i32; MATVEC_BLOCK],
    clamp: bool,
}

impl RqRows {
    /// The constants of the first `corr.len()` rows (the rest zero); `None` when `bias` or
    /// `pairs` is shorter than that or there are more than [`MATVEC_BLOCK`] rows.
    fn new(bias: &[I32], pairs: &[I32], corr: &[i32]) -> Option<Self> {
        let n = corr.len();
        if n > MATVEC_BLOCK || bias.len() < n || pairs.len() < 2 * n {
            return None;
        }
        let mut r = RqRows {
            bc: [0; MATVEC_BLOCK],
            m: [0; MATVEC_BLOCK],
            n1: [0; MATVEC_BLOCK],
            clamp: false,
        };
        let rows = r.bc.iter_mut().zip(&mut r.m).zip(&mut r.n1);
        for (j, ((bc, m), n1)) in rows.enumerate().take(n) {
            let shift = pairs[2 * j + 1].get();
            *bc = bias[j].get().wrapping_sub(corr[j]);
            *m = pairs[2 * j].get();
            *n1 = 30 + shift.clamp(-30, 31);
            r.clamp |= shift <= 0;
        }
        Some(r)
    }
}

/// `rq(acc + bc, m, shift)` ([`fixed::rq`](super::reference::fixed::rq)) for sixteen i32 lanes,
/// every shift on one path: the 64-bit products of the even and odd lanes (`vpmuldq`),
/// `((v >> n1) + 1) >> 1 = (v + 2^(n1)) >> (n1 + 1)` (the added power of two is a multiple of
/// `2^n1`, so flooring first changes nothing), the low dwords interleaved back; with `clamp`,
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
    let pick = _mm512_setr_epi32(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
    _mm512_permutex2var_epi32(ve, pick, vo)
}

/// Requantizes the sixteen sums `acc` of rows `r..r + 16` by `rq` ([`rq16`]) and stores the
/// lanes of `mask` at `out`.
///
/// # Safety
/// AVX-512F; `mask` selects only rows `< MATVEC_BLOCK` and only elements inside the slice `out`
/// points into.
#[allow(clippy::incompatible_msrv)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn rq_store(rq: &RqRows, r: usize, mask: __mmask16, acc: __m512i, out: *mut i32) {
    // SAFETY: the caller's bounds: the masked loads read rows `r..` of the three
    // `MATVEC_BLOCK`-long arrays, the masked store writes inside `out`'s slice.
    unsafe {
        let ld = |a: &[i32; MATVEC_BLOCK]| _mm512_maskz_loadu_epi32(mask, a.as_ptr().add(r).cast());
        let v = rq16(acc, ld(&rq.bc), ld(&rq.m), ld(&rq.n1), rq.clamp);
        _mm512_mask_storeu_epi32(out.cast(), mask, v);
    }
}

/// Repacks `w [rows, k]` into `buf` and `corr`. The caller checked [`packs`] and
/// `w.len() = rows · k`, `corr.len() = rows`, and that AVX-512 VNNI is the active level.
fn pack<'a>(
    w: &[i8],
    rows: usize,
    k: usize,
    buf: &'a mut MaybeUninit<[u32; PACK]>,
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

/// `out[j] = Σ_k w[j, k] · x[k]` (wrapping) for `j < out.len()` from the packed `m`, eight
/// (then four, then one) blocks of sixteen rows per pass; with `rq = Some(rows)` (built from
/// `m`'s corrections), requantized in the same pass, `out[j] = rq(bias[j] + Σ_k w[j, k] ·
/// x[k], pairs[j])` ([`rq16`]). Returns `false`, writing nothing, when the lengths disagree
/// (`x.len() = k`, `out.len() ≤ corr.len() ≤ MATVEC_BLOCK`, the pack holding every row block).
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
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn packed_matvec_avx512(m: &Packed<'_>, x: &[i8], out: &mut [i32], rq: Option<&RqRows>) {
    let (k, n) = (m.k, out.len());
    let k4 = k.div_ceil(4);
    // The inputs as unsigned bytes (`x ^ 0x80`), four to a dword, 64 at a time; the bytes past
    // `k` (0x80 here) meet zero weights.
    let mut xb = [0u32; KMAX / 4];
    let flip = _mm512_set1_epi8(0x80u8 as i8);
    for (i, chunk) in x.chunks(64).enumerate() {
        let mask: __mmask64 = if chunk.len() >= 64 {
            !0
        } else {
            (1u64 << chunk.len()) - 1
        };
        // SAFETY: the mask keeps the load inside `chunk`; the store writes dwords
        // `16i .. 16i + 16` of `xb`, inside it (`k ≤ KMAX`, so `i < KMAX / 64`).
        unsafe {
            let v = _mm512_maskz_loadu_epi8(mask, chunk.as_ptr().cast());
            _mm512_storeu_si512(
                xb.as_mut_ptr().add(16 * i).cast(),
                _mm512_xor_si512(v, flip),
            );
        }
    }
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
            // SAFETY: the mask keeps every access inside rows `r..n` of `corr` and `out`, and
            // of `rq`'s arrays (`n ≤` each of their row counts, the contract).
            unsafe {
                let o = out.as_mut_ptr().add(r);
                if let Some(rq) = rq {
                    rq_store(rq, r, mask, $acc, o);
                } else {
                    let corr = _mm512_maskz_loadu_epi32(mask, m.corr.as_ptr().add(r).cast());
                    _mm512_mask_storeu_epi32(o.cast(), mask, _mm512_sub_epi32($acc, corr));
                }
            }
        }};
    }
    let mut b = 0;
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
    while b + 8 <= nb {
        pass!(a0 0, a1 1, a2 2, a3 3, a4 4, a5 5, a6 6, a7 7);
        b += 8;
    }
    while b + 4 <= nb {
        pass!(a0 0, a1 1, a2 2, a3 3);
        b += 4;
    }
    while b < nb {
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
    let shape = Seq {
        gates: 4,
        input: p.input,
        hidden: p.hidden,
        steps: p.steps,
        reverse: p.reverse,
    };
    c.len() == p.hidden
        && run_seq(&shape, wt, x, h, y, |ax, ah, h, yt| {
            avx512_lstm_cell(p, tabs, CellGates::I32(ax, ah), c, h, yt)
        })
}

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
    let shape = Seq {
        gates: 3,
        input: p.input,
        hidden: p.hidden,
        steps: p.steps,
        reverse: p.reverse,
    };
    h16.len() == p.hidden
        && run_seq(&shape, wt, x, h, y, |ax, ah, h, yt| {
            avx512_gru_cell(p, tabs, CellGates::I32(ax, ah), h16, h, yt)
        })
}

/// The shape of a recurrent op: `gates · hidden` gate rows.
struct Seq {
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
unsafe fn packed_matmat(
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
                    unsafe { rq_store(rq, r, mask, acc, out[s0 + s].as_mut_ptr().add(r)) };
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

/// The step loop shared by the LSTM and GRU: repacks `W` and `R` and builds their
/// requantization constants, then per [`XSTEPS`] steps the requantized input products
/// `ax = rq(bias_x + W·x_t)` in one pass ([`packed_matmat`]), and per step the recurrent one
/// `ah = rq(bias_h + R·h)` and `cell(ax, ah, h, y_t)`, which updates the state and writes the
/// step's output. Returns `false`, writing nothing, when the shapes do not fit or a length
/// disagrees (checked before anything is written; `cell` must accept every step once the
/// first is accepted, as the AVX-512 cells do for these lengths).
fn run_seq(
    s: &Seq,
    wt: &GateWeights<'_>,
    x: &[i8],
    h: &mut [i8],
    y: &mut [i8],
    mut cell: impl FnMut(&[i32], &[i32], &mut [i8], &mut [i8]) -> bool,
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
    let (mut wbuf, mut rbuf) = (MaybeUninit::uninit(), MaybeUninit::uninit());
    let (mut wcorr, mut rcorr) = ([0i32; MATVEC_BLOCK], [0i32; MATVEC_BLOCK]);
    let wp = pack(wt.w, g, ni, &mut wbuf, &mut wcorr[..g]);
    let rp = pack(wt.r, g, nh, &mut rbuf, &mut rcorr[..g]);
    let (Some(rqx), Some(rqh)) = (
        RqRows::new(wt.bias_x, wt.rq_x, wp.corr),
        RqRows::new(wt.bias_h, wt.rq_h, rp.corr),
    ) else {
        return false;
    };
    let mut xb = [[0u32; KMAX / 4]; XSTEPS];
    let mut ax = [[0i32; MATVEC_BLOCK]; XSTEPS];
    let mut ah = [0i32; MATVEC_BLOCK];
    let ah = &mut ah[..g];
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
        unsafe { packed_matmat(&wp, &xb, chunk.div_ceil(4), g, &rqx, &mut ax) };
        for (i, axi) in ax.iter().enumerate().take(chunk) {
            let t = step_index(it + i, steps, s.reverse);
            // In bounds by the checks above; every call below re-checks its lengths and
            // cannot fail for these operands.
            let Some(yt) = y.get_mut(t * nh..(t + 1) * nh) else {
                return true;
            };
            let done = packed_matvec(&rp, h, ah, Some(&rqh)) && cell(&axi[..g], ah, h, yt);
            if !done {
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

    /// The packed product against the reference loop over edge shapes (rows not a multiple of
    /// 16, one to eight blocks and more, `K` of 1 to 256 with every remainder mod 4 and 64),
    /// random and extreme values.
    #[test]
    fn packed_matvec_matches_the_reference() {
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
                for mode in 0..3 {
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
                    // -3 to 33 (both of `rq_i32x16`'s paths) and wrapping bias adds.
                    let bias: Vec<I32> = (0..rows)
                        .map(|j| {
                            I32::new(if j % 5 == 0 {
                                i32::MAX - 3
                            } else {
                                rng.next_u64() as i32 >> 8
                            })
                        })
                        .collect();
                    let pairs: Vec<I32> = (0..rows)
                        .flat_map(|j| {
                            let shift = if mode == 2 {
                                (j % 37) as i32 - 3
                            } else {
                                2 + (j % 30) as i32
                            };
                            [
                                I32::new(((rng.next_u64() as u32) >> 1 | (1 << 30)) as i32),
                                I32::new(shift),
                            ]
                        })
                        .collect();
                    let rq = RqRows::new(&bias, &pairs, m.corr).expect("rows fit");
                    assert_eq!(rq.clamp, mode == 2);
                    assert!(packed_matvec(&m, &x, &mut got, Some(&rq)));
                    for (j, &g) in got.iter().enumerate() {
                        assert_eq!(g, matvec_rq_row(&w, &bias, &pairs, &x, j), "rq row {j}");
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
                    unsafe { packed_matmat(&m, &xb, quads, rows, &rq, &mut out) };
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
        assert!(RqRows::new(&short[..15], &short, &corr).is_none());
        assert!(RqRows::new(&short, &short, &corr).is_none());
        assert_eq!(out, [7; 17]);
    }
}
