//! Integer kernels. `reference` holds the portable scalar implementation of every op, written
//! to be the bit-exact definition of `docs/format.md`; SIMD variants will sit next to it (one
//! module per instruction set) and be tested against it.
//!
//! Every kernel is a plain function over slices and a small parameter struct. Kernels never
//! panic: overflow that the format allows is wrapping or saturating by design, and a slice that
//! is shorter than its parameters imply makes the kernel return without writing (the session
//! always passes exact lengths, checked at parse time).

pub mod reference;

#[cfg(test)]
pub(crate) mod testutil;
