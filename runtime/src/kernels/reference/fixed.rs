//! Fixed-point helpers shared by every kernel: requantization `rq`, the rounding right shift
//! `rsr`, saturation, the int16 activation-table lookup `lut16`, `dot_i8` (the reference inner
//! loop of every matrix-vector product), and `matvec_rq`, the requantized matrix-vector product
//! of FC and the recurrent gates, whose integer part goes through the SIMD dispatch
//! ([`matvec_i8`]) and whose requantization is [`rq`] here, or the active level's fused kernel
//! (Cortex-M DSP; AVX-512 on x86), bit-identical with it.
//!
//! Definitions (`docs/format.md`, "Integer semantics"):
//!
//! - `rq(acc, mult, shift) = sat32((acc · mult + 2^(30 + shift)) >> (31 + shift))` in i64, for
//!   `mult ∈ [0, 2^31)`, `shift ∈ [-30, 31]`. It approximates `acc · mult · 2^-(31 + shift)`
//!   with one rounding (half up); the error is at most 1/2 plus `|acc| · 2^-(31 + shift)` from the
//!   multiplier's own quantization (relative error ≤ 2^-30 when `mult ≥ 2^30`).
//! - `rsr(v, n) = (v + 2^(n-1)) >> n` for `n ≥ 1`, `v` for `n = 0` (arithmetic, half up).
//! - `lut16(tab, x)`: 512 linear segments over Q3.12 `[-8, 8)`; interpolation rounds half up.
//!   For sigmoid and tanh the result is within 4 LSB of Q0.15 (1.2e-4; measured 1.16e-4, from
//!   tanh's curvature over a 1/32 segment: `(1/32)² / 8 · max|tanh''| ≈ 9.4e-5`, plus table
//!   and interpolation rounding) of the exact function.

use super::ActTable;
use crate::kernels::matvec::{matvec_i8, matvec_rq_fused};
use zerocopy::little_endian::I32;

