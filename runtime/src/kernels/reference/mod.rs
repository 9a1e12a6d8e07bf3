//! Portable scalar reference kernels, one op per file. Shared fixed-point helpers (and the one
//! `dot_i8` inner loop every matrix-vector product goes through) live in [`fixed`];
//! [`div_round`], shared by LAYERNORM and ATTENTION, lives here.

pub mod add;
pub mod attention;
pub mod concat;
pub mod copy;
pub mod fc;
pub mod fixed;
pub mod gru;
pub mod layernorm;
pub mod lstm;
pub mod lstm16;
pub mod lut;
pub mod mean;
pub mod requant;
pub mod rnn;
pub mod softmax;

use zerocopy::little_endian::I32;

/// A 513-entry int16 activation table (sigmoid or tanh, Q3.12 in, Q0.15 out), little-endian,
/// read in place from the model file.
pub type ActTable = [zerocopy::little_endian::I16; crate::format::ACT_TABLE_LEN];

/// The sigmoid and tanh tables (Q3.12 → Q0.15) of the gated cells.
#[derive(Debug, Clone, Copy)]
pub struct ActTables<'w> {
    /// Sigmoid.
    pub sig: &'w ActTable,
    /// Tanh.
    pub tanh: &'w ActTable,
}

/// The constant operands shared by the recurrent cells (LSTM, GRU, RNN) with `G` gates:
/// `w [G·H, I]`, `r [G·H, H]` (row-major, symmetric int8), biases `[G·H]` with the zero points
/// folded in, and requantization pairs `[G·H, 2]` taking each gate's accumulator to Q3.12 (or,
/// for a ReLU RNN, to the output scale).
#[derive(Debug, Clone, Copy)]
pub struct GateWeights<'w> {
    /// Input weights `[G·H, I]`.
    pub w: &'w [i8],
    /// Recurrent weights `[G·H, H]`.
    pub r: &'w [i8],
    /// Input bias `[G·H]` (`-x_zp · Σ w` folded in).
    pub bias_x: &'w [I32],
    /// Recurrent bias `[G·H]` (`-h_zp · Σ r` folded in).
    pub bias_h: &'w [I32],
    /// Input requantization pairs `[G·H, 2]`.
    pub rq_x: &'w [I32],
    /// Recurrent requantization pairs `[G·H, 2]`.
    pub rq_h: &'w [I32],
    /// These operands as the active SIMD level prepared them once for a session
    /// ([`Model::prepared_bytes`](crate::Model::prepared_bytes)), or `None`: the kernels then
    /// prepare them at every call. Only a speed matter: results are the same either way.
    /// (x86-64 only: no other target keeps prepared operands.)
    #[cfg(kinglet_prep)]
    pub prep: Option<&'w [u8]>,
}

impl GateWeights<'_> {
    /// Whether every slice is exactly as long as a cell with `gates` gates, `input` inputs and
    /// `hidden` units needs.
    pub fn fits(&self, gates: usize, input: usize, hidden: usize) -> bool {
        let Some(gh) = gates.checked_mul(hidden) else {
            return false;
        };
        Some(self.w.len()) == gh.checked_mul(input)
            && Some(self.r.len()) == gh.checked_mul(hidden)
            && self.bias_x.len() == gh
            && self.bias_h.len() == gh
            && Some(self.rq_x.len()) == gh.checked_mul(2)
            && Some(self.rq_h.len()) == gh.checked_mul(2)
    }

    /// The gate products of one step, a block of at most [`fixed::MATVEC_BLOCK`] rows at a
    /// time: for each block starting at row `first`, `f(first, ax, ah)` receives
    /// `ax[j] = rq(bias_x + W·x, rq_x)` and `ah[j] = rq(bias_h + R·h, rq_h)` for rows
    /// `first + j`, `rows` rows in all. The one place the recurrent cells run their products.
    pub fn for_each_block(
        &self,
        rows: usize,
        x: &[i8],
        h: &[i8],
        mut f: impl FnMut(usize, &[i32], &[i32]),
    ) {
        let (mut ax, mut ah) = ([0i32; fixed::MATVEC_BLOCK], [0i32; fixed::MATVEC_BLOCK]);
        let mut first = 0;
        while first < rows {
            let n = fixed::MATVEC_BLOCK.min(rows - first);
            let (ax, ah) = (&mut ax[..n], &mut ah[..n]);
            fixed::matvec_rq(self.w, self.bias_x, self.rq_x, x, first, ax);
            fixed::matvec_rq(self.r, self.bias_h, self.rq_h, h, first, ah);
            f(first, ax, ah);
            first += n;
        }
    }
}

/// Operands for the recurrent ops' device self-tests (`lstm::self_test_lstm`,
/// `gru::self_test_gru`): xorshift32 values, biases that make the i32 bias add wrap,
/// requantization pairs with the shifts the quantizer writes and the edge ones, random tables.
pub(crate) struct SelfTestRng(u32);

