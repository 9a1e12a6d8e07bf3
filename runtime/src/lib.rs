//! Kinglet: a `no_std`, allocation-free, integer-only runtime for int8 recurrent and attention
//! models.
//!
//! A model file (`docs/format.md`, [`format`]) is parsed and validated once by
//! [`Model::parse`], zero copy; a [`Session`] then runs it in a caller-provided arena, either
//! over a whole sequence ([`Session::run`], [`Session::invoke`]) or one time step at a time
//! ([`Session::step`], [`Session::invoke_step`]).
//!
//! ```ignore
//! let model = kinglet::Model::parse(MODEL_BYTES)?;
//! let mut arena = [0u8; 4096]; // at least model.arena_bytes()
//! let mut session = kinglet::Session::new(&model, &mut arena)?;
//! let mut out = [0i8; 10];
//! session.run(&input, &mut out)?;
//! ```

#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

#[cfg(test)]
extern crate std;

mod error;
mod exec;
pub mod format;
#[cfg(feature = "frontend")]
pub mod frontend;
pub mod golden;
pub mod kernels;
mod model;
mod session;

#[cfg(test)]
mod builder;
#[cfg(test)]
mod tests;

pub use error::Error;
pub use format::{DType, TensorKind};
pub use model::{op_name, Model, OpInfo, TensorInfo};
pub use session::Session;
