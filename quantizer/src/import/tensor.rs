//! Constant tensors seen by the importer (initializers, `Constant` nodes, folded shape
//! arithmetic) and the small constant evaluator that folds every node whose inputs are all
//! constant.

use anyhow::{anyhow, bail, ensure, Context, Result};
use std::path::Path;
use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto};

/// ONNX `TensorProto.DataType` codes used here.
pub mod dt {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;

    /// Whether the type is a floating point type.
    pub fn is_float(t: i32) -> bool {
        matches!(t, FLOAT | FLOAT16 | DOUBLE | BFLOAT16)
    }

    /// Human name of a type code.
    pub fn name(t: i32) -> &'static str {
        match t {
            FLOAT => "float32",
            UINT8 => "uint8",
            INT8 => "int8",
            UINT16 => "uint16",
            INT16 => "int16",
            INT32 => "int32",
            INT64 => "int64",
            8 => "string",
            BOOL => "bool",
            FLOAT16 => "float16",
            DOUBLE => "float64",
            UINT32 => "uint32",
            UINT64 => "uint64",
            BFLOAT16 => "bfloat16",
            _ => "unknown type",
        }
    }
}

/// Element storage: every float type is held as f32, every integer / bool type as i64.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// Float values.
    F(Vec<f32>),
    /// Integer or bool values.
    I(Vec<i64>),
}

/// A constant tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Shape, outermost first (empty for scalars).
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Data,
    /// ONNX element type code (see [`dt`]).
    pub dt: i32,
}

impl Tensor {
    /// A float tensor.
    pub fn f(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor {
            shape,
            data: Data::F(v),
            dt: dt::FLOAT,
        }
    }
    /// An int64 tensor.
    pub fn i(shape: Vec<usize>, v: Vec<i64>) -> Tensor {
        Tensor {
            shape,
            data: Data::I(v),
            dt: dt::INT64,
        }
    }
    /// A bool tensor.
    fn b(shape: Vec<usize>, v: Vec<i64>) -> Tensor {
        Tensor {
            shape,
            data: Data::I(v),
            dt: dt::BOOL,
        }
    }
    fn with_data(&self, shape: Vec<usize>, data: Data) -> Tensor {
        Tensor {
            shape,
            data,
            dt: self.dt,
        }
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Values as f32 (integers converted).
    pub fn as_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F(v) => v.clone(),
            Data::I(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
    /// Values as i64; floats must be integral.
    pub fn as_i64(&self) -> Result<Vec<i64>> {
        match &self.data {
            Data::I(v) => Ok(v.clone()),
            Data::F(v) => v
                .iter()
                .map(|&x| {
                    ensure!(x.fract() == 0.0, "expected integer values, found {x}");
                    Ok(x as i64)
                })
                .collect(),
        }
    }
    /// Whether every element is zero.
    pub fn all_zero(&self) -> bool {
        match &self.data {
            Data::F(v) => v.iter().all(|&x| x == 0.0),
            Data::I(v) => v.iter().all(|&x| x == 0),
        }
    }
    /// A short description like `int64[3] = [1, 0, -1]`.
    pub fn describe(&self) -> String {
        let n = self.numel();
        let vals = match &self.data {
            Data::F(v) => v.iter().take(6).map(|x| format!("{x}")).collect::<Vec<_>>(),
            Data::I(v) => v.iter().take(6).map(|x| format!("{x}")).collect::<Vec<_>>(),
        };
        format!(
            "{}{:?} = [{}{}]",
            dt::name(self.dt),
            self.shape,
            vals.join(", "),
            if n > 6 { ", …" } else { "" }
        )
    }
    fn gather_flat(&self, idx: &[usize], shape: Vec<usize>) -> Tensor {
        let data = match &self.data {
            Data::F(v) => Data::F(idx.iter().map(|&i| v[i]).collect()),
            Data::I(v) => Data::I(idx.iter().map(|&i| v[i]).collect()),
        };
        self.with_data(shape, data)
    }
}

fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

fn round_bf16(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// Reads an ONNX `TensorProto` (raw or typed data, or external data next to the model).
pub fn from_proto(t: &TensorProto, model_dir: Option<&Path>) -> Result<Tensor> {
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| anyhow!("negative dimension {d}")))
        .collect::<Result<_>>()?;
    let n: usize = shape.iter().product();
    let external = t.data_location == Some(1);
    let raw: Option<Vec<u8>> = if external {
        let dir =
            model_dir.context("tensor has external data but the model directory is unknown")?;
        let mut location = None;
        let mut offset = 0usize;
        let mut length = None;
        for kv in &t.external_data {
            match kv.key.as_str() {
                "location" => location = Some(kv.value.clone()),
                "offset" => offset = kv.value.parse()?,
                "length" => length = Some(kv.value.parse::<usize>()?),
                _ => {}
            }
        }
        let location = location.context("external data without a location")?;
        let file = dir.join(&location);
        let bytes = std::fs::read(&file)
            .with_context(|| format!("cannot read external data file {}", file.display()))?;
        let end = match length {
            Some(l) => offset + l,
            None => bytes.len(),
        };
        ensure!(
            end <= bytes.len(),
            "external data range beyond the end of {}",
            file.display()
        );
        Some(bytes[offset..end].to_vec())
    } else if !t.raw_data.is_empty() {
        Some(t.raw_data.clone())
    } else {
        None
    };
    let data = match raw {
        Some(raw) => {
            let size = match t.data_type {
                dt::FLOAT | dt::INT32 | dt::UINT32 => 4,
                dt::FLOAT16 | dt::BFLOAT16 | dt::INT16 | dt::UINT16 => 2,
                dt::DOUBLE | dt::INT64 | dt::UINT64 => 8,
                dt::INT8 | dt::UINT8 | dt::BOOL => 1,
                other => bail!(
                    "unsupported tensor element type {} ({other})",
                    dt::name(other)
                ),
            };
            ensure!(
                raw.len() == n * size,
                "tensor data has {} bytes, expected {} for shape {:?}",
                raw.len(),
                n * size,
                shape
            );
            let c = raw.chunks_exact(size);
            match t.data_type {
                dt::FLOAT => Data::F(
                    c.map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                ),
                dt::FLOAT16 => Data::F(
                    c.map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32())
                        .collect(),
                ),
                dt::BFLOAT16 => Data::F(
                    c.map(|b| half::bf16::from_le_bytes(b.try_into().unwrap()).to_f32())
                        .collect(),
                ),
                dt::DOUBLE => Data::F(
                    c.map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                        .collect(),
                ),
                dt::INT64 => Data::I(
                    c.map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                ),
                dt::UINT64 => Data::I(
                    c.map(|b| u64::from_le_bytes(b.try_into().unwrap()) as i64)
                        .collect(),
                ),
                dt::INT32 => Data::I(
                    c.map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64)
                        .collect(),
                ),
                dt::UINT32 => Data::I(
                    c.map(|b| u32::from_le_bytes(b.try_into().unwrap()) as i64)
                        .collect(),
                ),
                dt::INT16 => Data::I(
                    c.map(|b| i16::from_le_bytes(b.try_into().unwrap()) as i64)
                        .collect(),
                ),
                dt::UINT16 => Data::I(
                    c.map(|b| u16::from_le_bytes(b.try_into().unwrap()) as i64)
                        .collect(),
                ),
                dt::INT8 => Data::I(c.map(|b| b[0] as i8 as i64).collect()),
                dt::UINT8 => Data::I(c.map(|b| b[0] as i64).collect()),
                dt::BOOL => Data::I(c.map(|b| (b[0] != 0) as i64).collect()),
                _ => unreachable!(),
            }
        }
        None => match t.data_type {
            dt::FLOAT => Data::F(t.float_data.clone()),
            dt::DOUBLE => Data::F(t.double_data.iter().map(|&x| x as f32).collect()),
            dt::FLOAT16 => Data::F(
                t.int32_data
                    .iter()
                    .map(|&x| half::f16::from_bits(x as u16).to_f32())
                    .collect(),
            ),
            dt::BFLOAT16 => Data::F(
                t.int32_data
                    .iter()
                    .map(|&x| half::bf16::from_bits(x as u16).to_f32())
                    .collect(),
            ),
            dt::INT64 => Data::I(t.int64_data.clone()),
            dt::UINT64 | dt::UINT32 => Data::I(t.uint64_data.iter().map(|&x| x as i64).collect()),
            dt::INT32 | dt::INT16 | dt::INT8 | dt::UINT16 | dt::UINT8 => {
                Data::I(t.int32_data.iter().map(|&x| x as i64).collect())
            }
            dt::BOOL => Data::I(t.int32_data.iter().map(|&x| (x != 0) as i64).collect()),
            other => bail!(
                "unsupported tensor element type {} ({other})",
                dt::name(other)
            ),
        },
    };
    let len = match &data {
        Data::F(v) => v.len(),
        Data::I(v) => v.len(),
    };
    ensure!(
        len == n,
        "tensor has {len} values, expected {n} for shape {shape:?}"
    );
    Ok(Tensor {
        shape,
        data,
        dt: t.data_type,
    })
}

