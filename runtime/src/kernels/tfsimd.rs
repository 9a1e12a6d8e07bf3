//! SIMD hooks of the Transformer ops (ATTENTION, LAYERNORM, FC over many rows, ADD, MEAN): each
//! returns `true` when the active level ran the op (bit-identical with the scalar loop in
//! `reference`), or `false`, writing nothing, when no SIMD level applies, so the caller's scalar
//! loop runs. Only AVX-512 VNNI has such kernels (`x86`); elsewhere every hook is a constant
//! `false`. [`force_reference`](super::force_reference) turns them off with the matrix-vector
//! kernels.
//!
//! Unlike the scalar loops (whose scratch is the caller's), the AVX-512 kernels keep packed
//! operands on the stack, sized by shape: attention up to ~64 KB (~28 KB for kws_transformer's,
//! forecast_transformer's and vit_mnist's shapes), FC up to ~44 KB; larger shapes fall back to
//! the scalar loops. The host's thread stacks (2 MB and up) hold that with room.

#[cfg(all(target_arch = "x86_64", kinglet_avx512))]
use super::matvec::{active_isa, Isa};
use super::reference::add::AddParams;
use super::reference::attention::{AttentionParams, EXP2_LEN};
use super::reference::fc::FcParams;
use super::reference::layernorm::LayerNormParams;
use super::reference::mean::MeanParams;
use zerocopy::little_endian::I32;

/// Whether the AVX-512 kernels of this module apply: the active level is AVX-512 VNNI.
#[inline]
fn avx512_active() -> bool {
    #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
    if active_isa() == Isa::Avx512Vnni {
        return true;
    }
    false
}

/// ATTENTION ([`attention_i8`](super::reference::attention::attention_i8)) through the active
/// level's SIMD, for the shapes it takes (AVX-512: up to 512 keys, packed operands within
/// 16 KB each); `false`, writing nothing, otherwise.
#[inline]
pub(crate) fn attention_simd(
    p: &AttentionParams,
    exp2: &[I32; EXP2_LEN],
    q: &[i8],
    k: &[i8],
    v: &[i8],
    y: &mut [i8],
) -> bool {
    #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
    if avx512_active() {
        return super::x86::avx512_attention(p, exp2, q, k, v, y);
    }
    let _ = (avx512_active, p, exp2, q, k, v, y);
    false
}

/// LAYERNORM ([`layernorm_i8`](super::reference::layernorm::layernorm_i8)) through the active
/// level's SIMD; `false`, writing nothing, where it has none.
#[inline]
pub(crate) fn layernorm_simd(
    p: &LayerNormParams,
    x: &[i8],
    gamma_rq: &[I32],
    beta: &[I32],
    y: &mut [i8],
) -> bool {
    #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
    if avx512_active() {
        return super::x86::avx512_layernorm(p, x, gamma_rq, beta, y);
    }
    let _ = (p, x, gamma_rq, beta, y);
    false
}

/// Fewest rows for which [`fc_simd`] takes the matrix-matrix kernel (its weight repack costs
/// about as much as a few rows of products); fewer rows go one product at a time.
#[cfg(all(target_arch = "x86_64", kinglet_avx512))]
pub(crate) const FC_MIN_ROWS: usize = 4;

/// FC ([`fc_i8`](super::reference::fc::fc_i8)) over at least [`FC_MIN_ROWS`] rows through the
/// active level's matrix-matrix kernel (AVX-512 VNNI, weights up to 32 KB repacked); `false`,
/// writing nothing, otherwise.
#[inline]
pub(crate) fn fc_simd(
    p: &FcParams,
    x: &[i8],
    w: &[i8],
    bias: &[I32],
    rq: &[I32],
    y: &mut [i8],
) -> bool {
    #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
    if p.rows >= FC_MIN_ROWS && avx512_active() {
        return super::x86::avx512_fc(p, x, w, bias, rq, y);
    }
    let _ = (p, x, w, bias, rq, y);
    false
}

