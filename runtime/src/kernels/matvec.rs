//! The int8 matrix-vector product every FC and recurrent gate goes through, and its dispatch
//! between the reference loop and the SIMD kernels.
//!
//! `matvec_i8(m, v, acc)`: `acc[j] = Σ_k m[j·K + k] · v[k]` for `j < acc.len()`, `K = v.len()`,
//! int8 × int8 → int32 with wrapping addition. Integer addition modulo 2^32 is associative and
//! commutative, so every summation order — lanes, pairs, blocks of rows — gives exactly the
//! reference's bits, even past overflow (which a validated model never reaches: `K < 2^17`).
//! Requantization is the shared scalar [`rq`](super::reference::fixed::rq), except where a level
//! fuses it (`matvec_rq_fused`: Cortex-M DSP, and AVX-512 VNNI, which also runs the GRU and
//! LSTM cells' elementwise work, `gru_cell_simd` / `lstm_cell_simd`), bit-identically.
//!
//! Kernels, one module per instruction set, all behind the signature of
//! [`reference_matvec_i8`]:
//!
//! | [`Isa`] | module | kernel | selected |
//! |---|---|---|---|
//! | `Reference` | [`reference::fixed`](super::reference::fixed) | `dot_i8` per row | always available |
//! | `Avx2` | `x86` | `avx2_matvec_i8_4x16`: sign-extend to i16, `vpmaddwd` | run time (`std`) or `-C target-feature=+avx2` |
//! | `Avx512Vnni` | `x86` | `avx512vnni_matvec_i8_4x64`: `vpdpbusd` on `w ^ 0x80`, minus `128 · Σ v` | run time (`std`) or compile time; rustc ≥ 1.89 |
//! | `Neon` | `neon` | `neon_matvec_i8_4x16`: `smull` + `sadalp` | every aarch64 with NEON |
//! | `NeonDot` | `neon` | `sdot_matvec_i8_4x16`: `sdot` (inline `asm!`) | run time (`std`) or `+dotprod` |
//! | `Dsp` | `dsp` | `dsp_matvec_i8`: vector expanded once to int16 pairs, 4 rows × 4 columns per `sxtb16` + `smlad` step (`global_asm!`) | compile time: cfg `kinglet_dsp` from `build.rs` |
//!
//! Selection: on Cortex-M at compile time (`build.rs` sets `kinglet_dsp` for thumbv7em, and for
//! thumbv8m.main built with `+dsp` or a DSP-capable `target-cpu`); on x86_64 / aarch64 with the
//! `std` feature, run-time detection once, cached in an atomic; without `std`, the target
//! features the crate was compiled with. [`force_reference`] makes every product take the
//! reference loop (for tests and benchmarks); it is a global switch.

use super::reference::fixed::dot_i8;

#[cfg(any(test, feature = "std"))]
extern crate std;

/// An implementation of [`matvec_i8`]: one per instruction set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isa {
    /// The portable scalar loop (`dot_i8` per row).
    Reference,
    /// x86_64 AVX2.
    Avx2,
    /// x86_64 AVX-512 with VNNI (`avx512f`, `avx512bw`, `avx512vnni`).
    Avx512Vnni,
    /// aarch64 Advanced SIMD (NEON), without the dot-product extension.
    Neon,
    /// aarch64 NEON with `sdot` (Armv8.2 dot product; Cortex-A76 / Raspberry Pi 5).
    NeonDot,
    /// Cortex-M DSP extension (`smlad`; Cortex-M4 / M7 / M33).
    Dsp,
}

impl Isa {
    /// Every level, best last within each architecture.
    pub const ALL: [Isa; 6] = [
        Isa::Reference,
        Isa::Avx2,
        Isa::Avx512Vnni,
        Isa::Neon,
        Isa::NeonDot,
        Isa::Dsp,
    ];