// ---------------------------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------------------------

/// The attribute named `name`, if present.
pub fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}
/// An integer attribute.
pub fn attr_i(n: &NodeProto, name: &str) -> Option<i64> {
    attr(n, name).map(|a| a.i)
}
/// A float attribute.
pub fn attr_f(n: &NodeProto, name: &str) -> Option<f32> {
    attr(n, name).map(|a| a.f)
}
/// A string attribute.
pub fn attr_s(n: &NodeProto, name: &str) -> Option<String> {
    attr(n, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}
/// An integer list attribute.
pub fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}
/// A string list attribute.
pub fn attr_strings(n: &NodeProto, name: &str) -> Option<Vec<String>> {
    attr(n, name).map(|a| {
        a.strings
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// Shape helpers
// ---------------------------------------------------------------------------------------------

/// Normalizes a possibly negative axis for a tensor of rank `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    ensure!(
        (0..r).contains(&a),
        "axis {axis} out of range for rank {rank}"
    );
    Ok(a as usize)
}

/// Numpy broadcast of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            bail!("shapes {a:?} and {b:?} do not broadcast")
        };
    }
    check_foldable(&out)?;
    Ok(out)
}

/// Largest constant the importer folds (elements): far beyond any shape computation or
/// weight of a model that fits a microcontroller, small enough to refuse a hostile shape
/// before allocating it.
pub const MAX_FOLD_ELEMENTS: usize = 1 << 26;

/// Refuses shapes whose element count overflows or exceeds [`MAX_FOLD_ELEMENTS`].
pub fn check_foldable(shape: &[usize]) -> Result<()> {
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_FOLD_ELEMENTS);
    if n.is_none() {
        bail!(
            "a constant of shape {shape:?} is too large to fold (limit {MAX_FOLD_ELEMENTS} \
             elements); the model's shape computation is corrupt or hostile"
        );
    }
    Ok(())
}

