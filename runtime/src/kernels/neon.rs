//! aarch64 kernels for [`matvec_i8`](super::matvec::matvec_i8): NEON, with and without the
//! Armv8.2 dot-product extension.
//!
//! Both take rows eight at a time (then four, then one) so each load of `v` serves many rows,
//! 16 columns per step, then one 8-column step (the upper half of the vector zero) where at
//! least 8 columns remain, and finish the last `K mod 8` columns with the scalar loop. The four
//! lane sums of each block of four rows come out of one pairwise-add tree (`addp`, 3
//! instructions for four rows) instead of one `addv` per row. Bit-exact with the reference:
//! every product and partial sum is exact and the final sums wrap modulo 2^32 like `dot_i8`
//! (integer addition modulo 2^32 is associative, so the summation order does not matter).
//!
//! - `neon_matvec_i8_8x16` (every aarch64): `smull` / `smull2` multiply eight int8 pairs into
//!   int16 (a product is at most 2^14, so it fits; two would not, which is why `smlal` cannot
//!   be used), `sadalp` adds adjacent int16 pairs into the int32 accumulator lanes.
//! - `sdot_matvec_i8_8x16` (Cortex-A76 / Raspberry Pi 5, `dotprod`): `sdot` adds four int8
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
    unsafe { neon_matvec_i8_8x16(m, v, acc) }
}

/// `sdot` matvec; see the module doc. Callers guarantee `m.len() ≥ acc.len() · v.len()`.
pub(super) fn sdot_matvec_i8(m: &[i8], v: &[i8], acc: &mut [i32]) {
    assert!(m.len() >= acc.len() * v.len());
    // SAFETY: called only when `Isa::NeonDot.is_available()`: the CPU reports `dotprod` (or
    // the crate was compiled with it); lengths asserted above.
    unsafe { sdot_matvec_i8_8x16(m, v, acc) }
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

/// The lane sums of `a`, `b`, `c`, `d` as the four lanes of the result (`addp` tree).
///
/// # Safety
/// The CPU must support NEON.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn hsum4(a: int32x4_t, b: int32x4_t, c: int32x4_t, d: int32x4_t) -> int32x4_t {
    // SAFETY: register-only NEON intrinsics, NEON enabled (unsafe to call before Rust 1.87).
    #[allow(unused_unsafe)]
    unsafe {
        vpaddq_s32(vpaddq_s32(a, b), vpaddq_s32(c, d))
    }
}

