//! The model file, version 1: the on-disk structures shared by the quantizer (which writes
//! them) and the runtime (which reads them in place). `docs/format.md` is the prose version of
//! this module; the two must agree.
//!
//! Everything is little-endian. The file is a 64-byte [`Header`], then a table of
//! [`TensorEntry`] (48 bytes each), a table of [`OpEntry`] (24 bytes each), a list of `u16`
//! input/output tensor indices, and a data section holding constant tensors (weights, biases,
//! requantization pairs, lookup tables), the per-op tensor lists and the per-op parameter words.
//! Every section and every constant tensor starts at a multiple of 16 bytes from the start of the
//! file, so a file placed at a 16-byte-aligned address (flash or RAM) can be read in place.

use zerocopy::little_endian::{F32, I32, U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `b"KGLT"`: the first four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"KGLT";
/// The major version this runtime reads. A file with another major version is refused.
pub const VERSION_MAJOR: u16 = 1;
/// The newest minor version this runtime knows; files with a higher minor version are still
/// read (minor versions only add flags and op codes that old files do not use). Writers put the
/// lowest minor whose features the file uses: 1 when an op has [`OP_FLAG_UNIT16`], else 0, so
/// files that use nothing new stay byte-identical to what minor 0 wrote.
pub const VERSION_MINOR: u16 = 1;
/// Alignment of every section and constant tensor, in bytes, relative to the file start.
pub const FILE_ALIGN: usize = 16;
/// Alignment of every arena tensor offset, in bytes, relative to the (aligned) arena base.
pub const ARENA_ALIGN: usize = 16;
/// The CRC covers `bytes[..CRC_FIELD]` followed by `bytes[CRC_START..file_len]`: every byte of
/// the file except the checksum field itself.
pub const CRC_FIELD: usize = 12;
/// First byte after the checksum field.
pub const CRC_START: usize = 16;
/// Maximum rank of a tensor.
pub const MAX_RANK: usize = 4;
/// `time_axis` value for a tensor without a time axis.
pub const NO_TIME_AXIS: u8 = 0xFF;

/// Header flag: the model can be driven one time step at a time with `Session::step`.
pub const FLAG_STREAMABLE: u32 = 1;

/// Fixed 64-byte file header at offset 0.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 4],
    /// [`VERSION_MAJOR`].
    pub version_major: U16,
    /// [`VERSION_MINOR`].
    pub version_minor: U16,
    /// Total length of the file in bytes; trailing bytes beyond it are refused.
    pub file_len: U32,
    /// CRC-32/ISO-HDLC (the zlib / PNG CRC) of `bytes[0..12] ++ bytes[16..file_len]`.
    pub crc32: U32,
    /// `FLAG_*` bits; unknown bits are refused.
    pub flags: U32,
    /// Bytes of arena the static plan uses (a multiple of [`ARENA_ALIGN`]).
    pub arena_bytes: U32,
    /// Number of entries in the tensor table.
    pub n_tensors: U32,
    /// File offset of the tensor table.
    pub tensors_off: U32,
    /// Number of entries in the op table.
    pub n_ops: U32,
    /// File offset of the op table.
    pub ops_off: U32,
    /// Number of model inputs.
    pub n_inputs: U16,
    /// Number of model outputs.
    pub n_outputs: U16,
    /// File offset of `n_inputs + n_outputs` `u16` tensor indices (inputs first).
    pub io_off: U32,
    /// File offset of the data section.
    pub data_off: U32,
    /// Length of the data section in bytes.
    pub data_len: U32,
    /// Number of time steps `T` of the model's sequence input (1 if it has none).
    pub seq_len: U32,
    /// Reserved, must be zero.
    pub reserved: U32,
}

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DType {
    /// Signed 8-bit.
    I8 = 1,
    /// Signed 16-bit.
    I16 = 2,
    /// Signed 32-bit.
    I32 = 3,
}

impl DType {
    /// Decode the on-disk code.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::I8),
            2 => Some(Self::I16),
            3 => Some(Self::I32),
            _ => None,
        }
    }
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 => 2,
            Self::I32 => 4,
        }
    }
}