/// For every element of `out` (row-major), the flat index of the element of a tensor of shape
/// `shape` that broadcasts onto it.
pub fn broadcast_index(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let off = r - shape.len();
    let mut strides = vec![0usize; r];
    let mut s = 1;
    for i in (0..shape.len()).rev() {
        strides[i + off] = if shape[i] == 1 { 0 } else { s };
        s *= shape[i];
    }
    let n: usize = out.iter().product();
    let mut res = Vec::with_capacity(n);
    let mut idx = vec![0usize; r];
    for _ in 0..n {
        res.push(idx.iter().zip(&strides).map(|(i, s)| i * s).sum());
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    res
}

/// Row-major strides.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Flat source indices of a transpose: output dim `i` is input dim `perm[i]`.
pub fn transpose_index(shape: &[usize], perm: &[usize]) -> Vec<usize> {
    let st = strides(shape);
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let ost: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let n: usize = out.iter().product();
    let mut res = Vec::with_capacity(n);
    let mut idx = vec![0usize; out.len()];
    for _ in 0..n {
        res.push(idx.iter().zip(&ost).map(|(i, s)| i * s).sum());
        for d in (0..out.len()).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    res
}

/// Output shape of ONNX `Reshape` (handles `0` = copy and `-1` = infer).
pub fn reshape_shape(input: &[usize], spec: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let n: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &s) in spec.iter().enumerate() {
        if s == -1 {
            ensure!(
                infer.is_none(),
                "more than one -1 in reshape target {spec:?}"
            );
            infer = Some(i);
            out.push(1);
        } else if s == 0 && !allowzero {
            ensure!(
                i < input.len(),
                "reshape target {spec:?} copies a missing dimension"
            );
            out.push(input[i]);
        } else {
            ensure!(s >= 0, "invalid reshape target {spec:?}");
            out.push(s as usize);
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        ensure!(
            known > 0 && n % known == 0,
            "cannot reshape {input:?} to {spec:?}"
        );
        out[i] = n / known;
    }
    ensure!(
        out.iter().product::<usize>() == n,
        "cannot reshape {input:?} ({n} elements) to {spec:?}"
    );
    Ok(out)
}

/// Resolved `[start, end)` with `step` for one axis of ONNX `Slice` (clamped as ONNX says).
pub fn slice_range(start: i64, end: i64, step: i64, dim: usize) -> Result<Vec<usize>> {
    ensure!(step != 0, "slice step is 0");
    let d = dim as i64;
    let fix = |v: i64| if v < 0 { v + d } else { v };
    let (mut s, mut e) = (fix(start), fix(end));
    if step > 0 {
        s = s.clamp(0, d);
        e = e.clamp(0, d);
    } else {
        s = s.clamp(-1, d - 1);
        e = e.clamp(-1, d - 1);
    }
    let mut v = Vec::new();
    let mut i = s;
    while (step > 0 && i < e) || (step < 0 && i > e) {
        v.push(i as usize);
        i += step;
    }
    Ok(v)
}

/// Parameters of a Slice node as per-axis `(axis, start, end, step)`.
pub fn slice_params(
    node: &NodeProto,
    opset: i64,
    inputs: &[Option<Tensor>],
    rank: usize,
) -> Result<Vec<(usize, i64, i64, i64)>> {
    let (starts, ends, axes, steps) = if opset < 10 {
        let starts = attr_ints(node, "starts").context("Slice without starts")?;
        let ends = attr_ints(node, "ends").context("Slice without ends")?;
        let axes = attr_ints(node, "axes");
        (starts, ends, axes, None)
    } else {
        let get = |i: usize| -> Result<Option<Vec<i64>>> {
            match inputs.get(i) {
                Some(Some(t)) => Ok(Some(t.as_i64()?)),
                _ => Ok(None),
            }
        };
        let starts = get(1)?.context("Slice starts must be constant")?;
        let ends = get(2)?.context("Slice ends must be constant")?;
        (starts, ends, get(3)?, get(4)?)
    };
    ensure!(
        starts.len() == ends.len(),
        "Slice starts/ends lengths differ"
    );
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    ensure!(
        axes.len() == starts.len() && steps.len() == starts.len(),
        "Slice parameter lengths differ"
    );
    (0..starts.len())
        .map(|i| Ok((norm_axis(axes[i], rank)?, starts[i], ends[i], steps[i])))
        .collect()
}

/// Axes of Squeeze/Unsqueeze (attribute before opset 13, input from 13 on).
pub fn axes_param(
    node: &NodeProto,
    opset: i64,
    inputs: &[Option<Tensor>],
) -> Result<Option<Vec<i64>>> {
    if opset < 13 {
        return Ok(attr_ints(node, "axes"));
    }
    match inputs.get(1) {
        Some(Some(t)) => Ok(Some(t.as_i64()?)),
        Some(None) | None => Ok(attr_ints(node, "axes")),
    }
}

/// Output shape of Squeeze.
pub fn squeeze_shape(shape: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>> {
    match axes {
        None => Ok(shape.iter().copied().filter(|&d| d != 1).collect()),
        Some(axes) => {
            let axes: Vec<usize> = axes
                .iter()
                .map(|&a| norm_axis(a, shape.len()))
                .collect::<Result<_>>()?;
            for &a in &axes {
                ensure!(
                    shape[a] == 1,
                    "cannot squeeze axis {a} of size {} in {shape:?}",
                    shape[a]
                );
            }
            Ok(shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect())
        }
    }
}

/// Output shape of Unsqueeze.
pub fn unsqueeze_shape(shape: &[usize], axes: &[i64]) -> Result<Vec<usize>> {
    let r = shape.len() + axes.len();
    let axes: Vec<usize> = axes
        .iter()
        .map(|&a| norm_axis(a, r))
        .collect::<Result<_>>()?;
    let mut out = Vec::with_capacity(r);
    let mut it = shape.iter();
    for i in 0..r {
        if axes.contains(&i) {
            out.push(1);
        } else {
            out.push(*it.next().context("bad Unsqueeze axes")?);
        }
    }
    Ok(out)
}

/// Output shape of Flatten.
pub fn flatten_shape(shape: &[usize], axis: i64) -> Result<Vec<usize>> {
    let r = shape.len() as i64;
    let a = if axis < 0 { axis + r } else { axis };
    ensure!((0..=r).contains(&a), "Flatten axis {axis} out of range");
    let a = a as usize;
    Ok(vec![
        shape[..a].iter().product(),
        shape[a..].iter().product(),
    ])
}

// ---------------------------------------------------------------------------------------------
// Constant evaluation
// ---------------------------------------------------------------------------------------------

/// Error raised when the constant evaluator does not know an op (the caller then reports it as
/// unsupported).
#[derive(Debug)]
pub struct UnknownOp;

impl std::fmt::Display for UnknownOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "op not known to the constant evaluator")
    }
}
impl std::error::Error for UnknownOp {}

