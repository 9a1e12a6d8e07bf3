//! [`Model`]: a parsed, fully validated, zero-copy view of a model file.
//!
//! `Model::parse` checks every structural promise of `docs/format.md` once (see "Validation on
//! parse"): lengths, magic, version, checksum, flags, reserved fields, that every table, list,
//! name and constant lies inside its section, tensor descriptors (dtype, kind, rank, dims,
//! sizes, alignment, arena bounds, time axis), the model inputs and outputs, and every op's
//! tensor list and parameters against what its kernel will touch (see `exec::decode`). After
//! that, running the model cannot fail or panic because of the file's contents.

use crate::error::Error;
use crate::exec;
use crate::format::{
    DType, Header, OpEntry, TensorEntry, TensorKind, ARENA_ALIGN, CRC_FIELD, CRC_START, FILE_ALIGN,
    FLAG_STREAMABLE, MAGIC, MAX_OUTPUTS, MAX_RANK, MAX_STATE_TENSORS, NO_TIME_AXIS, OP_ADD,
    OP_ATTENTION, OP_CONCAT, OP_COPY, OP_FC, OP_FLAG_PER_STEP, OP_FLAG_UNIT16, OP_GRU,
    OP_LAYERNORM, OP_LSTM, OP_LUT8, OP_MEAN, OP_REQUANT, OP_RNN, OP_SELECT_LAST, OP_SOFTMAX,
    VERSION_MAJOR,
};
use core::mem::size_of;
use zerocopy::little_endian::{I32, U16};
use zerocopy::FromBytes;

const HEADER_LEN: usize = size_of::<Header>();
const TENSOR_LEN: usize = size_of::<TensorEntry>();
const OP_LEN: usize = size_of::<OpEntry>();
const _: () = assert!(HEADER_LEN == 64 && TENSOR_LEN == 48 && OP_LEN == 24);

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The name of an opcode (`"FC"`, `"LSTM"`, …), or `"UNKNOWN"`.
pub const fn op_name(opcode: u16) -> &'static str {
    match opcode {
        OP_FC => "FC",
        OP_LSTM => "LSTM",
        OP_GRU => "GRU",
        OP_RNN => "RNN",
        OP_LUT8 => "LUT8",
        OP_ADD => "ADD",
        OP_SOFTMAX => "SOFTMAX",
        OP_COPY => "COPY",
        OP_SELECT_LAST => "SELECT_LAST",
        OP_CONCAT => "CONCAT",
        OP_REQUANT => "REQUANT",
        OP_LAYERNORM => "LAYERNORM",
        OP_ATTENTION => "ATTENTION",
        OP_MEAN => "MEAN",
        _ => "UNKNOWN",
    }
}

/// A parsed model file, borrowing the file's bytes (zero copy).
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    bytes: &'a [u8],
    header: &'a Header,
    tensors: &'a [TensorEntry],
    ops: &'a [OpEntry],
    io: &'a [U16],
    data: &'a [u8],
    data_off: usize,
}

/// One tensor's descriptor, decoded from the tensor table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorInfo<'a> {
    index: usize,
    /// The name's bytes (UTF-8, checked by `parse`), decoded by `name()` on demand: the
    /// session's decoding of every op reads tensor descriptors on each run, without names.
    name: &'a [u8],
    dtype: DType,
    kind: TensorKind,
    rank: usize,
    dims: [usize; MAX_RANK],
    time_axis: Option<usize>,
    offset: usize,
    nbytes: usize,
    scale: f32,
    zero_point: i32,
}

/// One op's entry: opcode, flags, tensor list and parameter words (borrowed from the file).
#[derive(Debug, Clone, Copy)]
pub struct OpInfo<'a> {
    index: usize,
    opcode: u16,
    flags: u16,
    tensors: &'a [U16],
    params: &'a [I32],
}

fn malformed(offset: usize, what: &'static str) -> Error {
    Error::Malformed { offset, what }
}

/// `start..start + len` if it lies within `lo..=hi`.
fn span(start: usize, len: usize, lo: usize, hi: usize) -> Option<(usize, usize)> {
    let end = start.checked_add(len)?;
    (start >= lo && end <= hi).then_some((start, end))
}

fn u32_at(v: zerocopy::little_endian::U32) -> usize {
    v.get() as usize
}