/// ADD ([`add_i8`](super::reference::add::add_i8)) through the active level's SIMD; `false`,
/// writing nothing, where it has none.
#[inline]
pub(crate) fn add_simd(p: &AddParams, a: &[i8], b: &[i8], y: &mut [i8]) -> bool {
    #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
    if avx512_active() {
        return super::x86::avx512_add(p, a, b, y);
    }
    let _ = (p, a, b, y);
    false
}

/// MEAN ([`mean_i8`](super::reference::mean::mean_i8)) through the active level's SIMD;
/// `false`, writing nothing, where it has none.
#[inline]
pub(crate) fn mean_simd(p: &MeanParams, x: &[i8], y: &mut [i8]) -> bool {
    #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
    if avx512_active() {
        return super::x86::avx512_mean(p, x, y);
    }
    let _ = (p, x, y);
    false
}

/// LUT8 ([`lut8_i8`](super::reference::lut::lut8_i8)) through the active level's SIMD: on
/// AVX-512 with VBMI (`vpermi2b`), 64 lookups per four instructions; `false`, writing nothing,
/// where it has none.
#[inline]
pub(crate) fn lut8_simd(table: &[i8; 256], x: &[i8], y: &mut [i8]) -> bool {
    #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
    if avx512_active() {
        return super::x86::avx512_lut8(table, x, y);
    }
    let _ = (table, x, y);
    false
}

#[cfg(test)]
mod tests {
    use super::super::matvec::Isa;
    use super::super::reference::attention::{attention_i8_reference, AttentionParams, EXP2_LEN};
    use crate::kernels::testutil::Rng;
    use std::vec::Vec;
    use zerocopy::little_endian::I32;

    /// Whether the AVX-512 kernels can run here; says so when they cannot.
    fn avx512_here(what: &str) -> bool {
        let ok =
            cfg!(all(target_arch = "x86_64", kinglet_avx512)) && Isa::Avx512Vnni.is_available();
        if !ok {
            std::eprintln!("{what}: AVX-512 VNNI not on this CPU / compiler, skipped");
        }
        ok
    }

    /// Random int8 with runs of the extremes mixed in (`mode` 1: all -128, 2: all 127).
    fn operand(rng: &mut Rng, n: usize, mode: usize) -> Vec<i8> {
        (0..n)
            .map(|_| match mode {
                1 => -128,
                2 => 127,
                3 => [-128, 127, -127, 0, rng.i8()][rng.usize_below(5)],
                _ => rng.i8(),
            })
            .collect()
    }

    fn exp2_table() -> [I32; EXP2_LEN] {
        core::array::from_fn(|i| {
            I32::new((2f64.powf(-(i as f64) / 1024.0) * 65536.0).round() as i32)
        })
    }

    /// LUT8 against the scalar lookup over random tables and every length to 200 (whole
    /// vectors and masked tails), every int8 input in each table.
    #[test]
    fn lut8_simd_matches_the_reference() {
        if !avx512_here("lut8") {
            return;
        }
        #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
        if !super::super::matvec::has_vbmi() {
            std::eprintln!("lut8: AVX-512 VBMI not on this CPU, skipped");
            return;
        }
        let mut rng = Rng::new(0x1088);
        for n in 0..=200usize {
            let table: [i8; 256] = core::array::from_fn(|_| rng.i8());
            let mut x: Vec<i8> = (0..n).map(|_| rng.i8()).collect();
            if n == 200 {
                x = (-128..=127).chain(-128..-72).collect();
            }
            let mut want = std::vec![0i8; n];
            for (w, &v) in want.iter_mut().zip(&x) {
                *w = table[(v as i32 + 128) as usize];
            }
            let mut got = std::vec![0x55i8; n + 1];
            assert!(super::lut8_simd(&table, &x, &mut got[..n]));
            assert_eq!(&got[..n], &want[..], "n {n}");
            assert_eq!(got[n], 0x55, "wrote past y");
        }
    }

