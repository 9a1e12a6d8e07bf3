//! Multi-head attention (`OP_ATTENTION`) on projected int8 `q [tq, W]`, `k [tk, W]`,
//! `v [tk, W]`, `W = heads · dh`; head `h` is the column block `h·dh .. (h+1)·dh` of every row
//! (of `q`, `k`, `v` and `y`). One query row and one head at a time, with one row of `tk` i32
//! scores as the only scratch (memory O(tk), never O(tq · tk)):
//!
//! ```text
//! s_j = Σ_c (q_c − q_zp)(k_jc − k_zp)                        j < n (n = i + 1 with causal, else tk)
//! m   = max_j s_j
//! t_j = rq(m − s_j, score_mult, score_shift)                 the logit gap · log2(e), Q.10, ≥ 0
//! p_j = rsr(exp2[t_j & 1023], t_j >> 10)   (0 when t_j >> 10 ≥ 31)      2^(−t_j/1024), Q.16
//! l   = Σ_j p_j                                                                             (i64)
//! a_c = Σ_j p_j (v_jc − v_zp)                                                              (i64)
//! y_c = clamp(y_zp + rq(div_round(a_c · 2^16, l), out_mult, out_shift))
//! ```
//!
//! with `exp2[i] = round(2^(−i/1024) · 2^16)`, `score_mult/shift ≈ s_q s_k · scale · log2(e) ·
//! 1024` and `out_mult/shift ≈ s_v / (s_y · 2^16)`. With `causal`, query row `i` sees keys
//! `j ≤ i` only (row `i ≥ tk` sees all). `steps` independent blocks (`q`, `y` of `steps · tq`
//! rows, `k`, `v` of `steps · tk`) run one after the other; the quantizer writes `steps = 1`.
//!
//! Overflow (parse validates `1 ≤ tk ≤ 4096`, `1 ≤ dh ≤ 256`, `mult ≥ 0`, and the table:
//! `exp2[0] = 65536`, every entry in `[0, 65536]`): `|q − q_zp|, |k − k_zp|, |v − v_zp| ≤ 255`,
//! so `|s_j| ≤ 256 · 65025 < 2^24` and `0 ≤ m − s_j < 2^25` (i32, as stored in the scores row).
//! `t_j ≥ 0` (non-negative product, floor shift). `0 ≤ p_j ≤ 2^16`, so `l ≤ 4096 · 2^16 = 2^28`
//! and `l ≥ 2^16` (the maximum has `t = 0`, `p = exp2[0] = 2^16`): never a division by zero.
//! `|a_c| ≤ 255 · l < 2^36`, `|a_c · 2^16| < 2^52`: i64 with a wide margin; and
//! `|div_round(a_c · 2^16, l)| ≤ 255 · 2^16 < 2^24` (a weighted mean of `v − v_zp` in Q.16), an
//! i32 for `rq`.
//!
//! Error bound, in output LSB, against float softmax attention on the dequantized inputs
//! (`softmax_j(scale · q̃ · k̃_j) · ṽ_j`): `t_j` is within ½ (+2^-30 relative) of `1024 · g_j`
//! (`g_j` the exact gap · log2 e), a relative error `ρ = 2^(2^-11) − 1 ≈ 3.4e-4` on the weight;
//! the table and `rsr` add at most ¾ absolute (Q.16), a dropped `p_j` (shift ≥ 31) less than 1.
//! The normalized weights then differ from the exact ones by at most
//! `Σ_j |ŵ_j − w_j| ≤ 2 (ρ + ¾ · n / l) ≤ 2ρ + 1.5 · n / 2^16` in total, and since both sum to
//! 1 the output moves by at most that times half the span of `v − v_zp` (≤ 127.5 v-LSB). So
//!
//! `|y − exact| ≤ ½ + (s_v / s_y) · 127.5 · (2ρ + 1.5 · n / 2^16)` (+2^-17 v-LSB from
//! `div_round`, +2^-30 relative from `out_mult`),
//!
//! e.g. ≤ 0.64 LSB for `n = 17`, `s_v = s_y` (and ≤ 12.6 LSB at `n = 4096`, a worst case in
//! which every one of 4096 tiny weights rounds the same way). Tested against that bound:
//! heads ∈ {1, 2, 4, 5}, dh ∈ {8, 10}, tq = tk ∈ {1, 5, 17}, causal and not,
//! `s_v / s_y ∈ [0.8, 1.25]`; measured worst 0.51 LSB.

