//! Test-only model-file writer: lays out header, tensor table, op table, I/O list and data
//! section exactly as `docs/format.md` describes (the quantizer's writer does the same on the
//! host), with a bump-allocated arena (no sharing).

extern crate std;
use crate::format::{
    DType, Header, OpEntry, TensorEntry, TensorKind, ARENA_ALIGN, CRC_FIELD, CRC_START, FILE_ALIGN,
    FLAG_STREAMABLE, MAGIC, MAX_RANK, NO_TIME_AXIS, OP_FLAG_PER_STEP, OP_FLAG_UNIT16,
    VERSION_MAJOR,
};
use std::string::String;
use std::vec::Vec;
use zerocopy::little_endian::{F32, I32, U16, U32};
use zerocopy::IntoBytes;

pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub kind: TensorKind,
    pub dims: Vec<usize>,
    pub time_axis: Option<usize>,
    pub scale: f32,
    pub zp: i32,
    pub data: Vec<u8>,
    /// Arena offset (arena tensors).
    pub offset: usize,
}

pub struct OpSpec {
    pub opcode: u16,
    pub per_step: bool,
    /// Sets `OP_FLAG_UNIT16` (the unit16 LSTM layout).
    pub unit16: bool,
    pub tensors: Vec<u16>,
    pub params: Vec<i32>,
}

pub struct Builder {
    pub tensors: Vec<TensorSpec>,
    pub ops: Vec<OpSpec>,
    pub inputs: Vec<u16>,
    pub outputs: Vec<u16>,
    pub seq_len: usize,
    pub streamable: bool,
    pub arena: usize,
}

fn nbytes(dtype: DType, dims: &[usize]) -> usize {
    dims.iter().product::<usize>() * dtype.size()
}

fn pad(buf: &mut Vec<u8>, align: usize) {
    while buf.len() % align != 0 {
        buf.push(0);
    }
}

impl Builder {
    pub fn new(seq_len: usize, streamable: bool) -> Self {
        Builder {
            tensors: Vec::new(),
            ops: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            seq_len,
            streamable,
            arena: 0,
        }
    }

    fn push(&mut self, t: TensorSpec) -> u16 {
        self.tensors.push(t);
        (self.tensors.len() - 1) as u16
    }

    fn place(&mut self, n: usize) -> usize {
        let off = self.arena;
        self.arena += n.div_ceil(ARENA_ALIGN) * ARENA_ALIGN;
        off
    }

    /// An arena activation.
    pub fn act(
        &mut self,
        name: &str,
        dtype: DType,
        dims: &[usize],
        time_axis: Option<usize>,
        scale: f32,
        zp: i32,
    ) -> u16 {
        let offset = self.place(nbytes(dtype, dims));
        self.push(TensorSpec {
            name: name.into(),
            dtype,
            kind: TensorKind::Activation,
            dims: dims.to_vec(),
            time_axis,
            scale,
            zp,
            data: Vec::new(),
            offset,
        })
    }

    /// A persistent state tensor.
    pub fn state(&mut self, name: &str, dtype: DType, len: usize, scale: f32, zp: i32) -> u16 {
        let offset = self.place(nbytes(dtype, &[len]));
        self.push(TensorSpec {
            name: name.into(),
            dtype,
            kind: TensorKind::State,
            dims: std::vec![len],
            time_axis: None,
            scale,
            zp,
            data: Vec::new(),
            offset,
        })
    }

    pub fn konst(&mut self, name: &str, dtype: DType, dims: &[usize], data: Vec<u8>) -> u16 {
        assert_eq!(data.len(), nbytes(dtype, dims), "constant {name}");
        self.push(TensorSpec {
            name: name.into(),
            dtype,
            kind: TensorKind::Const,
            dims: dims.to_vec(),
            time_axis: None,
            scale: 0.0,
            zp: 0,
            data,
            offset: 0,
        })
    }

    /// An int8 constant used as an activation (a CLS token, a positional embedding): quantized
    /// like the values it joins, as the quantizer writes them.
    pub fn konst_act(&mut self, name: &str, dims: &[usize], v: &[i8], scale: f32, zp: i32) -> u16 {
        let t = self.konst_i8(name, dims, v);
        let spec = &mut self.tensors[t as usize];
        (spec.scale, spec.zp) = (scale, zp);
        t
    }

    pub fn konst_i8(&mut self, name: &str, dims: &[usize], v: &[i8]) -> u16 {
        self.konst(name, DType::I8, dims, v.iter().map(|&x| x as u8).collect())
    }