    /// A short name (`"avx2"`, `"neon-sdot"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Reference => "reference",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::Neon => "neon",
            Isa::NeonDot => "neon-sdot",
            Isa::Dsp => "dsp",
        }
    }

    /// Whether this level is compiled in and the CPU running the program supports it.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Reference => true,
            Isa::Avx2 => has_avx2(),
            Isa::Avx512Vnni => has_avx512vnni(),
            Isa::Neon => has_neon(),
            Isa::NeonDot => has_neon_dot(),
            Isa::Dsp => cfg!(kinglet_dsp),
        }
    }

    fn code(self) -> u8 {
        match self {
            Isa::Reference => 1,
            Isa::Avx2 => 2,
            Isa::Avx512Vnni => 3,
            Isa::Neon => 4,
            Isa::NeonDot => 5,
            Isa::Dsp => 6,
        }
    }

    #[cfg_attr(not(target_has_atomic = "8"), allow(dead_code))]
    fn from_code(c: u8) -> Option<Isa> {
        Isa::ALL.iter().copied().find(|i| i.code() == c)
    }
}

/// Whether the CPU has AVX-512 VBMI (`vpermi2b`, the AVX-512 LUT8 kernel): detected at run
/// time with `std` (cached by `std_detect`), the compile-time target features without.
#[cfg(all(target_arch = "x86_64", kinglet_avx512, any(test, feature = "std")))]
pub(crate) fn has_vbmi() -> bool {
    std::is_x86_feature_detected!("avx512vbmi")
}
#[cfg(all(
    target_arch = "x86_64",
    kinglet_avx512,
    not(any(test, feature = "std"))
))]
pub(crate) fn has_vbmi() -> bool {
    cfg!(target_feature = "avx512vbmi")
}

#[cfg(all(target_arch = "x86_64", any(test, feature = "std")))]
fn has_avx2() -> bool {
    std::is_x86_feature_detected!("avx2")
}
#[cfg(all(target_arch = "x86_64", not(any(test, feature = "std"))))]
fn has_avx2() -> bool {
    cfg!(target_feature = "avx2")
}
#[cfg(not(target_arch = "x86_64"))]
fn has_avx2() -> bool {
    false
}

#[cfg(all(target_arch = "x86_64", kinglet_avx512, any(test, feature = "std")))]
fn has_avx512vnni() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vnni")
}
#[cfg(all(
    target_arch = "x86_64",
    kinglet_avx512,
    not(any(test, feature = "std"))
))]
fn has_avx512vnni() -> bool {
    cfg!(all(
        target_feature = "avx512f",
        target_feature = "avx512bw",
        target_feature = "avx512vnni"
    ))
}
/// Not x86_64, or a compiler older than 1.89 (no stable AVX-512 intrinsics; see `build.rs`).
#[cfg(not(all(target_arch = "x86_64", kinglet_avx512)))]
fn has_avx512vnni() -> bool {
    false
}

fn has_neon() -> bool {
    cfg!(all(target_arch = "aarch64", target_feature = "neon"))
}

#[cfg(all(target_arch = "aarch64", any(test, feature = "std")))]
fn has_neon_dot() -> bool {
    has_neon() && std::arch::is_aarch64_feature_detected!("dotprod")
}
#[cfg(all(target_arch = "aarch64", not(any(test, feature = "std"))))]
fn has_neon_dot() -> bool {
    cfg!(all(target_feature = "neon", target_feature = "dotprod"))
}
#[cfg(not(target_arch = "aarch64"))]
fn has_neon_dot() -> bool {
    false
}

/// The best available level, detected (not cached).
fn detect() -> Isa {
    [
        Isa::Avx512Vnni,
        Isa::Avx2,
        Isa::NeonDot,
        Isa::Neon,
        Isa::Dsp,
    ]
    .into_iter()
    .find(|i| i.is_available())
    .unwrap_or(Isa::Reference)
}

#[cfg(target_has_atomic = "8")]
mod state {
    use core::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};

    /// 0 until detection has run, then `Isa::code` of the best level.
    static BEST: AtomicU8 = AtomicU8::new(0);
    static FORCE_REFERENCE: AtomicBool = AtomicBool::new(false);

    pub(super) fn best() -> super::Isa {
        if let Some(isa) = super::Isa::from_code(BEST.load(Relaxed)) {
            return isa;
        }
        // Racing threads detect the same answer; storing it twice is harmless.
        let isa = super::detect();
        BEST.store(isa.code(), Relaxed);
        isa
    }

    pub(super) fn forced() -> bool {
        FORCE_REFERENCE.load(Relaxed)
    }

    pub(super) fn set_forced(on: bool) {
        FORCE_REFERENCE.store(on, Relaxed)
    }
}