impl SelfTestRng {
    pub(crate) fn new(seed: u32) -> Self {
        SelfTestRng(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    /// Random int8 values.
    pub(crate) fn fill_i8(&mut self, v: &mut [i8]) {
        for x in v {
            *x = (self.next() >> 24) as u8 as i8;
        }
    }

    /// Biases: mostly small, one in seven near `i32::MAX` or `i32::MIN` (so the bias add wraps).
    pub(crate) fn biases(&mut self, case: u32, b: &mut [I32]) {
        for (j, b) in b.iter_mut().enumerate() {
            let v = self.next() as i32;
            *b = I32::new(match (j as u32 + case) % 7 {
                0 => i32::MAX - (v & 0xffff),
                1 => i32::MIN + (v & 0xffff),
                _ => v >> 13,
            });
        }
    }

    /// `(mult, shift)` pairs: mostly shifts the quantizer writes (8 to 23), some 1 and 2, and in
    /// every third case now and then one outside `[1, 31]` (the scalar paths).
    pub(crate) fn pairs(&mut self, case: u32, q: &mut [I32]) {
        for (j, q) in q.chunks_exact_mut(2).enumerate() {
            let v = self.next();
            let shift = match (j as u32 * 5 + case) % 23 {
                0 if case % 3 == 0 => [-1, 0, 32][(v % 3) as usize],
                1 | 2 => 1 + (v % 2) as i32,
                _ => 8 + (v % 16) as i32,
            };
            q[0] = I32::new(((v >> 1) | (1 << 30)) as i32);
            q[1] = I32::new(shift);
        }
    }

    /// Any int16 values (the self-tests check bit identity, not accuracy).
    pub(crate) fn table(&mut self, t: &mut [zerocopy::little_endian::I16]) {
        for t in t {
            *t = zerocopy::little_endian::I16::new((self.next() >> 16) as u16 as i16);
        }
    }
}

/// `div_round(a, b)`: `a / b` rounded half away from zero, for `b > 0`
/// (`docs/format.md`, "Integer semantics"): `(|a| + ⌊b/2⌋) / b` with the sign of `a`
/// (integer division). Exact for every `a`, computed in u64 (`|a| + ⌊b/2⌋ < 2^64`, and the
/// quotient's magnitude never exceeds `|a|`, so it fits back in i64). Returns 0 for `b ≤ 0`
/// (parse-validated callers never pass it).
#[inline]
pub fn div_round(a: i64, b: i64) -> i64 {
    if b <= 0 {
        return 0;
    }
    let b = b as u64;
    let q = (a.unsigned_abs() + b / 2) / b;
    if a < 0 {
        (q as i64).wrapping_neg()
    } else {
        q as i64
    }
}

/// [`div_round`] by one divisor many times, without a 64-bit division per call (a library call
/// of a few hundred instructions on Cortex-M): `new` takes the reciprocal `r = ⌊2^62 / b⌋`
/// once; `div(a)` then estimates `q = ⌊n · r / 2^62⌋` for `n = |a| + ⌊b/2⌋` (four 32 × 32
/// products) and corrects it once. Exact: `r ≤ 2^62 / b` gives `q ≤ ⌊n / b⌋`, and
/// `n / b − n · r / 2^62 = n · (2^62 / b − r) / 2^62 < n / 2^62 < 1` for `n < 2^62`, so `q` is
/// `⌊n / b⌋` or one less, which `n − q·b ≥ b` detects; a larger `n` (never from the callers'
/// bounds) takes the division. Used where one divisor serves a row: LAYERNORM's `sd`, the
/// attention's weight sum `l`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DivRound {
    b: u64,
    r: u64,
}

impl DivRound {
    /// The reciprocal of `b`; a `b ≤ 0` divides everything to 0, as [`div_round`].
    pub(crate) fn new(b: i64) -> DivRound {
        if b <= 0 {
            return DivRound { b: 0, r: 0 };
        }
        let b = b as u64;
        DivRound {
            b,
            r: (1 << 62) / b,
        }
    }

