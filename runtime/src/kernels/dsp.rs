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
//! The recurrent ops have sequence kernels of their own (`dsp_lstm`, `dsp_gru`, reached through
//! `matvec::lstm_seq_simd` / `gru_seq_simd`): `kinglet_dsp_mv2x2` runs the input products of two
//! LSTM steps in one pass over `W` (they do not depend on `h`; each weight word is loaded and
//! extended once for both: 15 instructions per 16 MACs), `kinglet_dsp_gates` /
//! `kinglet_dsp_gru_gates` run the recurrent product with the gate sums in the epilogue and
//! store a unit's gates side by side as int16, and the cells read them two per word, each table
//! lookup one word load and one `smlad` (`lut16_at`). On `mnist_lstm` (M4): the LSTM op from
//! 338,209 to 247,532 instructions (firmware/README.md, "Cortex-M4 figures").
//!
//! The unit16 LSTM layout (`format::OP_FLAG_UNIT16`, int16 weights interleaved by column
//! pair, unit-major rows) has its own kernel, `kinglet_dsp_lstm16_gates` ([`dsp_lstm16`]): per
//! unit, both products over its four gate rows in one pass each (`ldrd` + two `ldm` + eight
//! `smlad` per 16 MACs, entered at a computed offset into an unrolled sequence), the
//! requantizations from per-run tables (`smmla` + `asr`) and the gate sums in registers. On
//! `mnist_lstm_unit16` (M4): 166,671 instructions for the LSTM op, against 244,111 for the
//! int8 layout's kernels above (firmware/README.md).
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
use zerocopy::little_endian::{I16, I32};

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

/// One group of the 4-row loop (`kinglet_dsp_mv4x4` and the gate kernels): four columns of
/// rows 0-3 (r0, r12, [r0, k, lsl #1], [r12, k, lsl #1]) against the expanded vector pair at r2
/// (post-incremented by 8) into r4-r7; r8-r11 scratch. 21 instructions per 16 MACs.
macro_rules! mv4_group {
    () => {
        concat!(
            "ldrd r8, r9, [r2], #8\n",
            "ldr.w r10, [r12, r1, lsl #1]\n",
            "sxtb16 r11, r10\n",
            "smlad r7, r11, r8, r7\n",
            "sxtb16 r10, r10, ror #8\n",
            "smlad r7, r10, r9, r7\n",
            "ldr.w r10, [r12], #4\n",
            "sxtb16 r11, r10\n",
            "smlad r5, r11, r8, r5\n",
            "sxtb16 r10, r10, ror #8\n",
            "smlad r5, r10, r9, r5\n",
            "ldr.w r10, [r0, r1, lsl #1]\n",
            "sxtb16 r11, r10\n",
            "smlad r6, r11, r8, r6\n",
            "sxtb16 r10, r10, ror #8\n",
            "smlad r6, r10, r9, r6\n",
            "ldr.w r10, [r0], #4\n",
            "sxtb16 r11, r10\n",
            "smlad r4, r11, r8, r4\n",
            "sxtb16 r10, r10, ror #8\n",
            "smlad r4, r10, r9, r4\n",
        )
    };
}

/// The gate kernels' requantization of one sum register `$r` (`fixed::rq`'s 32-bit path): the
/// row's pair from r8 (post-incremented), `((smmul(r, mult) >> (shift − 2)) + 1) >> 1`, or out
/// of line at label `7$i` (`smmulr`, shift 1), which returns to label `8$i`; r11 and lr scratch.
macro_rules! gate_rq {
    ($r:literal, $i:literal) => {
        concat!(
            "ldr r11, [r8], #4\n",
            "ldr lr, [r8], #4\n",
            "subs.w lr, lr, #2\n",
            "bmi 7",
            $i,
            "f\n",
            "smmul ",
            $r,
            ", ",
            $r,
            ", r11\n",
            "asr.w ",
            $r,
            ", ",
            $r,
            ", lr\n",
            "adds ",
            $r,
            ", ",
            $r,
            ", #1\n",
            "asrs ",
            $r,
            ", ",
            $r,
            ", #1\n",
            "8",
            $i,
            ":\n",
        )
    };
}

/// The gate kernels' frame set-up and product loop (`kinglet_dsp_gates`,
/// `kinglet_dsp_gru_gates`, frame described there), for `$gates` gates: everything up to the
/// epilogue that requantizes and stores a block of four rows.
macro_rules! gates_head {
    ($gates:literal) => {
        concat!(
            "push {{r4, r5, r6, r7, r8, r9, r10, r11, lr}}\n",
            "sub sp, sp, #40\n",
            "str r2, [sp]\n",
            "ldr r4, [sp, #76]\n",
            "str r4, [sp, #4]\n",
            "str r4, [sp, #32]\n",
            "ldrd r5, r6, [sp, #80]\n",
            "strd r5, r6, [sp, #8]\n",
            "ldrd r5, r6, [sp, #88]\n",
            "strd r5, r6, [sp, #16]\n",
            "str r6, [sp, #24]\n",
            "movs r5, #",
            $gates,
            "\n",
            "str r5, [sp, #28]\n",
            "add.w r3, r2, r3, lsl #3\n",
            "1:\n",
            "ldr r2, [sp]\n",
            "ldr r8, [sp, #8]\n",
            "ldr r4, [r8], #4\n",
            "ldr r5, [r8], #4\n",
            "ldr r6, [r8], #4\n",
            "ldr r7, [r8], #4\n",
            "str r8, [sp, #8]\n",
            "add.w r12, r0, r1\n",
            "sub.w r8, r3, r2\n",
            "tst.w r8, #8\n",
            "bne 4f\n",
            "5:\n",
            mv4_group!(),
            "4:\n",
            mv4_group!(),
            "cmp r2, r3\n",
            "bne 5b\n",
        )
    };
}

/// The gate kernels' block and gate bookkeeping after a block's epilogue, and the return.
macro_rules! gates_tail {
    () => {
        concat!(
            "strd r8, r9, [sp, #12]\n",
            "str r10, [sp, #20]\n",
            "add.w r0, r0, r1, lsl #1\n",
            "add r0, r0, r1\n",
            "ldr r8, [sp, #4]\n",
            "subs r8, r8, #1\n",
            "str r8, [sp, #4]\n",
            "bne 1b\n",
            "ldr r8, [sp, #24]\n",
            "adds r8, r8, #2\n",
            "str r8, [sp, #24]\n",
            "str r8, [sp, #20]\n",
            "ldr r8, [sp, #32]\n",
            "str r8, [sp, #4]\n",
            "ldr r8, [sp, #28]\n",
            "subs r8, r8, #1\n",
            "str r8, [sp, #28]\n",
            "bne 1b\n",
            "add sp, sp, #40\n",
            "pop {{r4, r5, r6, r7, r8, r9, r10, r11, pc}}\n",
        )
    };
}

