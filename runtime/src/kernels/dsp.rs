//! Cortex-M DSP-extension kernel for [`matvec_i8`](super::matvec::matvec_i8) (Cortex-M4, M7,
//! M33 with DSP): `dsp_matvec_i8`, compiled in when `build.rs` sets `kinglet_dsp`.
//!
//! `sxtb16 r, x` takes bytes 0 and 2 of a word, `sxtb16 r, x, ror #8` bytes 1 and 3, each
//! sign-extended into a halfword; `smlad acc, a, b, acc` adds both halfword products to the
//! accumulator. The vector is shared by every row, so it is expanded **once per product** (per
//! [`CHUNK`] columns) into a stack buffer of int16 pairs in exactly the order `sxtb16` gives
//! the weights: for columns `4g..4g+4`, the words `(x0, x2)` and `(x1, x3)`. The main loop
//! (`kinglet_dsp_mv4x4`, hand-written Thumb-2 below) then takes four rows per pass and four
//! columns per iteration:
//!
//! ```text
//! ldrd   x02, x13, [xp], #8        @ the expanded vector pair, shared by the 4 rows
//! ldr    w, [row]                  @ 4 weights of one row (unaligned ldr is fine on v7E-M)
//! sxtb16 t, w          ; smlad a, t, x02, a
//! sxtb16 w, w, ror #8  ; smlad a, w, x13, a       @ x4 rows
//! cmp    xp, end       ; bne loop
//! ```
//!
//! The loop body is unrolled twice (8 columns per iteration; an odd group count enters at the
//! second copy): 44 instructions per 32 MACs, **1.375 per MAC**. Cortex-M4 cycles (TRM DDI
//! 0439B, table 3-1): `ldrd` 3, `ldr` 2 (not pipelined: each follows a `smlad`), `sxtb16` /
//! `smlad` 1, `cmp` 1, taken `bne` 1 + 2 → 2 · 27 + 4 = 58 cycles per 32 MACs (**1.81 cycles
//! per MAC**). No multi-register load stands in for several single ones: the only `ldm` / `stm`
//! move the four accumulators once per four rows, and `ldrd` costs what two pipelined `ldr`
//! would. CMSIS-NN's `arm_nn_vec_mat_mult_t_s8` inner loop is 15 instructions per 8 MACs
//! (1.88). Expanding the vector costs 6 instructions per 4 columns once per product; the last
//! `K mod 4` columns (scalar `dot_i8`) and the last `rows mod 4` rows (`sxtb16` + `smlad`
//! against the same expanded vector) are handled in Rust. Measured with m4cycles (firmware
//! `kernels` app, whole call): 1.55 / 1.45 / 1.41 instructions and 2.10 / 1.93 / 1.87 estimated
//! cycles per MAC for 64×64 / 128×128 / 256×256.
//!
//! `dsp_matvec_rq` runs the same loop with the requantization in the block epilogue (mode 2):
//! bias add and `fixed::rq`'s 32-bit path on the four accumulators while they are still in
//! registers (11 instructions per row), for `K ≤ 256`, `K mod 4 = 0` and a multiple of 4 rows;
//! the gate products of `mnist_lstm` (K = 28, 20; 80 rows) and `kws_gru` (K = 40, 64; 192 rows)
//! qualify.
//!
//! `smlad` wraps on overflow (it only sets the sticky Q flag), so each row's sum is the
//! reference's modulo 2^32 exactly: integer addition is associative and commutative, and which
//! columns go into which product does not change it.
//!
//! The `core::arch::arm` DSP intrinsics are not stable, so the kernels are `global_asm!` and
//! `asm!`; they need the DSP extension, which `kinglet_dsp` guarantees.

#![allow(unsafe_code)]

use super::reference::fixed::{dot_i8, rq};
use core::arch::{asm, global_asm};
use core::mem::MaybeUninit;

/// Columns of the vector expanded at a time (a `CHUNK / 2`-word stack buffer, 512 bytes).
pub(super) const CHUNK: usize = 256;

/// Module-level assembly does not see `-C target-cpu`: name a core with the DSP extension of
/// the target's architecture (`kinglet_dsp` guarantees the extension; the encodings used are
/// the same on both).
#[cfg(not(kinglet_v8m))]
macro_rules! cpu {
    () => {
        ".cpu cortex-m4"
    };
}
#[cfg(kinglet_v8m)]
macro_rules! cpu {
    () => {
        ".cpu cortex-m33"
    };
}