impl<'a> Model<'a> {
    /// Parses and validates a model file. Never panics; every defect is a specific [`Error`].
    pub fn parse(bytes: &'a [u8]) -> Result<Model<'a>, Error> {
        let Ok((header, _)) = Header::ref_from_prefix(bytes) else {
            return Err(Error::Truncated {
                needed: HEADER_LEN,
                got: bytes.len(),
            });
        };
        if header.magic != MAGIC {
            return Err(Error::BadMagic);
        }
        let (major, minor) = (header.version_major.get(), header.version_minor.get());
        if major != VERSION_MAJOR {
            return Err(Error::UnsupportedVersion { major, minor });
        }
        let file_len = u32_at(header.file_len);
        if bytes.len() < file_len {
            return Err(Error::Truncated {
                needed: file_len,
                got: bytes.len(),
            });
        }
        if bytes.len() > file_len {
            return Err(Error::TrailingBytes {
                expected: file_len,
                got: bytes.len(),
            });
        }
        let stored = header.crc32.get();
        let mut digest = CRC.digest();
        digest.update(&bytes[..CRC_FIELD]);
        digest.update(&bytes[CRC_START..]);
        let computed = digest.finalize();
        if stored != computed {
            return Err(Error::Checksum { stored, computed });
        }
        if header.flags.get() & !FLAG_STREAMABLE != 0 {
            return Err(malformed(16, "unknown header flag bits"));
        }
        let arena = u32_at(header.arena_bytes);
        if arena % ARENA_ALIGN != 0 {
            return Err(malformed(20, "arena_bytes is not a multiple of 16"));
        }
        if arena.checked_add(ARENA_ALIGN - 1).is_none() {
            return Err(malformed(20, "arena_bytes too large for this target"));
        }
        if header.seq_len.get() == 0 {
            return Err(malformed(56, "seq_len is 0"));
        }
        if header.reserved.get() != 0 {
            return Err(malformed(60, "reserved header field is not 0"));
        }
        // Data section.
        let data_off = u32_at(header.data_off);
        let data_len = u32_at(header.data_len);
        if data_off % FILE_ALIGN != 0 {
            return Err(malformed(48, "data section is not 16-aligned"));
        }
        let Some((d0, d1)) = span(data_off, data_len, HEADER_LEN, file_len) else {
            return Err(malformed(48, "data section outside the file"));
        };
        let data = &bytes[d0..d1];
        // Tables: 16-aligned, after the header, before the data section.
        let table = |off_field: usize, off: usize, n: usize, entry: usize, what: &'static str| {
            let len = n.checked_mul(entry).ok_or(malformed(off_field, what))?;
            if off % FILE_ALIGN != 0 {
                return Err(malformed(off_field, "table is not 16-aligned"));
            }
            span(off, len, HEADER_LEN, data_off).ok_or(malformed(off_field, what))
        };
        let (t0, t1) = table(
            28,
            u32_at(header.tensors_off),
            u32_at(header.n_tensors),
            TENSOR_LEN,
            "tensor table outside its section",
        )?;
        let (o0, o1) = table(
            36,
            u32_at(header.ops_off),
            u32_at(header.n_ops),
            OP_LEN,
            "op table outside its section",
        )?;
        let n_io = header.n_inputs.get() as usize + header.n_outputs.get() as usize;
        let (i0, i1) = table(
            44,
            u32_at(header.io_off),
            n_io,
            2,
            "I/O list outside its section",
        )?;
        let tensors = <[TensorEntry]>::ref_from_bytes(&bytes[t0..t1])
            .map_err(|_| malformed(t0, "tensor table"))?;
        let ops =
            <[OpEntry]>::ref_from_bytes(&bytes[o0..o1]).map_err(|_| malformed(o0, "op table"))?;
        let io = <[U16]>::ref_from_bytes(&bytes[i0..i1]).map_err(|_| malformed(i0, "I/O list"))?;
        let model = Model {
            bytes,
            header,
            tensors,
            ops,
            io,
            data,
            data_off,
        };

        let mut at = t0;
        for e in tensors {
            model.validate_tensor(e, at)?;
            at = at.saturating_add(TENSOR_LEN);
        }
        model.check_state_disjoint(t0)?;
        let mut timed_input = false;
        for (k, &t) in io.iter().enumerate() {
            let at = i0 + 2 * k;
            let info = model
                .tensor(t.get() as usize)
                .ok_or(malformed(at, "I/O tensor index out of range"))?;
            if info.dtype != DType::I8 || info.kind != TensorKind::Activation {
                return Err(malformed(
                    at,
                    "model inputs and outputs must be int8 activations",
                ));
            }
            timed_input |= k < model.n_inputs() && info.time_axis.is_some();
        }
        if model.is_streamable() && !timed_input {
            return Err(malformed(16, "streamable model without a sequence input"));
        }
        // Every model output must be written by some op, and the last op must write one: a
        // truncated op table (fewer ops, CRC made consistent) is refused (`docs/format.md`).
        let n_out = model.n_outputs();
        let mut outputs = [(0usize, 0usize); MAX_OUTPUTS];
        let outs = outputs
            .get_mut(..n_out)
            .ok_or(malformed(42, "more than 64 model outputs"))?;
        for (k, o) in outs.iter_mut().enumerate() {
            if let Some(t) = model.output(k) {
                *o = (t.offset, t.nbytes);
            }
        }
        let mut written = 0u64;
        let mut last_writes_output = false;
        let mut at = o0;
        for (i, e) in ops.iter().enumerate() {
            model.validate_op_entry(e, i, at)?;
            let mut hit = false;
            exec::decode(&model, i, false, exec::Decode::Parse)?.for_each_write(|r| {
                for (k, &(off, nbytes)) in outs.iter().enumerate() {
                    if r.off == off && r.full == nbytes {
                        written |= 1u64 << k;
                        hit = true;
                    }
                }
            });
            last_writes_output = hit;
            at = at.saturating_add(OP_LEN);
        }
        for k in 0..outs.len() {
            if written & (1u64 << k) == 0 {
                let at = i0 + 2 * (model.n_inputs() + k);
                return Err(malformed(at, "model output written by no op"));
            }
        }
        if !ops.is_empty() && !last_writes_output {
            return Err(Error::BadOp {
                op: ops.len() - 1,
                what: "the last op writes no model output",
            });
        }
        Ok(model)
    }