/// The out-of-line `smmulr` path of `gate_rq!($r, $i)` (shift 1), back to its label `8$i`.
macro_rules! gate_rq_shift1 {
    ($r:literal, $i:literal) => {
        concat!("7", $i, ":\n", "smmulr ", $r, ", ", $r, ", r11\n", "b 8", $i, "b\n")
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
    mv4_group!(),
    "4:",
    mv4_group!(),
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

// kinglet_dsp_mv2x2(w: r0, k: r1, xe: r2, groups: r3, out_a: [sp], out_b: [sp + 4],
// blocks: [sp + 8], bias: [sp + 12], pairs: [sp + 16]) -> r0: one pass over the matrix for two
// vectors `a` and `b` (two time steps' inputs). For each of `blocks` blocks of 2 rows (row j at
// w + j·k, k = 4 · groups), with `a` and `b` expanded at xe (4 words per group: a02, a13, b02,
// b13, word-aligned):
//   out_a[j] = rq(bias[j] + Σ w[j, ·] · a, pairs[j]),  out_b[j] likewise with b,
// by the 32-bit path of `fixed::rq` when 2 ≤ shift ≤ 31; for any other shift the row's two
// outputs are left as bias[j] + sum and r0 = 1 (the caller requantizes those rows). Each weight
// word is loaded and sign-extended once for both vectors: 15 instructions per 16 MACs in the loop
// (`ldm` of the 4 vector words, per row `ldr` + 2 `sxtb16` + 4 `smlad`).
// Registers: r0 row 0 (post-incremented; row 1 at [r0, k]), r1 k, r2 xp, r3 end of xe, r4 / r5
// row 0's sums for a / b, r6 / r7 row 1's, r8-r11 the vector words, r12 the weight word, lr its
// extraction; [sp] xe, [sp, #4] out_a, [sp, #8] out_b, [sp, #12] blocks left, [sp, #16] bias,
// [sp, #20] pairs, [sp, #24] the return flag. The sums start at the row's bias.
global_asm!(
    cpu!(),
    ".section .text.kinglet_dsp_mv2x2,\"ax\",%progbits",
    ".globl kinglet_dsp_mv2x2",
    ".hidden kinglet_dsp_mv2x2",
    ".p2align 2",
    ".type kinglet_dsp_mv2x2,%function",
    ".thumb_func",
    "kinglet_dsp_mv2x2:",
    "push {{r4, r5, r6, r7, r8, r9, r10, r11, lr}}",
    "sub sp, sp, #32",
    "ldrd r4, r5, [sp, #68]",
    "ldrd r6, r7, [sp, #76]",
    "ldr r8, [sp, #84]",
    "str r2, [sp]",
    "strd r4, r5, [sp, #4]",
    "strd r6, r7, [sp, #12]",
    "movs r9, #0",
    "strd r8, r9, [sp, #20]",
    "add.w r3, r2, r3, lsl #4",
    "1:",
    "ldr r2, [sp]",
    "ldr r8, [sp, #16]",
    "ldr r4, [r8], #4",
    "ldr r6, [r8], #4",
    "str r8, [sp, #16]",
    "mov r5, r4",
    "mov r7, r6",
    "sub.w r8, r3, r2",
    "tst.w r8, #16",
    "bne 4f",
    "5:",
    "ldm r2!, {{r8, r9, r10, r11}}",
    "ldr.w r12, [r0, r1]",
    "sxtb16 lr, r12",
    "smlad r6, lr, r8, r6",
    "smlad r7, lr, r10, r7",
    "sxtb16 r12, r12, ror #8",
    "smlad r6, r12, r9, r6",
    "smlad r7, r12, r11, r7",
    "ldr.w r12, [r0], #4",
    "sxtb16 lr, r12",
    "smlad r4, lr, r8, r4",
    "smlad r5, lr, r10, r5",
    "sxtb16 r12, r12, ror #8",
    "smlad r4, r12, r9, r4",
    "smlad r5, r12, r11, r5",
    "4:",
    "ldm r2!, {{r8, r9, r10, r11}}",
    "ldr.w r12, [r0, r1]",
    "sxtb16 lr, r12",
    "smlad r6, lr, r8, r6",
    "smlad r7, lr, r10, r7",
    "sxtb16 r12, r12, ror #8",
    "smlad r6, r12, r9, r6",
    "smlad r7, r12, r11, r7",
    "ldr.w r12, [r0], #4",
    "sxtb16 lr, r12",
    "smlad r4, lr, r8, r4",
    "smlad r5, lr, r10, r5",
    "sxtb16 r12, r12, ror #8",
    "smlad r4, r12, r9, r4",
    "smlad r5, r12, r11, r5",
    "cmp r2, r3",
    "bne 5b",
    "add r0, r0, r1",
    "ldr r8, [sp, #20]",
    "ldr r9, [r8], #4",
    "ldr r10, [r8], #4",
    "subs r10, r10, #2",
    "cmp r10, #29",
    "bhi 71f",
    "smmul r4, r4, r9",
    "asr.w r4, r4, r10",
    "adds r4, r4, #1",
    "asrs r4, r4, #1",
    "smmul r5, r5, r9",
    "asr.w r5, r5, r10",
    "adds r5, r5, #1",
    "asrs r5, r5, #1",
    "81:",
    "ldr r9, [r8], #4",
    "ldr r10, [r8], #4",
    "subs r10, r10, #2",
    "cmp r10, #29",
    "bhi 72f",
    "smmul r6, r6, r9",
    "asr.w r6, r6, r10",
    "adds r6, r6, #1",
    "asrs r6, r6, #1",
    "smmul r7, r7, r9",
    "asr.w r7, r7, r10",
    "adds r7, r7, #1",
    "asrs r7, r7, #1",
    "82:",
    "str r8, [sp, #20]",
    "ldrd r8, r9, [sp, #4]",
    "strd r4, r6, [r8], #8",
    "strd r5, r7, [r9], #8",
    "strd r8, r9, [sp, #4]",
    "ldr r8, [sp, #12]",
    "subs r8, r8, #1",
    "str r8, [sp, #12]",
    "bne 1b",
    "ldr r0, [sp, #24]",
    "add sp, sp, #32",
    "pop {{r4, r5, r6, r7, r8, r9, r10, r11, pc}}",
    // Out of line: a shift outside [2, 31] leaves bias + sum for the caller.
    "71:",
    "movs r9, #1",
    "str r9, [sp, #24]",
    "b 81b",
    "72:",
    "movs r9, #1",
    "str r9, [sp, #24]",
    "b 82b",
    ".size kinglet_dsp_mv2x2, . - kinglet_dsp_mv2x2",
    ".text",
);

// kinglet_dsp_gates(r: r0, k: r1, xe: r2, groups: r3, blocks: [sp], bias: [sp + 4],
// pairs: [sp + 8], ax: [sp + 12], g: [sp + 16]): an LSTM step's recurrent product and gate sums.
// The matrix has 4 gates of `4 · blocks` rows (row j at r + j·k, k = 4 · groups), `h` is
// expanded at xe as for `kinglet_dsp_mv4x4`; for row j = gate · H + u (H = 4 · blocks):
//   g[4u + gate] = sat16(ax[j] + rq(bias[j] + Σ r[j, ·] · h, pairs[j]))
// with `rq` by the 32-bit paths of `fixed::rq` (`smmul` and shifts for 2 ≤ shift ≤ 31, out of
// line `smmulr` for shift = 1): every shift must be in [1, 31] (the caller checks). The gates of one unit land side by side (int16, unit-interleaved), so the cell loads
// them with one `ldrd`. The loop is `kinglet_dsp_mv4x4`'s; the sums start at the bias.
// Registers: r0 row 0 (post-incremented), r12 row 1, rows 2 and 3 at [r0, k, lsl #1] and
// [r12, k, lsl #1]; r1 k; r2 xp; r3 end of xe; r4-r7 the sums; r8, r9 the vector pair; r10,
// r11 the weight word; in the epilogue r8 pairs, r9 ax, r10 g, r11 / lr operands. Frame: [sp]
// xe, [sp, #4] blocks left in this gate, [sp, #8] bias, [sp, #12] pairs, [sp, #16] ax, [sp, #20]
// g, [sp, #24] this gate's first g, [sp, #28] gates left, [sp, #32] blocks per gate.
global_asm!(
    cpu!(),
    ".section .text.kinglet_dsp_gates,\"ax\",%progbits",
    ".globl kinglet_dsp_gates",
    ".hidden kinglet_dsp_gates",
    ".p2align 2",
    ".type kinglet_dsp_gates,%function",
    ".thumb_func",
    "kinglet_dsp_gates:",
    gates_head!("4"),
    "ldrd r8, r9, [sp, #12]",
    "ldr r10, [sp, #20]",
    gate_rq!("r4", "0"),
    "ldr r11, [r9], #4",
    "qadd r4, r4, r11",
    "ssat r4, #16, r4",
    "strh r4, [r10], #8",
    gate_rq!("r5", "1"),
    "ldr r11, [r9], #4",
    "qadd r5, r5, r11",
    "ssat r5, #16, r5",
    "strh r5, [r10], #8",
    gate_rq!("r6", "2"),
    "ldr r11, [r9], #4",
    "qadd r6, r6, r11",
    "ssat r6, #16, r6",
    "strh r6, [r10], #8",
    gate_rq!("r7", "3"),
    "ldr r11, [r9], #4",
    "qadd r7, r7, r11",
    "ssat r7, #16, r7",
    "strh r7, [r10], #8",
    gates_tail!(),
    // Out of line: shift 1 (n = 32) is `smmulr`, (v + 2^31) >> 32.
    gate_rq_shift1!("r4", "0"),
    gate_rq_shift1!("r5", "1"),
    gate_rq_shift1!("r6", "2"),
    gate_rq_shift1!("r7", "3"),
    ".size kinglet_dsp_gates, . - kinglet_dsp_gates",
    ".text",
);

// kinglet_dsp_gru_gates(r: r0, k: r1, xe: r2, groups: r3, blocks: [sp], bias: [sp + 4],
// pairs: [sp + 8], ax: [sp + 12], g: [sp + 16]): a GRU step's recurrent product and gate
// inputs, `kinglet_dsp_gates` for 3 gates (`z`, `r`, `n`) with the GRU's epilogue. For row
// j = gate · H + u (H = 4 · blocks), with gh[j] = sat16(rq(bias[j] + Σ r[j, ·] · h, pairs[j]))
// and gx[j] = sat16(ax[j]) (`ax` the int32 input products):
//   g[4u] = sat16(gx[u] + gh[u]),  g[4u + 1] = sat16(gx[H + u] + gh[H + u]),
//   g[4u + 2] = gh[2H + u],         g[4u + 3] = gx[2H + u]
// (int16, unit-interleaved). Shifts as for `kinglet_dsp_gates` (all in [1, 31]). Frame as
// there; [sp, #28] counts the gates left, 1 for `n`.
global_asm!(
    cpu!(),
    ".section .text.kinglet_dsp_gru_gates,\"ax\",%progbits",
    ".globl kinglet_dsp_gru_gates",
    ".hidden kinglet_dsp_gru_gates",
    ".p2align 2",
    ".type kinglet_dsp_gru_gates,%function",
    ".thumb_func",
    "kinglet_dsp_gru_gates:",
    gates_head!("3"),
    "ldrd r8, r9, [sp, #12]",
    "ldr r10, [sp, #20]",
    "ldr r12, [sp, #28]",
    "cmp r12, #1",
    "beq 6f",
    gate_rq!("r4", "0"),
    "ssat r4, #16, r4",
    "ldr r11, [r9], #4",
    "ssat r11, #16, r11",
    "add r4, r4, r11",
    "ssat r4, #16, r4",
    "strh r4, [r10], #8",
    gate_rq!("r5", "1"),
    "ssat r5, #16, r5",
    "ldr r11, [r9], #4",
    "ssat r11, #16, r11",
    "add r5, r5, r11",
    "ssat r5, #16, r5",
    "strh r5, [r10], #8",
    gate_rq!("r6", "2"),
    "ssat r6, #16, r6",
    "ldr r11, [r9], #4",
    "ssat r11, #16, r11",
    "add r6, r6, r11",
    "ssat r6, #16, r6",
    "strh r6, [r10], #8",
    gate_rq!("r7", "3"),
    "ssat r7, #16, r7",
    "ldr r11, [r9], #4",
    "ssat r11, #16, r11",
    "add r7, r7, r11",
    "ssat r7, #16, r7",
    "strh r7, [r10], #8",
    "b 9f",
    "6:",
    gate_rq!("r4", "4"),
    "ssat r4, #16, r4",
    "strh r4, [r10]",
    "ldr r11, [r9], #4",
    "ssat r11, #16, r11",
    "strh r11, [r10, #2]",
    "adds r10, r10, #8",
    gate_rq!("r5", "5"),
    "ssat r5, #16, r5",
    "strh r5, [r10]",
    "ldr r11, [r9], #4",
    "ssat r11, #16, r11",
    "strh r11, [r10, #2]",
    "adds r10, r10, #8",
    gate_rq!("r6", "6"),
    "ssat r6, #16, r6",
    "strh r6, [r10]",
    "ldr r11, [r9], #4",
    "ssat r11, #16, r11",
    "strh r11, [r10, #2]",
    "adds r10, r10, #8",
    gate_rq!("r7", "7"),
    "ssat r7, #16, r7",
    "strh r7, [r10]",
    "ldr r11, [r9], #4",
    "ssat r11, #16, r11",
    "strh r11, [r10, #2]",
    "adds r10, r10, #8",
    "9:",
    gates_tail!(),
    // Out of line: shift 1 (n = 32) is `smmulr`, (v + 2^31) >> 32.
    gate_rq_shift1!("r4", "0"),
    gate_rq_shift1!("r5", "1"),
    gate_rq_shift1!("r6", "2"),
    gate_rq_shift1!("r7", "3"),
    gate_rq_shift1!("r4", "4"),
    gate_rq_shift1!("r5", "5"),
    gate_rq_shift1!("r6", "6"),
    gate_rq_shift1!("r7", "7"),
    ".size kinglet_dsp_gru_gates, . - kinglet_dsp_gru_gates",
    ".text",
);

// kinglet_dsp_expand2(a: r0, b: r1, xe: r2, groups: r3): for each group of 4 int8 of `a` and of
// `b`, the words sxtb16(a), sxtb16(a, ror #8), sxtb16(b), sxtb16(b, ror #8) at xe
// (word-aligned). groups ≥ 1.
global_asm!(
    cpu!(),
    ".section .text.kinglet_dsp_expand2,\"ax\",%progbits",
    ".globl kinglet_dsp_expand2",
    ".hidden kinglet_dsp_expand2",
    ".p2align 2",
    ".type kinglet_dsp_expand2,%function",
    ".thumb_func",
    "kinglet_dsp_expand2:",
    "push {{r4, r5, r6, r7}}",
    "1:",
    "ldr r6, [r0], #4",
    "ldr r7, [r1], #4",
    "sxtb16 r4, r6",
    "sxtb16 r5, r6, ror #8",
    "sxtb16 r6, r7",
    "sxtb16 r7, r7, ror #8",
    "stmia r2!, {{r4, r5, r6, r7}}",
    "subs r3, r3, #1",
    "bne 1b",
    "pop {{r4, r5, r6, r7}}",
    "bx lr",
    ".size kinglet_dsp_expand2, . - kinglet_dsp_expand2",
    ".text",
);

/// One group of four columns of the unit16 product (`kinglet_dsp_u16_seq`): the expanded
/// vector pair from r1 (post-incremented by 8), the unit's four gate words of each column pair
/// from r0 (`ldm`, post-incremented), into the sums r4-r7; r2 and r10-r12 the weight words.
/// 11 instructions per 16 MACs, all 32-bit encodings: 44 bytes, which the computed entry into
/// the unrolled sequence relies on.
macro_rules! u16_group {
    () => {
        concat!(
            "ldrd r8, r9, [r1], #8\n",
            "ldm.w r0!, {{r2, r10, r11, r12}}\n",
            "smlad r4, r2, r8, r4\n",
            "smlad r5, r10, r8, r5\n",
            "smlad r6, r11, r8, r6\n",
            "smlad r7, r12, r8, r7\n",
            "ldm.w r0!, {{r2, r10, r11, r12}}\n",
            "smlad r4, r2, r9, r4\n",
            "smlad r5, r10, r9, r5\n",
            "smlad r6, r11, r9, r6\n",
            "smlad r7, r12, r9, r7\n",
        )
    };
}

/// Eight [`u16_group`]s.
macro_rules! u16_group8 {
    () => {
        concat!(
            u16_group!(),
            u16_group!(),
            u16_group!(),
            u16_group!(),
            u16_group!(),
            u16_group!(),
            u16_group!(),
            u16_group!(),
        )
    };
}

/// `fixed::rq` of the sum `$r` from its row's table entry at r8 (`(mult, round, n)`, `ldm`,
/// post-incremented, into r0-r2): `smmla(r, mult, round) >> n`, which for `round = 2^(shift-2)`,
/// `n = shift - 1` is exactly `rq`'s `(acc · mult + 2^(30+shift)) >> (31+shift)` (shift in
/// [2, 31]); `n = 0` marks shift 1, out of line at label `7$i` (`smmlar` with `round = 0`, the
/// rounded high word), which returns to label `8$i`. 4 instructions.
macro_rules! u16_rq {
    ($r:literal, $i:literal) => {
        concat!(
            "ldm r8!, {{r0, r1, r2}}\n",
            "cbz r2, 7",
            $i,
            "f\n",
            "smmla ",
            $r,
            ", ",
            $r,
            ", r0, r1\n",
            "asr.w ",
            $r,
            ", ",
            $r,
            ", r2\n",
            "8",
            $i,
            ":\n",
        )
    };
}

/// The shift-1 path of `u16_rq!($r, $i)`.
macro_rules! u16_rq_shift1 {
    ($r:literal, $i:literal) => {
        concat!(
            "7",
            $i,
            ":\n",
            "smmlar ",
            $r,
            ", ",
            $r,
            ", r0, r1\n",
            "b 8",
            $i,
            "b\n"
        )
    };
}

/// One product part of `kinglet_dsp_lstm16_gates` for the current unit: `$load` puts the
/// part's matrix, expanded vector and bias pointers in r0-r2 (frame words `$mat`, +4, `$bias`),
/// the four sums start at the biases, the product runs through the sequence entry at frame word
/// `$entry`, and the sums are requantized from the table at frame word `$tab` (rows `$i0`-`$i3`'s
/// labels); every pointer used is advanced in the frame. Ends at label `$skip`, past the
/// out-of-line shift-1 paths.
macro_rules! u16_part {
    ($load:literal, $mat:literal, $bias:literal, $tab:literal, $entry:literal,
     $i0:literal, $i1:literal, $i2:literal, $i3:literal, $skip:literal) => {
        concat!(
            $load,
            "ldm r2!, {{r4, r5, r6, r7}}\n",
            "str r2, [r3, #",
            $bias,
            "]\n",
            "ldr r8, [r3, #",
            $entry,
            "]\n",
            "blx r8\n",
            "str r0, [r3, #",
            $mat,
            "]\n",
            "ldr r8, [r3, #",
            $tab,
            "]\n",
            u16_rq!("r4", $i0),
            u16_rq!("r5", $i1),
            u16_rq!("r6", $i2),
            u16_rq!("r7", $i3),
            "str r8, [r3, #",
            $tab,
            "]\n",
            "b ",
            $skip,
            "f\n",
            u16_rq_shift1!("r4", $i0),
            u16_rq_shift1!("r5", $i1),
            u16_rq_shift1!("r6", $i2),
            u16_rq_shift1!("r7", $i3),
            $skip,
            ":\n",
        )
    };
}

// kinglet_dsp_lstm16_gates(f: r0 = *mut Lstm16Frame): one LSTM step's gates from unit16
// operands. For each unit u (the frame's running pointers advance unit by unit until g reaches
// g_end), for its four gate rows s = 4u + gate (words of `r` / `w` as `format::unit16_index`
// lays them out):
//   ah[gate] = rq(bias_h[s] + Σ r[s, ·] · h, rq_h[s]),  ax[gate] = rq(bias_x[s] + Σ w[s, ·] · x, rq_x[s])
//   g[2u] = sat16(ax[0] + ah[0]) | sat16(ax[1] + ah[1]) << 16   (i, o)
//   g[2u + 1] = sat16(ax[2] + ah[2]) | sat16(ax[3] + ah[3]) << 16   (f, z)
// `rq` from the tables `tab_h` / `tab_x` (three words a row, `u16_rq`). Each product is a
// `blx` into the unrolled `kinglet_dsp_u16_seq` at the entry for its group count: no loop
// counter, no loop branch.
// Frame words: 0 r, 1 he, 2 bias_h, 3 tab_h, 4 w, 5 xe, 6 bias_x, 7 tab_x, 8 g, 9 g_end,
// 10 / 11 the group counts of h / x (1 to 32; replaced by the sequence entries on entry),
// 12-15 the spilled ah. All word-aligned; at least one unit.
// Registers: r0 the matrix, r1 the expanded vector, r3 the frame, r4-r7 the four sums, r8 / r9
// the vector pair, r2 and r10-r12 the weight words, lr the sequence's return; in the epilogues
// r8 the table or the output, r0-r2 a table entry, r9-r11 operands.
global_asm!(
    cpu!(),
    ".section .text.kinglet_dsp_lstm16_gates,\"ax\",%progbits",
    ".globl kinglet_dsp_lstm16_gates",
    ".hidden kinglet_dsp_lstm16_gates",
    ".p2align 2",
    ".type kinglet_dsp_lstm16_gates,%function",
    ".thumb_func",
    "kinglet_dsp_lstm16_gates:",
    "push {{r4, r5, r6, r7, r8, r9, r10, r11, lr}}",
    "mov r3, r0",
    // entry = end of the sequence − 44 · groups, with the Thumb bit.
    "adr.w r8, 20f",
    "ldrd r9, r10, [r3, #40]",
    "movs r11, #44",
    "mls r9, r9, r11, r8",
    "orr r9, r9, #1",
    "mls r10, r10, r11, r8",
    "orr r10, r10, #1",
    "strd r9, r10, [r3, #40]",
    "1:",
    // Recurrent part, its requantized sums spilled to frame words 12-15; then the input part.
    u16_part!(
        "ldm r3, {{r0, r1, r2}}\n",
        "0",
        "8",
        "12",
        "40",
        "0",
        "1",
        "2",
        "3",
        "2"
    ),
    "add.w r8, r3, #48",
    "stm r8, {{r4, r5, r6, r7}}",
    u16_part!(
        "add.w r8, r3, #16\nldm r8, {{r0, r1, r2}}\n",
        "16",
        "24",
        "28",
        "44",
        "4",
        "5",
        "6",
        "7",
        "3"
    ),
    // The gate sums, two int16 to a word.
    "add.w r12, r3, #48",
    "ldm r12, {{r8, r9, r10, r11}}",
    "qadd r4, r4, r8",
    "ssat r4, #16, r4",
    "qadd r5, r5, r9",
    "ssat r5, #16, r5",
    "qadd r6, r6, r10",
    "ssat r6, #16, r6",
    "qadd r7, r7, r11",
    "ssat r7, #16, r7",
    "pkhbt r4, r4, r5, lsl #16",
    "pkhbt r6, r6, r7, lsl #16",
    "ldrd r8, r9, [r3, #32]",
    "strd r4, r6, [r8], #8",
    "str r8, [r3, #32]",
    "cmp r8, r9",
    "bne 1b",
    "pop {{r4, r5, r6, r7, r8, r9, r10, r11, pc}}",
    // kinglet_dsp_u16_seq: 32 groups (K ≤ 128), entered 44 · groups bytes before its end
    // (every instruction of a group has a 32-bit encoding; the assembler cannot evaluate the
    // label difference here to assert it: an entry off by any other group size would land
    // inside an instruction, which `self_test_lstm16`'s shapes, 1 to 5 groups, would show).
    ".p2align 2",
    "10:",
    u16_group8!(),
    u16_group8!(),
    u16_group8!(),
    u16_group8!(),
    "20:",
    "bx lr",
    ".size kinglet_dsp_lstm16_gates, . - kinglet_dsp_lstm16_gates",
    ".text",
);

/// The frame `kinglet_dsp_lstm16_gates` reads and advances (its comment gives the layout).
#[repr(C)]
struct Lstm16Frame {
    r: *const I16,
    he: *const u32,
    bias_h: *const I32,
    tab_h: *const i32,
    w: *const I16,
    xe: *const u32,
    bias_x: *const I32,
    tab_x: *const i32,
    g: *mut u32,
    g_end: *mut u32,
    groups_h: usize,
    groups_x: usize,
    ah: [i32; 4],
}

/// Groups of four columns the unrolled `kinglet_dsp_u16_seq` holds: rows of at most 128.
const U16_SEQ_GROUPS: usize = 32;

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
    fn kinglet_dsp_mv2x2(
        w: *const i8,
        k: usize,
        xe: *const u32,
        groups: usize,
        out_a: *mut i32,
        out_b: *mut i32,
        blocks: usize,
        bias: *const i32,
        pairs: *const i32,
    ) -> usize;
    fn kinglet_dsp_expand2(a: *const i8, b: *const i8, xe: *mut u32, groups: usize);
    fn kinglet_dsp_gru_gates(
        r: *const i8,
        k: usize,
        xe: *const u32,
        groups: usize,
        blocks: usize,
        bias: *const i32,
        pairs: *const i32,
        ax: *const i32,
        g: *mut i16,
    );
    fn kinglet_dsp_lstm16_gates(f: *mut Lstm16Frame);
    fn kinglet_dsp_gates(
        r: *const i8,
        k: usize,
        xe: *const u32,
        groups: usize,
        blocks: usize,
        bias: *const i32,
        pairs: *const i32,
        ax: *const i32,
        g: *mut i16,
    );
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

/// `Σ row[c] · x[c]` for the groups of four columns `row` and `xe` share, `xe` holding `x` as
/// the pairs `[x0, x2]`, `[x1, x3]` per group (`smlad` against `sxtb16` of four bytes): the
/// attention's score products.
pub(crate) fn pairs_dot(row: &[i8], xe: &[u32]) -> i32 {
    row_dot(row, xe, 0)
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

/// `out_a[j] = rq(bias[j] + Σ_k m[j·K + k] · a[k], pairs[j])` and `out_b[j]` likewise with `b`,
/// for `j < out_a.len()`, in one pass over `m` (`kinglet_dsp_mv2x2`: each weight word is
/// extended once for both vectors). Handles `K ≤ CHUNK / 2` with `K mod 4 = 0` and an even number
/// of rows; returns `false`, writing nothing, for any other shape (or short operands). The same
/// bits as two [`dsp_matvec_rq`] calls.
#[allow(clippy::too_many_arguments)]
pub(super) fn dsp_matvec2_rq(
    m: &[i8],
    bias: &[zerocopy::little_endian::I32],
    pairs: &[zerocopy::little_endian::I32],
    a: &[i8],
    b: &[i8],
    out_a: &mut [i32],
    out_b: &mut [i32],
) -> bool {
    let (k, rows) = (a.len(), out_a.len());
    let fits = k > 0
        && k % 4 == 0
        && k <= CHUNK / 2
        && b.len() == k
        && out_b.len() == rows
        && rows > 0
        && rows % 2 == 0
        && m.len() / k >= rows
        && bias.len() >= rows
        && pairs.len() / 2 >= rows;
    if !fits {
        return false;
    }
    let groups = k / 4;
    let mut buf = MaybeUninit::<[u32; CHUNK / 2]>::uninit();
    // SAFETY: `kinglet_dsp_expand2` reads the `k = 4 · groups` bytes of `a` and of `b` and writes
    // `4 · groups ≤ CHUNK / 2` words of `buf` (word-aligned), `groups ≥ 1`. The kernel then reads
    // rows `0..rows` of `k` bytes of `m` (`m.len() ≥ rows · k`), those `4 · groups` words,
    // `rows` words of `bias` and `2 · rows` of `pairs` (single-word loads, any alignment: allowed
    // on Armv7E-M / Armv8-M.main; `I32` is a little-endian `i32`, as the core reads it), and
    // writes the `rows` words of `out_a` and of `out_b` (word-aligned `i32`s, `strd`);
    // `rows / 2 ≥ 1`. It preserves the callee-saved registers (AAPCS).
    let flag = unsafe {
        let xe = buf.as_mut_ptr().cast::<u32>();
        kinglet_dsp_expand2(a.as_ptr(), b.as_ptr(), xe, groups);
        kinglet_dsp_mv2x2(
            m.as_ptr(),
            k,
            xe,
            groups,
            out_a.as_mut_ptr(),
            out_b.as_mut_ptr(),
            rows / 2,
            bias.as_ptr().cast::<i32>(),
            pairs.as_ptr().cast::<i32>(),
        )
    };
    if flag != 0 {
        // Rows whose shift the 32-bit path does not cover hold `bias + sum`: requantize them.
        for ((oa, ob), p) in out_a
            .iter_mut()
            .zip(out_b.iter_mut())
            .zip(pairs.chunks_exact(2))
        {
            let shift = p[1].get();
            if !(2..=31).contains(&shift) {
                *oa = rq(*oa, p[0].get(), shift);
                *ob = rq(*ob, p[0].get(), shift);
            }
        }
    }
    true
}

const _: () = assert!(crate::format::ACT_TABLE_LEN == 513);

/// [`lut16_at`] on the two int16 values packed in `w` (low and high halfword), both read with
/// bit-field extracts (`sbfx` / `asr` for `x >> 7`, `ubfx` / `and` for `x & 127`) instead of
/// halfword loads and sign extensions. `mid` is [`Mid`] of the table.
#[inline(always)]
fn lut16_lo(mid: Mid<'_>, w: u32) -> i32 {
    lut16_at(mid, ((w << 16) as i32) >> 23, w & 127)
}

/// The high halfword of `w`; see [`lut16_lo`].
#[inline(always)]
fn lut16_hi(mid: Mid<'_>, w: u32) -> i32 {
    lut16_at(mid, (w as i32) >> 23, (w >> 16) & 127)
}

/// A 513-entry activation table by its entry 256, so that `x >> 7` (in `[-256, 255]` for every
/// int16 `x`) indexes it directly (`ldr t, [mid, idx, lsl #1]`).
#[derive(Clone, Copy)]
struct Mid<'t>(
    *const zerocopy::little_endian::I16,
    core::marker::PhantomData<&'t super::reference::ActTable>,
);

impl<'t> Mid<'t> {
    fn of(tab: &'t super::reference::ActTable) -> Mid<'t> {
        Mid(tab.as_ptr().wrapping_add(256), core::marker::PhantomData)
    }
}

/// `fixed::lut16` with one word load and one `smlad`: the halfwords `tab[i]` (low) and
/// `tab[i+1]` (high) against `(128 − f, f)` give `128 · tab[i] + (tab[i+1] − tab[i]) · f`, and
/// `(that + 64) >> 7 = tab[i] + (((tab[i+1] − tab[i]) · f + 64) >> 7)` exactly (`128 · tab[i]`
/// is a multiple of 128). No overflow: `|128 · tab| + 127 · 2^16 < 2^31`. Takes
/// `idx = x >> 7` (clamped to `[-256, 255]`, the range every int16 `x` gives, so
/// the clamp compiles to nothing after a shift) and `f = x & 127`.
#[inline(always)]
fn lut16_at(mid: Mid<'_>, idx: i32, f: u32) -> i32 {
    let idx = idx.clamp(-256, 255) as isize;
    // SAFETY: `mid` points at entry 256 of a 513-entry table borrowed for `Mid`'s lifetime; `-256 ≤ idx ≤ 255`, so halfwords `256 + idx` and `257 + idx`
    // are inside it; `read_unaligned` allows the halfword alignment the table has.
    let w = unsafe { core::ptr::read_unaligned(mid.0.offset(idx).cast::<u32>()) };
    let wt = (f << 16).wrapping_add(128).wrapping_sub(f);
    smlad(w, wt, 64) >> 7
}

/// One LSTM step's gates: int16 `g[4u + gate] = sat16(ax[j] + rq(bias_h[j] + R_j · h, rq_h[j]))` for
/// `j = gate · H + u` (`kinglet_dsp_gates`). Needs `H mod 4 = 0`, `H ≤ CHUNK`, `r` of `4H` rows
/// of `H`, `ax` and `g` of `4H`, and every shift of `rq_h` in `[2, 31]`: [`dsp_lstm`] checks all
/// of it once per op; here only the lengths are checked again (returns `false`, writing
/// nothing).
fn lstm_gates(wt: &super::reference::GateWeights<'_>, h: &[i8], ax: &[i32], g: &mut [u32]) -> bool {
    let nh = h.len();
    let rows = 4 * nh;
    let fits = nh > 0
        && nh % 4 == 0
        && nh <= CHUNK
        && ax.len() == rows
        && 2 * g.len() == rows
        && wt.r.len() / nh >= rows
        && wt.bias_h.len() >= rows
        && wt.rq_h.len() / 2 >= rows;
    if !fits {
        return false;
    }
    let groups = nh / 4;
    let mut buf = MaybeUninit::<[u32; CHUNK / 2]>::uninit();
    // SAFETY: `kinglet_dsp_expand` reads the `nh = 4 · groups` bytes of `h` and writes
    // `2 · groups ≤ CHUNK / 2` words of `buf` (word-aligned), `groups ≥ 1`. `kinglet_dsp_gates`
    // then reads the `4 · nh` rows of `nh` bytes of `r` (`r.len() ≥ 4 · nh · nh`, checked), those
    // words, `4 · nh` words of `bias_h` and of `ax` and `8 · nh` of `rq_h` (single-word loads, any
    // alignment on Armv7E-M / Armv8-M.main), and writes the `4 · nh` halfwords of `g` (halfword
    // stores at `g + 2 · (4u + gate)`, all inside `g`); `groups`, `blocks = nh / 4 ≥ 1`. It
    // preserves the callee-saved registers (AAPCS).
    unsafe {
        let xe = buf.as_mut_ptr().cast::<u32>();
        kinglet_dsp_expand(h.as_ptr(), xe, groups);
        kinglet_dsp_gates(
            wt.r.as_ptr(),
            nh,
            xe,
            groups,
            nh / 4,
            wt.bias_h.as_ptr().cast::<i32>(),
            wt.rq_h.as_ptr().cast::<i32>(),
            ax.as_ptr(),
            g.as_mut_ptr().cast::<i16>(),
        )
    };
    true
}

/// The LSTM op (`reference::lstm::lstm_i8`) on the DSP extension, bit-identical to it, for a
/// cell with `H mod 4 = 0` whose `4H` gate rows fit one stack block (`4H ≤ MATVEC_BLOCK`), whose
/// recurrent requantization shifts are all in `[1, 31]` and whose output requantization's in
/// `[2, 31]` (the 32-bit paths of `fixed::rq`); returns `false`,
/// writing nothing, otherwise. Per step:
///
/// - the input products `ax = rq(bias_x + W·x_t)`: for a pair of steps in one pass over `W`
///   ([`dsp_matvec2_rq`], when `I mod 4 = 0` and `I ≤ CHUNK / 2`), since they do not depend on
///   `h`; otherwise through the fused product;
/// - the recurrent product with the gate sums in its epilogue, written unit-interleaved
///   ([`lstm_gates`]);
/// - the cell, a unit's four gates from one pair of words, the table lookups by [`lut16_at`].
///
/// Never inlined: its stack buffers (`2 · 4H` int32 input products, `4H` int16 gates) then take
/// stack only while an LSTM runs, not in the frame of every op's caller.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(super) fn dsp_lstm(
    p: &super::reference::lstm::LstmParams,
    wt: &super::reference::GateWeights<'_>,
    tabs: &super::reference::ActTables<'_>,
    x: &[i8],
    h: &mut [i8],
    c: &mut [i16],
    y: &mut [i8],
) -> bool {
    use super::reference::fixed::{matvec_rq, MATVEC_BLOCK};
    let (ni, nh, steps) = (p.input, p.hidden, p.steps);
    let g = 4 * nh;
    let ok = ni > 0
        && nh > 0
        && nh % 4 == 0
        && g <= MATVEC_BLOCK
        && (2..=31).contains(&p.hq_shift)
        && wt.fits(4, ni, nh)
        && wt
            .rq_h
            .chunks_exact(2)
            .all(|q| (1..=31).contains(&q[1].get()))
        && Some(x.len()) == steps.checked_mul(ni)
        && Some(y.len()) == steps.checked_mul(nh)
        && h.len() == nh
        && c.len() == nh;
    if !ok {
        return false;
    }
    let ce = p.cell_exp.min(15);
    let two = ni % 4 == 0 && ni <= CHUNK / 2;
    let mut ax = [[0i32; MATVEC_BLOCK]; 2];
    // Two int16 gates per word (`i`, `o` then `f`, `z` of each unit).
    let mut gates = [0u32; MATVEC_BLOCK / 2];
    // Whether `ax[1]` holds this step's input products (computed with the previous step's).
    let mut pending = false;
    let mut it = 0;
    while it < steps {
        let t = super::reference::step_index(it, steps, p.reverse);
        let Some(xt) = x.get(t * ni..(t + 1) * ni) else {
            return true;
        };
        let [ax0, ax1] = &mut ax;
        let (ax0, ax1) = (&mut ax0[..g], &mut ax1[..g]);
        // A step computes its input products together with the next step's when it can; that
        // next step then reads them from `ax1`.
        let cur: &[i32] = if pending {
            pending = false;
            ax1
        } else {
            let next = (it + 1 < steps)
                .then(|| super::reference::step_index(it + 1, steps, p.reverse))
                .and_then(|t1| x.get(t1 * ni..(t1 + 1) * ni));
            let paired = two
                && next
                    .is_some_and(|x1| dsp_matvec2_rq(wt.w, wt.bias_x, wt.rq_x, xt, x1, ax0, ax1));
            if !paired {
                matvec_rq(wt.w, wt.bias_x, wt.rq_x, xt, 0, ax0);
            }
            pending = paired;
            ax0
        };
        let gs = &mut gates[..g / 2];
        let Some(yt) = y.get_mut(t * nh..(t + 1) * nh) else {
            return true;
        };
        if !lstm_gates(wt, h, cur, gs) {
            return true;
        }
        if ce >= 3 {
            lstm_cell::<true>(p, tabs, ce, gs, c, h, yt);
        } else {
            lstm_cell::<false>(p, tabs, ce, gs, c, h, yt);
        }
        it += 1;
    }
    true
}

/// Longest row (`I` or `H`, padded to a multiple of 4) [`dsp_lstm16`] takes: the unrolled
/// product's length; its expanded vectors are `K16_MAX / 2` words each on the stack.
const K16_MAX: usize = 4 * U16_SEQ_GROUPS;

/// Whether `p` is word-aligned (`ldm` / `ldrd` fault on anything else).
fn word_aligned<T>(p: *const T) -> bool {
    (p as usize) % 4 == 0
}

/// The requantization pairs `q` (`[rows, 2]`, shifts in `[1, 31]`) as the unit16 kernel's
/// table (`u16_rq!`): `(mult, 2^(shift-2), shift-1)` for shift ≥ 2, `(mult, 0, 0)` for shift 1.
/// Returns `false` if `tab` is shorter than `3 · rows` or a shift is outside `[1, 31]`.
fn u16_rq_table(q: &[I32], tab: &mut [i32]) -> bool {
    if tab.len() < q.len() / 2 * 3 {
        return false;
    }
    for (p, t) in q.chunks_exact(2).zip(tab.chunks_exact_mut(3)) {
        let (mult, shift) = (p[0].get(), p[1].get());
        let (round, n) = match shift {
            2..=31 => (1i32 << (shift - 2), shift - 1),
            1 => (0, 0),
            _ => return false,
        };
        t[0] = mult;
        t[1] = round;
        t[2] = n;
    }
    true
}

/// The unit16 LSTM op (`reference::lstm16::lstm16_i8`) on the DSP extension, bit-identical to
/// it, for a cell whose `4H` gates fit one stack block (`4H ≤ MATVEC_BLOCK`), padded rows of at
/// most [`K16_MAX`], word-aligned operands (the model file's constants are) and scratch, every
/// gate requantization shift in `[1, 31]` and the output's in `[2, 31]`; returns `false`,
/// writing nothing, otherwise. Once per op, the gate rows' requantization pairs become the
/// kernel's tables in the op's `scratch` (`u16_rq_table`). Per step: `x_t` and `h` expanded
/// once (`kinglet_dsp_expand`, from a zero-padded copy when the length is not a multiple of 4),
/// then `kinglet_dsp_lstm16_gates` (a unit's two products, 11 instructions per 16 MACs, their
/// requantizations in 4 instructions a row and the gate sums while the sums are in registers),
/// then the cell ([`lstm_cell`], as for the int8 layout).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(super) fn dsp_lstm16(
    p: &super::reference::lstm::LstmParams,
    wt: &super::reference::lstm16::Unit16Weights<'_>,
    tabs: &super::reference::ActTables<'_>,
    x: &[i8],
    h: &mut [i8],
    c: &mut [i16],
    y: &mut [i8],
    scratch: &mut [i16],
) -> bool {
    use super::reference::fixed::MATVEC_BLOCK;
    use crate::format::unit16_kp;
    let (ni, nh, steps) = (p.input, p.hidden, p.steps);
    let (kpx, kph) = (unit16_kp(ni), unit16_kp(nh));
    let g = 4 * nh;
    // SAFETY: every bit pattern is a valid `i32`; the middle part is the word-aligned run of
    // `scratch`'s bytes, borrowed mutably for as long as `scratch` is.
    let (pre, words, _) = unsafe { scratch.align_to_mut::<i32>() };
    let ok = ni > 0
        && nh > 0
        && g <= MATVEC_BLOCK
        && kpx <= K16_MAX
        && kph <= K16_MAX
        && pre.is_empty()
        && words.len() >= 6 * g
        && (2..=31).contains(&p.hq_shift)
        && wt.fits(ni, nh)
        && word_aligned(wt.w.as_ptr())
        && word_aligned(wt.r.as_ptr())
        && word_aligned(wt.bias_x.as_ptr())
        && word_aligned(wt.bias_h.as_ptr())
        && Some(x.len()) == steps.checked_mul(ni)
        && Some(y.len()) == steps.checked_mul(nh)
        && h.len() == nh
        && c.len() == nh;
    if !ok {
        return false;
    }
    let Some((tab_h, tab_x)) = words.split_at_mut_checked(3 * g) else {
        return false;
    };
    if !(u16_rq_table(wt.rq_h, tab_h) && u16_rq_table(wt.rq_x, tab_x)) {
        return false;
    }
    let ce = p.cell_exp.min(15);
    // Two int16 gates per word (`i`, `o` then `f`, `z` of each unit).
    let mut gates = [0u32; MATVEC_BLOCK / 2];
    let mut xe = MaybeUninit::<[u32; K16_MAX / 2]>::uninit();
    let mut he = MaybeUninit::<[u32; K16_MAX / 2]>::uninit();
    // Zero-padded copies for a length that is not a multiple of 4 (the padding columns'
    // weights are zero, so any finite padding would do; zero keeps the sums exact).
    let (mut xpad, mut hpad) = ([0i8; K16_MAX], [0i8; K16_MAX]);
    let (xe, he) = (xe.as_mut_ptr().cast::<u32>(), he.as_mut_ptr().cast::<u32>());
    for it in 0..steps {
        let t = super::reference::step_index(it, steps, p.reverse);
        let (Some(xt), Some(yt)) = (x.get(t * ni..(t + 1) * ni), y.get_mut(t * nh..(t + 1) * nh))
        else {
            return true;
        };
        let xs: &[i8] = if ni % 4 == 0 {
            xt
        } else {
            let Some(pad) = xpad.get_mut(..ni) else {
                return true;
            };
            pad.copy_from_slice(xt);
            xpad.get(..kpx).unwrap_or(&[])
        };
        let hs: &[i8] = if nh % 4 == 0 {
            h
        } else {
            let Some(pad) = hpad.get_mut(..nh) else {
                return true;
            };
            pad.copy_from_slice(h);
            hpad.get(..kph).unwrap_or(&[])
        };
        if xs.len() != kpx || hs.len() != kph {
            return true;
        }
        let gs = &mut gates[..g / 2];
        let mut f = Lstm16Frame {
            r: wt.r.as_ptr(),
            he,
            bias_h: wt.bias_h.as_ptr(),
            tab_h: tab_h.as_ptr(),
            w: wt.w.as_ptr(),
            xe,
            bias_x: wt.bias_x.as_ptr(),
            tab_x: tab_x.as_ptr(),
            g: gs.as_mut_ptr(),
            g_end: gs.as_mut_ptr_range().end,
            groups_h: kph / 4,
            groups_x: kpx / 4,
            ah: [0; 4],
        };
        // SAFETY: `xs` holds `kpx` bytes and `hs` `kph` (multiples of 4, from 4 to `K16_MAX`):
        // `kinglet_dsp_expand` reads them and writes `kpx / 2` and `kph / 2` words of the
        // word-aligned `xe` and `he` buffers (`K16_MAX / 2` words each). The group counts are
        // 1 to `U16_SEQ_GROUPS`, so each product enters the unrolled sequence inside it.
        // `kinglet_dsp_lstm16_gates` then, for each of the `nh ≥ 1` units (until `g` reaches
        // `g_end`: `2 · nh` words of `gates`, `4 · nh ≤ MATVEC_BLOCK`), reads `2 · kph` words
        // of `r` and `2 · kpx` of `w` (`wt.fits`: `r` is `4 · nh · kph` halfwords, `w`
        // `4 · nh · kpx`), 4 words of each bias and 12 of each table (`4 · nh` and `12 · nh`
        // in all: the tables are `3 · g` words each), those expanded words, and writes 2 words
        // of `gates` and the frame's own fields; every pointer is word-aligned (checked above,
        // `ldm` / `ldrd`; the tables are `i32` slices). It preserves the callee-saved registers
        // (AAPCS).
        unsafe {
            kinglet_dsp_expand(xs.as_ptr(), xe, kpx / 4);
            kinglet_dsp_expand(hs.as_ptr(), he, kph / 4);
            kinglet_dsp_lstm16_gates(&mut f);
        }
        if ce >= 3 {
            lstm_cell::<true>(p, tabs, ce, gs, c, h, yt);
        } else {
            lstm_cell::<false>(p, tabs, ce, gs, c, h, yt);
        }
    }
    true
}

/// One step's cell update from the unit-interleaved gates `g` ([`lstm_gates`]): the scalar
/// `cell` of `reference::lstm`, bit for bit, with [`lut16_at`] lookups, the cell-to-Q3.12
/// conversion chosen at compile time (`WIDEN`: `cell_exp ≥ 3`, a saturating left shift; else a
/// rounding right shift) and the output requantization by `fixed::rq`'s 32-bit path (the caller
/// checked `2 ≤ hq_shift ≤ 31`). Writes `c`, `h` and `y` (the step's output row).
#[inline(never)]
fn lstm_cell<const WIDEN: bool>(
    p: &super::reference::lstm::LstmParams,
    tabs: &super::reference::ActTables<'_>,
    ce: u32,
    g: &[u32],
    c: &mut [i16],
    h: &mut [i8],
    y: &mut [i8],
) {
    let (rz, sz) = (1i32 << (14 + ce), 15 + ce);
    let (tsh, trz) = if WIDEN {
        (ce.wrapping_sub(3), 0)
    } else {
        let n = 3 - ce;
        (n, (1i32 << n) >> 1)
    };
    let (mult, hsh, zp) = (p.hq_mult, (p.hq_shift - 2) as u32 & 31, p.h_zp);
    let (sig, tanh) = (Mid::of(tabs.sig), Mid::of(tabs.tanh));
    let units = g.chunks_exact(2).zip(c.iter_mut());
    for ((w, cu), (hu, yu)) in units.zip(h.iter_mut().zip(y.iter_mut())) {
        let i = lut16_lo(sig, w[0]);
        let o = lut16_hi(sig, w[0]);
        let f = lut16_lo(sig, w[1]);
        let z = lut16_hi(tanh, w[1]);
        // |f · c|, |i · z| < 2^30 (module doc of `reference::lstm`): no overflow.
        let s = ((f * *cu as i32 + (1 << 14)) >> 15) + ((i * z + rz) >> sz);
        let cn = s.clamp(i16::MIN as i32, i16::MAX as i32);
        *cu = cn as i16;
        let tc = if WIDEN {
            (cn << tsh).clamp(i16::MIN as i32, i16::MAX as i32)
        } else {
            (cn + trz) >> tsh
        };
        // `fixed::rq` for 2 ≤ shift ≤ 31: `((⌊acc · mult / 2^32⌋ >> (shift − 2)) + 1) >> 1`.
        let acc = o * lut16_lo(tanh, tc as u32);
        let hi = ((acc as i64 * mult as i64) >> 32) as i32;
        let hv = ((hi >> hsh) + 1) >> 1;
        let hq = zp.saturating_add(hv).clamp(-128, 127) as i8;
        *hu = hq;
        *yu = hq;
    }
}

/// The GRU op (`reference::gru::gru_i8`) on the DSP extension, bit-identical to it, for a cell
/// with `H mod 4 = 0` and `H ≤ 64`, recurrent requantization shifts all in `[1, 31]` and an
/// output requantization shift in `[2, 31]`, and a word-aligned `scratch` (the op's `6H` int16
/// of arena, here `3H` int32); returns `false`, writing nothing, otherwise. Per step: the input
/// products through the fused product into `scratch`, the recurrent product with the gate
/// inputs in its epilogue, unit-interleaved (`kinglet_dsp_gru_gates`), and the cell from one
/// pair of words per unit with the [`lut16_at`] lookups. Never inlined, so its 640 bytes of
/// stack buffers are taken only while a GRU runs.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(super) fn dsp_gru(
    p: &super::reference::gru::GruParams,
    wt: &super::reference::GateWeights<'_>,
    tabs: &super::reference::ActTables<'_>,
    x: &[i8],
    h: &mut [i8],
    h16: &mut [i16],
    y: &mut [i8],
    scratch: &mut [i16],
) -> bool {
    use super::reference::fixed::matvec_rq;
    const HMAX: usize = 64;
    let (ni, nh, steps) = (p.input, p.hidden, p.steps);
    let g = 3 * nh;
    // SAFETY: every bit pattern is a valid `i32`; the middle part is the word-aligned run of
    // `scratch`'s bytes, borrowed mutably for as long as `scratch` is.
    let (pre, ax, _) = unsafe { scratch.align_to_mut::<i32>() };
    let ok = ni > 0
        && nh > 0
        && nh % 4 == 0
        && nh <= HMAX
        && pre.is_empty()
        && ax.len() >= g
        && (2..=31).contains(&p.hq_shift)
        && wt.fits(3, ni, nh)
        && wt
            .rq_h
            .chunks_exact(2)
            .all(|q| (1..=31).contains(&q[1].get()))
        && Some(x.len()) == steps.checked_mul(ni)
        && Some(y.len()) == steps.checked_mul(nh)
        && h.len() == nh
        && h16.len() == nh;
    if !ok {
        return false;
    }
    // Two int16 gate inputs per word (`z`, `r` sums, then `gh_n`, `gx_n` of each unit).
    let mut gates = [0u32; 2 * HMAX];
    let (ax, gs) = (&mut ax[..g], &mut gates[..2 * nh]);
    let groups = nh / 4;
    for it in 0..steps {
        let t = super::reference::step_index(it, steps, p.reverse);
        let (Some(xt), Some(yt)) = (x.get(t * ni..(t + 1) * ni), y.get_mut(t * nh..(t + 1) * nh))
        else {
            return true;
        };
        matvec_rq(wt.w, wt.bias_x, wt.rq_x, xt, 0, ax);
        let mut buf = MaybeUninit::<[u32; HMAX / 2]>::uninit();
        // SAFETY: `kinglet_dsp_expand` reads the `nh = 4 · groups` bytes of `h` and writes
        // `2 · groups ≤ HMAX / 2` words of `buf` (word-aligned), `groups ≥ 1`.
        // `kinglet_dsp_gru_gates` then reads the `3 · nh` rows of `nh` bytes of `r`
        // (`wt.fits` above: `r.len() = 3 · nh · nh`), those words, `3 · nh` words of `bias_h`
        // and of `ax` and `6 · nh` of `rq_h` (single-word loads, any alignment on Armv7E-M /
        // Armv8-M.main; `I32` is a little-endian `i32`), and writes the `4 · nh` halfwords of
        // `gs` (at `2 · (4u + slot)` bytes, `u < nh`, `slot < 4`); `groups`, `blocks = nh / 4 ≥ 1`.
        // It preserves the callee-saved registers (AAPCS).
        unsafe {
            let xe = buf.as_mut_ptr().cast::<u32>();
            kinglet_dsp_expand(h.as_ptr(), xe, groups);
            kinglet_dsp_gru_gates(
                wt.r.as_ptr(),
                nh,
                xe,
                groups,
                nh / 4,
                wt.bias_h.as_ptr().cast::<i32>(),
                wt.rq_h.as_ptr().cast::<i32>(),
                ax.as_ptr(),
                gs.as_mut_ptr().cast::<i16>(),
            )
        };
        gru_cell(p, tabs, gs, h16, h, yt);
    }
    true
}