/// The shared driver: rows in blocks of 8, then 4, then 1; `mac(acc, w, x)` accumulates one
/// 16-byte chunk.
macro_rules! matvec_8x16 {
    ($m:ident, $v:ident, $acc:ident, $mac:ident) => {{
        let k = $v.len();
        let k16 = k - k % 16;
        // Columns covered by vector steps: `k16`, plus 8 when at least 8 remain.
        let kv = if k - k16 >= 8 { k16 + 8 } else { k16 };
        let vp = $v.as_ptr();
        let tail = &$v[kv..];
        // Accumulates the vector columns `0..kv` of the `$n` rows at `$p` (row `i` at
        // `$p + i·K`, from a block of `$n · K` bytes of `m`) into `$a`. Every load reads 16 (or,
        // at column `k16 ≤ k - 8`, 8) bytes at a column `c` with `c + 16 ≤ k16 ≤ k` of `v` or of
        // one of the rows: in bounds (`vld1` has no alignment requirement). The 8-byte step
        // pads with zero bytes, which add nothing.
        macro_rules! rows_dot {
            ($a:ident, $p:expr, $n:expr) => {
                let mut c = 0;
                while c < k16 {
                    let x = vld1q_s8(vp.add(c));
                    for i in 0..$n {
                        $a[i] = $mac($a[i], vld1q_s8($p.add(i * k + c)), x);
                    }
                    c += 16;
                }
                if kv > k16 {
                    let z = vdup_n_s8(0);
                    let x = vcombine_s8(vld1_s8(vp.add(k16)), z);
                    for i in 0..$n {
                        let w = vcombine_s8(vld1_s8($p.add(i * k + k16)), z);
                        $a[i] = $mac($a[i], w, x);
                    }
                }
            };
        }
        // SAFETY: the CPU supports the features of `$mac` and NEON (the caller's contract); the
        // memory accesses are `rows_dot!`'s loads (in bounds, above) and the stores into the
        // local `sums`.
        unsafe {
            let mut j = 0;
            let mut blocks = $acc.chunks_exact_mut(8);
            for out in &mut blocks {
                let blk = &$m[j * k..(j + 8) * k];
                let p = blk.as_ptr();
                let mut a = [vdupq_n_s32(0); 8];
                rows_dot!(a, p, 8);
                let mut sums = [0i32; 8];
                vst1q_s32(sums.as_mut_ptr(), hsum4(a[0], a[1], a[2], a[3]));
                vst1q_s32(sums.as_mut_ptr().add(4), hsum4(a[4], a[5], a[6], a[7]));
                for ((o, s), r) in out.iter_mut().zip(sums).zip(blk.chunks_exact(k)) {
                    *o = s.wrapping_add(dot_i8(&r[kv..], tail));
                }
                j += 8;
            }
            let mut quads = blocks.into_remainder().chunks_exact_mut(4);
            for out in &mut quads {
                let blk = &$m[j * k..(j + 4) * k];
                let p = blk.as_ptr();
                let mut a = [vdupq_n_s32(0); 4];
                rows_dot!(a, p, 4);
                let mut sums = [0i32; 4];
                vst1q_s32(sums.as_mut_ptr(), hsum4(a[0], a[1], a[2], a[3]));
                for ((o, s), r) in out.iter_mut().zip(sums).zip(blk.chunks_exact(k)) {
                    *o = s.wrapping_add(dot_i8(&r[kv..], tail));
                }
                j += 4;
            }
            for o in quads.into_remainder() {
                let r = &$m[j * k..(j + 1) * k];
                let p = r.as_ptr();
                let mut a = [vdupq_n_s32(0)];
                rows_dot!(a, p, 1);
                *o = vaddvq_s32(a[0]).wrapping_add(dot_i8(&r[kv..], tail));
                j += 1;
            }
        }
    }};
}

/// # Safety
/// The CPU must support NEON, and `m.len() ≥ acc.len() · v.len()`.
#[target_feature(enable = "neon")]
unsafe fn neon_matvec_i8_8x16(m: &[i8], v: &[i8], acc: &mut [i32]) {
    matvec_8x16!(m, v, acc, smull_sadalp)
}

/// # Safety
/// The CPU must support NEON and `dotprod`, and `m.len() ≥ acc.len() · v.len()`.
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot_matvec_i8_8x16(m: &[i8], v: &[i8], acc: &mut [i32]) {
    matvec_8x16!(m, v, acc, sdot)
}

#[cfg(test)]
mod tests {
    use super::super::matvec::{reference_matvec_i8, Isa};
    use crate::kernels::testutil::Rng;
    use std::vec::Vec;

    /// Every row count up to six 8-row blocks plus remainders, against the reference, for
    /// column counts that exercise each step kind (16-wide, the 8-wide step, the scalar tail).
    #[test]
    fn row_blocks_and_tails_match_the_reference() {
        let mut rng = Rng::new(0xB10C);
        type Kernel = fn(&[i8], &[i8], &mut [i32]);
        let kernels: [(Isa, Kernel); 2] = [
            (Isa::Neon, super::neon_matvec_i8),
            (Isa::NeonDot, super::sdot_matvec_i8),
        ];
        for (isa, kernel) in kernels {
            if !isa.is_available() {
                std::eprintln!("neon blocks: {} not on this CPU, skipped", isa.name());
                continue;
            }
            for cols in [1, 7, 8, 9, 16, 23, 24, 40, 47, 64, 65, 104, 128, 200] {
                for rows in 0..=52 {
                    let m: Vec<i8> = (0..rows * cols).map(|_| rng.i8()).collect();
                    let v: Vec<i8> = (0..cols).map(|_| rng.i8()).collect();
                    let mut want = std::vec![0i32; rows];
                    reference_matvec_i8(&m, &v, &mut want);
                    let mut got = std::vec![0x5A5A_5A5Ai32; rows];
                    kernel(&m, &v, &mut got);
                    assert_eq!(got, want, "{} rows {rows} cols {cols}", isa.name());
                }
            }
        }
    }
}