    pub fn konst_i16(&mut self, name: &str, dims: &[usize], v: &[i16]) -> u16 {
        self.konst(
            name,
            DType::I16,
            dims,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }

    pub fn konst_i32(&mut self, name: &str, dims: &[usize], v: &[i32]) -> u16 {
        self.konst(
            name,
            DType::I32,
            dims,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }

    pub fn op(&mut self, opcode: u16, per_step: bool, tensors: &[u16], params: &[i32]) {
        self.ops.push(OpSpec {
            opcode,
            per_step,
            unit16: false,
            tensors: tensors.to_vec(),
            params: params.to_vec(),
        });
    }

    pub fn build(&self) -> Vec<u8> {
        let header_len = core::mem::size_of::<Header>();
        let tensors_off = header_len;
        let ops_off = (tensors_off + self.tensors.len() * 48).next_multiple_of(FILE_ALIGN);
        let io_off = (ops_off + self.ops.len() * 24).next_multiple_of(FILE_ALIGN);
        let data_off =
            (io_off + 2 * (self.inputs.len() + self.outputs.len())).next_multiple_of(FILE_ALIGN);
        let mut data = Vec::new();
        let mut table = Vec::new();
        for t in &self.tensors {
            let offset = if t.kind == TensorKind::Const {
                pad(&mut data, FILE_ALIGN);
                let off = data.len();
                data.extend_from_slice(&t.data);
                off
            } else {
                t.offset
            };
            let name_off = data.len();
            data.extend_from_slice(t.name.as_bytes());
            let mut dims = [U32::new(1); MAX_RANK];
            for (d, &v) in t.dims.iter().enumerate() {
                dims[d] = U32::new(v as u32);
            }
            let e = TensorEntry {
                dtype: t.dtype as u8,
                kind: t.kind as u8,
                rank: t.dims.len() as u8,
                time_axis: t.time_axis.map_or(NO_TIME_AXIS, |a| a as u8),
                dims,
                offset: U32::new(offset as u32),
                nbytes: U32::new(nbytes(t.dtype, &t.dims) as u32),
                scale: F32::new(t.scale),
                zero_point: I32::new(t.zp),
                name_off: U32::new(name_off as u32),
                name_len: U32::new(t.name.len() as u32),
                reserved: U32::new(0),
            };
            table.extend_from_slice(e.as_bytes());
        }
        let mut optable = Vec::new();
        for op in &self.ops {
            pad(&mut data, 4);
            let tat = data.len();
            for &t in &op.tensors {
                data.extend_from_slice(&t.to_le_bytes());
            }
            pad(&mut data, 4);
            let pat = data.len();
            for &p in &op.params {
                data.extend_from_slice(&p.to_le_bytes());
            }
            let e = OpEntry {
                opcode: U16::new(op.opcode),
                flags: U16::new(
                    if op.per_step { OP_FLAG_PER_STEP } else { 0 }
                        | if op.unit16 { OP_FLAG_UNIT16 } else { 0 },
                ),
                n_tensors: U16::new(op.tensors.len() as u16),
                n_params: U16::new(op.params.len() as u16),
                tensors_off: U32::new(tat as u32),
                params_off: U32::new(pat as u32),
                reserved: [U32::new(0); 2],
            };
            optable.extend_from_slice(e.as_bytes());
        }
        pad(&mut data, FILE_ALIGN);
        let file_len = data_off + data.len();
        let header = Header {
            magic: MAGIC,
            version_major: U16::new(VERSION_MAJOR),
            // The lowest minor with every feature the file uses (`VERSION_MINOR`).
            version_minor: U16::new(u16::from(self.ops.iter().any(|o| o.unit16))),
            file_len: U32::new(file_len as u32),
            crc32: U32::new(0),
            flags: U32::new(if self.streamable { FLAG_STREAMABLE } else { 0 }),
            arena_bytes: U32::new(self.arena as u32),
            n_tensors: U32::new(self.tensors.len() as u32),
            tensors_off: U32::new(tensors_off as u32),
            n_ops: U32::new(self.ops.len() as u32),
            ops_off: U32::new(ops_off as u32),
            n_inputs: U16::new(self.inputs.len() as u16),
            n_outputs: U16::new(self.outputs.len() as u16),
            io_off: U32::new(io_off as u32),
            data_off: U32::new(data_off as u32),
            data_len: U32::new(data.len() as u32),
            seq_len: U32::new(self.seq_len as u32),
            reserved: U32::new(0),
        };
        let mut out = Vec::new();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&table);
        pad(&mut out, FILE_ALIGN);
        out.extend_from_slice(&optable);
        pad(&mut out, FILE_ALIGN);
        for &t in self.inputs.iter().chain(&self.outputs) {
            out.extend_from_slice(&t.to_le_bytes());
        }
        pad(&mut out, FILE_ALIGN);
        assert_eq!(out.len(), data_off);
        out.extend_from_slice(&data);
        reseal(&mut out);
        out
    }
}

/// Recomputes the header CRC after an edit.
pub fn reseal(file: &mut [u8]) {
    if file.len() < 16 {
        return;
    }
    let algo = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let mut digest = algo.digest();
    digest.update(&file[..CRC_FIELD]);
    digest.update(&file[CRC_START..]);
    let crc = digest.finalize();
    file[12..16].copy_from_slice(&crc.to_le_bytes());
}