/// `rq(acc, mult, shift)`; see the module doc. `shift` outside `[-30, 31]` is clamped into it
/// (parse refuses such files; clamping only keeps the function total).
///
/// For `shift ≥ 2` (`n = 31 + shift ≥ 33`: every FC requantization of the committed models,
/// shifts 6 to 12, and most gate rows; their gate shifts run from -2 to 12, mostly 1 to 3) it
/// takes an exact 32-bit path: `⌊(v + 2^(n-1)) / 2^n⌋ = ⌊(⌊v / 2^(n-1)⌋ + 1) / 2⌋`
/// (the added `2^(n-1)` is a multiple of `2^(n-1)`), and `⌊v / 2^(n-1)⌋ = hi >> (n - 33)` with
/// `hi = ⌊v / 2^32⌋` the high word of the 64-bit product (one `smull` on Cortex-M). `|v| ≤ 2^62`
/// gives `|hi| ≤ 2^30`, so nothing overflows and the result never needs the clamp. `shift = 1`
/// (`n = 32`) is `(v + 2^31) >> 32`, again within ±2^30.
#[inline]
pub fn rq(acc: i32, mult: i32, shift: i32) -> i32 {
    if (2..=31).contains(&shift) {
        let hi = ((acc as i64 * mult as i64) >> 32) as i32;
        return ((hi >> (shift - 2)) + 1) >> 1;
    }
    if shift == 1 {
        // n = 32: `(v + 2^31) >> 32` (`smmulr`), within ±2^30, no clamp needed.
        return ((acc as i64 * mult as i64 + (1i64 << 31)) >> 32) as i32;
    }
    let shift = shift.clamp(-30, 31);
    // |acc · mult| ≤ 2^62 and the rounding term ≤ 2^61: no i64 overflow.
    let v = (acc as i64 * mult as i64 + (1i64 << (30 + shift))) >> (31 + shift);
    v.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// `rq` with the pair at index `j` of a `[N, 2]` table (`mult`, `shift`); `(0, 0)` if `j` is out
/// of range (unreachable for validated models).
#[inline]
pub fn rq_at(pairs: &[I32], j: usize, acc: i32) -> i32 {
    match pairs.get(2 * j..2 * j + 2) {
        Some(p) => rq(acc, p[0].get(), p[1].get()),
        None => 0,
    }
}

/// Rounding right shift, half up: `(v + 2^(n-1)) >> n`, or `v` when `n = 0`. `n` is capped at
/// 62 (parse-validated shifts never exceed it). Wrapping add: callers keep `v` far from
/// `i64::MAX`.
#[inline]
pub fn rsr(v: i64, n: u32) -> i64 {
    if n == 0 {
        v
    } else {
        let n = n.min(62);
        v.wrapping_add(1i64 << (n - 1)) >> n
    }
}

/// Saturate to int16.
#[inline]
pub fn sat16(v: i64) -> i16 {
    v.clamp(i16::MIN as i64, i16::MAX as i64) as i16
}

/// `sat16(a + b)` for i32 operands, without widening: a saturating i32 sum clamps to the same
/// int16 as the exact one.
#[inline]
pub fn sat16_add(a: i32, b: i32) -> i16 {
    a.saturating_add(b).clamp(i16::MIN as i32, i16::MAX as i32) as i16
}

/// `rsr` in i32, for callers that bound `|v| + 2^(n-1) < 2^31` (`n ≤ 31`).
#[inline]
pub fn rsr32(v: i32, n: u32) -> i32 {
    if n == 0 {
        v
    } else {
        let n = n.min(31);
        v.wrapping_add(1 << (n - 1)) >> n
    }
}

/// Saturate to `[lo, hi]` and narrow to int8 (`lo`, `hi` within int8 range).
#[inline]
pub fn clamp8(v: i64, lo: i32, hi: i32) -> i8 {
    v.clamp(lo as i64, hi as i64).clamp(-128, 127) as i8
}

/// `clamp8(zp + v, -128, 127)` for i32 operands: a saturating i32 sum clamps to the same int8
/// as the exact one.
#[inline]
pub fn clamp8_add(zp: i32, v: i32) -> i8 {
    zp.saturating_add(v).clamp(-128, 127) as i8
}

/// The int16 activation-table lookup with linear interpolation (Q3.12 in, Q0.15 out):
/// `u = x + 32768; i = u >> 7; f = u & 127; tab[i] + (((tab[i+1] - tab[i]) · f + 64) >> 7)`.
#[inline]
pub fn lut16(tab: &ActTable, x: i16) -> i32 {
    // `u >> 7 = (x >> 7) + 256` and `u & 127 = x & 127`: 32768 is a multiple of 128.
    let i = ((x >> 7) as i32 + 256) as usize; // 0..=511
    let f = (x & 127) as i32;
    let a = tab[i].get() as i32;
    let b = tab[i + 1].get() as i32;
    a + (((b - a) * f + 64) >> 7)
}

/// `Σ a[i] · b[i]` over the common length, int8 × int8 → int32. Cannot overflow for lengths
/// below 2^17 (parse refuses longer rows); wraps beyond. The one inner loop shared by FC,
/// LSTM, GRU and RNN.
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .fold(0i32, |acc, (&x, &y)| acc.wrapping_add(x as i32 * y as i32))
}

/// Rows per block of the callers that keep a block's int32 accumulators on the stack
/// (`4 · MATVEC_BLOCK` bytes): FC and the recurrent gate loop. 96 on the devices (stack);
/// 256 on x86_64, where a 64-unit LSTM's or GRU's gate product is then one dispatched call
/// per step instead of three or two (blocks are independent rows: the same bits either way).
#[cfg(not(target_arch = "x86_64"))]
pub const MATVEC_BLOCK: usize = 96;
/// See above: x86_64.
#[cfg(target_arch = "x86_64")]
pub const MATVEC_BLOCK: usize = 256;