    /// State survives between `step` calls: no other arena tensor may share its bytes.
    ///
    /// O(N log S) for N tensors of which S are state, without an allocator: the state intervals
    /// (at most [`MAX_STATE_TENSORS`], a format rule) are copied to the stack and sorted, checked
    /// for overlap with each other by neighbours, then every activation is checked against them
    /// by binary search. Runs after `validate_tensor`, so every interval lies in the arena.
    fn check_state_disjoint(&self, t0: usize) -> Result<(), Error> {
        const STATE: u8 = TensorKind::State as u8;
        const ACTIVATION: u8 = TensorKind::Activation as u8;
        // (offset, end, table index) of every state tensor.
        let mut states = [(0usize, 0usize, 0usize); MAX_STATE_TENSORS];
        let mut n = 0usize;
        for (i, e) in self.tensors.iter().enumerate() {
            if e.kind != STATE {
                continue;
            }
            let at = t0.saturating_add(i.saturating_mul(TENSOR_LEN));
            let slot = states
                .get_mut(n)
                .ok_or(malformed(at + 1, "more than 64 state tensors"))?;
            let off = u32_at(e.offset);
            *slot = (off, off.saturating_add(u32_at(e.nbytes)), i);
            n += 1;
        }
        let states = states.get_mut(..n).unwrap_or_default();
        exec::insertion_sort(states);
        let shared = |i: usize| {
            malformed(
                t0.saturating_add(i.saturating_mul(TENSOR_LEN)) + 20,
                "state tensor shares arena bytes with another tensor",
            )
        };
        // Sorted by offset, two states overlap only if some state overlaps its successor.
        for w in states.windows(2) {
            if let [(_, end, i), (next, _, j)] = *w {
                if next < end {
                    return Err(shared(i.max(j)));
                }
            }
        }
        for e in self.tensors {
            if e.kind != ACTIVATION {
                continue;
            }
            let off = u32_at(e.offset);
            let end = off.saturating_add(u32_at(e.nbytes));
            // The states are disjoint and sorted, so their ends are increasing too: the first
            // state ending after `off` is the only candidate.
            let k = states.partition_point(|s| s.1 <= off);
            if let Some(&(s_off, _, i)) = states.get(k) {
                if s_off < end {
                    return Err(shared(i));
                }
            }
        }
        Ok(())
    }

