//! Serialises a placed [`QModel`] into the model file of `docs/format.md`.

use crate::quantize::QModel;
use anyhow::{bail, Result};
use kinglet::format::{
    self, Header, OpEntry, TensorEntry, TensorKind, FILE_ALIGN, MAGIC, NO_TIME_AXIS,
};
use zerocopy::little_endian::{F32, I32, U16, U32};
use zerocopy::IntoBytes;

fn pad_to(buf: &mut Vec<u8>, align: usize) {
    while buf.len() % align != 0 {
        buf.push(0);
    }
}

fn u32_of(v: usize, what: &str) -> Result<U32> {
    u32::try_from(v)
        .map(U32::new)
        .map_err(|_| anyhow::anyhow!("{what} ({v}) does not fit the file format's 32 bits"))
}

/// The file bytes for `m`, whose buffers have been placed; `plan_bytes` from the planner.
pub fn write(m: &QModel, plan_bytes: usize) -> Result<Vec<u8>> {
    let header_len = std::mem::size_of::<Header>();
    let tensors_off = header_len;
    let ops_off = (tensors_off + m.tensors.len() * std::mem::size_of::<TensorEntry>())
        .next_multiple_of(FILE_ALIGN);
    let io_off =
        (ops_off + m.ops.len() * std::mem::size_of::<OpEntry>()).next_multiple_of(FILE_ALIGN);
    let data_off = (io_off + 2 * (m.inputs.len() + m.outputs.len())).next_multiple_of(FILE_ALIGN);

    let mut data: Vec<u8> = Vec::new();
    let mut entries = Vec::with_capacity(m.tensors.len());
    for t in &m.tensors {
        if t.dims.len() > format::MAX_RANK {
            bail!(
                "tensor '{}' has rank {} > {}",
                t.name,
                t.dims.len(),
                format::MAX_RANK
            );
        }
        let offset = match t.kind {
            TensorKind::Const => {
                pad_to(&mut data, FILE_ALIGN);
                let off = data.len();
                if t.data.len() != t.nbytes() {
                    bail!(
                        "internal: constant '{}' has {} bytes, expected {}",
                        t.name,
                        t.data.len(),
                        t.nbytes()
                    );
                }
                data.extend_from_slice(&t.data);
                off
            }
            TensorKind::Activation | TensorKind::State => {
                let b = t
                    .buffer
                    .ok_or_else(|| anyhow::anyhow!("internal: '{}' has no buffer", t.name))?;
                m.buffers[b].offset
            }
        };
        let mut dims = [U32::new(1); format::MAX_RANK];
        for (i, &d) in t.dims.iter().enumerate() {
            dims[i] = u32_of(d, "a dimension")?;
        }
        entries.push((t, offset, dims));
    }
    let mut tensor_table: Vec<u8> = Vec::new();
    for (t, offset, dims) in entries {
        let name_off = data.len();
        data.extend_from_slice(t.name.as_bytes());
        let e = TensorEntry {
            dtype: t.dtype as u8,
            kind: t.kind as u8,
            rank: t.dims.len() as u8,
            time_axis: t.time_axis.map_or(NO_TIME_AXIS, |a| a as u8),
            dims,
            offset: u32_of(offset, "an offset")?,
            nbytes: u32_of(t.nbytes(), "a tensor size")?,
            scale: F32::new(t.scale),
            zero_point: I32::new(t.zero_point),
            name_off: u32_of(name_off, "a name offset")?,
            name_len: u32_of(t.name.len(), "a name length")?,
            reserved: U32::new(0),
        };
        tensor_table.extend_from_slice(e.as_bytes());
    }
    let mut op_table: Vec<u8> = Vec::new();
    for op in &m.ops {
        pad_to(&mut data, 4);
        let tensors_at = data.len();
        for &t in &op.tensors {
            data.extend_from_slice(&u16::try_from(t)?.to_le_bytes());
        }
        pad_to(&mut data, 4);
        let params_at = data.len();
        for &p in &op.params {
            data.extend_from_slice(&p.to_le_bytes());
        }
        let e = OpEntry {
            opcode: U16::new(op.opcode),
            flags: U16::new(
                if op.per_step {
                    format::OP_FLAG_PER_STEP
                } else {
                    0
                } | if op.unit16 { format::OP_FLAG_UNIT16 } else { 0 },
            ),
            n_tensors: U16::new(u16::try_from(op.tensors.len())?),
            n_params: U16::new(u16::try_from(op.params.len())?),
            tensors_off: u32_of(tensors_at, "an offset")?,
            params_off: u32_of(params_at, "an offset")?,
            reserved: [U32::new(0); 2],
        };
        op_table.extend_from_slice(e.as_bytes());
    }
    pad_to(&mut data, FILE_ALIGN);
    let file_len = data_off + data.len();
    let header = Header {
        magic: MAGIC,
        version_major: U16::new(format::VERSION_MAJOR),
        // The lowest minor that has every feature the file uses (format::VERSION_MINOR).
        version_minor: U16::new(u16::from(m.ops.iter().any(|o| o.unit16))),
        file_len: u32_of(file_len, "the file length")?,
        crc32: U32::new(0),
        flags: U32::new(if m.streamable {
            format::FLAG_STREAMABLE
        } else {
            0
        }),
        arena_bytes: u32_of(plan_bytes, "the arena size")?,
        n_tensors: u32_of(m.tensors.len(), "the tensor count")?,
        tensors_off: u32_of(tensors_off, "an offset")?,
        n_ops: u32_of(m.ops.len(), "the op count")?,
        ops_off: u32_of(ops_off, "an offset")?,
        n_inputs: U16::new(u16::try_from(m.inputs.len())?),
        n_outputs: U16::new(u16::try_from(m.outputs.len())?),
        io_off: u32_of(io_off, "an offset")?,
        data_off: u32_of(data_off, "an offset")?,
        data_len: u32_of(data.len(), "the data length")?,
        seq_len: u32_of(m.seq_len, "the sequence length")?,
        reserved: U32::new(0),
    };
    let mut out = Vec::with_capacity(file_len);
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&tensor_table);
    pad_to(&mut out, FILE_ALIGN);
    out.extend_from_slice(&op_table);
    pad_to(&mut out, FILE_ALIGN);
    for &t in m.inputs.iter().chain(&m.outputs) {
        out.extend_from_slice(&u16::try_from(t)?.to_le_bytes());
    }
    pad_to(&mut out, FILE_ALIGN);
    debug_assert_eq!(out.len(), data_off);
    out.extend_from_slice(&data);
    let crc_algo = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let mut digest = crc_algo.digest();
    digest.update(&out[..format::CRC_FIELD]);
    digest.update(&out[format::CRC_START..]);
    let crc = digest.finalize();
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}