fn req(inputs: &[Option<Tensor>], i: usize) -> Result<&Tensor> {
    inputs
        .get(i)
        .and_then(|t| t.as_ref())
        .with_context(|| format!("missing input {i}"))
}

fn binary(op: &str, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let shape = broadcast(&a.shape, &b.shape)?;
    let ia = broadcast_index(&a.shape, &shape);
    let ib = broadcast_index(&b.shape, &shape);
    let cmp = matches!(
        op,
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual"
    );
    let logic = matches!(op, "And" | "Or" | "Xor");
    match (&a.data, &b.data) {
        (Data::F(x), Data::F(y)) => {
            if cmp {
                let f: fn(f32, f32) -> bool = match op {
                    "Equal" => |a, b| a == b,
                    "Less" => |a, b| a < b,
                    "Greater" => |a, b| a > b,
                    "LessOrEqual" => |a, b| a <= b,
                    _ => |a, b| a >= b,
                };
                return Ok(Tensor::b(
                    shape,
                    ia.iter()
                        .zip(&ib)
                        .map(|(&i, &j)| f(x[i], y[j]) as i64)
                        .collect(),
                ));
            }
            let f: fn(f32, f32) -> f32 = match op {
                "Add" => |a, b| a + b,
                "Sub" => |a, b| a - b,
                "Mul" => |a, b| a * b,
                "Div" => |a, b| a / b,
                "Pow" => |a: f32, b| a.powf(b),
                "Max" => |a: f32, b| a.max(b),
                "Min" => |a: f32, b| a.min(b),
                "Mod" => |a: f32, b| a % b,
                _ => bail!(UnknownOp),
            };
            let mut v: Vec<f32> = ia.iter().zip(&ib).map(|(&i, &j)| f(x[i], y[j])).collect();
            if a.dt == dt::FLOAT16 {
                v.iter_mut().for_each(|x| *x = round_f16(*x));
            }
            Ok(a.with_data(shape, Data::F(v)))
        }
        (Data::I(x), Data::I(y)) => {
            if cmp || logic {
                let f: fn(i64, i64) -> bool = match op {
                    "Equal" => |a, b| a == b,
                    "Less" => |a, b| a < b,
                    "Greater" => |a, b| a > b,
                    "LessOrEqual" => |a, b| a <= b,
                    "GreaterOrEqual" => |a, b| a >= b,
                    "And" => |a, b| a != 0 && b != 0,
                    "Or" => |a, b| a != 0 || b != 0,
                    _ => |a, b| (a != 0) != (b != 0),
                };
                return Ok(Tensor::b(
                    shape,
                    ia.iter()
                        .zip(&ib)
                        .map(|(&i, &j)| f(x[i], y[j]) as i64)
                        .collect(),
                ));
            }
            let v: Vec<i64> = ia
                .iter()
                .zip(&ib)
                .map(|(&i, &j)| {
                    let (p, q) = (x[i], y[j]);
                    Ok(match op {
                        "Add" => p.wrapping_add(q),
                        "Sub" => p.wrapping_sub(q),
                        "Mul" => p.wrapping_mul(q),
                        "Div" => {
                            ensure!(q != 0, "integer division by zero");
                            p / q
                        }
                        "Mod" => {
                            ensure!(q != 0, "integer modulo by zero");
                            let r = p % q;
                            if r != 0 && ((r < 0) != (q < 0)) {
                                r + q
                            } else {
                                r
                            }
                        }
                        "Pow" => p.pow(q.max(0) as u32),
                        "Max" => p.max(q),
                        "Min" => p.min(q),
                        _ => bail!(UnknownOp),
                    })
                })
                .collect::<Result<_>>()?;
            Ok(a.with_data(shape, Data::I(v)))
        }
        _ => bail!("{op} of a float and an integer tensor"),
    }
}

fn unary_f(op: &str, a: &Tensor) -> Result<Tensor> {
    let f: fn(f32) -> f32 = match op {
        "Neg" => |x| -x,
        "Abs" => |x| x.abs(),
        "Sqrt" => |x| x.sqrt(),
        "Reciprocal" => |x| 1.0 / x,
        "Exp" => |x| x.exp(),
        "Log" => |x| x.ln(),
        "Tanh" => |x| x.tanh(),
        "Sigmoid" => |x| 1.0 / (1.0 + (-x).exp()),
        "Relu" => |x| x.max(0.0),
        "Floor" => |x| x.floor(),
        "Ceil" => |x| x.ceil(),
        "Round" => |x| x.round_ties_even(),
        "Sign" => |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        },
        "Erf" => |x| erf(x as f64) as f32,
        "Not" => |x| (x == 0.0) as i32 as f32,
        _ => bail!(UnknownOp),
    };
    match &a.data {
        Data::F(v) => Ok(a.with_data(a.shape.clone(), Data::F(v.iter().map(|&x| f(x)).collect()))),
        Data::I(v) => {
            let g: fn(i64) -> i64 = match op {
                "Neg" => |x| -x,
                "Abs" => |x| x.abs(),
                "Relu" => |x| x.max(0),
                "Sign" => |x| x.signum(),
                "Not" => |x| (x == 0) as i64,
                "Floor" | "Ceil" | "Round" => |x| x,
                _ => bail!("{op} of an integer tensor"),
            };
            Ok(a.with_data(a.shape.clone(), Data::I(v.iter().map(|&x| g(x)).collect())))
        }
    }
}