/// Where a tensor's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TensorKind {
    /// In the arena; its contents are meaningful only while it is live in the plan.
    Activation = 0,
    /// In the file's data section (read in place from flash).
    Const = 1,
    /// In the arena, persistent across `step` calls (recurrent state). Reset to `zero_point`
    /// (for i8) or 0 (for i16 / i32) by `reset` and at the start of every `run`.
    State = 2,
}

impl TensorKind {
    /// Decode the on-disk code.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Activation),
            1 => Some(Self::Const),
            2 => Some(Self::State),
            _ => None,
        }
    }
}

/// One tensor: 48 bytes.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct TensorEntry {
    /// [`DType`] code.
    pub dtype: u8,
    /// [`TensorKind`] code.
    pub kind: u8,
    /// Number of dims in use (0..=4); unused dims are 1.
    pub rank: u8,
    /// Index of the time axis in `dims`, or [`NO_TIME_AXIS`]. A tensor with a time axis has
    /// only size-1 dims before it, so one time step is a contiguous `nbytes / T` slice.
    pub time_axis: u8,
    /// Shape, outermost first.
    pub dims: [U32; MAX_RANK],
    /// Arena offset (Activation, State; multiple of [`ARENA_ALIGN`]) or offset into the data
    /// section (Const; multiple of [`FILE_ALIGN`] from the file start).
    pub offset: U32,
    /// Size in bytes; equals the product of dims times the element size.
    pub nbytes: U32,
    /// Real value = `scale * (q - zero_point)`; 0.0 when the tensor is not affine-quantized
    /// (biases, multipliers, tables). Used only by the optional float helpers, never by kernels.
    pub scale: F32,
    /// Zero point of the affine quantization.
    pub zero_point: I32,
    /// Offset into the data section of the tensor's UTF-8 name (for `inspect` and errors).
    pub name_off: U32,
    /// Length of the name in bytes (0 = unnamed).
    pub name_len: U32,
    /// Reserved, must be zero.
    pub reserved: U32,
}

/// Op flag: in streaming (`step`) mode the op's first parameter word (`steps`) is replaced by 1.
pub const OP_FLAG_PER_STEP: u16 = 1;
/// Op flag (minor version 1, [`OP_LSTM`] only): the gate operands are in the **unit16**
/// layout, chosen by the quantizer for the Cortex-M DSP sequence kernel. Rows are unit-major
/// (storage row `4u + g` holds gate `g` of unit `u`) in `w`, `r`, `bias_x`, `bias_h`, `rq_x`
/// and `rq_h`; `w` and `r` are int16 `[4H, Kp]` (`Kp` = `I` or `H` rounded up to a multiple of
/// 4, padding zero) with each unit's four rows interleaved by column pair: see
/// [`unit16_index`]. The arithmetic is the LSTM's, unchanged; the quantizer writes values in
/// `[-127, 127]`, and any int16 value is summed exactly modulo 2^32 like the int8 products.
pub const OP_FLAG_UNIT16: u16 = 2;

/// int16 elements of a unit16 LSTM's scratch tensor per hidden unit: `scratch i16 [48H]`
/// (int8 layout: `[4H]`). The reference loop uses the first `4H` for the gates; the Cortex-M DSP
/// kernel keeps the gate rows' requantization pairs there in the form its epilogue takes
/// (`(mult, 2^(shift-2), shift-1)` words, rebuilt on every run).
pub const UNIT16_SCRATCH_PER_UNIT: usize = 48;

/// `K` rounded up to a multiple of 4: the padded row length of a unit16 gate matrix.
pub const fn unit16_kp(k: usize) -> usize {
    k.div_ceil(4) * 4
}

