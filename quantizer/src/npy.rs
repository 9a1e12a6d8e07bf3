//! `.npy` reading and writing (through `npyz`), with errors that name the file.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// A dense float array read from `.npy`.
#[derive(Debug, Clone)]
pub struct ArrayF32 {
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: Vec<f32>,
}

impl ArrayF32 {
    /// Number of samples (the leading dimension).
    pub fn samples(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }
    /// Elements of one sample.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
    /// The `i`th sample's data.
    pub fn sample(&self, i: usize) -> &[f32] {
        let n = self.sample_len();
        &self.data[i * n..(i + 1) * n]
    }
}

/// Reads a float32 / float64 / float16 `.npy` file as f32, refusing NaN and infinities.
pub fn read_f32(path: &Path) -> Result<ArrayF32> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .with_context(|| format!("{} is not a valid .npy file", path.display()))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let dtype = npy.dtype();
    let type_str = match &dtype {
        npyz::DType::Plain(ts) => ts.to_string(),
        _ => bail!("{}: structured arrays are not supported", path.display()),
    };
    let data: Vec<f32> = if type_str.ends_with("f4") {
        npy.into_vec::<f32>()?
    } else if type_str.ends_with("f8") {
        npy.into_vec::<f64>()?
            .into_iter()
            .map(|v| v as f32)
            .collect()
    } else if type_str.ends_with("f2") {
        let raw = npy.into_vec::<u16>()?;
        raw.into_iter()
            .map(|b| half::f16::from_bits(b).to_f32())
            .collect()
    } else {
        bail!(
            "{}: expected a float array (float32), found dtype {type_str}",
            path.display()
        )
    };
    if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
        let n: usize = shape.iter().skip(1).product::<usize>().max(1);
        bail!(
            "{}: element {pos} (sample {}) is {} — calibration and test data must be finite",
            path.display(),
            pos / n,
            data[pos]
        );
    }
    Ok(ArrayF32 { shape, data })
}

/// Reads an integer `.npy` (int64 / int32 / int16 / int8 / uint8) as i64.
pub fn read_i64(path: &Path) -> Result<(Vec<usize>, Vec<i64>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .with_context(|| format!("{} is not a valid .npy file", path.display()))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let type_str = match npy.dtype() {
        npyz::DType::Plain(ts) => ts.to_string(),
        _ => bail!("{}: structured arrays are not supported", path.display()),
    };
    let data: Vec<i64> = if type_str.ends_with("i8") {
        npy.into_vec::<i64>()?
    } else if type_str.ends_with("i4") {
        npy.into_vec::<i32>()?.into_iter().map(i64::from).collect()
    } else if type_str.ends_with("i2") {
        npy.into_vec::<i16>()?.into_iter().map(i64::from).collect()
    } else if type_str.ends_with("i1") {
        npy.into_vec::<i8>()?.into_iter().map(i64::from).collect()
    } else if type_str.ends_with("u1") {
        npy.into_vec::<u8>()?.into_iter().map(i64::from).collect()
    } else {
        bail!(
            "{}: expected an integer array, found dtype {type_str}",
            path.display()
        )
    };
    Ok((shape, data))
}

/// The bytes of a float32 `.npy` (format 1.0, little-endian, C order).
pub fn f32_npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_str = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_str}, }}");
    // Magic (6) + version (2) + header length (2) + header + newline, padded to 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes a float32 `.npy` (through a temporary file and a rename).
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    crate::write_atomic(path, &f32_npy_bytes(shape, data))
}
