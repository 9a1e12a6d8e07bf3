//! The one error type of the runtime. Every variant is `Copy` and carries enough context (a byte
//! offset in the file, an op index, the sizes involved) to say what is wrong without `alloc`.

use core::fmt;

/// Everything that can go wrong when parsing a model file or running a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the header or than the header's `file_len`.
    Truncated {
        /// Bytes the file needs.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
    /// The buffer is longer than the header's `file_len`.
    TrailingBytes {
        /// Bytes the header declares.
        expected: usize,
        /// Bytes the buffer has.
        got: usize,
    },
    /// The first four bytes are not `KGLT`.
    BadMagic,
    /// The major version is not the one this runtime reads.
    UnsupportedVersion {
        /// Major version in the file.
        major: u16,
        /// Minor version in the file.
        minor: u16,
    },
    /// The CRC-32 of `bytes[16..]` does not match the header.
    Checksum {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the buffer.
        computed: u32,
    },
    /// A field or structure of the file is invalid.
    Malformed {
        /// Byte offset in the file of the bad field or structure.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// An op has an opcode this runtime does not know.
    UnknownOp {
        /// Index of the op in the op table.
        op: usize,
        /// Its opcode.
        opcode: u16,
    },
    /// An op's tensor list or parameters do not match what its kernel needs.
    BadOp {
        /// Index of the op in the op table.
        op: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// The arena given to `Session::new` is too small.
    ArenaTooSmall {
        /// Bytes needed (`Model::arena_bytes`).
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// A caller's input buffer has the wrong length.
    InputLen {
        /// Model input index.
        index: usize,
        /// Bytes expected.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// A caller's output buffer has the wrong length.
    OutputLen {
        /// Model output index.
        index: usize,
        /// Bytes expected.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// There is no model input / output / tensor with this index.
    NoSuchTensor {
        /// The index asked for.
        index: usize,
    },
    /// `step` was called on a model without the streamable flag.
    NotStreamable,
    /// The single-input, single-output convenience API (`run`, `step`) was used on a model
    /// with another number of inputs or outputs; use `input_mut` / `invoke` / `output`.
    IoCount {
        /// Model inputs.
        inputs: usize,
        /// Model outputs.
        outputs: usize,
    },
    /// A model input or output is not an int8 arena tensor (the I/O API hands out `[i8]`).
    BadIoTensor {
        /// Tensor index.
        index: usize,
    },
    /// An arena region could not be borrowed (misaligned, out of range or overlapping). The
    /// parse-time checks make this unreachable for a parsed model; it exists so that the
    /// session never panics.
    Arena {
        /// Index of the op being run, or `usize::MAX` outside an op.
        op: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, got } => {
                write!(f, "model file truncated: needs {needed} bytes, got {got}")
            }
            Self::TrailingBytes { expected, got } => {
                write!(f, "model file has trailing bytes: header says {expected} bytes, got {got}")
            }
            Self::BadMagic => write!(f, "not a Kinglet model file (bad magic)"),
            Self::UnsupportedVersion { major, minor } => {
                write!(f, "unsupported model file version {major}.{minor}")
            }
            Self::Checksum { stored, computed } => write!(
                f,
                "model file checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            Self::Malformed { offset, what } => {
                write!(f, "malformed model file at byte {offset}: {what}")
            }
            Self::UnknownOp { op, opcode } => write!(f, "op {op}: unknown opcode {opcode}"),
            Self::BadOp { op, what } => write!(f, "op {op}: {what}"),
            Self::ArenaTooSmall { needed, got } => {
                write!(f, "arena too small: needs {needed} bytes, got {got}")
            }
            Self::InputLen { index, expected, got } => {
                write!(f, "input {index}: expected {expected} bytes, got {got}")
            }
            Self::OutputLen { index, expected, got } => {
                write!(f, "output {index}: expected {expected} bytes, got {got}")
            }
            Self::NoSuchTensor { index } => write!(f, "no such tensor: {index}"),
            Self::NotStreamable => write!(f, "the model is not streamable"),
            Self::IoCount { inputs, outputs } => write!(
                f,
                "the model has {inputs} inputs and {outputs} outputs; run/step need exactly one of each"
            ),
            Self::BadIoTensor { index } => {
                write!(f, "tensor {index}: model inputs and outputs must be int8 arena tensors")
            }
            Self::Arena { op } => write!(f, "op {op}: arena region cannot be borrowed"),
        }
    }
}