    #[test]
    fn attention_simd_matches_the_reference() {
        if !avx512_here("attention") {
            return;
        }
        let exp2 = exp2_table();
        // Every case also with a table the kernel does not compute (its gathered path).
        let mut other = exp2;
        for i in [3usize, 200, 1023] {
            other[i] = I32::new(other[i].get() - 1);
        }
        let mut rng = Rng::new(0xA77E);
        let mut cases = 0;
        for &(heads, dh) in &[
            (1usize, 1usize),
            (1, 2),
            (2, 3),
            (4, 16),
            (3, 17),
            (2, 33),
            (1, 64),
            (5, 8),
        ] {
            for &(tq, tk) in &[
                (1usize, 1usize),
                (2, 5),
                (5, 2),
                (16, 16),
                (17, 17),
                (50, 50),
                (9, 33),
                // Around the reference's i32 / i64 P·V switch at 128 visible keys.
                (130, 130),
                (2, 128),
            ] {
                // (The long shapes with the narrow heads only: the wide ones exceed the
                // kernel's stack packs.)
                if tk > 64 && heads * dh > 48 {
                    continue;
                }
                for mode in 0..4 {
                    let causal = rng.usize_below(2) == 1;
                    let steps = 1 + rng.usize_below(2);
                    let w = heads * dh;
                    // Score multipliers from "almost flat" to "every weight but the max is 0",
                    // and every shift parse accepts, now and then.
                    let (score_mult, score_shift) = match rng.usize_below(4) {
                        0 => (rng.i32_in(0, i32::MAX), rng.i32_in(-30, 31)),
                        1 => (i32::MAX, -30),
                        _ => (rng.i32_in(1 << 30, i32::MAX), rng.i32_in(-14, 2)),
                    };
                    let (out_mult, out_shift) = match rng.usize_below(3) {
                        0 => (rng.i32_in(0, i32::MAX), rng.i32_in(-30, 31)),
                        _ => (rng.i32_in(1 << 30, i32::MAX), rng.i32_in(14, 17)),
                    };
                    let zp = |rng: &mut Rng| {
                        if mode == 0 {
                            rng.i32_in(-128, 127)
                        } else {
                            [-128, 127, 0][rng.usize_below(3)]
                        }
                    };
                    let p = AttentionParams {
                        steps,
                        tq,
                        tk,
                        heads,
                        dh,
                        q_zp: zp(&mut rng),
                        k_zp: zp(&mut rng),
                        v_zp: zp(&mut rng),
                        y_zp: [
                            rng.i32_in(-128, 127),
                            i32::MAX,
                            i32::MIN,
                            1 << 29,
                            -(1 << 29) - 1,
                            1 << 28,
                            -(1 << 28),
                        ][rng.usize_below(7)],
                        score_mult,
                        score_shift,
                        out_mult,
                        out_shift,
                        causal,
                    };
                    let q = operand(&mut rng, steps * tq * w, mode);
                    let k = operand(&mut rng, steps * tk * w, (mode + 1) % 4);
                    let v = operand(&mut rng, steps * tk * w, (mode + 2) % 4);
                    for table in [&exp2, &other] {
                        let mut want = std::vec![0x5Ai8; q.len()];
                        let mut sc = std::vec![0i32; tk];
                        attention_i8_reference(&p, table, &q, &k, &v, &mut want, &mut sc);
                        #[allow(unused_mut)] // written only where the AVX-512 kernels are compiled
                        let mut got = std::vec![0x5Ai8; q.len()];
                        #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
                        assert!(super::super::x86::avx512_attention(
                            &p, table, &q, &k, &v, &mut got
                        ));
                        assert_eq!(got, want, "{p:?} mode {mode}");
                        cases += 1;
                    }
                }
            }
        }
        // A table parse would refuse, and more keys than the stack holds: not taken.
        #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
        {
            let p = AttentionParams {
                steps: 1,
                tq: 1,
                tk: 2,
                heads: 1,
                dh: 4,
                q_zp: 0,
                k_zp: 0,
                v_zp: 0,
                y_zp: 0,
                score_mult: 1 << 30,
                score_shift: 0,
                out_mult: 1 << 30,
                out_shift: 16,
                causal: false,
            };
            let mut y = [7i8; 4];
            for (i, e) in [(3, 70000), (1023, 65537), (5, -1), (0, 65535)] {
                let mut bad = exp2;
                bad[i] = I32::new(e);
                assert!(!super::super::x86::avx512_attention(
                    &p, &bad, &[1; 4], &[1; 8], &[1; 8], &mut y
                ));
            }
            assert!(super::super::x86::avx512_attention(
                &p,
                &exp2,
                &[1; 4],
                &[1; 8],
                &[1; 8],
                &mut [0; 4]
            ));
            let big = AttentionParams { tk: 600, ..p };
            let kv = std::vec![1i8; 600 * 4];
            assert!(!super::super::x86::avx512_attention(
                &big, &exp2, &[1; 4], &kv, &kv, &mut y
            ));
            assert_eq!(y, [7; 4]);
        }
        std::eprintln!("attention avx512: {cases} cases bit-exact");
    }