// kinglet_dsp_mv4x4(w: r0, k: r1, xe: r2, out: r3, groups: [sp], blocks: [sp + 4],
// mode: [sp + 8], bias: [sp + 12], pairs: [sp + 16]) -> r0: for each of `blocks` blocks of 4
// rows (row j at w + j·k), s[j] = Σ over `groups` groups of 4 columns of w[j, 4g..4g+4] · x, with
// x expanded at xe (2 words per group, word-aligned), and
//   mode 0: out[j] = s[j];  mode 1: out[j] += s[j];
//   mode 2: out[j] = rq(bias[j] + s[j], pairs[j]) by the 32-bit paths of `fixed::rq`
//           (`((smmul(a, mult) >> (shift - 2)) + 1) >> 1` when 2 ≤ shift ≤ 31, `smmulr(a, mult)`
//           when shift = 1); for any other shift out[j] = bias[j] + s[j] and r0 = 1 (the caller
//           requantizes those rows).
// `out` (word-aligned) advances by 4 words per block; bias and pairs (any alignment) by 4 and 8
// words. groups ≥ 1, blocks ≥ 1. Returns 0 unless a mode-2 shift was out of range.
// Registers: r0 row 0 (post-incremented), r12 row 1 (r0 + k, post-incremented), rows 2 and 3 at
// [r0, k, lsl #1] and [r12, k, lsl #1]; r1 k; r2 xp; r3 end of xe; r4-r7 accumulators; r8, r9
// the vector pair; r10 the weight word, r11 its second extraction; lr out; [sp] xe, [sp, #4]
// blocks left, [sp, #8] mode, [sp, #12] bias, [sp, #16] pairs, [sp, #20] the return flag.
global_asm!(
    cpu!(),
    ".section .text.kinglet_dsp_mv4x4,\"ax\",%progbits",
    ".globl kinglet_dsp_mv4x4",
    ".hidden kinglet_dsp_mv4x4",
    ".p2align 2",
    ".type kinglet_dsp_mv4x4,%function",
    ".thumb_func",
    "kinglet_dsp_mv4x4:",
    "push {{r4, r5, r6, r7, r8, r9, r10, r11, lr}}",
    "ldrd r4, r5, [sp, #36]",
    "ldrd r6, r8, [sp, #44]",
    "ldr r9, [sp, #52]",
    "sub sp, sp, #24",
    "str r2, [sp]",
    "str r5, [sp, #4]",
    "strd r6, r8, [sp, #8]",
    "movs r5, #0",
    "strd r9, r5, [sp, #16]",
    "mov lr, r3",
    "add.w r3, r2, r4, lsl #3",
    "1:",
    "ldr r2, [sp]",
    "ldr r4, [sp, #8]",
    "add.w r12, r0, r1",
    "cmp r4, #1",
    "bne 3f",
    "ldm lr, {{r4, r5, r6, r7}}",
    "b 2f",
    "3:",
    "movs r4, #0",
    "movs r5, #0",
    "movs r6, #0",
    "movs r7, #0",
    "2:",
    "sub.w r8, r3, r2",
    "tst.w r8, #8",
    "bne 4f",
    "5:",
    "ldrd r8, r9, [r2], #8",
    "ldr.w r10, [r12, r1, lsl #1]",
    "sxtb16 r11, r10",
    "smlad r7, r11, r8, r7",
    "sxtb16 r10, r10, ror #8",
    "smlad r7, r10, r9, r7",
    "ldr.w r10, [r12], #4",
    "sxtb16 r11, r10",
    "smlad r5, r11, r8, r5",
    "sxtb16 r10, r10, ror #8",
    "smlad r5, r10, r9, r5",
    "ldr.w r10, [r0, r1, lsl #1]",
    "sxtb16 r11, r10",
    "smlad r6, r11, r8, r6",
    "sxtb16 r10, r10, ror #8",
    "smlad r6, r10, r9, r6",
    "ldr.w r10, [r0], #4",
    "sxtb16 r11, r10",
    "smlad r4, r11, r8, r4",
    "sxtb16 r10, r10, ror #8",
    "smlad r4, r10, r9, r4",
    "4:",
    "ldrd r8, r9, [r2], #8",
    "ldr.w r10, [r12, r1, lsl #1]",
    "sxtb16 r11, r10",
    "smlad r7, r11, r8, r7",
    "sxtb16 r10, r10, ror #8",
    "smlad r7, r10, r9, r7",
    "ldr.w r10, [r12], #4",
    "sxtb16 r11, r10",
    "smlad r5, r11, r8, r5",
    "sxtb16 r10, r10, ror #8",
    "smlad r5, r10, r9, r5",
    "ldr.w r10, [r0, r1, lsl #1]",
    "sxtb16 r11, r10",
    "smlad r6, r11, r8, r6",
    "sxtb16 r10, r10, ror #8",
    "smlad r6, r10, r9, r6",
    "ldr.w r10, [r0], #4",
    "sxtb16 r11, r10",
    "smlad r4, r11, r8, r4",
    "sxtb16 r10, r10, ror #8",
    "smlad r4, r10, r9, r4",
    "cmp r2, r3",
    "bne 5b",
    "ldr r8, [sp, #8]",
    "cmp r8, #2",
    "bne 6f",
    "ldrd r2, r8, [sp, #12]",
    "ldr r9, [r2], #4",
    "add r4, r4, r9",
    "ldr r9, [r8], #4",
    "ldr r10, [r8], #4",
    "subs r10, r10, #2",
    "cmp r10, #29",
    "bhi 71f",
    "smmul r4, r4, r9",
    "asr.w r4, r4, r10",
    "adds r4, r4, #1",
    "asrs r4, r4, #1",
    "81:",
    "ldr r9, [r2], #4",
    "add r5, r5, r9",
    "ldr r9, [r8], #4",
    "ldr r10, [r8], #4",
    "subs r10, r10, #2",
    "cmp r10, #29",
    "bhi 72f",
    "smmul r5, r5, r9",
    "asr.w r5, r5, r10",
    "adds r5, r5, #1",
    "asrs r5, r5, #1",
    "82:",
    "ldr r9, [r2], #4",
    "add r6, r6, r9",
    "ldr r9, [r8], #4",
    "ldr r10, [r8], #4",
    "subs r10, r10, #2",
    "cmp r10, #29",
    "bhi 73f",
    "smmul r6, r6, r9",
    "asr.w r6, r6, r10",
    "adds r6, r6, #1",
    "asrs r6, r6, #1",
    "83:",
    "ldr r9, [r2], #4",
    "add r7, r7, r9",
    "ldr r9, [r8], #4",
    "ldr r10, [r8], #4",
    "subs r10, r10, #2",
    "cmp r10, #29",
    "bhi 74f",
    "smmul r7, r7, r9",
    "asr.w r7, r7, r10",
    "adds r7, r7, #1",
    "asrs r7, r7, #1",
    "84:",
    "strd r2, r8, [sp, #12]",
    "6:",
    "stmia lr!, {{r4, r5, r6, r7}}",
    "ldr r11, [sp]",
    "sub.w r11, r3, r11",
    "sub.w r0, r0, r11, lsr #1",
    "add.w r0, r0, r1, lsl #2",
    "ldr r11, [sp, #4]",
    "subs r11, r11, #1",
    "str r11, [sp, #4]",
    "bne 1b",
    "ldr r0, [sp, #20]",
    "add sp, sp, #24",
    "pop {{r4, r5, r6, r7, r8, r9, r10, r11, pc}}",
    // Out of line: shift 1 (n = 32) is `smmulr`, (v + 2^31) >> 32; any other shift outside
    // [2, 31] leaves bias + sum for the caller.
    "71:",
    "cmn r10, #1",
    "bne 91f",
    "smmulr r4, r4, r9",
    "b 81b",
    "91:",
    "movs r9, #1",
    "str r9, [sp, #20]",
    "b 81b",
    "72:",
    "cmn r10, #1",
    "bne 92f",
    "smmulr r5, r5, r9",
    "b 82b",
    "92:",
    "movs r9, #1",
    "str r9, [sp, #20]",
    "b 82b",
    "73:",
    "cmn r10, #1",
    "bne 93f",
    "smmulr r6, r6, r9",
    "b 83b",
    "93:",
    "movs r9, #1",
    "str r9, [sp, #20]",
    "b 83b",
    "74:",
    "cmn r10, #1",
    "bne 94f",
    "smmulr r7, r7, r9",
    "b 84b",
    "94:",
    "movs r9, #1",
    "str r9, [sp, #20]",
    "b 84b",
    ".size kinglet_dsp_mv4x4, . - kinglet_dsp_mv4x4",
    ".text",
);