    fn validate_tensor(&self, e: &TensorEntry, at: usize) -> Result<(), Error> {
        let dtype = DType::from_code(e.dtype).ok_or(malformed(at, "unknown dtype"))?;
        let kind = TensorKind::from_code(e.kind).ok_or(malformed(at + 1, "unknown tensor kind"))?;
        let rank = e.rank as usize;
        if rank > MAX_RANK {
            return Err(malformed(at + 2, "rank above 4"));
        }
        let mut elems = 1usize;
        for (d, dim) in e.dims.iter().enumerate() {
            let v = dim.get() as usize;
            if v == 0 {
                return Err(malformed(at + 4 + 4 * d, "zero dimension"));
            }
            if d >= rank && v != 1 {
                return Err(malformed(at + 4 + 4 * d, "unused dimension is not 1"));
            }
            elems = elems
                .checked_mul(v)
                .ok_or(malformed(at + 4, "dims overflow"))?;
        }
        let nbytes = elems
            .checked_mul(dtype.size())
            .ok_or(malformed(at + 4, "dims overflow"))?;
        if nbytes != u32_at(e.nbytes) {
            return Err(malformed(at + 24, "nbytes disagrees with dims"));
        }
        if e.time_axis != NO_TIME_AXIS {
            let ta = e.time_axis as usize;
            if ta >= rank
                || e.dims[..ta].iter().any(|d| d.get() != 1)
                || e.dims[ta].get() != self.header.seq_len.get()
            {
                return Err(malformed(at + 3, "bad time axis"));
            }
        }
        let scale = e.scale.get();
        if !(scale.is_finite() && scale >= 0.0) {
            return Err(malformed(at + 28, "scale is not finite and non-negative"));
        }
        if dtype == DType::I8 && !(-128..=127).contains(&e.zero_point.get()) {
            return Err(malformed(at + 32, "int8 zero point outside [-128, 127]"));
        }
        let (name_off, name_len) = (u32_at(e.name_off), u32_at(e.name_len));
        let (n0, n1) = span(name_off, name_len, 0, self.data.len())
            .ok_or(malformed(at + 36, "name outside the data section"))?;
        core::str::from_utf8(&self.data[n0..n1])
            .map_err(|_| malformed(at + 36, "name is not UTF-8"))?;
        if e.reserved.get() != 0 {
            return Err(malformed(at + 44, "reserved tensor field is not 0"));
        }
        let off = u32_at(e.offset);
        match kind {
            TensorKind::Const => {
                if off % FILE_ALIGN != 0 {
                    return Err(malformed(at + 20, "constant is not 16-aligned"));
                }
                span(off, nbytes, 0, self.data.len())
                    .ok_or(malformed(at + 20, "constant outside the data section"))?;
            }
            TensorKind::Activation | TensorKind::State => {
                if off % ARENA_ALIGN != 0 {
                    return Err(malformed(at + 20, "arena tensor is not 16-aligned"));
                }
                span(off, nbytes, 0, self.plan_bytes())
                    .ok_or(malformed(at + 20, "arena tensor outside arena_bytes"))?;
            }
        }
        Ok(())
    }

    fn validate_op_entry(&self, e: &OpEntry, i: usize, at: usize) -> Result<(), Error> {
        let opcode = e.opcode.get();
        if op_name(opcode) == "UNKNOWN" {
            return Err(Error::UnknownOp { op: i, opcode });
        }
        if e.flags.get() & !(OP_FLAG_PER_STEP | OP_FLAG_UNIT16) != 0 {
            return Err(malformed(at + 2, "unknown op flag bits"));
        }
        if e.flags.get() & OP_FLAG_UNIT16 != 0 && opcode != OP_LSTM {
            return Err(malformed(
                at + 2,
                "the unit16 layout flag on an op other than LSTM",
            ));
        }
        if e.reserved.iter().any(|r| r.get() != 0) {
            return Err(malformed(at + 16, "reserved op field is not 0"));
        }
        let (toff, poff) = (u32_at(e.tensors_off), u32_at(e.params_off));
        if toff % 2 != 0 || poff % 4 != 0 {
            return Err(malformed(at + 8, "op tensor list or parameters misaligned"));
        }
        let nt = e.n_tensors.get() as usize;
        let np = e.n_params.get() as usize;
        span(toff, 2 * nt, 0, self.data.len())
            .ok_or(malformed(at + 8, "op tensor list outside the data section"))?;
        span(poff, 4 * np, 0, self.data.len())
            .ok_or(malformed(at + 12, "op parameters outside the data section"))?;
        let op = self.op(i).ok_or(malformed(at, "op entry"))?;
        for t in op.tensors() {
            if t >= self.n_tensors() {
                return Err(Error::BadOp {
                    op: i,
                    what: "tensor index out of range",
                });
            }
        }
        Ok(())
    }