    #[test]
    fn layernorm_simd_matches_the_reference() {
        use super::super::reference::layernorm::{
            isqrt, layernorm_i8_reference, LayerNormParams, MAX_D,
        };
        if !avx512_here("layernorm") {
            return;
        }
        let mut rng = Rng::new(0x1A7E);
        #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
        {
            for v in (0..200_000u64).chain([
                (1 << 62) - 1,
                (1 << 62) - 2,
                1 << 61,
                (1 << 31) * (1 << 31) - 1,
            ]) {
                assert_eq!(super::super::x86::isqrt_below_2_62(v), isqrt(v), "{v}");
            }
            for _ in 0..200_000 {
                let v = rng.next_u64() >> (2 + rng.usize_below(62));
                assert_eq!(super::super::x86::isqrt_below_2_62(v), isqrt(v), "{v}");
                let r = rng.next_u64() >> 33;
                for v in [r * r, r * r + 2 * r, (r * r).saturating_sub(1)] {
                    assert_eq!(super::super::x86::isqrt_below_2_62(v), isqrt(v), "{v}");
                }
            }
        }
        let _ = isqrt;
        let mut cases = 0;
        for &d in &[
            1usize, 2, 3, 7, 8, 9, 15, 16, 17, 40, 63, 64, 65, 127, 128, 200, 1000, MAX_D,
        ] {
            for mode in 0..5 {
                let rows = if d == MAX_D {
                    1
                } else {
                    1 + rng.usize_below(4)
                };
                let x: Vec<i8> = match mode {
                    4 => (0..rows * d)
                        .map(|i| if i % 2 == 0 { -128 } else { 127 })
                        .collect(),
                    _ => operand(&mut rng, rows * d, mode),
                };
                let fast_only = rng.usize_below(2) == 0;
                let grq: Vec<I32> = (0..d)
                    .flat_map(|_| {
                        let m = match rng.usize_below(4) {
                            0 => rng.i32_in(i32::MIN + 1, i32::MAX),
                            1 => [i32::MIN + 1, i32::MAX, 0][rng.usize_below(3)],
                            _ => rng.i32_in(-(1 << 30), 1 << 30),
                        };
                        let sh = if !fast_only && rng.usize_below(3) == 0 {
                            rng.i32_in(-30, 31)
                        } else {
                            rng.i32_in(8, 20)
                        };
                        [I32::new(m), I32::new(sh)]
                    })
                    .collect();
                // Half the cases with some betas at the i32 extremes (the saturating add).
                let extreme_beta = rng.usize_below(2) == 0;
                let beta: Vec<I32> = (0..d)
                    .map(|_| {
                        I32::new(if extreme_beta && rng.usize_below(8) == 0 {
                            [i32::MIN, i32::MAX][rng.usize_below(2)]
                        } else {
                            rng.i32_in(-300, 300)
                        })
                    })
                    .collect();
                let act_min = rng.i32_in(-128, 20);
                let p = LayerNormParams {
                    rows,
                    d,
                    eps_q: [0, 1, rng.i32_in(0, 1 << 20), i32::MAX, -5][rng.usize_below(5)],
                    act_min,
                    act_max: rng.i32_in(act_min, 127),
                };
                let mut want = std::vec![0x5Ai8; x.len()];
                layernorm_i8_reference(&p, &x, &grq, &beta, &mut want);
                #[allow(unused_mut)] // written only where the AVX-512 kernels are compiled
                let mut got = std::vec![0x5Ai8; x.len()];
                #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
                assert!(super::super::x86::avx512_layernorm(
                    &p, &x, &grq, &beta, &mut got
                ));
                assert_eq!(got, want, "d {d} mode {mode} {p:?}");
                cases += 1;
            }
        }
        // Every row of values in [-3, 3] for d = 2 and 3, with small eps: standard deviations of
        // a few units, where `diff · 4096 + ⌊sd/2⌋` is often an exact multiple of `sd` (the
        // quotient estimate's one-less case).
        for d in [2usize, 3] {
            let rows = 7usize.pow(d as u32);
            let x: Vec<i8> = (0..rows)
                .flat_map(|r| (0..d).map(move |i| ((r / 7usize.pow(i as u32)) % 7) as i8 - 3))
                .collect();
            let grq: Vec<I32> = (0..d)
                .flat_map(|_| [I32::new(rng.i32_in(1 << 30, i32::MAX)), I32::new(12)])
                .collect();
            let beta: Vec<I32> = (0..d).map(|_| I32::new(rng.i32_in(-20, 20))).collect();
            for eps_q in 0..4 {
                let p = LayerNormParams {
                    rows,
                    d,
                    eps_q,
                    act_min: -128,
                    act_max: 127,
                };
                let mut want = std::vec![0x5Ai8; x.len()];
                layernorm_i8_reference(&p, &x, &grq, &beta, &mut want);
                #[allow(unused_mut)] // written only where the AVX-512 kernels are compiled
                let mut got = std::vec![0x5Ai8; x.len()];
                #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
                assert!(super::super::x86::avx512_layernorm(
                    &p, &x, &grq, &beta, &mut got
                ));
                assert_eq!(got, want, "small rows, d {d}, eps {eps_q}");
                cases += 1;
            }
        }
        std::eprintln!("layernorm avx512: {cases} cases bit-exact");
    }

