//! Cortex-M DSP-extension kernel for [`matvec_i8`](super::matvec::matvec_i8) (Cortex-M4, M7,
//! M33 with DSP): `dsp_matvec_i8_2x4`, compiled in when `build.rs` sets `kinglet_dsp`.
//!
//! Four int8 of a word are split into two pairs of int16 halfwords: `sxtb16 r, x` takes bytes
//! 0 and 2, `sxtb16 r, x, ror #8` bytes 1 and 3, each sign-extended. `smlad acc, a, b, acc`
//! then adds both halfword products to the accumulator. Per four columns the vector's two
//! extractions are shared by two rows, so each row costs one load, two `sxtb16` and two
//! `smlad` (CMSIS-NN's `arm_nn_vec_mat_mult_t_s8` uses the same scheme). `smlad` wraps on
//! overflow (it only sets the Q flag), so the sums wrap modulo 2^32 exactly like `dot_i8`, and
//! which columns go into which product does not change them. The last `K mod 4` columns use
//! the scalar loop.
//!
//! The `core::arch::arm` DSP intrinsics are not stable, so the three instructions are inline
//! `asm!`; they need the DSP extension, which `kinglet_dsp` guarantees.

#![allow(unsafe_code)]

use super::reference::fixed::dot_i8;
use core::arch::asm;

/// Bytes 0 and 2 of `x`, sign-extended into the two halfwords.
#[inline(always)]
fn sxtb16(x: u32) -> u32 {
    let r: u32;
    // SAFETY: a register-only DSP instruction (the DSP extension is present whenever this
    // module is compiled); no memory, stack or flags.
    unsafe {
        asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x,
             options(pure, nomem, nostack, preserves_flags))
    };
    r
}

/// Bytes 1 and 3 of `x`, sign-extended into the two halfwords.
#[inline(always)]
fn sxtb16_ror8(x: u32) -> u32 {
    let r: u32;
    // SAFETY: as for `sxtb16`.
    unsafe {
        asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x,
             options(pure, nomem, nostack, preserves_flags))
    };
    r
}

/// `acc + a.lo · b.lo + a.hi · b.hi` (signed halfwords), wrapping.
#[inline(always)]
fn smlad(a: u32, b: u32, acc: i32) -> i32 {
    let r: i32;
    // SAFETY: register-only DSP instruction; it may set the sticky Q flag on overflow, so the
    // block does not claim `preserves_flags` (no Rust code reads Q).
    unsafe {
        asm!("smlad {r}, {a}, {b}, {acc}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b,
             acc = in(reg) acc, options(pure, nomem, nostack))
    };
    r
}

/// Four int8 as a little-endian word (one unaligned `ldr`, which Armv7-M and Armv8-M.main
/// allow).
#[inline(always)]
fn word(b: &[i8]) -> u32 {
    match *b {
        [b0, b1, b2, b3, ..] => u32::from_le_bytes([b0 as u8, b1 as u8, b2 as u8, b3 as u8]),
        _ => 0,
    }
}

/// `acc[j] = Σ m[j·K..][k] · v[k]`, two rows per pass, four columns per step. Rows that `m`
/// does not hold in full (the dispatcher never lets that happen) are 0.
pub(super) fn dsp_matvec_i8_2x4(m: &[i8], v: &[i8], acc: &mut [i32]) {
    let k = v.len();
    if k == 0 {
        acc.fill(0);
        return;
    }
    let k4 = k - k % 4;
    let (v4, vt) = v.split_at(k4);
    let mut rows = m.chunks_exact(k);
    let mut blocks = acc.chunks_exact_mut(2);
    for out in &mut blocks {
        let (Some(r0), Some(r1)) = (rows.next(), rows.next()) else {
            out.fill(0);
            continue;
        };
        let (mut a0, mut a1) = (0i32, 0i32);
        let chunks = v4
            .chunks_exact(4)
            .zip(r0.chunks_exact(4))
            .zip(r1.chunks_exact(4));
        for ((x, w0), w1) in chunks {
            let x = word(x);
            let (x02, x13) = (sxtb16(x), sxtb16_ror8(x));
            let (w0, w1) = (word(w0), word(w1));
            a0 = smlad(sxtb16(w0), x02, a0);
            a0 = smlad(sxtb16_ror8(w0), x13, a0);
            a1 = smlad(sxtb16(w1), x02, a1);
            a1 = smlad(sxtb16_ror8(w1), x13, a1);
        }
        out[0] = a0.wrapping_add(dot_i8(&r0[k4..], vt));
        out[1] = a1.wrapping_add(dot_i8(&r1[k4..], vt));
    }
    for o in blocks.into_remainder() {
        let Some(r) = rows.next() else {
            *o = 0;
            continue;
        };
        let mut a = 0i32;
        for (x, w) in v4.chunks_exact(4).zip(r.chunks_exact(4)) {
            let (x, w) = (word(x), word(w));
            a = smlad(sxtb16(w), sxtb16(x), a);
            a = smlad(sxtb16_ror8(w), sxtb16_ror8(x), a);
        }
        *o = a.wrapping_add(dot_i8(&r[k4..], vt));
    }
}