    /// Bytes of arena a [`crate::Session`] needs: the plan's `arena_bytes + 15`, so that the
    /// session can align its base to 16 inside any buffer.
    pub fn arena_bytes(&self) -> usize {
        self.plan_bytes() + (ARENA_ALIGN - 1)
    }

    /// Extra bytes a [`crate::Session`] can use, on this CPU, to prepare the model's weights
    /// once instead of at every call: given an arena at least `arena_bytes() +
    /// prepared_bytes()` long, a session keeps each recurrent op's repacked weights and
    /// requantization constants past its plan (45,376 bytes per LSTM or GRU op with AVX-512
    /// VNNI, plus 64 to align them; 0 on the other levels, which keep none). Results are the
    /// same with or without: only the time of a call changes (docs/decisions.md, "Prepared
    /// operands").
    pub fn prepared_bytes(&self) -> usize {
        crate::exec::prepared_bytes(self)
    }

    /// Bytes of arena the static plan uses (the header's `arena_bytes`).
    pub fn plan_bytes(&self) -> usize {
        u32_at(self.header.arena_bytes)
    }

    /// Length of the file.
    pub fn file_len(&self) -> usize {
        self.bytes.len()
    }

    /// Number of model inputs.
    pub fn n_inputs(&self) -> usize {
        self.header.n_inputs.get() as usize
    }

    /// Number of model outputs.
    pub fn n_outputs(&self) -> usize {
        self.header.n_outputs.get() as usize
    }

    /// Number of tensors.
    pub fn n_tensors(&self) -> usize {
        self.tensors.len()
    }

    /// Number of ops.
    pub fn n_ops(&self) -> usize {
        self.ops.len()
    }

    /// Whether the model may be driven one step at a time.
    pub fn is_streamable(&self) -> bool {
        self.header.flags.get() & FLAG_STREAMABLE != 0
    }

    /// Time steps `T` of the sequence input (1 if none).
    pub fn seq_len(&self) -> usize {
        u32_at(self.header.seq_len)
    }

    /// Total bytes of constant tensors (weights, biases, tables) read in place from the file.
    pub fn const_bytes(&self) -> usize {
        self.tensors
            .iter()
            .filter(|t| t.kind == TensorKind::Const as u8)
            .map(|t| u32_at(t.nbytes))
            .sum()
    }

    /// Tensor index of model input `i`.
    pub fn input_index(&self, i: usize) -> Option<usize> {
        if i < self.n_inputs() {
            self.io.get(i).map(|t| t.get() as usize)
        } else {
            None
        }
    }

    /// Tensor index of model output `i`.
    pub fn output_index(&self, i: usize) -> Option<usize> {
        if i < self.n_outputs() {
            self.io.get(self.n_inputs() + i).map(|t| t.get() as usize)
        } else {
            None
        }
    }