/// Halfword index, in a unit16 gate matrix with padded row length `kp`, of element `k` of gate
/// `g`'s row for unit `u` (logical row `g·H + u`). Unit `u`'s block is `4 · kp` halfwords from
/// `u · 4 · kp`; in it, column group `k / 4` holds two column pairs, `(4q, 4q + 2)` then
/// `(4q + 1, 4q + 3)` (the order `sxtb16` extracts a word's bytes in), and each pair is four
/// words, one per gate: `word = (element of column a) | (element of column b) << 16`.
pub const fn unit16_index(kp: usize, u: usize, g: usize, k: usize) -> usize {
    let pair = 2 * (k / 4) + k % 2;
    u * 4 * kp + (pair * 4 + g) * 2 + (k % 4) / 2
}

/// Storage row, in the unit16 layout's unit-major order, of logical gate row `j = g·H + u` of a
/// cell with `hidden ≥ 1` units: `4u + g`.
pub const fn unit16_row(hidden: usize, j: usize) -> usize {
    4 * (j % hidden) + j / hidden
}

/// Writes the row-major int8 gate matrix `m [4H, K]` (`H = hidden`) into `out` in the unit16
/// layout, widened ([`unit16_index`]; the padding columns are not written, so a zeroed `out`
/// keeps them zero). Returns `false`, writing nothing, unless `m` holds `4H · K` and `out`
/// `4H · Kp` elements (`hidden`, `k` ≥ 1).
pub fn unit16_pack(m: &[i8], hidden: usize, k: usize, out: &mut [i16]) -> bool {
    let kp = unit16_kp(k);
    if hidden == 0 || k == 0 || m.len() != 4 * hidden * k || out.len() != 4 * hidden * kp {
        return false;
    }
    for (j, row) in m.chunks_exact(k).enumerate() {
        let (g, u) = (j / hidden, j % hidden);
        for (c, &v) in row.iter().enumerate() {
            if let Some(o) = out.get_mut(unit16_index(kp, u, g, c)) {
                *o = v as i16;
            }
        }
    }
    true
}

/// Copies the per-row values `v` of `4H` gate rows (`per_row` elements a row, logical row order)
/// into `out` in the unit16 layout's row order ([`unit16_row`]). Returns `false`, writing
/// nothing, unless both hold `4H · per_row` elements (`hidden`, `per_row` ≥ 1).
pub fn unit16_rows<T: Copy>(v: &[T], hidden: usize, per_row: usize, out: &mut [T]) -> bool {
    let n = 4 * hidden * per_row;
    if hidden == 0 || per_row == 0 || v.len() != n || out.len() != n {
        return false;
    }
    for (j, row) in v.chunks_exact(per_row).enumerate() {
        let s = unit16_row(hidden, j);
        if let Some(o) = out.get_mut(s * per_row..(s + 1) * per_row) {
            o.copy_from_slice(row);
        }
    }
    true
}

/// One op: 24 bytes. Ops run in table order.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct OpEntry {
    /// `OP_*` code.
    pub opcode: U16,
    /// `OP_FLAG_*` bits.
    pub flags: U16,
    /// Number of tensor indices in the op's tensor list.
    pub n_tensors: U16,
    /// Number of `i32` parameter words.
    pub n_params: U16,
    /// Data-section offset of the op's `u16` tensor indices (2-byte aligned).
    pub tensors_off: U32,
    /// Data-section offset of the op's `i32` parameter words (4-byte aligned).
    pub params_off: U32,
    /// Reserved, must be zero.
    pub reserved: [U32; 2],
}