/// Targets without atomics (thumbv6m): only compile-time levels exist, so there is nothing to
/// cache, and no SIMD to switch off.
#[cfg(not(target_has_atomic = "8"))]
mod state {
    pub(super) fn best() -> super::Isa {
        super::detect()
    }
    pub(super) fn forced() -> bool {
        false
    }
    pub(super) fn set_forced(_on: bool) {}
}

/// The best level on this CPU (detected once, then cached).
pub fn best_isa() -> Isa {
    state::best()
}

/// The level [`matvec_i8`] uses now: [`best_isa`], or `Reference` while forced.
pub fn active_isa() -> Isa {
    if state::forced() {
        Isa::Reference
    } else {
        state::best()
    }
}

/// Makes every matrix-vector product (and so every FC and recurrent op) take the reference
/// loop while `on`; a process-wide switch, for tests and benchmarks that compare the two. Has
/// no effect on targets without atomics, which have no SIMD level to switch off.
pub fn force_reference(on: bool) {
    state::set_forced(on)
}

/// `acc[j] = Σ_k m[j·K + k] · v[k]` with `K = v.len()`, for `j < acc.len()`, through the
/// [`active_isa`]. Rows that `m` does not hold in full (never, for a validated model) get 0.
///
/// Products shorter than [`SIMD_MIN_COLS`] take the reference loop on aarch64 and on AVX2 (their
/// SIMD kernels would only add set-up and a horizontal sum to a scalar tail).
///
/// On x86 the small products have their own paths instead: one column (the forecasters' input
/// product) is one widening multiply per 8 rows on either level, and AVX-512 VNNI takes every
/// `K ≥ 2` (its masked tail load needs no scalar tail).
#[inline]
pub fn matvec_i8(m: &[i8], v: &[i8], acc: &mut [i32]) {
    let isa = match active_isa() {
        Isa::Dsp if v.len() < DSP_MIN_COLS => Isa::Reference,
        Isa::Dsp => Isa::Dsp,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => Isa::Avx512Vnni,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if v.len() == 1 => Isa::Avx2,
        _ if v.len() < SIMD_MIN_COLS => Isa::Reference,
        isa => isa,
    };
    // `active_isa` returns only available levels (detected once, cached): no check per call.
    matvec_i8_on(isa, m, v, acc);
}

/// `out[j] = rq(bias[j] + Σ_k m[j·K + k] · v[k], pairs[j])` (`fixed::rq`) for `j < out.len()` in
/// one fused kernel, where the active level has one for this shape (Cortex-M DSP: `K ≤ 256`,
/// `K mod 4 = 0`, a multiple of 4 rows; AVX-512 VNNI: every shape, the product then eight rows
/// of `rq` per vector step); returns `false`, writing nothing, otherwise. The same bits as the
/// product followed by `rq`.
#[inline]
pub(crate) fn matvec_rq_fused(
    m: &[i8],
    bias: &[zerocopy::little_endian::I32],
    pairs: &[zerocopy::little_endian::I32],
    v: &[i8],
    out: &mut [i32],
) -> bool {
    #[cfg(kinglet_dsp)]
    if v.len() >= DSP_MIN_COLS && active_isa() == Isa::Dsp {
        return super::dsp::dsp_matvec_rq(m, bias, pairs, v, out);
    }
    #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
    if active_isa() == Isa::Avx512Vnni && bias.len() >= out.len() && pairs.len() >= 2 * out.len() {
        matvec_i8_on(Isa::Avx512Vnni, m, v, out);
        return super::x86::avx512_requant_block(bias, pairs, out);
    }
    let _ = (m, bias, pairs, v, out);
    false
}

/// Where a recurrent cell's SIMD elementwise work reads its gates from: the int16 scratch the
/// scalar loop fills (GRU: `gx`, `gh`; LSTM: the summed gates, second slice unused), or, when
/// one block holds every gate row, the step's two requantized int32 products `ax`, `ah`
/// themselves (clamped and summed on the fly exactly as the scalar loop does into the scratch).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(all(target_arch = "x86_64", kinglet_avx512)), allow(dead_code))]
pub(crate) enum CellGates<'a> {
    /// Int16 scratch.
    I16(&'a [i16], &'a [i16]),
    /// The int32 products of `W·x` and `R·h`.
    I32(&'a [i32], &'a [i32]),
}

