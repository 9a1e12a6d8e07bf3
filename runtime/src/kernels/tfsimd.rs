//! SIMD hooks of the Transformer ops (ATTENTION, LAYERNORM, FC over many rows, ADD): each
//! returns `true` when the active level ran the op (bit-identical with the scalar loop in
//! `reference`), or `false`, writing nothing, when no SIMD level applies, so the caller's scalar
//! loop runs. Only AVX-512 VNNI has such kernels (`x86`); elsewhere every hook is a constant
//! `false`. [`force_reference`](super::force_reference) turns them off with the matrix-vector
//! kernels.

#[cfg(all(target_arch = "x86_64", kinglet_avx512))]
use super::matvec::{active_isa, Isa};
use super::reference::attention::{AttentionParams, EXP2_LEN};
use super::reference::layernorm::LayerNormParams;
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

    #[test]
    fn attention_simd_matches_the_reference() {
        if !avx512_here("attention") {
            return;
        }
        let exp2 = exp2_table();
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
            ] {
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
                        y_zp: rng.i32_in(-128, 127),
                        score_mult,
                        score_shift,
                        out_mult,
                        out_shift,
                        causal,
                    };
                    let q = operand(&mut rng, steps * tq * w, mode);
                    let k = operand(&mut rng, steps * tk * w, (mode + 1) % 4);
                    let v = operand(&mut rng, steps * tk * w, (mode + 2) % 4);
                    let mut want = std::vec![0x5Ai8; q.len()];
                    let mut sc = std::vec![0i32; tk];
                    attention_i8_reference(&p, &exp2, &q, &k, &v, &mut want, &mut sc);
                    let mut got = std::vec![0x5Ai8; q.len()];
                    #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
                    assert!(super::super::x86::avx512_attention(
                        &p, &exp2, &q, &k, &v, &mut got
                    ));
                    assert_eq!(got, want, "{p:?} mode {mode}");
                    cases += 1;
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
            let mut bad = exp2;
            bad[3] = I32::new(70000);
            let mut y = [7i8; 4];
            assert!(!super::super::x86::avx512_attention(
                &p, &bad, &[1; 4], &[1; 8], &[1; 8], &mut y
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
                let grq: Vec<I32> = (0..d)
                    .flat_map(|_| {
                        let m = match rng.usize_below(4) {
                            0 => rng.i32_in(i32::MIN + 1, i32::MAX),
                            1 => [i32::MIN + 1, i32::MAX, 0][rng.usize_below(3)],
                            _ => rng.i32_in(-(1 << 30), 1 << 30),
                        };
                        let sh = if rng.usize_below(3) == 0 {
                            rng.i32_in(-30, 31)
                        } else {
                            rng.i32_in(8, 20)
                        };
                        [I32::new(m), I32::new(sh)]
                    })
                    .collect();
                let beta: Vec<I32> = (0..d)
                    .map(|_| {
                        I32::new(if rng.usize_below(8) == 0 {
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
                let mut got = std::vec![0x5Ai8; x.len()];
                #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
                assert!(super::super::x86::avx512_layernorm(
                    &p, &x, &grq, &beta, &mut got
                ));
                assert_eq!(got, want, "d {d} mode {mode} {p:?}");
                cases += 1;
            }
        }
        std::eprintln!("layernorm avx512: {cases} cases bit-exact");
    }
}