use super::fixed::{clamp8, rq, rsr};
use super::DivRound;
use zerocopy::little_endian::I32;

/// Largest key count parse accepts.
pub const MAX_TK: usize = 4096;
/// Largest head width parse accepts.
pub const MAX_DH: usize = 256;

/// Columns of one head the P·V loop sums at a time (its i64 accumulators live on the stack).
const PV_CHUNK: usize = 32;
/// Length of the `exp2` table (one octave in Q.10 steps).
pub const EXP2_LEN: usize = 1024;

/// Shape and quantization of an ATTENTION op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionParams {
    /// Independent blocks processed (1 as written by the quantizer).
    pub steps: usize,
    /// Query rows per block, `≥ 1`.
    pub tq: usize,
    /// Key / value rows per block, `1 ≤ tk ≤ 4096`.
    pub tk: usize,
    /// Heads, `≥ 1`.
    pub heads: usize,
    /// Columns per head, `1 ≤ dh ≤ 256`.
    pub dh: usize,
    /// Zero point of `q`.
    pub q_zp: i32,
    /// Zero point of `k`.
    pub k_zp: i32,
    /// Zero point of `v`.
    pub v_zp: i32,
    /// Zero point of `y`.
    pub y_zp: i32,
    /// Multiplier taking a score gap to Q.10 powers of two, `[0, 2^31)`.
    pub score_mult: i32,
    /// Its shift, `[-30, 31]`.
    pub score_shift: i32,
    /// Multiplier taking the Q.16 weighted mean of `v − v_zp` to the output scale, `[0, 2^31)`.
    pub out_mult: i32,
    /// Its shift, `[-30, 31]`.
    pub out_shift: i32,
    /// Query row `i` sees keys `j ≤ i` only.
    pub causal: bool,
}

impl AttentionParams {
    /// Row width `heads · dh`.
    pub fn width(&self) -> Option<usize> {
        self.heads.checked_mul(self.dh)
    }
}

/// `p = 2^(−t/1024)` in Q.16 from the table: `rsr(exp2[t & 1023], t >> 10)`, 0 when
/// `t >> 10 ≥ 31` (and for a negative `t`, which `rq` with `mult ≥ 0` never gives).
#[inline]
fn pow2_neg(exp2: &[I32; EXP2_LEN], t: i32) -> i32 {
    let n = t >> 10;
    if !(0..31).contains(&n) {
        return 0;
    }
    rsr(exp2[(t & 1023) as usize].get() as i64, n as u32) as i32
}

/// Most visible keys for which the P·V sums are taken in i32 (exact: see `attention_on`).
const PV_I32_KEYS: usize = 128;

/// One head's query row minus `q_zp`, ready for the score products: `dot(k) = Σ_c q'_c · k_c`
/// (|each term| < 2^24, at most `MAX_DH` terms: no wrap in i32), and `sum = Σ_c q'_c`. One
/// per op, reloaded per row and head (a fresh one would clear its buffer every time).
struct QRow {
    /// `q'` as int16.
    #[cfg(not(kinglet_dsp))]
    qp: [i16; MAX_DH],
    /// With the DSP extension: `q'` as the halfword pairs `smlad` takes against `sxtb16` of
    /// four key bytes (`[q'0, q'2]`, `[q'1, q'3]` per group of four columns), and the last
    /// `len % 4` values as int16.
    #[cfg(kinglet_dsp)]
    qe: [u32; MAX_DH / 2],
    #[cfg(kinglet_dsp)]
    tail: [i16; 3],
    len: usize,
    sum: i32,
}

impl QRow {
    fn new() -> QRow {
        QRow {
            #[cfg(not(kinglet_dsp))]
            qp: [0; MAX_DH],
            #[cfg(kinglet_dsp)]
            qe: [0; MAX_DH / 2],
            #[cfg(kinglet_dsp)]
            tail: [0; 3],
            len: 0,
            sum: 0,
        }
    }