    /// `div_round(a, b)`.
    #[inline]
    pub(crate) fn div(&self, a: i64) -> i64 {
        let b = self.b;
        if b == 0 {
            return 0;
        }
        let n = a.unsigned_abs() + b / 2;
        let q = if n < 1 << 62 {
            let q = mul_shr62(n, self.r);
            if n - q * b >= b {
                q + 1
            } else {
                q
            }
        } else {
            n / b
        };
        if a < 0 {
            (q as i64).wrapping_neg()
        } else {
            q as i64
        }
    }
}

/// `⌊n · r / 2^62⌋` for `n < 2^62`, `r ≤ 2^62` (the result `< 2^62`) from four 32 × 32 → 64
/// products (`umull` on Cortex-M), no 128-bit arithmetic.
#[inline]
fn mul_shr62(n: u64, r: u64) -> u64 {
    let (nl, nh) = (n & 0xffff_ffff, n >> 32);
    let (rl, rh) = (r & 0xffff_ffff, r >> 32);
    let (ll, lh, hl, hh) = (nl * rl, nl * rh, nh * rl, nh * rh);
    // Bits 32..: the middle sum is below 3 · 2^32.
    let mid = (ll >> 32) + (lh & 0xffff_ffff) + (hl & 0xffff_ffff);
    let hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    (hi << 2) | ((mid & 0xffff_ffff) >> 30)
}

/// `f(x_row, y_row)` for the rows of `x` (`xn` elements each) and of `y` (`yn` each), in order,
/// as many as both hold: `x.chunks_exact(xn).zip(y.chunks_exact_mut(yn))`, written so that the
/// optimizer can prove it panic-free (core's `Zip::new` over `ChunksExact` divides by the chunk
/// size in an out-of-line function and so keeps a division-by-zero panic on the device path).
/// Does nothing when `xn` or `yn` is 0.
#[inline(always)]
pub(crate) fn for_rows<A, B>(
    x: &[A],
    xn: usize,
    y: &mut [B],
    yn: usize,
    mut f: impl FnMut(&[A], &mut [B]),
) {
    if xn == 0 || yn == 0 {
        return;
    }
    let mut xs = x.chunks_exact(xn);
    for yr in y.chunks_exact_mut(yn) {
        let Some(xr) = xs.next() else { return };
        f(xr, yr);
    }
}

/// Which time step a recurrent cell processes at iteration `i` of `steps`.
#[inline]
pub(crate) fn step_index(i: usize, steps: usize, reverse: bool) -> usize {
    if reverse {
        steps - 1 - i
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::{div_round, DivRound};
    use crate::kernels::testutil::Rng;

    /// The reciprocal path against the division, over divisors of every magnitude (1, powers
    /// of two and their neighbours, random up to 2^40) and numerators of both signs up to the
    /// 2^62 switch-over and past it, the halfway points `k·b ± b/2` included.
    #[test]
    fn div_round_by_reciprocal_is_exact() {
        let mut rng = Rng::new(5);
        let mut bs = std::vec![1i64, 2, 3, 7, 65535, 65536, 65537, (1 << 28) - 1, 1 << 28];
        bs.extend((1..40).map(|e| (1i64 << e) + 1));
        bs.extend((0..200).map(|i| 1 + (rng.next_u64() >> (24 + i % 40)) as i64));
        let mut checked = 0;
        for &b in &bs {
            let d = DivRound::new(b);
            let mut as_ = std::vec![0i64, 1, -1, b / 2, -(b / 2), b / 2 + 1, i64::MAX, i64::MIN];
            for _ in 0..300 {
                let a = (rng.next_u64() as i64) >> (rng.usize_below(62) + 1);
                let k = a / b.max(1);
                as_.extend([a, k * b + b / 2, k * b - b / 2, k * b + (b - 1) / 2]);
            }
            as_.extend([
                (1 << 62) - b,
                (1 << 62) - b / 2 - 1,
                -(1 << 62) + 5,
                (1 << 61) + 3,
            ]);
            for a in as_ {
                assert_eq!(d.div(a), div_round(a, b), "div_round({a}, {b})");
                checked += 1;
            }
        }
        assert!(checked > 50_000);
        assert_eq!(DivRound::new(0).div(5), 0);
        assert_eq!(DivRound::new(-3).div(5), 0);
    }

    #[test]
    fn div_round_is_half_away_from_zero() {
        let cases = [
            (0, 3, 0),
            (5, 2, 3),
            (-5, 2, -3),
            (7, 2, 4),
            (-7, 2, -4),
            (4, 3, 1),
            (5, 3, 2),
            (-4, 3, -1),
            (-5, 3, -2),
            (6, 4, 2),
            (-6, 4, -2),
            (5, 4, 1),
            (-5, 4, -1),
            (9, 1, 9),
            (1, 7, 0),
            (i64::MAX, 1, i64::MAX),
            (i64::MIN, 1, i64::MIN),
            (i64::MIN, 2, -(1 << 62)),
            (i64::MAX, i64::MAX, 1),
            (5, 0, 0),
            (5, -2, 0),
        ];
        for (a, b, want) in cases {
            assert_eq!(div_round(a, b), want, "div_round({a}, {b})");
        }
        // Against the float definition on a grid (all exact in f64).
        for a in -300i64..=300 {
            for b in 1i64..=40 {
                let r = a as f64 / b as f64;
                let want = r.abs().floor() + if r.abs().fract() >= 0.5 { 1.0 } else { 0.0 };
                assert_eq!(div_round(a, b) as f64, want.copysign(r), "{a} / {b}");
            }
        }
    }
}