    /// `(mult, shift)` pairs: mostly the committed models' kind, now and then any `rq` input.
    /// Half the time every shift is in `[2, 31]` (the 32-bit path of the SIMD `rq`).
    fn rq_pairs(rng: &mut Rng, n: usize) -> Vec<I32> {
        let fast_only = rng.usize_below(2) == 0;
        (0..n)
            .flat_map(|_| {
                let (m, sh) = match if fast_only { 4 } else { rng.usize_below(5) } {
                    0 => (rng.i32_in(0, i32::MAX), rng.i32_in(-30, 31)),
                    1 => ([0, 1, i32::MAX][rng.usize_below(3)], rng.i32_in(-31, 33)),
                    _ => (rng.i32_in(1 << 30, i32::MAX), rng.i32_in(2, 12)),
                };
                [I32::new(m), I32::new(sh)]
            })
            .collect()
    }

    #[test]
    fn fc_simd_matches_the_rows() {
        use super::super::reference::fc::{fc_i8_rows, FcParams};
        if !avx512_here("fc") {
            return;
        }
        let mut rng = Rng::new(0xFC);
        let mut cases = 0;
        // Every pair of these, and two shapes for the larger row / column-sum buffers.
        let ks = [
            1usize, 2, 3, 4, 5, 7, 8, 15, 16, 17, 40, 49, 63, 64, 65, 128, 200,
        ];
        let ns = [1usize, 5, 16, 17, 31, 32, 33, 64, 65, 128, 130];
        let shapes = ks
            .iter()
            .flat_map(|&k| ns.iter().map(move |&n| (k, n)))
            .chain([(300, 96), (16, 300)]);
        for (k, n) in shapes {
            {
                let rows = [4usize, 5, 6, 7, 8, 9, 50][rng.usize_below(7)];
                let mode = rng.usize_below(4);
                let x = operand(&mut rng, rows * k, mode);
                let w = operand(&mut rng, n * k, (mode + 1) % 4);
                let bias: Vec<I32> = (0..n)
                    .map(|_| {
                        I32::new(match rng.usize_below(6) {
                            0 => i32::MAX - rng.i32_in(0, 1 << 16),
                            1 => i32::MIN + rng.i32_in(0, 1 << 16),
                            _ => rng.i32_in(-50_000, 50_000),
                        })
                    })
                    .collect();
                let rq = rq_pairs(&mut rng, n);
                // Bounds as parse writes them, and (the scalar loop takes any) swapped or
                // outside int8.
                let (act_min, act_max) = match rng.usize_below(4) {
                    0 => (rng.i32_in(-300, 300), rng.i32_in(-300, 300)),
                    _ => {
                        let lo = rng.i32_in(-128, 10);
                        (lo, rng.i32_in(lo, 127))
                    }
                };
                // (`±2^28`: the edge of the AVX-512 kernel's short epilogue.)
                let p = FcParams {
                    rows,
                    k,
                    n,
                    y_zp: [
                        rng.i32_in(-128, 127),
                        rng.i32_in(-128, 127),
                        i32::MAX,
                        i32::MIN,
                        1 << 28,
                        -(1 << 28),
                        (1 << 28) + 1,
                    ][rng.usize_below(7)],
                    act_min,
                    act_max,
                };
                let mut want = std::vec![0x5Ai8; rows * n];
                fc_i8_rows(&p, &x, &w, &bias, &rq, &mut want);
                #[allow(unused_mut)] // written only where the AVX-512 kernels are compiled
                let mut got = std::vec![0x5Ai8; rows * n];
                #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
                assert!(super::super::x86::avx512_fc(
                    &p, &x, &w, &bias, &rq, &mut got
                ));
                assert_eq!(got, want, "{p:?} mode {mode}");
                cases += 1;
            }
        }
        // Weights beyond the stack buffer are left to the row-at-a-time path.
        #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
        {
            let (k, n) = (256, 200);
            let p = FcParams {
                rows: 4,
                k,
                n,
                y_zp: 0,
                act_min: -128,
                act_max: 127,
            };
            let mut y = std::vec![7i8; 4 * n];
            let bias = std::vec![I32::new(0); n];
            let rq = std::vec![I32::new(1); 2 * n];
            let ok = super::super::x86::avx512_fc(
                &p,
                &[1; 4 * 256],
                &[1; 256 * 200],
                &bias,
                &rq,
                &mut y,
            );
            assert!(!ok && y.iter().all(|&v| v == 7));
        }
        std::eprintln!("fc avx512: {cases} cases bit-exact");
    }