    /// Loads `qh` (its first `MAX_DH` columns) less `q_zp ∈ [-128, 127]`.
    fn load(&mut self, qh: &[i8], q_zp: i32) {
        let qh = qh.get(..MAX_DH).unwrap_or(qh);
        self.len = qh.len();
        self.sum = qh.iter().map(|&a| a as i32 - q_zp).sum();
        let d = |a: i8| (a as i32 - q_zp) as i16;
        #[cfg(not(kinglet_dsp))]
        for (o, &a) in self.qp.iter_mut().zip(qh) {
            *o = d(a);
        }
        #[cfg(kinglet_dsp)]
        {
            let pair = |lo: i8, hi: i8| d(lo) as u16 as u32 | (d(hi) as u16 as u32) << 16;
            let mut groups = qh.chunks_exact(4);
            for (e, q) in self.qe.chunks_exact_mut(2).zip(&mut groups) {
                e[0] = pair(q[0], q[2]);
                e[1] = pair(q[1], q[3]);
            }
            for (t, &a) in self.tail.iter_mut().zip(groups.remainder()) {
                *t = d(a);
            }
        }
    }

    /// `Σ_c q'_c · k_c` over the row's columns (`k` as long; a shorter `k` stops early).
    #[inline]
    fn dot(&self, k: &[i8]) -> i32 {
        // (No slice indexing: `get` and `take`, so that nothing here can panic.)
        #[cfg(kinglet_dsp)]
        {
            // Groups of four columns by `smlad` (1.25 instructions per term), the rest below.
            let split = 4 * (self.len / 4);
            let head = crate::kernels::dsp::pairs_dot(k.get(..split).unwrap_or(k), &self.qe);
            let tail: i32 = self
                .tail
                .iter()
                .take(self.len % 4)
                .zip(k.get(split..).unwrap_or(&[]))
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum();
            head + tail
        }
        #[cfg(not(kinglet_dsp))]
        self.qp
            .iter()
            .take(self.len)
            .zip(k)
            .map(|(&a, &b)| a as i32 * b as i32)
            .sum()
    }
}

/// `sums[c] = Σ_j p[j] · v[j·w + span.start + c]` (the value rows `w` apart, as many as both
/// `p` and `v` hold) in the accumulator type `A`, for `c < span.len() = sums.len()`; a row too
/// short for `span` adds nothing.
#[inline]
fn pv_sums<A>(p: &[i32], v: &[i8], w: usize, span: core::ops::Range<usize>, sums: &mut [i64])
where
    A: Copy + From<i32> + Into<i64> + core::ops::Add<Output = A> + core::ops::Mul<Output = A>,
{
    let mut acc = [A::from(0); PV_CHUNK];
    let acc = &mut acc[..sums.len().min(PV_CHUNK)];
    let mut vrs = v.chunks_exact(w.max(1));
    for &pj in p {
        let Some(vr) = vrs.next() else { break };
        let Some(vh) = vr.get(span.clone()) else {
            continue;
        };
        let pj = A::from(pj);
        for (a, &x) in acc.iter_mut().zip(vh) {
            *a = *a + pj * A::from(x as i32);
        }
    }
    for (s, &a) in sums.iter_mut().zip(acc.iter()) {
        *s = a.into();
    }
}

/// Attention of `q [steps · tq, W]` over `k`, `v [steps · tk, W]` into `y [steps · tq, W]`, with
/// `scores` (at least `tk` i32) as scratch. Returns without writing if a slice length
/// disagrees with `p` or a parameter is outside what parse accepts (the bounds the overflow
/// proof needs: `tk`, `dh`, the input zero points).
///
/// Runs on the active SIMD level where it has a kernel for this shape (bit-identical);
/// [`attention_i8_reference`] is the scalar loop alone.
pub fn attention_i8(
    p: &AttentionParams,
    exp2: &[I32; EXP2_LEN],
    q: &[i8],
    k: &[i8],
    v: &[i8],
    y: &mut [i8],
    scores: &mut [i32],
) {
    attention_on(p, exp2, q, k, v, y, scores, true);
}