/// erf, accurate to ~1e-7 (Abramowitz-Stegun 7.1.26).
pub fn erf(x: f64) -> f64 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    sign * y
}

fn cast(a: &Tensor, to: i32) -> Result<Tensor> {
    let data = if dt::is_float(to) {
        let mut v = a.as_f32();
        if to == dt::FLOAT16 {
            v.iter_mut().for_each(|x| *x = round_f16(*x));
        } else if to == dt::BFLOAT16 {
            v.iter_mut().for_each(|x| *x = round_bf16(*x));
        }
        Data::F(v)
    } else {
        let v: Vec<i64> = match &a.data {
            Data::F(v) => v
                .iter()
                .map(|&x| {
                    if to == dt::BOOL {
                        (x != 0.0) as i64
                    } else {
                        x as i64
                    }
                })
                .collect(),
            Data::I(v) => v
                .iter()
                .map(|&x| if to == dt::BOOL { (x != 0) as i64 } else { x })
                .collect(),
        };
        let v = v
            .into_iter()
            .map(|x| match to {
                dt::INT32 => x as i32 as i64,
                dt::INT16 => x as i16 as i64,
                dt::INT8 => x as i8 as i64,
                dt::UINT8 => x as u8 as i64,
                dt::UINT16 => x as u16 as i64,
                dt::UINT32 => x as u32 as i64,
                _ => x,
            })
            .collect();
        Data::I(v)
    };
    Ok(Tensor {
        shape: a.shape.clone(),
        data,
        dt: to,
    })
}

fn concat(ts: &[&Tensor], axis: i64) -> Result<Tensor> {
    ensure!(!ts.is_empty(), "Concat without inputs");
    let rank = ts[0].shape.len();
    let axis = norm_axis(axis, rank)?;
    let mut shape = ts[0].shape.clone();
    shape[axis] = 0;
    for t in ts {
        ensure!(
            t.shape.len() == rank,
            "Concat of tensors of different ranks"
        );
        for d in 0..rank {
            ensure!(
                d == axis || t.shape[d] == ts[0].shape[d],
                "Concat shape mismatch"
            );
        }
        shape[axis] += t.shape[axis];
    }
    let outer: usize = shape[..axis].iter().product();
    let float = ts.iter().any(|t| matches!(t.data, Data::F(_)));
    let mut fv = Vec::new();
    let mut iv = Vec::new();
    for o in 0..outer {
        for t in ts {
            let inner: usize = t.shape[axis..].iter().product();
            let range = o * inner..(o + 1) * inner;
            if float {
                fv.extend_from_slice(&t.as_f32()[range]);
            } else if let Data::I(v) = &t.data {
                iv.extend_from_slice(&v[range]);
            }
        }
    }
    let data = if float { Data::F(fv) } else { Data::I(iv) };
    Ok(ts[0].with_data(shape, data))
}

/// Gathers along `axis` with the given (already normalized, non-negative) indices.
fn gather(data: &Tensor, axis: usize, idx: &[usize], idx_shape: &[usize]) -> Tensor {
    let outer: usize = data.shape[..axis].iter().product();
    let dim = data.shape[axis];
    let inner: usize = data.shape[axis + 1..].iter().product();
    let mut flat = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            for k in 0..inner {
                flat.push((o * dim + i) * inner + k);
            }
        }
    }
    let mut shape = data.shape[..axis].to_vec();
    shape.extend_from_slice(idx_shape);
    shape.extend_from_slice(&data.shape[axis + 1..]);
    data.gather_flat(&flat, shape)
}

/// Normalized gather indices.
pub fn gather_indices(idx: &Tensor, dim: usize) -> Result<Vec<usize>> {
    idx.as_i64()?
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + dim as i64 } else { i };
            ensure!(
                (0..dim as i64).contains(&j),
                "gather index {i} out of range for size {dim}"
            );
            Ok(j as usize)
        })
        .collect()
}

/// Reduced axes of a Reduce* node (attribute or, from opset 18 / ReduceSum 13, input);
/// `None` when the node is a no-op (`noop_with_empty_axes` with no axes).
pub fn reduce_axes(
    node: &NodeProto,
    opset: i64,
    inputs: &[Option<Tensor>],
    rank: usize,
) -> Result<Option<Vec<usize>>> {
    let axes_from_input = (node.op_type == "ReduceSum" && opset >= 13) || opset >= 18;
    let axes = if axes_from_input {
        match inputs.get(1) {
            Some(Some(t)) => Some(t.as_i64()?),
            _ => None,
        }
    } else {
        attr_ints(node, "axes")
    };
    match axes {
        Some(v) if !v.is_empty() => {
            let mut a: Vec<usize> = v
                .iter()
                .map(|&x| norm_axis(x, rank))
                .collect::<Result<_>>()?;
            a.sort_unstable();
            a.dedup();
            Ok(Some(a))
        }
        _ if attr_i(node, "noop_with_empty_axes").unwrap_or(0) != 0 => Ok(None),
        _ => Ok(Some((0..rank).collect())),
    }
}