/// One step's GRU cell from the unit-interleaved gate inputs `g` (`kinglet_dsp_gru_gates`): the
/// scalar loop of `reference::gru`, bit for bit, with [`lut16_at`] lookups and the output
/// requantization by `fixed::rq`'s 32-bit path (the caller checked `2 ≤ hq_shift ≤ 31`).
#[inline(never)]
fn gru_cell(
    p: &super::reference::gru::GruParams,
    tabs: &super::reference::ActTables<'_>,
    g: &[u32],
    h16: &mut [i16],
    h: &mut [i8],
    y: &mut [i8],
) {
    let (mult, hsh, zp) = (p.hq_mult, (p.hq_shift - 2) as u32 & 31, p.h_zp);
    let (sig, tanh) = (Mid::of(tabs.sig), Mid::of(tabs.tanh));
    let units = g.chunks_exact(2).zip(h16.iter_mut());
    for ((w, hs), (hu, yu)) in units.zip(h.iter_mut().zip(y.iter_mut())) {
        let z = lut16_lo(sig, w[0]);
        let r = lut16_hi(sig, w[0]);
        let (hn, xn) = (((w[1] << 16) as i32) >> 16, (w[1] as i32) >> 16);
        // |r · gh_n| < 2^30, |z · (h16 - n)| < 2^31 - 2^14 (module doc of `reference::gru`).
        let n_in = (xn + ((r * hn + (1 << 14)) >> 15)).clamp(i16::MIN as i32, i16::MAX as i32);
        let n = lut16_lo(tanh, n_in as u32);
        let mix = (n + ((z * (*hs as i32 - n) + (1 << 14)) >> 15))
            .clamp(i16::MIN as i32, i16::MAX as i32);
        *hs = mix as i16;
        // `fixed::rq` for 2 ≤ shift ≤ 31: `((⌊acc · mult / 2^32⌋ >> (shift − 2)) + 1) >> 1`.
        let hi = ((mix as i64 * mult as i64) >> 32) as i32;
        let hq = zp.saturating_add(((hi >> hsh) + 1) >> 1).clamp(-128, 127) as i8;
        *hu = hq;
        *yu = hq;
    }
}