/// [`attention_i8`] with the scalar loop whatever the CPU: the definition the SIMD kernels are
/// tested against.
pub fn attention_i8_reference(
    p: &AttentionParams,
    exp2: &[I32; EXP2_LEN],
    q: &[i8],
    k: &[i8],
    v: &[i8],
    y: &mut [i8],
    scores: &mut [i32],
) {
    attention_on(p, exp2, q, k, v, y, scores, false);
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn attention_on(
    p: &AttentionParams,
    exp2: &[I32; EXP2_LEN],
    q: &[i8],
    k: &[i8],
    v: &[i8],
    y: &mut [i8],
    scores: &mut [i32],
    simd: bool,
) {
    let Some(w) = p.width() else { return };
    let qlen = p.tq.checked_mul(w);
    let klen = p.tk.checked_mul(w);
    let ok = p.tq > 0
        && (1..=MAX_TK).contains(&p.tk)
        && (1..=MAX_DH).contains(&p.dh)
        && p.heads > 0
        && [p.q_zp, p.k_zp, p.v_zp]
            .iter()
            .all(|z| (-128..=127).contains(z))
        && qlen.and_then(|n| n.checked_mul(p.steps)) == Some(q.len())
        && klen.and_then(|n| n.checked_mul(p.steps)) == Some(k.len())
        && v.len() == k.len()
        && y.len() == q.len()
        && scores.len() >= p.tk;
    let (Some(qlen), Some(klen)) = (qlen, klen) else {
        return;
    };
    if !ok || w == 0 || qlen == 0 || klen == 0 {
        return;
    }
    if simd && crate::kernels::tfsimd::attention_simd(p, exp2, q, k, v, y) {
        return;
    }
    let (q_zp, k_zp, v_zp) = (p.q_zp, p.k_zp, p.v_zp);
    // Blocks of `tq` query rows and `tk` key / value rows; no `Zip` over `ChunksExact` and no
    // indexing that can panic (see `for_rows`).
    let (mut kbs, mut vbs) = (k.chunks_exact(klen), v.chunks_exact(klen));
    let mut qrow = QRow::new();
    super::for_rows(q, qlen, y, qlen, |qb, yb| {
        let (Some(kb), Some(vb)) = (kbs.next(), vbs.next()) else {
            return;
        };
        let mut i = 0usize;
        super::for_rows(qb, w, yb, w, |qr, yr| {
            let n = if p.causal { (i + 1).min(p.tk) } else { p.tk };
            i += 1;
            let Some(sc) = scores.get_mut(..n) else {
                return;
            };
            // Head `h` is the column block `h·dh .. (h+1)·dh`, starting at `col`.
            let mut col = 0usize;
            super::for_rows(qr, p.dh, yr, p.dh, |qh, yh| {
                // `s_j = Σ_c q'_c · k_jc − k_zp · Σ_c q'_c` (`q' = q − q_zp`), the same i32
                // value as `Σ_c q'_c (k_jc − k_zp)` (|each term| < 2^24, no wrap), one
                // multiply per term.
                qrow.load(qh, q_zp);
                let kq = k_zp * qrow.sum;
                // Scores of this head against the visible keys; |s_j| < 2^24.
                // `w ≥ 1` (checked above; `max` lets the optimizer see it in this closure).
                let mut krs = kb.chunks_exact(w.max(1));
                for s in sc.iter_mut() {
                    let Some(kr) = krs.next() else { break };
                    let kh = kr.get(col..).and_then(|r| r.get(..p.dh)).unwrap_or(&[]);
                    *s = qrow.dot(kh) - kq;
                }
                let m = sc.iter().copied().max().unwrap_or(0);
                // Scores become weights p_j in place; l ∈ [2^16, 2^28].
                let mut l = 0i64;
                for s in sc.iter_mut() {
                    *s = pow2_neg(exp2, rq(m - *s, p.score_mult, p.score_shift));
                    l += *s as i64;
                }
                // `div_round(·, l)`, one reciprocal per row and head.
                let by_l = DivRound::new(l);
                // P·V a chunk of up to PV_CHUNK columns at a time, walking the value rows in
                // order (contiguous reads) with one sum per column: `Σ_j p_j v_jc − v_zp · l`,
                // the same value as `Σ_j p_j (v_jc − v_zp)`. In i32 when no sum can leave it
                // (`n ≤ PV_I32_KEYS`: `|Σ_j p_j v_jc| ≤ 128 · n · 2^16 ≤ 2^30`), else i64.
                let mut c0 = 0usize;
                for ych in yh.chunks_mut(PV_CHUNK) {
                    let mut sums = [0i64; PV_CHUNK];
                    let Some(sums) = sums.get_mut(..ych.len()) else {
                        return;
                    };
                    let span = col + c0..col + c0 + ych.len();
                    if sc.len() <= PV_I32_KEYS {
                        pv_sums::<i32>(sc, vb, w, span, sums);
                    } else {
                        pv_sums::<i64>(sc, vb, w, span, sums);
                    }
                    for (out, &a) in ych.iter_mut().zip(sums.iter()) {
                        let mean = by_l.div((a - v_zp as i64 * l) << 16); // |mean| < 2^24
                        let r = rq(mean as i32, p.out_mult, p.out_shift);
                        *out = clamp8(p.y_zp as i64 + r as i64, -128, 127);
                    }
                    c0 += ych.len();
                }
                col += p.dh;
            });
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{quantize_multiplier, Rng};
    use std::vec::Vec;

    fn exp2_table() -> [I32; EXP2_LEN] {
        core::array::from_fn(|i| {
            I32::new((2f64.powf(-(i as f64) / 1024.0) * 65536.0).round() as i32)
        })
    }

    struct Quant {
        s_q: f64,
        z_q: i32,
        s_k: f64,
        z_k: i32,
        s_v: f64,
        z_v: i32,
        s_y: f64,
        z_y: i32,
        scale: f64,
    }

    /// Runs the kernel; returns `(got, exact in output LSB (clamped), bound)`.
    #[allow(clippy::too_many_arguments)]
    fn run(
        qz: &Quant,
        steps: usize,
        tq: usize,
        tk: usize,
        heads: usize,
        dh: usize,
        causal: bool,
        q: &[i8],
        k: &[i8],
        v: &[i8],
    ) -> (Vec<i8>, Vec<f64>, f64) {
        let w = heads * dh;
        let (sm, ss) =
            quantize_multiplier(qz.s_q * qz.s_k * qz.scale * core::f64::consts::LOG2_E * 1024.0);
        let (om, os) = quantize_multiplier(qz.s_v / qz.s_y / 65536.0);
        let p = AttentionParams {
            steps,
            tq,
            tk,
            heads,
            dh,
            q_zp: qz.z_q,
            k_zp: qz.z_k,
            v_zp: qz.z_v,
            y_zp: qz.z_y,
            score_mult: sm,
            score_shift: ss,
            out_mult: om,
            out_shift: os,
            causal,
        };
        let mut y = std::vec![0i8; q.len()];
        let mut scores = std::vec![0i32; tk];
        attention_i8(&p, &exp2_table(), q, k, v, &mut y, &mut scores);
        let deq = |x: i8, s: f64, z: i32| s * (x as i32 - z) as f64;
        let mut exact = Vec::new();
        for s in 0..steps {
            let (qb, kb, vb) = (s * tq * w, s * tk * w, s * tk * w);
            for i in 0..tq {
                let mut row = std::vec![0f64; w];
                let n = if causal { (i + 1).min(tk) } else { tk };
                for h in 0..heads {
                    let logits: Vec<f64> = (0..n)
                        .map(|j| {
                            (0..dh)
                                .map(|c| {
                                    let col = h * dh + c;
                                    deq(q[qb + i * w + col], qz.s_q, qz.z_q)
                                        * deq(k[kb + j * w + col], qz.s_k, qz.z_k)
                                })
                                .sum::<f64>()
                                * qz.scale
                        })
                        .collect();
                    let mx = logits.iter().copied().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = logits.iter().map(|l| (l - mx).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for c in 0..dh {
                        let col = h * dh + c;
                        row[col] = (0..n)
                            .map(|j| e[j] / z * deq(v[vb + j * w + col], qz.s_v, qz.z_v))
                            .sum();
                    }
                }
                exact.extend(
                    row.iter()
                        .map(|r| (r / qz.s_y + qz.z_y as f64).clamp(-128.0, 127.0)),
                );
            }
        }
        let rho = 2f64.powf(2f64.powi(-11)) - 1.0;
        let bound = 0.5 + qz.s_v / qz.s_y * 127.5 * (2.0 * rho + 1.5 * tk as f64 / 65536.0) + 1e-6;
        (y, exact, bound)
    }

    fn quant(rng: &mut Rng, dh: usize) -> Quant {
        let s_v = rng.f64_in(0.01, 0.03);
        Quant {
            s_q: rng.f64_in(0.01, 0.03),
            z_q: rng.i32_in(-10, 10),
            s_k: rng.f64_in(0.01, 0.03),
            z_k: rng.i32_in(-10, 10),
            s_v,
            z_v: rng.i32_in(-10, 10),
            s_y: s_v * rng.f64_in(0.8, 1.25),
            z_y: rng.i32_in(-10, 10),
            scale: 1.0 / (dh as f64).sqrt(),
        }
    }

    #[test]
    fn attention_within_bound_of_float() {
        let mut rng = Rng::new(41);
        let mut worst = 0f64;
        let mut worst_bound = 0f64;
        for &heads in &[1usize, 2, 4, 5] {
            for &dh in &[8usize, 10] {
                for &t in &[1usize, 5, 17] {
                    for causal in [false, true] {
                        let qz = quant(&mut rng, dh);
                        let w = heads * dh;
                        let (q, k, v) = (rng.i8s(t * w), rng.i8s(t * w), rng.i8s(t * w));
                        let (got, exact, bound) = run(&qz, 1, t, t, heads, dh, causal, &q, &k, &v);
                        for (g, e) in got.iter().zip(&exact) {
                            let err = (*g as f64 - e).abs();
                            assert!(
                                err <= bound,
                                "heads {heads} dh {dh} t {t} causal {causal}: {g} vs {e}"
                            );
                            worst = worst.max(err);
                        }
                        worst_bound = worst_bound.max(bound);
                    }
                }
            }
        }
        std::println!("attention: worst {worst:.3} LSB (bound ≤ {worst_bound:.3})");
        assert!(worst <= 0.75, "worst {worst}");
    }

    #[test]
    fn attention_blocks_and_uneven_lengths() {
        // steps = 2 independent blocks, tq ≠ tk, causal rows past tk, a sharp softmax (large
        // scale: most p_j underflow to 0) and a flat one (scale 0: a plain mean of v).
        let mut rng = Rng::new(42);
        for &(steps, tq, tk, causal, scale) in &[
            (2usize, 3usize, 7usize, false, None),
            (2, 9, 4, true, None),
            (1, 6, 6, false, Some(40.0)),
            (1, 6, 6, true, Some(0.0)),
        ] {
            let (heads, dh) = (2, 8);
            let mut qz = quant(&mut rng, dh);
            if let Some(s) = scale {
                qz.scale = s;
            }
            let w = heads * dh;
            let q = rng.i8s(steps * tq * w);
            let k = rng.i8s(steps * tk * w);
            let v = rng.i8s(steps * tk * w);
            let (got, exact, bound) = run(&qz, steps, tq, tk, heads, dh, causal, &q, &k, &v);
            for (g, e) in got.iter().zip(&exact) {
                assert!(
                    (*g as f64 - e).abs() <= bound,
                    "{steps} {tq} {tk}: {g} vs {e}"
                );
            }
        }
    }

    #[test]
    fn attention_extremes_do_not_overflow() {
        // The largest shapes parse accepts, at the extremes of int8: every score is
        // 256 · 255², all equal, so every p_j = 2^16 and l = 4096 · 2^16.
        let (tk, dh) = (MAX_TK, MAX_DH);
        let q = std::vec![127i8; dh];
        let k = std::vec![-128i8; tk * dh];
        let v: Vec<i8> = (0..tk * dh)
            .map(|i| if i % 2 == 0 { 127 } else { -128 })
            .collect();
        let (om, os) = quantize_multiplier(1.0 / 65536.0);
        let (sm, ss) = quantize_multiplier(1000.0);
        let p = AttentionParams {
            steps: 1,
            tq: 1,
            tk,
            heads: 1,
            dh,
            q_zp: -128,
            k_zp: 127,
            v_zp: 0,
            y_zp: 0,
            score_mult: sm,
            score_shift: ss,
            out_mult: om,
            out_shift: os,
            causal: false,
        };
        let mut y = std::vec![0i8; dh];
        let mut scores = std::vec![0i32; tk];
        attention_i8(&p, &exp2_table(), &q, &k, &v, &mut y, &mut scores);
        for (c, &o) in y.iter().enumerate() {
            assert_eq!(o, if c % 2 == 0 { 127 } else { -128 }, "column {c}");
        }
        // Mismatched slices write nothing.
        let mut y2 = [7i8; 8];
        let p2 = AttentionParams { dh: 8, tk: 2, ..p };
        attention_i8(
            &p2,
            &exp2_table(),
            &[0; 8],
            &[0; 8],
            &[0; 16],
            &mut y2,
            &mut [0; 2],
        );
        assert_eq!(y2, [7; 8]);
    }
}
