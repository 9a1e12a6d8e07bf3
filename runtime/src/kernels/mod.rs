//! Integer kernels. `reference` holds the portable scalar implementation of every op, written
//! to be the bit-exact definition of `docs/format.md`. The int8 matrix-vector product that
//! carries the work of FC and the recurrent gates goes through [`matvec`], which dispatches to
//! one SIMD module per instruction set (`x86`, `neon`, `dsp`), each bit-exact with the
//! reference loop and tested against it; [`force_reference`] switches them off. The Transformer
//! ops (ATTENTION, LAYERNORM, ADD, MEAN, and FC over four or more rows as a matrix-matrix
//! product) have whole-op AVX-512 kernels behind hooks in `tfsimd`, which their reference
//! functions call first (`*_reference` variants keep the scalar loop alone, for the tests).
//!
//! Every kernel is a plain function over slices and a small parameter struct. Kernels never
//! panic: overflow that the format allows is wrapping or saturating by design, and a slice that
//! is shorter than its parameters imply makes the kernel return without writing (the session
//! always passes exact lengths, checked at parse time).

pub mod matvec;
pub mod reference;
mod tfsimd;

#[cfg(kinglet_dsp)]
pub(crate) mod dsp;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_io;
#[cfg(all(target_arch = "x86_64", kinglet_avx512))]
pub(crate) mod x86_lut;
#[cfg(all(target_arch = "x86_64", kinglet_avx512))]
pub(crate) mod x86_rnn;

pub use matvec::{active_isa, best_isa, force_reference, matvec_i8, Isa};

#[cfg(test)]
pub(crate) mod testutil;