/// Fully connected: `y[s, m, n] = clamp(zp_y + rq(bias[n] + Σ_k w[n, k] · x[s, m, k], rq[n]))`.
///
/// Tensors: `[x i8, w i8 [N, K], bias i32 [N], rq i32 [N, 2], y i8]`.
/// Params: `[steps, rows_per_step, k, n, y_zp, act_min, act_max]`.
/// The input zero point is folded into `bias` by the quantizer (`bias -= zp_x · Σ_k w[n, k]`).
pub const OP_FC: u16 = 1;
/// LSTM, one direction, ONNX gate order `i, o, f, c`.
///
/// Tensors: `[x i8 [T, I], w i8 [4H, I], r i8 [4H, H], bias_x i32 [4H], bias_h i32 [4H],
/// rq_x i32 [4H, 2], rq_h i32 [4H, 2], sigmoid i16 [513], tanh i16 [513], h i8 [H] (State),
/// c i16 [H] (State), y i8 [T, H], scratch i16 [4H]]` (with [`OP_FLAG_UNIT16`]: `w i16 [4H, Kp(I)]`,
/// `r i16 [4H, Kp(H)]`, `scratch i16 [48H]`).
/// Params: `[steps, input, hidden, reverse, h_zp, cell_exp, hq_mult, hq_shift]`.
pub const OP_LSTM: u16 = 2;
/// GRU, one direction, ONNX gate order `z, r, h`, `linear_before_reset = 1`.
///
/// Tensors: `[x i8 [T, I], w i8 [3H, I], r i8 [3H, H], bias_x i32 [3H], bias_h i32 [3H],
/// rq_x i32 [3H, 2], rq_h i32 [3H, 2], sigmoid i16 [513], tanh i16 [513], h i8 [H] (State),
/// y i8 [T, H], scratch i16 [6H], h16 i16 [H] (State, Q0.15)]`.
/// Params: `[steps, input, hidden, reverse, h_zp, reserved, reserved, hq_mult, hq_shift]`.
pub const OP_GRU: u16 = 3;
/// Vanilla RNN, one direction: `h' = act(W x + b_w + R h + b_r)`.
///
/// Tensors: `[x i8 [T, I], w i8 [H, I], r i8 [H, H], bias_x i32 [H], bias_h i32 [H],
/// rq_x i32 [H, 2], rq_h i32 [H, 2], tanh i16 [513], h i8 [H] (State), y i8 [T, H]]`.
/// Params: `[steps, input, hidden, reverse, h_zp, hq_mult, hq_shift, act]` (`act`: 0 tanh,
/// 1 relu).
pub const OP_RNN: u16 = 4;
/// Elementwise int8 → int8 lookup: `y[i] = table[x[i] + 128]`.
///
/// Tensors: `[x i8, table i8 [256], y i8]`. Params: `[steps, len_per_step]`.
pub const OP_LUT8: u16 = 5;
/// Elementwise add with rescaling:
/// `y = clamp(y_zp + rshift_round((a - a_zp) · a_mult + (b - b_zp) · b_mult, shift))`, in i64.
///
/// Tensors: `[a i8, b i8, y i8]`. `b` has `len_per_step` elements, or `b_len` elements
/// repeated (broadcast over leading dims) when `b_len < len_per_step`.
/// Params: `[steps, len_per_step, b_len, a_zp, b_zp, y_zp, a_mult, b_mult, shift, act_min,
/// act_max]`.
pub const OP_ADD: u16 = 6;
/// Softmax over the last axis: int8 in, int8 out at scale 1/256, zero point -128.
/// `e[i] = table[max - x[i]]` (table: `round(exp(-s_x · d) · 2^16)` for d in 0..=255),
/// `y[i] = clamp((e[i] · 256 + sum / 2) / sum - 128)`.
///
/// Tensors: `[x i8, table i32 [256], y i8]`. Params: `[steps, rows_per_step, len]`.
pub const OP_SOFTMAX: u16 = 7;
/// Strided copy (transpose, slice, gather): for each step `s` and index `(i0..i3)` of the
/// output's per-step shape `out_dims`, `y[s, i] = x[s · in_step + in_offset + Σ i_k · in_strides[k]]`
/// (strides and offsets in elements, non-negative).
///
/// Tensors: `[x, y]` (same dtype). Params: `[steps, elem_size, in_step, in_offset,
/// out_dims[4], in_strides[4]]`.
pub const OP_COPY: u16 = 8;
/// Selects the last of `steps` rows: `y = x[(steps - 1) · row_len ..][..row_len]`.
/// In streaming mode (`steps` = 1) it passes the single step through.
///
/// Tensors: `[x, y]` (same dtype). Params: `[steps, row_bytes]`.
pub const OP_SELECT_LAST: u16 = 9;
/// Concatenation: each input is `[outer, chunk_j]` per step, the output
/// `[outer, Σ chunk_j]`; all share one quantization.
///
/// Tensors: `[in_0, .., in_{n-1}, y]`. Params: `[steps, outer, elem_size, n, chunk_0 .. chunk_{n-1}]`
/// (chunks in elements).
pub const OP_CONCAT: u16 = 10;
/// Requantize int8 → int8: `y = clamp(y_zp + rq(x - x_zp, (mult, shift)))`.
///
/// Tensors: `[x i8, y i8]`. Params: `[steps, len_per_step, x_zp, y_zp, mult, shift]`.
pub const OP_REQUANT: u16 = 11;