// kinglet_dsp_expand(v: r0, xe: r1, groups: r2): for each group of 4 int8 at v, the words
// sxtb16(w) and sxtb16(w, ror #8) at xe (word-aligned). groups ≥ 1.
global_asm!(
    cpu!(),
    ".section .text.kinglet_dsp_expand,\"ax\",%progbits",
    ".globl kinglet_dsp_expand",
    ".hidden kinglet_dsp_expand",
    ".p2align 2",
    ".type kinglet_dsp_expand,%function",
    ".thumb_func",
    "kinglet_dsp_expand:",
    "1:",
    "ldr r3, [r0], #4",
    "sxtb16 r12, r3",
    "sxtb16 r3, r3, ror #8",
    "strd r12, r3, [r1], #8",
    "subs r2, r2, #1",
    "bne 1b",
    "bx lr",
    ".size kinglet_dsp_expand, . - kinglet_dsp_expand",
    ".text",
);

extern "C" {
    fn kinglet_dsp_mv4x4(
        w: *const i8,
        k: usize,
        xe: *const u32,
        out: *mut i32,
        groups: usize,
        blocks: usize,
        mode: usize,
        bias: *const i32,
        pairs: *const i32,
    ) -> usize;
    fn kinglet_dsp_expand(v: *const i8, xe: *mut u32, groups: usize);
}

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