/// `out[i] = rq(bias[j] + Σ_k m[j, k] · v[k], pairs[j])` with `j = j0 + i`, for the row-major
/// matrix `m` with `v.len()` columns: a block of the requantized matrix-vector product every
/// matvec op uses. The products go through the dispatched [`matvec_i8`] (SIMD where available,
/// bit-identical) in one call, into `out`. Rows that `m`, `bias` or `pairs` do not hold
/// (never, for a validated model) follow [`matvec_rq_row`]: a missing row sums to 0, a missing
/// bias is 0, a missing pair gives 0. The bias add wraps in i32 (a validated model never gets
/// near it).
pub fn matvec_rq(m: &[i8], bias: &[I32], pairs: &[I32], v: &[i8], j0: usize, out: &mut [i32]) {
    let k = v.len();
    let rows = m.get(j0.saturating_mul(k)..).unwrap_or(&[]);
    let n = out.len();
    let bp = (
        bias.get(j0..j0.saturating_add(n)),
        pairs.get(j0.saturating_mul(2)..j0.saturating_add(n).saturating_mul(2)),
    );
    // A fused product + requantization where the active kernel level has one (Cortex-M DSP).
    if let (Some(bs), Some(ps)) = bp {
        if matvec_rq_fused(rows, bs, ps, v, out) {
            return;
        }
    }
    // The products straight into `out` (one dispatched call: the DSP kernel expands `v` once),
    // then requantized in place.
    matvec_i8(rows, v, out);
    match bp {
        (Some(bs), Some(ps)) => {
            for ((o, b), p) in out.iter_mut().zip(bs).zip(ps.chunks_exact(2)) {
                *o = rq(b.get().wrapping_add(*o), p[0].get(), p[1].get());
            }
        }
        _ => {
            for (i, o) in out.iter_mut().enumerate() {
                let j = j0 + i;
                let bj = bias.get(j).map_or(0, |b| b.get());
                *o = rq_at(pairs, j, bj.wrapping_add(*o));
            }
        }
    }
}

/// `rq(bias[j] + Σ_k m[j, k] · v[k], pairs[j])` for row `j` alone, with the reference loop:
/// the definition [`matvec_rq`] is tested against.
#[inline]
pub fn matvec_rq_row(m: &[i8], bias: &[I32], pairs: &[I32], v: &[i8], j: usize) -> i32 {
    let k = v.len();
    let row = m.get(j * k..j * k + k).unwrap_or(&[]);
    let b = bias.get(j).map_or(0, |b| b.get());
    rq_at(pairs, j, b.wrapping_add(dot_i8(row, v)))
}