    /// Descriptor of model input `i`.
    pub fn input(&self, i: usize) -> Option<TensorInfo<'a>> {
        self.tensor(self.input_index(i)?)
    }

    /// Descriptor of model output `i`.
    pub fn output(&self, i: usize) -> Option<TensorInfo<'a>> {
        self.tensor(self.output_index(i)?)
    }

    /// Descriptor of tensor `i`. Returns `None` for an out-of-range index (and, before
    /// validation, for an entry with an unknown dtype or kind).
    pub fn tensor(&self, i: usize) -> Option<TensorInfo<'a>> {
        let e = self.tensors.get(i)?;
        let rank = (e.rank as usize).min(MAX_RANK);
        let name = span(u32_at(e.name_off), u32_at(e.name_len), 0, self.data.len())
            .and_then(|(a, b)| self.data.get(a..b))
            .unwrap_or(&[]);
        Some(TensorInfo {
            index: i,
            name,
            dtype: DType::from_code(e.dtype)?,
            kind: TensorKind::from_code(e.kind)?,
            rank,
            // Element by element: `e.dims.map(..)` compiled to a 16-byte `memcpy` of the
            // unaligned entry, a byte loop on Cortex-M (about 2,100 instructions per mnist_lstm
            // inference, where the ops' decoding reads the tensors of every op).
            dims: [
                e.dims[0].get() as usize,
                e.dims[1].get() as usize,
                e.dims[2].get() as usize,
                e.dims[3].get() as usize,
            ],
            time_axis: (e.time_axis != NO_TIME_AXIS).then_some(e.time_axis as usize),
            offset: u32_at(e.offset),
            nbytes: u32_at(e.nbytes),
            scale: e.scale.get(),
            zero_point: e.zero_point.get(),
        })
    }

    /// Op `i`'s entry.
    pub fn op(&self, i: usize) -> Option<OpInfo<'a>> {
        let e = self.ops.get(i)?;
        let nt = e.n_tensors.get() as usize;
        let np = e.n_params.get() as usize;
        let (t0, t1) = span(u32_at(e.tensors_off), 2 * nt, 0, self.data.len())?;
        let (p0, p1) = span(u32_at(e.params_off), 4 * np, 0, self.data.len())?;
        Some(OpInfo {
            index: i,
            opcode: e.opcode.get(),
            flags: e.flags.get(),
            tensors: <[U16]>::ref_from_bytes(&self.data[t0..t1]).ok()?,
            params: <[I32]>::ref_from_bytes(&self.data[p0..p1]).ok()?,
        })
    }

    /// The bytes of constant tensor `t` (in the data section), if it is a constant.
    pub fn const_data(&self, t: &TensorInfo<'_>) -> Option<&'a [u8]> {
        if t.kind != TensorKind::Const {
            return None;
        }
        let (a, b) = span(t.offset, t.nbytes, 0, self.data.len())?;
        Some(&self.data[a..b])
    }

    /// File offset of the data section.
    pub fn data_offset(&self) -> usize {
        self.data_off
    }
}

impl<'a> TensorInfo<'a> {
    /// Index in the tensor table.
    pub fn index(&self) -> usize {
        self.index
    }
    /// Name (may be empty; empty too if it is not UTF-8, which `Model::parse` refuses).
    pub fn name(&self) -> &'a str {
        core::str::from_utf8(self.name).unwrap_or("")
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Where the bytes live.
    pub fn kind(&self) -> TensorKind {
        self.kind
    }
    /// Number of dims in use.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// Dims, outermost first; unused dims are 1.
    pub fn dims(&self) -> [usize; MAX_RANK] {
        self.dims
    }
    /// Index of the time axis, if any.
    pub fn time_axis(&self) -> Option<usize> {
        self.time_axis
    }
    /// Arena offset (activations, state) or data-section offset (constants).
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// Size in bytes.
    pub fn nbytes(&self) -> usize {
        self.nbytes
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.nbytes / self.dtype.size()
    }
    /// Whether the tensor has no elements (never true for a validated model).
    pub fn is_empty(&self) -> bool {
        self.nbytes == 0
    }
    /// Affine scale (0 when not affine).
    pub fn scale(&self) -> f32 {
        self.scale
    }
    /// Zero point.
    pub fn zero_point(&self) -> i32 {
        self.zero_point
    }
    /// Bytes of one time step (`nbytes / seq_len`) for a tensor with a time axis, otherwise
    /// the whole tensor.
    pub fn step_bytes(&self, seq_len: usize) -> usize {
        match self.time_axis {
            Some(_) if seq_len > 0 => self.nbytes / seq_len,
            _ => self.nbytes,
        }
    }

    /// Quantizes `x` into `out` (over their common length): `q = sat8(round(x / scale) + zp)`,
    /// rounding half away from zero. A NaN becomes the zero point.
    /// (On x86-64 the same loop runs at the widest vector width the CPU has, with the same
    /// bytes: `kernels/x86_io.rs`.)
    pub fn quantize(&self, x: &[f32], out: &mut [i8]) {
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::x86_io::quantize_wide(self.scale, self.zero_point, x, out) {
            return;
        }
        quantize_loop(self.scale, self.zero_point, x, out)
    }

