//! Test-only helpers: a tiny xorshift PRNG, `quantize_multiplier` (float → `(mult, shift)`), the
//! int16 activation tables (in production the quantizer writes them into the file), and float
//! quantization helpers for building kernel operands.

extern crate std;
use crate::format::ACT_TABLE_LEN;
use crate::kernels::reference::ActTable;
use std::vec::Vec;
use zerocopy::little_endian::{I16, I32};

/// xorshift64*: deterministic, dependency-free test randomness.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[lo, hi]`.
    pub fn i32_in(&mut self, lo: i32, hi: i32) -> i32 {
        let span = (hi as i64 - lo as i64 + 1) as u64;
        (lo as i64 + (self.next_u64() % span) as i64) as i32
    }
    pub fn usize_below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn i8(&mut self) -> i8 {
        self.next_u64() as i8
    }
    /// Uniform in `[lo, hi)`.
    pub fn f64_in(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
    pub fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.i8()).collect()
    }
}

/// `m ≈ mult · 2^-(31 + shift)` with `mult ∈ [2^30, 2^31)` and `shift ∈ [-30, 31]`.
pub fn quantize_multiplier(m: f64) -> (i32, i32) {
    assert!(m.is_finite() && m >= 0.0);
    if m == 0.0 {
        return (0, 0);
    }
    let mut e = m.log2().floor() as i32 + 1; // m = q · 2^e, q ∈ [0.5, 1)
    let mut q = m / 2f64.powi(e);
    while q >= 1.0 {
        q /= 2.0;
        e += 1;
    }
    while q < 0.5 {
        q *= 2.0;
        e -= 1;
    }
    let mut mult = (q * 2f64.powi(31)).round() as i64;
    if mult == 1 << 31 {
        mult /= 2;
        e += 1;
    }
    let shift = -e;
    assert!(shift >= -30, "multiplier {m} too large");
    if shift > 31 {
        return ((m * 2f64.powi(62)).round() as i32, 31);
    }
    (mult as i32, shift)
}

fn act_table(f: impl Fn(f64) -> f64) -> ActTable {
    let mut t = [I16::new(0); ACT_TABLE_LEN];
    for (i, e) in t.iter_mut().enumerate() {
        let x = -8.0 + i as f64 / 32.0;
        *e = I16::new((f(x) * 32768.0).round().clamp(-32768.0, 32767.0) as i16);
    }
    t
}

/// `tab[i] = sat16(round(sigmoid(-8 + i/32) · 32768))`.
pub fn sigmoid_table() -> ActTable {
    act_table(|x| 1.0 / (1.0 + (-x).exp()))
}

/// `tab[i] = sat16(round(tanh(-8 + i/32) · 32768))`.
pub fn tanh_table() -> ActTable {
    act_table(f64::tanh)
}

pub fn le32(v: &[i32]) -> Vec<I32> {
    v.iter().map(|&x| I32::new(x)).collect()
}

/// Symmetric per-row int8 quantization of a `[rows, cols]` float matrix: `(q, scales)`.
pub fn quantize_rows(w: &[f64], cols: usize) -> (Vec<i8>, Vec<f64>) {
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::new();
    for row in w.chunks(cols) {
        let max = row.iter().fold(0f64, |a, v| a.max(v.abs()));
        let s = if max > 0.0 { max / 127.0 } else { 1.0 };
        scales.push(s);
        q.extend(
            row.iter()
                .map(|v| (v / s).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

/// Bias at scale `s_in · s_w[r]` with `-zp_in · Σ w_q` folded in.
pub fn fold_bias(
    b: &[f64],
    wq: &[i8],
    cols: usize,
    s_in: f64,
    s_w: &[f64],
    zp_in: i32,
) -> Vec<i32> {
    b.iter()
        .enumerate()
        .map(|(r, &bv)| {
            let sum: i64 = wq[r * cols..(r + 1) * cols].iter().map(|&v| v as i64).sum();
            ((bv / (s_in * s_w[r])).round() as i64 - zp_in as i64 * sum) as i32
        })
        .collect()
}

/// Flattened `(mult, shift)` pairs for each factor.
pub fn rq_pairs(ms: impl Iterator<Item = f64>) -> Vec<i32> {
    ms.flat_map(|m| {
        let (a, b) = quantize_multiplier(m);
        [a, b]
    })
    .collect()
}

/// Affine int8 quantization of `x` with `(scale, zp)`.
pub fn quantize(x: f64, scale: f64, zp: i32) -> i8 {
    ((x / scale).round() + zp as f64).clamp(-128.0, 127.0) as i8
}