    #[test]
    fn add_simd_matches_the_reference() {
        use super::super::reference::add::{add_i8_reference, AddParams};
        if !avx512_here("add") {
            return;
        }
        let mut rng = Rng::new(0xADD);
        let mut cases = 0;
        for &(steps, len, b_len, b_step) in &[
            (1usize, 1usize, 1usize, 0usize),
            (1, 3200, 3200, 0),
            (50, 64, 64, 64),
            (3, 12, 4, 0),
            (4, 6, 6, 6),
            (2, 17, 17, 17),
            (5, 96, 1, 0),
            (1, 96, 1, 0),
            (2, 40, 20, 0),
            (3, 33, 11, 0),
            (1, 100, 50, 0),
        ] {
            for round in 0..12 {
                let mode = round % 4;
                let a = operand(&mut rng, steps * len, mode);
                let b = operand(
                    &mut rng,
                    if b_step == 0 { b_len } else { steps * b_len },
                    (mode + 1) % 4,
                );
                // Multipliers as parse writes them, any i32, and the edges of the int16 split
                // of the 32-bit path (`hi · 2^16 + lo`, `lo ∈ [-2^15, 2^15)`).
                let mult = |rng: &mut Rng| match rng.usize_below(4) {
                    0 => rng.i32_in(i32::MIN, i32::MAX),
                    1 => [
                        i32::MIN,
                        i32::MAX,
                        i32::MAX - (1 << 15),
                        i32::MAX - (1 << 15) + 1,
                        (1 << 15) - 1,
                        1 << 15,
                        -(1 << 15),
                        0,
                    ][rng.usize_below(8)],
                    _ => rng.i32_in(1 << 28, 1 << 30),
                };
                let act_min = rng.i32_in(-128, 20);
                let p = AddParams {
                    steps,
                    len,
                    b_len,
                    b_step,
                    a_zp: rng.i32_in(-128, 127),
                    b_zp: rng.i32_in(-128, 127),
                    y_zp: if rng.usize_below(4) == 0 {
                        [1 << 29, (1 << 29) + 1, i32::MIN][rng.usize_below(3)]
                    } else {
                        rng.i32_in(-128, 127)
                    },
                    a_mult: mult(&mut rng),
                    b_mult: mult(&mut rng),
                    shift: [
                        rng.i32_in(1, 62) as u32,
                        rng.i32_in(16, 31) as u32,
                        0,
                        15,
                        16,
                        31,
                        32,
                        63,
                        70,
                    ][rng.usize_below(9)],
                    act_min,
                    act_max: rng.i32_in(act_min, 127),
                };
                let mut want = std::vec![0x5Ai8; a.len()];
                add_i8_reference(&p, &a, &b, &mut want);
                #[allow(unused_mut)] // written only where the AVX-512 kernels are compiled
                let mut got = std::vec![0x5Ai8; a.len()];
                #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
                assert!(super::super::x86::avx512_add(&p, &a, &b, &mut got));
                assert_eq!(got, want, "{p:?} mode {mode}");
                cases += 1;
            }
        }
        std::eprintln!("add avx512: {cases} cases bit-exact");
    }

