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
use super::x86::{avx512_gru_cell, avx512_lstm_cell, avx512_pack_strided, rq_i32x16, rq_pairs_x16};
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
/// (then four, then one) blocks of sixteen rows per pass; with `rq = Some((bias, pairs))`,
/// requantized in the same pass, `out[j] = rq(bias[j] + Σ_k w[j, k] · x[k], pairs[j])`
/// (`fixed::rq`, sixteen lanes by the FC kernel's `rq_i32x16`: its exact 32-bit path when every
/// shift of the block is in `[2, 31]`, else the i64 definition). Returns `false`, writing
/// nothing, when the lengths disagree (`x.len() = k`, `out.len() ≤ corr.len()`, the pack
/// holding every row block, `bias` and `pairs` covering every row).
fn packed_matvec(m: &Packed<'_>, x: &[i8], out: &mut [i32], rq: Option<(&[I32], &[I32])>) -> bool {
    let (k, n) = (m.k, out.len());
    let ok = x.len() == k
        && k <= KMAX
        && n <= m.corr.len()
        && m.pack.len() >= n.div_ceil(16) * 16 * k.div_ceil(4)
        && rq.is_none_or(|(b, p)| b.len() >= n && p.len() >= 2 * n);
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
/// AVX-512F/BW/VNNI; `x.len() = m.k ≤ KMAX`, `out.len() ≤ m.corr.len()`, `m.pack` holding
/// `⌈out.len()/16⌉ · 16 · ⌈k/4⌉` dwords, `rq`'s slices at least `out.len()` and
/// `2 · out.len()` long.
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn packed_matvec_avx512(
    m: &Packed<'_>,
    x: &[i8],
    out: &mut [i32],
    rq: Option<(&[I32], &[I32])>,
) {
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
            // SAFETY: the mask keeps every access inside rows `r..n` of `corr`, `out`, `bias`
            // and `pairs` (`n ≤` each of their row counts, the contract).
            unsafe {
                let corr = _mm512_maskz_loadu_epi32(mask, m.corr.as_ptr().add(r).cast());
                let mut v = _mm512_sub_epi32($acc, corr);
                if let Some((bias, pairs)) = rq {
                    let b = _mm512_maskz_loadu_epi32(mask, bias.as_ptr().add(r).cast());
                    let (p0, p1, fast) = rq_pairs_x16(pairs.as_ptr().add(2 * r), mask);
                    v = rq_i32x16(_mm512_add_epi32(v, b), p0, p1, fast);
                }
                _mm512_mask_storeu_epi32(out.as_mut_ptr().add(r).cast(), mask, v);
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

/// The step loop shared by the LSTM and GRU: repacks `W` and `R`, then per step the two
/// requantized products `ax = rq(bias_x + W·x_t)`, `ah = rq(bias_h + R·h)` and
/// `cell(ax, ah, h, y_t)`, which updates the state and writes the step's output. Returns
/// `false`, writing nothing, when the shapes do not fit or a length disagrees (checked before
/// anything is written; `cell` must accept every step once the first is accepted, as the
/// AVX-512 cells do for these lengths).
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
    let (mut ax, mut ah) = ([0i32; MATVEC_BLOCK], [0i32; MATVEC_BLOCK]);
    let (ax, ah) = (&mut ax[..g], &mut ah[..g]);
    for it in 0..steps {
        let t = step_index(it, steps, s.reverse);
        // In bounds by the checks above; every call below re-checks its lengths and cannot
        // fail for these operands.
        let (Some(xt), Some(yt)) = (x.get(t * ni..(t + 1) * ni), y.get_mut(t * nh..(t + 1) * nh))
        else {
            return true;
        };
        let done = packed_matvec(&wp, xt, ax, Some((wt.bias_x, wt.rq_x)))
            && packed_matvec(&rp, h, ah, Some((wt.bias_h, wt.rq_h)))
            && cell(ax, ah, h, yt);
        if !done {
            return true;
        }
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
                    assert!(packed_matvec(&m, &x, &mut got, Some((&bias, &pairs))));
                    for (j, &g) in got.iter().enumerate() {
                        assert_eq!(g, matvec_rq_row(&w, &bias, &pairs, &x, j), "rq row {j}");
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
        let short = [I32::new(0); 15];
        assert!(!packed_matvec(
            &m,
            &x,
            &mut out[..16],
            Some((&short, &short))
        ));
        assert_eq!(out, [7; 17]);
    }
}