fn reduce(op: &str, node: &NodeProto, opset: i64, inputs: &[Option<Tensor>]) -> Result<Tensor> {
    let a = req(inputs, 0)?;
    let keep = attr_i(node, "keepdims").unwrap_or(1) != 0;
    let rank = a.shape.len();
    let Some(axes) = reduce_axes(node, opset, inputs, rank)? else {
        return Ok(a.clone());
    };
    let out_shape: Vec<usize> = (0..rank)
        .map(|d| if axes.contains(&d) { 1 } else { a.shape[d] })
        .collect();
    let idx = broadcast_index(&out_shape, &a.shape);
    let n_out: usize = out_shape.iter().product();
    let vals = a.as_f32();
    let init = match op {
        "ReduceSum" | "ReduceMean" => 0.0f64,
        "ReduceProd" => 1.0,
        "ReduceMax" => f64::NEG_INFINITY,
        "ReduceMin" => f64::INFINITY,
        _ => bail!(UnknownOp),
    };
    let mut acc = vec![init; n_out];
    for (k, &o) in idx.iter().enumerate() {
        let x = vals[k] as f64;
        acc[o] = match op {
            "ReduceSum" | "ReduceMean" => acc[o] + x,
            "ReduceProd" => acc[o] * x,
            "ReduceMax" => acc[o].max(x),
            _ => acc[o].min(x),
        };
    }
    if op == "ReduceMean" {
        let cnt = (a.numel() / n_out.max(1)) as f64;
        acc.iter_mut().for_each(|x| *x /= cnt);
    }
    let shape = if keep {
        out_shape
    } else {
        (0..rank)
            .filter(|d| !axes.contains(d))
            .map(|d| a.shape[d])
            .collect()
    };
    let data = match a.data {
        Data::F(_) => Data::F(acc.iter().map(|&x| x as f32).collect()),
        Data::I(_) => Data::I(acc.iter().map(|&x| x as i64).collect()),
    };
    Ok(a.with_data(shape, data))
}

