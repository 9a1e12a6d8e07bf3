//! aarch64 kernels for [`matvec_i8`](super::matvec::matvec_i8): NEON, with and without the
//! Armv8.2 dot-product extension.
//!
//! Both process four rows at a time so each load of `v` serves four rows, 16 columns per step,
//! and finish the last `K mod 16` columns with the scalar loop. Bit-exact with the reference:
//! every product and partial sum is exact and the final sums wrap modulo 2^32 like `dot_i8`.
//!
//! - `neon_matvec_i8_4x16` (every aarch64): `smull` / `smull2` multiply eight int8 pairs into
//!   int16 (a product is at most 2^14, so it fits; two would not, which is why `smlal` cannot
//!   be used), `sadalp` adds adjacent int16 pairs into the int32 accumulator lanes.
//! - `sdot_matvec_i8_4x16` (Cortex-A76 / Raspberry Pi 5, `dotprod`): `sdot` adds four int8
//!   products into each int32 lane. Its intrinsic `vdotq_s32` is not stable yet, so it is
//!   written as inline `asm!`.

#![allow(unsafe_code)]

use super::reference::fixed::dot_i8;
use core::arch::aarch64::*;
use core::arch::asm;

/// NEON matvec; see the module doc. Callers guarantee `m.len() ≥ acc.len() · v.len()`.
pub(super) fn neon_matvec_i8(m: &[i8], v: &[i8], acc: &mut [i32]) {
    assert!(m.len() >= acc.len() * v.len());
    // SAFETY: the dispatcher calls this only when `Isa::Neon.is_available()`, i.e. the target
    // was compiled with NEON (baseline on aarch64 Linux); lengths asserted above.
    unsafe { neon_matvec_i8_4x16(m, v, acc) }
}

/// `sdot` matvec; see the module doc. Callers guarantee `m.len() ≥ acc.len() · v.len()`.
pub(super) fn sdot_matvec_i8(m: &[i8], v: &[i8], acc: &mut [i32]) {
    assert!(m.len() >= acc.len() * v.len());
    // SAFETY: called only when `Isa::NeonDot.is_available()`: the CPU reports `dotprod` (or
    // the crate was compiled with it); lengths asserted above.
    unsafe { sdot_matvec_i8_4x16(m, v, acc) }
}

/// `a + Σ` of the products of the 16 int8 pairs of `w` and `x`, pairwise into int32 lanes.
///
/// # Safety
/// The CPU must support NEON.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn smull_sadalp(a: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    // SAFETY: register-only NEON intrinsics, NEON enabled (unsafe to call before Rust 1.87).
    #[allow(unused_unsafe)]
    unsafe {
        let a = vpadalq_s16(a, vmull_s8(vget_low_s8(w), vget_low_s8(x)));
        vpadalq_s16(a, vmull_high_s8(w, x))
    }
}

/// `a + sdot(w, x)`: each int32 lane gains the sum of its four int8 products.
///
/// # Safety
/// The CPU must support NEON and `dotprod`.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot(a: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut a = a;
    // SAFETY: `sdot` only reads and writes the named vector registers (no memory, no stack,
    // no flags); `dotprod` is enabled for this function, so the instruction exists.
    unsafe {
        asm!(
            "sdot {a:v}.4s, {w:v}.16b, {x:v}.16b",
            a = inout(vreg) a,
            w = in(vreg) w,
            x = in(vreg) x,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    a
}

/// The shared 4-row × 16-column driver: `mac(acc, w, x)` accumulates one 16-byte chunk.
macro_rules! matvec_4x16 {
    ($m:ident, $v:ident, $acc:ident, $mac:ident) => {{
        let k = $v.len();
        let k16 = k - k % 16;
        let vp = $v.as_ptr();
        // SAFETY: the CPU supports the features of `$mac` and NEON (the caller's contract).
        // The only memory reads are the 16-byte `vld1q_s8` loads at column `c` of `v` and of a
        // row, with `c + 16 ≤ k16 ≤ k` where `v` and every row hold `k` bytes: in bounds
        // (`vld1q_s8` has no alignment requirement).
        unsafe {
            let mut blocks = $acc.chunks_exact_mut(4);
            let mut row = 0;
            for out in &mut blocks {
                let rows = [
                    &$m[row * k..(row + 1) * k],
                    &$m[(row + 1) * k..(row + 2) * k],
                    &$m[(row + 2) * k..(row + 3) * k],
                    &$m[(row + 3) * k..(row + 4) * k],
                ];
                let mut a = [vdupq_n_s32(0); 4];
                let mut c = 0;
                while c < k16 {
                    let x = vld1q_s8(vp.add(c));
                    for (a, r) in a.iter_mut().zip(rows) {
                        *a = $mac(*a, vld1q_s8(r.as_ptr().add(c)), x);
                    }
                    c += 16;
                }
                let tail = &$v[k16..];
                for ((o, a), r) in out.iter_mut().zip(a).zip(rows) {
                    *o = vaddvq_s32(a).wrapping_add(dot_i8(&r[k16..], tail));
                }
                row += 4;
            }
            for o in blocks.into_remainder() {
                let r = &$m[row * k..(row + 1) * k];
                let mut a = vdupq_n_s32(0);
                let mut c = 0;
                while c < k16 {
                    a = $mac(a, vld1q_s8(r.as_ptr().add(c)), vld1q_s8(vp.add(c)));
                    c += 16;
                }
                *o = vaddvq_s32(a).wrapping_add(dot_i8(&r[k16..], &$v[k16..]));
                row += 1;
            }
        }
    }};
}

/// # Safety
/// The CPU must support NEON, and `m.len() ≥ acc.len() · v.len()`.
#[target_feature(enable = "neon")]
unsafe fn neon_matvec_i8_4x16(m: &[i8], v: &[i8], acc: &mut [i32]) {
    matvec_4x16!(m, v, acc, smull_sadalp)
}

/// # Safety
/// The CPU must support NEON and `dotprod`, and `m.len() ≥ acc.len() · v.len()`.
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot_matvec_i8_4x16(m: &[i8], v: &[i8], acc: &mut [i32]) {
    matvec_4x16!(m, v, acc, sdot)
}