/// One row's groups of 4 columns against the expanded vector (the rows after the last block
/// of four).
fn row_dot(row: &[i8], xe: &[u32], mut a: i32) -> i32 {
    for (w, x) in row.chunks_exact(4).zip(xe.chunks_exact(2)) {
        let w = u32::from_le_bytes([w[0] as u8, w[1] as u8, w[2] as u8, w[3] as u8]);
        a = smlad(sxtb16(w), x[0], a);
        a = smlad(sxtb16_ror8(w), x[1], a);
    }
    a
}

/// `acc[j] = Σ_k m[j·K + k] · v[k]` with `K = v.len()`, for `j < acc.len()`. If `m` holds
/// fewer than `acc.len()` rows (the dispatcher never lets that happen) the reference loop
/// runs instead, so the assembly never reads outside `m`.
pub(super) fn dsp_matvec_i8(m: &[i8], v: &[i8], acc: &mut [i32]) {
    let k = v.len();
    let rows = acc.len();
    if k == 0 || m.len() / k < rows {
        super::matvec::reference_matvec_i8(m, v, acc);
        return;
    }
    let k4 = k - k % 4;
    let blocks = rows / 4;
    // Not zeroed (a 512-byte clear would cost more than a 64x64 product's set-up): each chunk
    // is written by `kinglet_dsp_expand` before anything reads it.
    let mut buf = MaybeUninit::<[u32; CHUNK / 2]>::uninit();
    let mut c0 = 0;
    while c0 < k4 {
        let cols = (k4 - c0).min(CHUNK);
        let groups = cols / 4;
        // SAFETY: reads `4 · groups` bytes of `v` from `c0` (`c0 + cols ≤ k4 ≤ v.len()`) and
        // writes `2 · groups ≤ CHUNK / 2` words into `buf`, which is word-aligned; `groups ≥ 1`.
        // The slice then covers exactly those initialised words.
        let xe: &[u32] = unsafe {
            let p = buf.as_mut_ptr().cast::<u32>();
            kinglet_dsp_expand(v.as_ptr().add(c0), p, groups);
            core::slice::from_raw_parts(p, 2 * groups)
        };
        if blocks > 0 {
            // SAFETY: for each row j < 4 · blocks ≤ rows the kernel reads `m[j·k + c0 ..
            // j·k + c0 + cols]`, inside `m` because `m.len() ≥ rows · k` (checked above) and
            // `c0 + cols ≤ k`; it reads `2 · groups` words of `xe` and reads (when `c0 > 0`)
            // and writes `4 · blocks ≤ acc.len()` words of `acc` (word-aligned `i32`s);
            // `groups ≥ 1`, `blocks ≥ 1`; mode 0 / 1 never reads the null bias and pairs. It
            // preserves the callee-saved registers (AAPCS).
            unsafe {
                kinglet_dsp_mv4x4(
                    m.as_ptr().add(c0),
                    k,
                    xe.as_ptr(),
                    acc.as_mut_ptr(),
                    groups,
                    blocks,
                    usize::from(c0 > 0),
                    core::ptr::null(),
                    core::ptr::null(),
                )
            };
        }
        for (j, a) in acc.iter_mut().enumerate().skip(4 * blocks) {
            // In bounds (`m.len() ≥ rows · k`, checked above); `get` keeps the device path free
            // of a panic branch the optimiser cannot see through.
            let Some(row) = m.get(j * k + c0..j * k + c0 + cols) else {
                continue;
            };
            *a = row_dot(row, xe, if c0 > 0 { *a } else { 0 });
        }
        c0 += cols;
    }
    if k4 == 0 {
        acc.fill(0);
    }
    // The last `k mod 4` columns, scalar.
    if k4 < k {
        let tail = &v[k4..];
        for (a, row) in acc.iter_mut().zip(m.chunks_exact(k)) {
            *a = a.wrapping_add(dot_i8(&row[k4..], tail));
        }
    }
}