    #[test]
    fn mean_simd_matches_the_reference() {
        use super::super::reference::mean::{mean_i8_reference, MeanParams};
        if !avx512_here("mean") {
            return;
        }
        let mut rng = Rng::new(0x3EA);
        let mut cases = 0;
        for &(rows, n, inner) in &[
            (1usize, 1usize, 1usize),
            (1, 96, 1),
            (2, 200, 1),
            (1, 16, 64),
            (3, 5, 17),
            (2, 7, 33),
            (1, 1, 16),
            (4, 64, 3),
            (1, 1 << 16, 1),
        ] {
            for mode in 0..4 {
                let (mult, shift) = match rng.usize_below(3) {
                    0 => (rng.i32_in(0, i32::MAX), rng.i32_in(-30, 31)),
                    _ => (rng.i32_in(1 << 30, i32::MAX), rng.i32_in(2, 12)),
                };
                let p = MeanParams {
                    rows,
                    n,
                    inner,
                    x_zp: rng.i32_in(-128, 127),
                    y_zp: [rng.i32_in(-128, 127), i32::MAX, i32::MIN][rng.usize_below(3)],
                    mult,
                    shift,
                };
                let x = operand(&mut rng, rows * n * inner, mode);
                let mut want = std::vec![0x5Ai8; rows * inner];
                mean_i8_reference(&p, &x, &mut want);
                #[allow(unused_mut)] // written only where the AVX-512 kernels are compiled
                let mut got = std::vec![0x5Ai8; rows * inner];
                #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
                assert!(super::super::x86::avx512_mean(&p, &x, &mut got));
                assert_eq!(got, want, "{p:?} mode {mode}");
                cases += 1;
            }
        }
        std::eprintln!("mean avx512: {cases} cases bit-exact");
    }
}