/// Evaluates `node` whose inputs are all constant. Returns one tensor per output (`None` for
/// outputs the op does not produce). Fails with [`UnknownOp`] for ops it does not know.
pub fn eval_node(node: &NodeProto, opset: i64, inputs: &[Option<Tensor>]) -> Result<Vec<Tensor>> {
    let op = node.op_type.as_str();
    let one = |t: Tensor| Ok(vec![t]);
    match op {
        "Constant" => {
            if let Some(a) = attr(node, "value") {
                let t = a.t.as_ref().context("Constant value without tensor")?;
                one(from_proto(t, None)?)
            } else if let Some(a) = attr(node, "value_float") {
                one(Tensor::f(vec![], vec![a.f]))
            } else if let Some(a) = attr(node, "value_floats") {
                one(Tensor::f(vec![a.floats.len()], a.floats.clone()))
            } else if let Some(a) = attr(node, "value_int") {
                one(Tensor::i(vec![], vec![a.i]))
            } else if let Some(a) = attr(node, "value_ints") {
                one(Tensor::i(vec![a.ints.len()], a.ints.clone()))
            } else {
                bail!("Constant node without a supported value attribute (sparse or string?)")
            }
        }
        "Identity" => one(req(inputs, 0)?.clone()),
        "Cast" => {
            let to = attr_i(node, "to").context("Cast without 'to'")? as i32;
            one(cast(req(inputs, 0)?, to)?)
        }
        "CastLike" => one(cast(req(inputs, 0)?, req(inputs, 1)?.dt)?),
        "Shape" => {
            let a = req(inputs, 0)?;
            one(shape_of(node, &a.shape)?)
        }
        "Size" => one(Tensor::i(vec![], vec![req(inputs, 0)?.numel() as i64])),
        "Gather" => {
            let a = req(inputs, 0)?;
            let axis = norm_axis(attr_i(node, "axis").unwrap_or(0), a.shape.len())?;
            let it = req(inputs, 1)?;
            let idx = gather_indices(it, a.shape[axis])?;
            one(gather(a, axis, &idx, &it.shape))
        }
        "Unsqueeze" => {
            let a = req(inputs, 0)?;
            let axes = axes_param(node, opset, inputs)?.context("Unsqueeze without axes")?;
            one(a.with_data(unsqueeze_shape(&a.shape, &axes)?, a.data.clone()))
        }
        "Squeeze" => {
            let a = req(inputs, 0)?;
            let axes = axes_param(node, opset, inputs)?;
            one(a.with_data(squeeze_shape(&a.shape, axes.as_deref())?, a.data.clone()))
        }
        "Reshape" => {
            let a = req(inputs, 0)?;
            let spec = if opset < 5 {
                attr_ints(node, "shape").context("Reshape without shape")?
            } else {
                req(inputs, 1)?.as_i64()?
            };
            let allowzero = attr_i(node, "allowzero").unwrap_or(0) != 0;
            one(a.with_data(reshape_shape(&a.shape, &spec, allowzero)?, a.data.clone()))
        }
        "Flatten" => {
            let a = req(inputs, 0)?;
            let axis = attr_i(node, "axis").unwrap_or(1);
            one(a.with_data(flatten_shape(&a.shape, axis)?, a.data.clone()))
        }
        "Concat" => {
            let ts: Vec<&Tensor> = inputs.iter().flatten().collect();
            one(concat(
                &ts,
                attr_i(node, "axis").context("Concat without axis")?,
            )?)
        }
        "Transpose" => {
            let a = req(inputs, 0)?;
            let perm = transpose_perm(node, a.shape.len())?;
            let idx = transpose_index(&a.shape, &perm);
            one(a.gather_flat(&idx, perm.iter().map(|&p| a.shape[p]).collect()))
        }
        "Slice" => {
            let a = req(inputs, 0)?;
            let params = slice_params(node, opset, inputs, a.shape.len())?;
            let mut t = a.clone();
            for (axis, s, e, st) in params {
                let idx = slice_range(s, e, st, t.shape[axis])?;
                let n = idx.len();
                t = gather(&t, axis, &idx, &[n]);
            }
            one(t)
        }
        "Split" => {
            let a = req(inputs, 0)?;
            let parts = split_sizes(node, opset, inputs, &a.shape)?;
            let axis = norm_axis(attr_i(node, "axis").unwrap_or(0), a.shape.len())?;
            let mut start = 0;
            let mut outs = Vec::new();
            for p in parts {
                let idx: Vec<usize> = (start..start + p).collect();
                outs.push(gather(a, axis, &idx, &[p]));
                start += p;
            }
            Ok(outs)
        }
        "Expand" => {
            let a = req(inputs, 0)?;
            let spec: Vec<usize> = req(inputs, 1)?
                .as_i64()?
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| anyhow!("negative Expand dim {d}")))
                .collect::<Result<_>>()?;
            let shape = broadcast(&a.shape, &spec)?;
            let idx = broadcast_index(&a.shape, &shape);
            one(a.gather_flat(&idx, shape))
        }
        "ConstantOfShape" => {
            let spec = req(inputs, 0)?.as_i64()?;
            let shape: Vec<usize> = spec.iter().map(|&d| d.max(0) as usize).collect();
            let n: usize = shape.iter().product();
            let value = match attr(node, "value").and_then(|a| a.t.as_ref()) {
                Some(t) => from_proto(t, None)?,
                None => Tensor::f(vec![1], vec![0.0]),
            };
            let data = match &value.data {
                Data::F(v) => Data::F(vec![v[0]; n]),
                Data::I(v) => Data::I(vec![v[0]; n]),
            };
            one(value.with_data(shape, data))
        }
        "Range" => {
            let (s, l, d) = (req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?);
            match (&s.data, &l.data, &d.data) {
                (Data::I(s0), Data::I(l0), Data::I(d0)) => {
                    let (s0, l0, d0) = (s0[0], l0[0], d0[0]);
                    ensure!(d0 != 0, "Range delta 0");
                    let n = ((l0 - s0) as f64 / d0 as f64).ceil().max(0.0) as i64;
                    one(s.with_data(
                        vec![n as usize],
                        Data::I((0..n).map(|i| s0 + i * d0).collect()),
                    ))
                }
                _ => {
                    let (s0, l0, d0) = (s.as_f32()[0], l.as_f32()[0], d.as_f32()[0]);
                    let n = ((l0 - s0) / d0).ceil().max(0.0) as usize;
                    one(s.with_data(
                        vec![n],
                        Data::F((0..n).map(|i| s0 + i as f32 * d0).collect()),
                    ))
                }
            }
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "Equal" | "Less" | "Greater"
        | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" => {
            one(binary(op, req(inputs, 0)?, req(inputs, 1)?)?)
        }
        "Max" | "Min" | "Sum" => {
            let ts: Vec<&Tensor> = inputs.iter().flatten().collect();
            ensure!(!ts.is_empty(), "{op} without inputs");
            let bop = if op == "Sum" { "Add" } else { op };
            let mut acc = ts[0].clone();
            for t in &ts[1..] {
                acc = binary(bop, &acc, t)?;
            }
            one(acc)
        }
        "Where" => {
            let (c, x, y) = (req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?);
            let shape = broadcast(&broadcast(&c.shape, &x.shape)?, &y.shape)?;
            let (ic, ix, iy) = (
                broadcast_index(&c.shape, &shape),
                broadcast_index(&x.shape, &shape),
                broadcast_index(&y.shape, &shape),
            );
            let cv = c.as_i64()?;
            let data = match (&x.data, &y.data) {
                (Data::F(a), Data::F(b)) => Data::F(
                    (0..ic.len())
                        .map(|k| if cv[ic[k]] != 0 { a[ix[k]] } else { b[iy[k]] })
                        .collect(),
                ),
                (Data::I(a), Data::I(b)) => Data::I(
                    (0..ic.len())
                        .map(|k| if cv[ic[k]] != 0 { a[ix[k]] } else { b[iy[k]] })
                        .collect(),
                ),
                _ => bail!("Where of a float and an integer tensor"),
            };
            one(x.with_data(shape, data))
        }
        "Neg" | "Abs" | "Sqrt" | "Reciprocal" | "Exp" | "Log" | "Tanh" | "Sigmoid" | "Relu"
        | "Floor" | "Ceil" | "Round" | "Sign" | "Erf" | "Not" => one(unary_f(op, req(inputs, 0)?)?),
        "ReduceSum" | "ReduceMean" | "ReduceProd" | "ReduceMax" | "ReduceMin" => {
            one(reduce(op, node, opset, inputs)?)
        }
        "Trilu" => {
            let a = req(inputs, 0)?;
            let k = match inputs.get(1) {
                Some(Some(t)) => *t.as_i64()?.first().context("empty Trilu k")?,
                _ => 0,
            };
            let upper = attr_i(node, "upper").unwrap_or(1) != 0;
            let r = a.shape.len();
            ensure!(r >= 2, "Trilu of a rank-{r} tensor");
            let (rows, cols) = (a.shape[r - 2] as i64, a.shape[r - 1] as i64);
            let keep = |n: usize| {
                let n = n as i64;
                let (i, j) = ((n / cols) % rows, n % cols);
                if upper {
                    j - i >= k
                } else {
                    j - i <= k
                }
            };
            let data = match &a.data {
                Data::F(v) => Data::F(
                    v.iter()
                        .enumerate()
                        .map(|(n, &x)| if keep(n) { x } else { 0.0 })
                        .collect(),
                ),
                Data::I(v) => Data::I(
                    v.iter()
                        .enumerate()
                        .map(|(n, &x)| if keep(n) { x } else { 0 })
                        .collect(),
                ),
            };
            one(a.with_data(a.shape.clone(), data))
        }
        "Gemm" => {
            let (a, b) = (req(inputs, 0)?, req(inputs, 1)?);
            ensure!(
                a.shape.len() == 2 && b.shape.len() == 2,
                "Gemm needs 2-D A and B"
            );
            let ta = attr_i(node, "transA").unwrap_or(0) != 0;
            let tb = attr_i(node, "transB").unwrap_or(0) != 0;
            let alpha = attr_f(node, "alpha").unwrap_or(1.0) as f64;
            let beta = attr_f(node, "beta").unwrap_or(1.0) as f64;
            let (m, k) = if ta {
                (a.shape[1], a.shape[0])
            } else {
                (a.shape[0], a.shape[1])
            };
            let (kb, n) = if tb {
                (b.shape[1], b.shape[0])
            } else {
                (b.shape[0], b.shape[1])
            };
            ensure!(k == kb, "Gemm shape mismatch");
            let (x, y) = (a.as_f32(), b.as_f32());
            let c = match inputs.get(2) {
                Some(Some(c)) => {
                    let idx = broadcast_index(&c.shape, &[m, n]);
                    let cv = c.as_f32();
                    idx.iter().map(|&i| cv[i] as f64 * beta).collect()
                }
                _ => vec![0f64; m * n],
            };
            let mut out = vec![0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    let dot: f64 = (0..k)
                        .map(|p| {
                            let av = if ta { x[p * m + i] } else { x[i * k + p] };
                            let bv = if tb { y[j * k + p] } else { y[p * n + j] };
                            av as f64 * bv as f64
                        })
                        .sum();
                    out[i * n + j] = (alpha * dot + c[i * n + j]) as f32;
                }
            }
            one(a.with_data(vec![m, n], Data::F(out)))
        }
        "MatMul" => {
            let (a, b) = (req(inputs, 0)?, req(inputs, 1)?);
            ensure!(
                a.shape.len() == 2 && b.shape.len() == 2,
                "constant MatMul only for 2-D tensors"
            );
            let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1]);
            ensure!(b.shape[0] == k, "MatMul shape mismatch");
            let (x, y) = (a.as_f32(), b.as_f32());
            let mut out = vec![0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    out[i * n + j] = (0..k)
                        .map(|p| x[i * k + p] as f64 * y[p * n + j] as f64)
                        .sum::<f64>() as f32;
                }
            }
            one(a.with_data(vec![m, n], Data::F(out)))
        }
        _ => bail!(UnknownOp),
    }
}