/// Whether the active level runs the GRU / LSTM cells in SIMD ([`gru_cell_simd`],
/// [`lstm_cell_simd`] then return `true` for well-formed operands): AVX-512 VNNI. A constant
/// `false` elsewhere.
#[inline]
pub(crate) fn cell_simd_active() -> bool {
    #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
    if active_isa() == Isa::Avx512Vnni {
        return true;
    }
    false
}

/// One GRU step's elementwise work (`reference::gru`) through the active level's SIMD, where
/// it has one (AVX-512 VNNI: sixteen units per step, tables by gather); returns `false`,
/// writing nothing, otherwise. The same bits as the scalar loop in `gru_i8`.
#[inline]
pub(crate) fn gru_cell_simd(
    p: &super::reference::gru::GruParams,
    tabs: &super::reference::ActTables<'_>,
    gates: CellGates<'_>,
    h16: &mut [i16],
    h: &mut [i8],
    y: &mut [i8],
) -> bool {
    #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
    if active_isa() == Isa::Avx512Vnni {
        return super::x86::avx512_gru_cell(p, tabs, gates, h16, h, y);
    }
    let _ = (p, tabs, gates, h16, h, y);
    false
}

/// One LSTM step's elementwise work (`reference::lstm`) through the active level's SIMD, where
/// it has one (AVX-512 VNNI: sixteen units per step, tables by gather); returns `false`,
/// writing nothing, otherwise. The same bits as the scalar `cell` of `lstm_i8`.
#[inline]
pub(crate) fn lstm_cell_simd(
    p: &super::reference::lstm::LstmParams,
    tabs: &super::reference::ActTables<'_>,
    gates: CellGates<'_>,
    c: &mut [i16],
    h: &mut [i8],
    y: &mut [i8],
) -> bool {
    #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
    if active_isa() == Isa::Avx512Vnni {
        return super::x86::avx512_lstm_cell(p, tabs, gates, c, h, y);
    }
    let _ = (p, tabs, gates, c, h, y);
    false
}

/// A whole LSTM op (`reference::lstm::lstm_i8`) through the active level's own sequence
/// kernel, where it has one for these operands (Cortex-M DSP: `4H ≤ MATVEC_BLOCK`, input
/// products of two steps in one pass over `W`, the cell with `smlad` table lookups; AVX-512
/// VNNI: `W` and `R` repacked once per op for products without horizontal sums); returns
/// `false`, writing nothing, otherwise. The same bits as `lstm_i8`'s own loop.
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) fn lstm_seq_simd(
    p: &super::reference::lstm::LstmParams,
    wt: &super::reference::GateWeights<'_>,
    tabs: &super::reference::ActTables<'_>,
    x: &[i8],
    h: &mut [i8],
    c: &mut [i16],
    y: &mut [i8],
) -> bool {
    #[cfg(kinglet_dsp)]
    if active_isa() == Isa::Dsp {
        return super::dsp::dsp_lstm(p, wt, tabs, x, h, c, y);
    }
    #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
    if active_isa() == Isa::Avx512Vnni {
        return super::x86_rnn::avx512_lstm_seq(p, wt, tabs, x, h, c, y);
    }
    let _ = (p, wt, tabs, x, h, c, y);
    false
}

/// A whole unit16 LSTM op (`reference::lstm16::lstm16_i8`) through the active level's own
/// sequence kernel, where it has one for these operands (Cortex-M DSP: `4H ≤ MATVEC_BLOCK`,
/// every gate requantization shift in `[1, 31]`, the output's in `[2, 31]`; `scratch` is the
/// op's, whose contents are not part of the result); returns `false`, writing nothing
/// otherwise. The layout is made for the DSP kernel; on x86-64 and aarch64 `lstm16_i8` narrows
/// it back to the int8 layout for their kernels, and elsewhere runs its scalar loop.
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) fn lstm16_seq_simd(
    p: &super::reference::lstm::LstmParams,
    wt: &super::reference::lstm16::Unit16Weights<'_>,
    tabs: &super::reference::ActTables<'_>,
    x: &[i8],
    h: &mut [i8],
    c: &mut [i16],
    y: &mut [i8],
    scratch: &mut [i16],
) -> bool {
    #[cfg(kinglet_dsp)]
    if active_isa() == Isa::Dsp {
        return super::dsp::dsp_lstm16(p, wt, tabs, x, h, c, y, scratch);
    }
    let _ = (p, wt, tabs, x, h, c, y, scratch);
    false
}