/// A self-test for targets without the test harness (the Cortex-M firmware's `kernels` app):
/// the dispatched [`matvec_rq`] (on Cortex-M DSP, the fused kernel) against [`matvec_rq_row`]
/// (the reference loop, row by row) on shapes the fused kernel takes (`K` a multiple of 4, rows
/// in fours) and shapes it declines, with every requantization shift from -31 to 33 (so the
/// 32-bit paths, the `smmulr` one and the rows left to the caller all run), random and extreme
/// multipliers, biases that make the i32 bias add wrap, and unaligned operands. Returns the
/// number of rows that differ (0 when the kernels agree). About 1.3 KB of stack.
pub fn self_test_matvec_rq(seed: u32) -> usize {
    const ROWS: usize = 16;
    const COLS: usize = 68;
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        s
    };
    let mut m = [0i8; ROWS * COLS + 3];
    let mut v = [0i8; COLS + 3];
    let mut bias = [I32::new(0); ROWS + 1];
    let mut pairs = [I32::new(0); 2 * ROWS + 2];
    let mut out = [0i32; ROWS];
    let mut bad = 0;
    let mut case = 0usize;
    for &cols in &[4usize, 8, 20, 28, 40, 64, 68, 3, 17] {
        for &rows in &[4usize, 8, 12, 16, 5, 1] {
            for round in 0..3 {
                case += 1;
                for x in m.iter_mut().chain(v.iter_mut()) {
                    *x = (next() >> 24) as u8 as i8;
                }
                for (j, b) in bias.iter_mut().enumerate() {
                    let r = next() as i32;
                    *b = I32::new(match (j + round) % 5 {
                        0 => i32::MAX - (r & 0xffff),
                        1 => i32::MIN + (r & 0xffff),
                        _ => r >> 11,
                    });
                }
                for (j, p) in pairs.chunks_exact_mut(2).enumerate() {
                    let mult = match (j + case) % 4 {
                        0 => i32::MAX,
                        1 => 1 << 30,
                        _ => (next() >> 1) as i32,
                    };
                    let shift = ((j * 7 + case * 3 + round) % 65) as i32 - 31;
                    p[0] = I32::new(mult);
                    p[1] = I32::new(shift);
                }
                let off = (case + round) % 4;
                let (mm, vv) = (&m[off..off + rows * cols], &v[off..off + cols]);
                let (bb, pp) = (&bias[..rows], &pairs[..2 * rows]);
                matvec_rq(mm, bb, pp, vv, 0, &mut out[..rows]);
                for (j, &o) in out[..rows].iter().enumerate() {
                    bad += usize::from(o != matvec_rq_row(mm, bb, pp, vv, j));
                }
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{quantize_multiplier, sigmoid_table, tanh_table, Rng};

    #[test]
    fn rq_matches_exact_rounding() {
        let mut rng = Rng::new(1);
        for _ in 0..20000 {
            let acc = rng.i32_in(-(1 << 24), 1 << 24);
            let m = 10f64.powf(rng.f64_in(-6.0, 2.0));
            let (mult, shift) = quantize_multiplier(m);
            let got = rq(acc, mult, shift) as f64;
            let exact = acc as f64 * mult as f64 * 2f64.powi(-(31 + shift));
            // One rounding, half up: |got - exact| ≤ 1/2.
            assert!(
                (got - exact).abs() <= 0.5 + 1e-9,
                "acc {acc} m {m}: {got} vs {exact}"
            );
            // The multiplier itself approximates m to 2^-30 relative.
            assert!((exact - acc as f64 * m).abs() <= (acc as f64 * m).abs() * 1e-9 + 1e-9);
        }
        // Extremes saturate instead of overflowing.
        assert_eq!(rq(i32::MAX, i32::MAX, -30), i32::MAX);
        assert_eq!(rq(i32::MIN, i32::MAX, -30), i32::MIN);
        assert_eq!(rq(i32::MIN, i32::MAX, 31), -1);
        assert_eq!(rq(5, 1 << 30, 0), 3); // 2.5 rounds half up
        assert_eq!(rq(-5, 1 << 30, 0), -2); // -2.5 rounds half up
    }

    /// The 32-bit paths (`shift ≥ 1`) against the i64 definition, every shift, extreme operands.
    #[test]
    fn rq_fast_paths_match_the_i64_definition() {
        let def = |acc: i32, mult: i32, shift: i32| {
            let v = (acc as i64 * mult as i64 + (1i64 << (30 + shift))) >> (31 + shift);
            v.clamp(i32::MIN as i64, i32::MAX as i64) as i32
        };
        let mut rng = Rng::new(5);
        let edges = [i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX];
        for shift in -30..=31 {
            for _ in 0..2000 {
                let acc = rng.i32_in(i32::MIN, i32::MAX);
                let mult = rng.i32_in(0, i32::MAX);
                assert_eq!(
                    rq(acc, mult, shift),
                    def(acc, mult, shift),
                    "{acc} {mult} {shift}"
                );
            }
            for &a in &edges {
                for &m in &edges {
                    assert_eq!(rq(a, m, shift), def(a, m, shift), "{a} {m} {shift}");
                }
            }
        }
    }

    #[test]
    fn matvec_rq_self_test_passes() {
        assert_eq!(self_test_matvec_rq(0x1234_5679), 0);
        crate::kernels::force_reference(true);
        assert_eq!(self_test_matvec_rq(7), 0);
        crate::kernels::force_reference(false);
    }

    #[test]
    fn rsr_rounds_half_up() {
        assert_eq!(rsr(5, 1), 3);
        assert_eq!(rsr(-5, 1), -2);
        assert_eq!(rsr(-6, 2), -1);
        assert_eq!(rsr(7, 0), 7);
        assert_eq!(rsr(1 << 61, 62), 1);
        assert_eq!(rsr(-(1 << 40), 62), 0);
    }

    #[test]
    fn lut16_within_four_lsb_of_the_functions() {
        let (sig, tanh) = (sigmoid_table(), tanh_table());
        let mut worst = 0f64;
        for x in i16::MIN..=i16::MAX {
            let xf = x as f64 / 4096.0;
            let s = lut16(&sig, x) as f64 / 32768.0;
            let t = lut16(&tanh, x) as f64 / 32768.0;
            worst = worst.max((s - 1.0 / (1.0 + (-xf).exp())).abs());
            worst = worst.max((t - xf.tanh()).abs());
        }
        assert!(worst <= 4.0 / 32768.0, "worst {worst}");
    }

    #[test]
    fn dot_and_matvec() {
        assert_eq!(dot_i8(&[1, -2, 3], &[4, 5, -6]), 4 - 10 - 18);
        assert_eq!(dot_i8(&[-128; 1000], &[-128; 1000]), 16384 * 1000);
        let m = [1i8, 2, 3, 4, 5, 6];
        let bias = [I32::new(10), I32::new(-10)];
        let pairs = [
            I32::new(1 << 30),
            I32::new(-1),
            I32::new(1 << 30),
            I32::new(-1),
        ];
        assert_eq!(matvec_rq_row(&m, &bias, &pairs, &[1, 1, 1], 0), 16);
        assert_eq!(matvec_rq_row(&m, &bias, &pairs, &[1, 1, 1], 1), 5);
        assert_eq!(matvec_rq_row(&m, &bias, &pairs, &[1, 1, 1], 2), 0);
        let mut out = [9i32; 3];
        matvec_rq(&m, &bias, &pairs, &[1, 1, 1], 0, &mut out);
        assert_eq!(out, [16, 5, 0]);
        matvec_rq(&m, &bias, &pairs, &[1, 1, 1], 1, &mut out[..1]);
        assert_eq!(out[0], 5);
    }

    /// `matvec_rq` (blocked, dispatched) equals `matvec_rq_row` (per row, reference) for blocks
    /// that start anywhere and straddle `MATVEC_BLOCK`.
    #[test]
    fn matvec_rq_blocks_match_rows() {
        let mut rng = Rng::new(77);
        for &(rows, k) in &[(1, 1), (5, 3), (70, 17), (33, 64), (100, 40)] {
            let m = rng.i8s(rows * k);
            let v = rng.i8s(k);
            let bias: std::vec::Vec<I32> = (0..rows)
                .map(|_| I32::new(rng.i32_in(-9999, 9999)))
                .collect();
            let pairs: std::vec::Vec<I32> = (0..rows)
                .flat_map(|_| {
                    [
                        I32::new(rng.i32_in(1 << 30, i32::MAX)),
                        I32::new(rng.i32_in(-2, 12)),
                    ]
                })
                .collect();
            for j0 in [0, 1, rows / 2] {
                let mut out = std::vec![0i32; rows - j0];
                matvec_rq(&m, &bias, &pairs, &v, j0, &mut out);
                for (i, &o) in out.iter().enumerate() {
                    assert_eq!(
                        o,
                        matvec_rq_row(&m, &bias, &pairs, &v, j0 + i),
                        "rows {rows} k {k} j0 {j0}"
                    );
                }
            }
        }
    }
}