/// LayerNorm over the last axis, integer only (I-BERT style):
/// `sum = Σ x`, `diff_i = x_i · d − sum`, `var = Σ diff_i² / d + eps_q` (i64, floor division),
/// `sd = isqrt(var)` (floor), `n_i = div_round(diff_i · 4096, sd)` (0 when `sd = 0`),
/// `y_i = clamp(beta[i] + rq(n_i, gamma_rq[i]))`. `gamma_rq` pairs may have a negative
/// multiplier (negative γ). `beta` already holds `round(β/s_y) + y_zp`.
///
/// Tensors: `[x i8 [rows, d], gamma_rq i32 [d, 2], beta i32 [d], y i8]`.
/// Params: `[steps, rows_per_step, d, eps_q, act_min, act_max]`.
pub const OP_LAYERNORM: u16 = 12;
/// Multi-head attention on projected `q [tq, heads·dh]`, `k [tk, heads·dh]`,
/// `v [tk, heads·dh]`, one query row at a time (scratch: one row of `tk` i32 scores):
/// `s_j = Σ_c (q_c − q_zp)(k_jc − k_zp)`, `m = max_j s_j`,
/// `t_j = rq(m − s_j, score_mult, score_shift)` (the logit gap · log2(e) in Q.10),
/// `p_j = rsr(exp2[t_j & 1023], t_j >> 10)` (0 when `t_j >> 10 ≥ 31`; `exp2[i] =
/// round(2^(−i/1024) · 2^16)`), `l = Σ p_j`, `a_c = Σ_j p_j (v_jc − v_zp)` (i64),
/// `y_c = clamp(y_zp + rq(div_round(a_c · 2^16, l), out_mult, out_shift))`. With `causal`,
/// row `i` sees keys `j ≤ i` only.
///
/// Tensors: `[q i8, k i8, v i8, exp2 i32 [1024], y i8 [tq, heads·dh], scores i32 [tk]]`.
/// Params: `[steps, tq, tk, heads, dh, q_zp, k_zp, v_zp, y_zp, score_mult, score_shift,
/// out_mult, out_shift, causal]`.
pub const OP_ATTENTION: u16 = 13;
/// Mean over the middle axis of `[outer, n, inner]`:
/// `y[o, i] = clamp(y_zp + rq(Σ_k (x[o, k, i] − x_zp), mult, shift))`.
///
/// Tensors: `[x i8, y i8]`. Params: `[steps, outer, n, inner, x_zp, y_zp, mult, shift]`.
pub const OP_MEAN: u16 = 14;

/// Most state tensors a model may have. The parse-time check that no other arena tensor shares a
/// state tensor's bytes sorts the state intervals on the stack (12 bytes each on Cortex-M,
/// 24 on 64-bit hosts), which keeps it O(N log S) without an allocator.
pub const MAX_STATE_TENSORS: usize = 64;

/// Most model outputs a model may have: parse checks that every output is written by some op
/// with a bit mask of this width.
pub const MAX_OUTPUTS: usize = 64;

/// Length of the int16 sigmoid / tanh tables: 512 segments over Q3.12 `[-8, 8)` plus the end.
pub const ACT_TABLE_LEN: usize = 513;