/// A whole GRU op (`reference::gru::gru_i8`) through the active level's own sequence kernel,
/// where it has one for these operands (Cortex-M DSP: `H mod 4 = 0`, `H ≤ 64`, the input
/// products in `scratch`, the gate inputs in the recurrent product's epilogue, the cell with
/// `smlad` table lookups; AVX-512 VNNI: `W` and `R` repacked once per op); returns `false`, writing nothing, otherwise. The same bits as
/// `gru_i8`'s own loop (`scratch` is the op's scratch, whose contents are not part of them).
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gru_seq_simd(
    p: &super::reference::gru::GruParams,
    wt: &super::reference::GateWeights<'_>,
    tabs: &super::reference::ActTables<'_>,
    x: &[i8],
    h: &mut [i8],
    h16: &mut [i16],
    y: &mut [i8],
    scratch: &mut [i16],
) -> bool {
    #[cfg(kinglet_dsp)]
    if active_isa() == Isa::Dsp {
        return super::dsp::dsp_gru(p, wt, tabs, x, h, h16, y, scratch);
    }
    #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
    if active_isa() == Isa::Avx512Vnni {
        return super::x86_rnn::avx512_gru_seq(p, wt, tabs, x, h, h16, y);
    }
    let _ = (p, wt, tabs, x, h, h16, y, scratch);
    false
}

/// Below this many columns [`matvec_i8`] uses the reference loop on aarch64 and AVX2 (one column
/// excepted on AVX2; AVX-512 VNNI takes every shape).
pub const SIMD_MIN_COLS: usize = 16;

/// Below this many columns [`matvec_i8`] uses the reference loop on Cortex-M DSP: the 2×4
/// kernel's set-up costs more than it saves on a handful of MACs (measured: the GRU(1→16)
/// forecaster took 453k instructions per inference with the DSP kernel for every product).
pub const DSP_MIN_COLS: usize = 8;

/// [`matvec_i8`] through a given level. Returns `false`, writing nothing, when `isa` is not
/// available on this CPU.
pub fn matvec_i8_with(isa: Isa, m: &[i8], v: &[i8], acc: &mut [i32]) -> bool {
    if !isa.is_available() {
        return false;
    }
    matvec_i8_on(isa, m, v, acc);
    true
}

/// [`matvec_i8_with`] without the availability check: `isa` must be available (the SIMD
/// kernels' safety rests on it), as every level [`active_isa`] returns is.
#[inline]
fn matvec_i8_on(isa: Isa, m: &[i8], v: &[i8], acc: &mut [i32]) {
    let k = v.len();
    // The rows `m` holds in full; the kernels below may rely on `m.len() ≥ acc.len() · K`.
    let rows = m
        .len()
        .checked_div(k)
        .map_or(acc.len(), |r| r.min(acc.len()));
    let (acc, missing) = acc.split_at_mut(rows);
    missing.fill(0);
    if k == 0 {
        acc.fill(0);
        return;
    }
    // `rows · k ≤ m.len()` by the division above; `get` keeps the device path panic-free.
    let Some(m) = m.get(..rows * k) else {
        acc.fill(0);
        return;
    };
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => super::x86::avx2_matvec_i8(m, v, acc),
        #[cfg(all(target_arch = "x86_64", kinglet_avx512))]
        Isa::Avx512Vnni => super::x86::avx512vnni_matvec_i8(m, v, acc),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => super::neon::neon_matvec_i8(m, v, acc),
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDot => super::neon::sdot_matvec_i8(m, v, acc),
        #[cfg(kinglet_dsp)]
        Isa::Dsp => super::dsp::dsp_matvec_i8(m, v, acc),
        _ => reference_matvec_i8(m, v, acc),
    }
}