/// `out[j] = rq(bias[j] + Σ_k m[j·K + k] · v[k], pairs[j])` (`fixed::rq`) for `j < out.len()`, the
/// requantization fused into the 4-row kernel's epilogue: the product and its requantization
/// without the accumulators leaving registers. Handles `K ≤ CHUNK` with `K mod 4 = 0` and a
/// multiple of 4 rows; returns `false`, writing nothing, for any other shape (or when `m`,
/// `bias` or `pairs` are shorter than the rows need), so the caller takes the general path.
pub(super) fn dsp_matvec_rq(
    m: &[i8],
    bias: &[zerocopy::little_endian::I32],
    pairs: &[zerocopy::little_endian::I32],
    v: &[i8],
    out: &mut [i32],
) -> bool {
    let (k, rows) = (v.len(), out.len());
    let fits = k > 0
        && k % 4 == 0
        && k <= CHUNK
        && rows > 0
        && rows % 4 == 0
        && m.len() / k >= rows
        && bias.len() >= rows
        && pairs.len() / 2 >= rows;
    if !fits {
        return false;
    }
    let groups = k / 4;
    let mut buf = MaybeUninit::<[u32; CHUNK / 2]>::uninit();
    // SAFETY: `kinglet_dsp_expand` reads the `k = 4 · groups` bytes of `v` and writes
    // `2 · groups ≤ CHUNK / 2` words of `buf` (word-aligned), `groups ≥ 1`. The kernel then
    // reads rows `0..rows` of `k` bytes of `m` (`m.len() ≥ rows · k`), those `2 · groups` words,
    // `rows` words of `bias` and `2 · rows` of `pairs` (unaligned word loads, allowed on
    // Armv7E-M / Armv8-M.main; `I32` is a little-endian `i32`, as the core reads it), and writes
    // the `rows` words of `out` (word-aligned `i32`s); `rows / 4 ≥ 1`. It preserves the
    // callee-saved registers (AAPCS).
    let flag = unsafe {
        let xe = buf.as_mut_ptr().cast::<u32>();
        kinglet_dsp_expand(v.as_ptr(), xe, groups);
        kinglet_dsp_mv4x4(
            m.as_ptr(),
            k,
            xe,
            out.as_mut_ptr(),
            groups,
            rows / 4,
            2,
            bias.as_ptr().cast::<i32>(),
            pairs.as_ptr().cast::<i32>(),
        )
    };
    if flag != 0 {
        // Rows whose shift the 32-bit paths do not cover hold `bias + sum`: requantize them.
        for (o, p) in out.iter_mut().zip(pairs.chunks_exact(2)) {
            let shift = p[1].get();
            if !(1..=31).contains(&shift) {
                *o = rq(*o, p[0].get(), shift);
            }
        }
    }
    true
}