    /// Dequantizes `q` into `out` (over their common length): `scale · (q - zp)`.
    pub fn dequantize(&self, q: &[i8], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::x86_io::dequantize_wide(self.scale, self.zero_point, q, out) {
            return;
        }
        dequantize_loop(self.scale, self.zero_point, q, out)
    }
}

/// [`TensorInfo::quantize`]'s loop, inlined wherever it runs (the x86 versions compile it with
/// wider vectors).
#[inline(always)]
pub(crate) fn quantize_loop(scale: f32, zp: i32, x: &[f32], out: &mut [i8]) {
    for (o, &v) in out.iter_mut().zip(x) {
        let r = v / scale;
        let r = if r.is_nan() {
            0.0
        } else {
            r.clamp(-1024.0, 1024.0)
        };
        *o = (round_half_away(r) + zp).clamp(-128, 127) as i8;
    }
}

/// [`TensorInfo::dequantize`]'s loop, as [`quantize_loop`].
#[inline(always)]
pub(crate) fn dequantize_loop(scale: f32, zp: i32, q: &[i8], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(q) {
        *o = scale * (v as i32 - zp) as f32;
    }
}

impl<'a> OpInfo<'a> {
    /// Index in the op table.
    pub fn index(&self) -> usize {
        self.index
    }
    /// `OP_*` code.
    pub fn opcode(&self) -> u16 {
        self.opcode
    }
    /// Name of the opcode.
    pub fn name(&self) -> &'static str {
        op_name(self.opcode)
    }
    /// `OP_FLAG_*` bits.
    pub fn flags(&self) -> u16 {
        self.flags
    }
    /// Whether the op runs with `steps = 1` in streaming mode.
    pub fn per_step(&self) -> bool {
        self.flags & OP_FLAG_PER_STEP != 0
    }
    /// Whether the op's gate operands are in the unit16 layout ([`OP_FLAG_UNIT16`]).
    pub fn unit16(&self) -> bool {
        self.flags & OP_FLAG_UNIT16 != 0
    }
    /// Length of the tensor list.
    pub fn n_tensors(&self) -> usize {
        self.tensors.len()
    }
    /// Tensor index at position `i` of the list.
    pub fn tensor(&self, i: usize) -> Option<usize> {
        self.tensors.get(i).map(|t| t.get() as usize)
    }
    /// The tensor list.
    pub fn tensors(&self) -> impl Iterator<Item = usize> + 'a {
        self.tensors.iter().map(|t| t.get() as usize)
    }
    /// Number of parameter words.
    pub fn n_params(&self) -> usize {
        self.params.len()
    }
    /// Parameter word `i`.
    pub fn param(&self, i: usize) -> Option<i32> {
        self.params.get(i).map(|p| p.get())
    }
    /// The parameter words.
    pub fn params(&self) -> impl Iterator<Item = i32> + 'a {
        self.params.iter().map(|p| p.get())
    }
    pub(crate) fn raw_tensors(&self) -> &'a [U16] {
        self.tensors
    }
    pub(crate) fn raw_params(&self) -> &'a [I32] {
        self.params
    }
}

/// `r` rounded half away from zero, exactly, for `|r| ≤ 1024`; branch-free so that
/// [`TensorInfo::quantize`]'s loop vectorizes.
#[inline]
fn round_half_away(r: f32) -> i32 {
    // x86-64: without a float-to-int cast, which LLVM keeps scalar (its saturating semantics):
    // adding `1.5 · 2^23` rounds to the nearest integer (ties to even) exactly, in the low
    // mantissa bits; the ties that went to the even neighbour toward zero (`r − q = ±0.5` with
    // `r` on that side) then step away from zero. Every step is exact.
    #[cfg(target_arch = "x86_64")]
    {
        const MAGIC: f32 = 12_582_912.0;
        let m = r + MAGIC;
        let q = m.to_bits() as i32 - MAGIC.to_bits() as i32;
        let d = r - (m - MAGIC);
        q + i32::from(d == 0.5 && r > 0.0) - i32::from(d == -0.5 && r < 0.0)
    }
    // Elsewhere the cast is one instruction where there is an FPU (`vcvt`, `fcvtzs`).
    #[cfg(not(target_arch = "x86_64"))]
    {
        let t = r as i32; // truncation toward zero, exact in this range
        let frac = r - t as f32;
        t + i32::from(frac >= 0.5) - i32::from(frac <= -0.5)
    }
}