/// ONNX `Shape` (with the opset-15 `start`/`end` attributes) of a tensor of shape `shape`.
pub fn shape_of(node: &NodeProto, shape: &[usize]) -> Result<Tensor> {
    let r = shape.len() as i64;
    let fix = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let s = fix(attr_i(node, "start").unwrap_or(0));
    let e = fix(attr_i(node, "end").unwrap_or(r));
    let v: Vec<i64> = if s < e {
        shape[s..e].iter().map(|&d| d as i64).collect()
    } else {
        vec![]
    };
    Ok(Tensor::i(vec![v.len()], v))
}

/// Permutation of a Transpose node (default: reverse the axes).
pub fn transpose_perm(node: &NodeProto, rank: usize) -> Result<Vec<usize>> {
    match attr_ints(node, "perm") {
        Some(p) => {
            ensure!(
                p.len() == rank,
                "Transpose perm {p:?} does not match rank {rank}"
            );
            let p: Vec<usize> = p
                .iter()
                .map(|&a| norm_axis(a, rank))
                .collect::<Result<_>>()?;
            let mut seen = vec![false; rank];
            for &a in &p {
                ensure!(!seen[a], "Transpose perm {p:?} is not a permutation");
                seen[a] = true;
            }
            Ok(p)
        }
        None => Ok((0..rank).rev().collect()),
    }
}

/// Sizes of the outputs of a Split node.
pub fn split_sizes(
    node: &NodeProto,
    opset: i64,
    inputs: &[Option<Tensor>],
    shape: &[usize],
) -> Result<Vec<usize>> {
    let axis = norm_axis(attr_i(node, "axis").unwrap_or(0), shape.len())?;
    let dim = shape[axis];
    let split = if opset >= 13 {
        match inputs.get(1) {
            Some(Some(t)) => Some(t.as_i64()?),
            _ => None,
        }
    } else {
        attr_ints(node, "split")
    };
    let n_out = node.output.len();
    match split {
        Some(s) => {
            let s: Vec<usize> = s.iter().map(|&x| x.max(0) as usize).collect();
            ensure!(
                s.iter().sum::<usize>() == dim,
                "Split sizes {s:?} do not sum to {dim}"
            );
            Ok(s)
        }
        None => {
            let n = attr_i(node, "num_outputs")
                .map(|v| v as usize)
                .unwrap_or(n_out);
            ensure!(n > 0, "Split into 0 parts");
            let chunk = dim.div_ceil(n);
            let mut v = Vec::new();
            let mut left = dim;
            for _ in 0..n {
                let c = chunk.min(left);
                v.push(c);
                left -= c;
            }
            Ok(v)
        }
    }
}