/// The reference: `dot_i8` row by row. `m` holds at least `acc.len()` rows of `v.len()`.
pub fn reference_matvec_i8(m: &[i8], v: &[i8], acc: &mut [i32]) {
    let k = v.len();
    if k == 0 {
        acc.fill(0);
        return;
    }
    for (a, row) in acc.iter_mut().zip(m.chunks_exact(k)) {
        *a = dot_i8(row, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::Rng;
    use std::eprintln;
    use std::vec::Vec;

    const COLS: [usize; 17] = [0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33, 63, 64, 100, 257];
    const ROWS: [usize; 10] = [0, 1, 2, 3, 4, 5, 7, 8, 13, 64];

    /// Random operands with runs of the extremes -128 / 127 mixed in.
    fn operand(rng: &mut Rng, n: usize, mode: usize) -> Vec<i8> {
        (0..n)
            .map(|_| match mode {
                0 => rng.i8(),
                1 => -128,
                2 => 127,
                _ => [-128, 127, -127, 0, rng.i8()][rng.usize_below(5)],
            })
            .collect()
    }

    /// Every kernel the CPU supports against the reference loop, over edge shapes, random and
    /// extreme values, and unaligned starts; names the levels it had to skip.
    #[test]
    fn every_kernel_matches_the_reference() {
        let mut rng = Rng::new(0x5EED);
        let mut skipped = Vec::new();
        let mut ran = Vec::new();
        for isa in Isa::ALL {
            if !isa.is_available() {
                skipped.push(isa.name());
                continue;
            }
            ran.push(isa.name());
            let mut cases = 0;
            for &cols in &COLS {
                for &rows in &ROWS {
                    for mode in 0..4 {
                        // Offsets 0..3 so the kernels see unaligned rows and vectors.
                        let off = rng.usize_below(4);
                        let m = operand(&mut rng, rows * cols + off, mode);
                        let v = operand(&mut rng, cols + off, (mode + 1) % 4);
                        let (m, v) = (&m[off..], &v[off..]);
                        let mut want = std::vec![0x5A5A_5A5Ai32; rows];
                        reference_matvec_i8(m, v, &mut want);
                        let mut got = std::vec![0x5A5A_5A5Ai32; rows];
                        assert!(matvec_i8_with(isa, m, v, &mut got));
                        assert_eq!(
                            got,
                            want,
                            "{} rows {rows} cols {cols} mode {mode}",
                            isa.name()
                        );
                        cases += 1;
                    }
                }
            }
            // Extremes: every product 16384 (the largest), and the most negative sum.
            for &cols in &[16, 64, 257, 4096] {
                for (a, b) in [(-128i8, -128i8), (-128, 127), (127, 127)] {
                    let m = std::vec![a; 5 * cols];
                    let v = std::vec![b; cols];
                    let mut got = [0i32; 5];
                    assert!(matvec_i8_with(isa, &m, &v, &mut got));
                    assert_eq!(
                        got,
                        [a as i32 * b as i32 * cols as i32; 5],
                        "{}",
                        isa.name()
                    );
                }
            }
            // Beyond the validated range the sum wraps exactly like the reference.
            let cols = 140_000;
            let m = std::vec![-128i8; cols];
            let v = std::vec![-128i8; cols];
            let mut got = [0i32; 1];
            assert!(matvec_i8_with(isa, &m, &v, &mut got));
            assert_eq!(got[0], 16384i32.wrapping_mul(cols as i32), "{}", isa.name());
            // A matrix shorter than `rows × cols`: the missing rows are 0.
            let mut got = [7i32; 3];
            assert!(matvec_i8_with(isa, &[1; 20], &[1; 8], &mut got));
            assert_eq!(got, [8, 8, 0], "{}", isa.name());
            eprintln!("matvec {}: {cases} shapes bit-exact", isa.name());
        }
        let skipped = if skipped.is_empty() {
            "none".into()
        } else {
            skipped.join(", ")
        };
        eprintln!(
            "matvec: ran {}; skipped (not on this CPU / target): {skipped}",
            ran.join(", ")
        );
        // NEON is part of every aarch64 Linux target: its absence would be a dispatch bug.
        if cfg!(target_arch = "aarch64") {
            assert!(ran.contains(&"neon"));
        }
    }

    #[test]
    fn unavailable_levels_write_nothing() {
        for isa in Isa::ALL.into_iter().filter(|i| !i.is_available()) {
            let mut acc = [3i32; 2];
            assert!(!matvec_i8_with(isa, &[1; 4], &[1; 2], &mut acc));
            assert_eq!(acc, [3; 2]);
        }
        assert!(Isa::Reference.is_available());
        assert!(best_isa().is_available());
    }
}
