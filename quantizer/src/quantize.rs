//! Quantization: the float graph plus calibrated ranges become an int8 program — tensors with
//! quantization parameters, constant data, and ops with their parameter words — in the exact
//! form `docs/format.md` specifies. Multipliers and tables are computed here, never on device.

use crate::calibrate::Ranges;
use crate::ir::{Graph, Op, RnnAct, ValueId};
use anyhow::{bail, Result};
use kinglet::format::{self, DType, TensorKind};

/// A tensor of the int8 program.
#[derive(Debug, Clone)]
pub struct QTensor {
    /// Name (ONNX value name or derived).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Where it lives.
    pub kind: TensorKind,
    /// Shape (rank ≤ 4 after squeezing leading 1s).
    pub dims: Vec<usize>,
    /// Time axis, if any.
    pub time_axis: Option<usize>,
    /// Affine scale (0 when not affine).
    pub scale: f32,
    /// Zero point.
    pub zero_point: i32,
    /// Little-endian bytes of a constant.
    pub data: Vec<u8>,
    /// Arena buffer (Activation / State tensors); aliases share a buffer.
    pub buffer: Option<usize>,
}

impl QTensor {
    /// Bytes.
    pub fn nbytes(&self) -> usize {
        self.dims.iter().product::<usize>() * self.dtype.size()
    }
}

/// An op of the int8 program.
#[derive(Debug, Clone)]
pub struct QOp {
    /// Name of the float node it came from.
    pub name: String,
    /// `format::OP_*`.
    pub opcode: u16,
    /// Whether the op runs per time step in streaming mode.
    pub per_step: bool,
    /// Whether its gate operands are in the unit16 layout (`format::OP_FLAG_UNIT16`).
    pub unit16: bool,
    /// Tensor list, in the op's documented order.
    pub tensors: Vec<usize>,
    /// Parameter words.
    pub params: Vec<i32>,
}

/// An arena buffer to place.
#[derive(Debug, Clone)]
pub struct Buffer {
    /// Bytes.
    pub size: usize,
    /// Persistent state (never shared).
    pub state: bool,
    /// First op index that writes it (-1 = model input).
    pub first: i64,
    /// Last op index that reads it (`i64::MAX` for model outputs).
    pub last: i64,
    /// Offset assigned by the planner.
    pub offset: usize,
}

/// The int8 program, before placement.
#[derive(Debug, Clone, Default)]
pub struct QModel {
    /// All tensors.
    pub tensors: Vec<QTensor>,
    /// Ops in execution order.
    pub ops: Vec<QOp>,
    /// Model input tensors.
    pub inputs: Vec<usize>,
    /// Model output tensors.
    pub outputs: Vec<usize>,
    /// Arena buffers.
    pub buffers: Vec<Buffer>,
    /// Time steps of the sequence input (1 if none).
    pub seq_len: usize,
    /// Whether `step` is allowed.
    pub streamable: bool,
    /// Why not, when it is not.
    pub not_streamable_reason: Option<String>,
}

/// Options that change quantization.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Written, when not empty, as the UTF-8 bytes of a constant tensor named
    /// [`META_TENSOR`] that no op reads: how the file was made (`kinglet inspect` shows it).
    pub meta: String,
    /// Write every LSTM's gate operands in the unit16 layout (`format::OP_FLAG_UNIT16`): the
    /// Cortex-M DSP sequence kernel's, twice the weight bytes, the same results.
    pub lstm_unit16: bool,
    /// Skip dead-row elimination ([`crate::prune`]): every op computes all its rows even when
    /// only some are read (a CLS token). For comparisons; the results are the same.
    pub keep_dead_rows: bool,
}

/// Name of the constant tensor that records how the file was made (JSON text).
pub const META_TENSOR: &str = "kinglet.meta";

/// Affine int8 parameters from a range that is widened to contain 0.
pub fn affine_i8(lo: f32, hi: f32) -> (f32, i32) {
    let lo = lo.min(0.0) as f64;
    let hi = hi.max(0.0) as f64;
    let scale = ((hi - lo) / 255.0).max(1e-8);
    let zp = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
    (scale as f32, zp)
}

/// `M ≈ mult · 2^-(31 + shift)` with `mult ∈ [2^30, 2^31)`, `shift ∈ [-30, 31]`.
pub fn quantize_multiplier(m: f64) -> Result<(i32, i32)> {
    if !(m.is_finite() && m >= 0.0) {
        bail!("invalid rescale factor {m}");
    }
    if m == 0.0 {
        return Ok((0, 0));
    }
    let mut e = m.log2().floor() as i32 + 1; // m = q · 2^e, q ∈ [0.5, 1)
    let mut q = m / 2f64.powi(e);
    if q >= 1.0 {
        q /= 2.0;
        e += 1;
    }
    if q < 0.5 {
        q *= 2.0;
        e -= 1;
    }
    let mut mult = (q * 2f64.powi(31)).round() as i64;
    if mult == 1i64 << 31 {
        mult /= 2;
        e += 1;
    }
    let shift = -e;
    if shift < -30 {
        bail!("rescale factor {m} is too large for the integer kernels (≥ 2^30)");
    }
    if shift > 31 {
        // Below 2^-31: keep what precision remains at the largest shift.
        let mult = (m * 2f64.powi(62)).round() as i64;
        return Ok((mult as i32, 31));
    }
    Ok((mult as i32, shift))
}

/// Symmetric per-row int8 weights: returns `(q, scales)`.
fn quantize_rows(w: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f64>) {
    let mut q = vec![0i8; rows * cols];
    let mut scales = vec![1.0f64; rows];
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        let max = row.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
        let s = if max > 0.0 { max / 127.0 } else { 1.0 };
        scales[r] = s;
        for c in 0..cols {
            q[r * cols + c] = ((row[c] as f64) / s).round().clamp(-127.0, 127.0) as i8;
        }
    }
    (q, scales)
}

/// Bias at scale `s_in · s_w[r]`, with `-zp_in · Σ w_q` folded in.
fn fold_bias(b: &[f32], wq: &[i8], cols: usize, s_in: f64, s_w: &[f64], zp_in: i32) -> Vec<i32> {
    b.iter()
        .enumerate()
        .map(|(r, &bv)| {
            let sum: i64 = wq[r * cols..(r + 1) * cols].iter().map(|&v| v as i64).sum();
            let q = ((bv as f64) / (s_in * s_w[r])).round() as i64 - zp_in as i64 * sum;
            q.clamp(i32::MIN as i64, i32::MAX as i64) as i32
        })
        .collect()
}

fn rq_pairs(ms: impl Iterator<Item = f64>) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    for m in ms {
        let (a, b) = quantize_multiplier(m)?;
        out.push(a);
        out.push(b);
    }
    Ok(out)
}

fn i8_bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&x| x as u8).collect()
}
fn i16_bytes(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
/// A row-major `[4H, K]` int8 gate matrix in the unit16 layout (`format::unit16_pack`).
fn unit16_pack(m: &[i8], h: usize, k: usize) -> Vec<i16> {
    let mut out = vec![0i16; 4 * h * format::unit16_kp(k)];
    let packed = format::unit16_pack(m, h, k, &mut out);
    debug_assert!(
        packed,
        "gate matrix of {} elements for H {h}, K {k}",
        m.len()
    );
    out
}

/// Per-row values of `[4H]` gate rows (`per_row` words a row) in unit-major row order
/// (`format::unit16_rows`).
fn unit_major(v: &[i32], h: usize, per_row: usize) -> Vec<i32> {
    let mut out = vec![0i32; v.len()];
    let moved = format::unit16_rows(v, h, per_row, &mut out);
    debug_assert!(moved, "{} per-row values for H {h}", v.len());
    out
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The 513-entry int16 table of `f` over Q3.12 `[-8, 8]`, output Q0.15.
pub fn act_table(f: impl Fn(f64) -> f64) -> Vec<i16> {
    (0..format::ACT_TABLE_LEN)
        .map(|i| {
            let x = -8.0 + i as f64 / 32.0;
            (f(x) * 32768.0).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// Disjoint-set over values: values that must share one quantization.
struct Groups {
    parent: Vec<usize>,
}
impl Groups {
    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.parent[b] = a;
        }
    }
}

/// Squeezes leading 1s until the rank is ≤ 4 (keeping at least one dim).
fn fit_rank(shape: &[usize]) -> Result<Vec<usize>> {
    let mut s: Vec<usize> = shape.to_vec();
    while s.len() > format::MAX_RANK && s[0] == 1 {
        s.remove(0);
    }
    if s.len() > format::MAX_RANK {
        // Merge inner dims: kernels only see byte sizes of activations.
        let inner: usize = s[format::MAX_RANK - 1..].iter().product();
        s.truncate(format::MAX_RANK - 1);
        s.push(inner);
    }
    if s.is_empty() {
        s.push(1);
    }
    Ok(s)
}

/// Time axis of a value's shape given `t`: the first non-1 axis, if it equals `t`.
fn time_axis_of(shape: &[usize], t: usize) -> Option<usize> {
    let k = shape.iter().position(|&d| d != 1)?;
    (shape[k] == t).then_some(k)
}

struct Builder<'g> {
    g: &'g Graph,
    m: QModel,
    /// Value → tensor.
    tensor_of: Vec<Option<usize>>,
    /// Value → (scale, zp).
    qp: Vec<(f32, i32)>,
    /// Values with a time axis (streaming-wise), by value.
    timed: Vec<bool>,
    sig: Option<usize>,
    tanh: Option<usize>,
    exp2: Option<usize>,
}

impl Builder<'_> {
    fn add_tensor(&mut self, t: QTensor) -> usize {
        self.m.tensors.push(t);
        self.m.tensors.len() - 1
    }

    fn constant(&mut self, name: String, dtype: DType, dims: Vec<usize>, data: Vec<u8>) -> usize {
        self.add_tensor(QTensor {
            name,
            dtype,
            kind: TensorKind::Const,
            dims,
            time_axis: None,
            scale: 0.0,
            zero_point: 0,
            data,
            buffer: None,
        })
    }

    fn new_buffer(&mut self, size: usize, state: bool) -> usize {
        self.m.buffers.push(Buffer {
            size,
            state,
            first: i64::MAX,
            last: i64::MIN,
            offset: 0,
        });
        self.m.buffers.len() - 1
    }

    fn scratch(&mut self, name: String, dtype: DType, len: usize) -> usize {
        let b = self.new_buffer(len * dtype.size(), false);
        self.add_tensor(QTensor {
            name,
            dtype,
            kind: TensorKind::Activation,
            dims: vec![len],
            time_axis: None,
            scale: 0.0,
            zero_point: 0,
            data: Vec::new(),
            buffer: Some(b),
        })
    }

    fn state(&mut self, name: String, dtype: DType, len: usize, zp: i32, scale: f32) -> usize {
        let b = self.new_buffer(len * dtype.size(), true);
        self.add_tensor(QTensor {
            name,
            dtype,
            kind: TensorKind::State,
            dims: vec![len],
            time_axis: None,
            scale,
            zero_point: zp,
            data: Vec::new(),
            buffer: Some(b),
        })
    }

    /// The activation tensor of value `v`, creating it (with a new buffer, or aliasing
    /// `alias_of`'s buffer) on first use.
    fn value_tensor(&mut self, v: ValueId, alias_of: Option<ValueId>) -> Result<usize> {
        if let Some(t) = self.tensor_of[v] {
            return Ok(t);
        }
        let val = &self.g.values[v];
        let dims = fit_rank(&val.shape)?;
        let time_axis = if self.timed[v] {
            time_axis_of(&dims, self.m.seq_len)
        } else {
            None
        };
        let nbytes = dims.iter().product::<usize>();
        let buffer = match alias_of {
            Some(a) => {
                let at = self.value_tensor(a, None)?;
                self.m.tensors[at].buffer
            }
            None => Some(self.new_buffer(nbytes, false)),
        };
        let (scale, zp) = self.qp[v];
        let t = self.add_tensor(QTensor {
            name: val.name.clone(),
            dtype: DType::I8,
            kind: TensorKind::Activation,
            dims,
            time_axis,
            scale,
            zero_point: zp,
            data: Vec::new(),
            buffer,
        });
        self.tensor_of[v] = Some(t);
        Ok(t)
    }

    fn act_tables(&mut self) -> (usize, usize) {
        if self.sig.is_none() {
            let s = act_table(|x| 1.0 / (1.0 + (-x).exp()));
            let t = act_table(f64::tanh);
            self.sig = Some(self.constant(
                "sigmoid_q3.12".into(),
                DType::I16,
                vec![format::ACT_TABLE_LEN],
                i16_bytes(&s),
            ));
            self.tanh = Some(self.constant(
                "tanh_q3.12".into(),
                DType::I16,
                vec![format::ACT_TABLE_LEN],
                i16_bytes(&t),
            ));
        }
        (self.sig.unwrap_or(0), self.tanh.unwrap_or(0))
    }

    fn push_op(
        &mut self,
        name: &str,
        opcode: u16,
        per_step: bool,
        tensors: Vec<usize>,
        params: Vec<i32>,
    ) {
        self.m.ops.push(QOp {
            name: name.to_string(),
            opcode,
            per_step,
            unit16: false,
            tensors,
            params,
        });
    }

    fn not_streamable(&mut self, why: String) {
        if self.m.streamable {
            self.m.streamable = false;
            self.m.not_streamable_reason = Some(why);
        }
    }
}

/// Quantizes `g` with the calibrated `ranges`, after dead-row elimination ([`crate::prune`])
/// unless `opts.keep_dead_rows`.
pub fn quantize(g: &Graph, ranges: &Ranges, opts: &Options) -> Result<QModel> {
    crate::check_weights(g)?;
    if !opts.keep_dead_rows {
        if let Some((pg, pr, _)) = crate::prune::prune_rows(g, ranges) {
            return quantize_graph(&pg, &pr, opts);
        }
    }
    quantize_graph(g, ranges, opts)
}

fn quantize_graph(g: &Graph, ranges: &Ranges, opts: &Options) -> Result<QModel> {
    let nv = g.values.len();
    // Values that must share a quantization.
    let mut groups = Groups {
        parent: (0..nv).collect(),
    };
    for n in &g.nodes {
        match n.op {
            Op::Reshape | Op::Transpose { .. } | Op::Slice { .. } | Op::Concat { .. } => {
                for &i in &n.inputs {
                    groups.union(i, n.output);
                }
            }
            _ => {}
        }
    }
    let mut group_range = vec![(f32::INFINITY, f32::NEG_INFINITY); nv];
    for v in 0..nv {
        let r = groups.find(v);
        group_range[r].0 = group_range[r].0.min(ranges.values[v].0);
        group_range[r].1 = group_range[r].1.max(ranges.values[v].1);
    }
    let mut fixed: Vec<Option<(f32, i32)>> = vec![None; nv];
    for n in &g.nodes {
        if let Op::Softmax = n.op {
            fixed[groups.find(n.output)] = Some((1.0 / 256.0, -128));
        }
    }
    let mut qp = vec![(0f32, 0i32); nv];
    for (v, qv) in qp.iter_mut().enumerate() {
        let r = groups.find(v);
        *qv = match fixed[r] {
            Some(p) => p,
            None => {
                let (lo, hi) = group_range[r];
                if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) || (hi - lo) < 1e-12 {
                    bail!(
                        "value '{}' has a degenerate calibrated range [{lo}, {hi}]: the \
                         calibration data never moves it; use more varied calibration samples",
                        g.values[v].name
                    );
                }
                affine_i8(lo, hi)
            }
        };
    }

    // Sequence length and which values carry the time axis.
    let recurrent_t = g.nodes.iter().find_map(|n| match n.op {
        Op::Lstm { .. } | Op::Gru { .. } | Op::Rnn { .. } => {
            let shape = &g.values[n.inputs[0]].shape;
            shape.iter().copied().find(|&d| d != 1)
        }
        _ => None,
    });
    let seq_len = recurrent_t.unwrap_or(1);
    let mut timed = vec![false; nv];
    if recurrent_t.is_some() {
        for &i in &g.inputs {
            timed[i] = time_axis_of(&g.values[i].shape, seq_len).is_some();
        }
    }

    let mut b = Builder {
        g,
        m: QModel {
            seq_len,
            streamable: recurrent_t.is_some(),
            ..Default::default()
        },
        tensor_of: vec![None; nv],
        qp,
        timed,
        sig: None,
        tanh: None,
        exp2: None,
    };
    if recurrent_t.is_none() {
        b.m.not_streamable_reason = Some("the model has no recurrent op".into());
    }
    for &i in &g.inputs {
        let t = b.value_tensor(i, None)?;
        b.m.inputs.push(t);
    }

    for (ni, n) in g.nodes.iter().enumerate() {
        let x = n.inputs.first().copied();
        let in_timed = n.inputs.iter().any(|&i| b.timed[i]);
        let (s_y, z_y) = b.qp[n.output];
        match &n.op {
            Op::Fc {
                w,
                b: bias,
                n: nout,
                k,
                relu,
            } => {
                let x = x.unwrap_or(0);
                let (s_x, z_x) = b.qp[x];
                let rows = g.values[x].numel() / k;
                let xs = &g.values[x].shape;
                b.timed[n.output] = in_timed && xs.last() != Some(&seq_len);
                let (wq, sw) = quantize_rows(w, *nout, *k);
                let bq = fold_bias(bias, &wq, *k, s_x as f64, &sw, z_x);
                let rq = rq_pairs(sw.iter().map(|s| s_x as f64 * s / s_y as f64))?;
                let xt = b.value_tensor(x, None)?;
                let wt = b.constant(
                    format!("{}/w", n.name),
                    DType::I8,
                    vec![*nout, *k],
                    i8_bytes(&wq),
                );
                let bt = b.constant(
                    format!("{}/bias", n.name),
                    DType::I32,
                    vec![*nout],
                    i32_bytes(&bq),
                );
                let rt = b.constant(
                    format!("{}/rq", n.name),
                    DType::I32,
                    vec![*nout, 2],
                    i32_bytes(&rq),
                );
                let yt = b.value_tensor(n.output, None)?;
                let per_step = b.timed[n.output];
                let steps = if per_step { seq_len } else { 1 };
                let act_min = if *relu { z_y.max(-128) } else { -128 };
                b.push_op(
                    &n.name,
                    format::OP_FC,
                    per_step,
                    vec![xt, wt, bt, rt, yt],
                    vec![
                        steps as i32,
                        (rows / steps) as i32,
                        *k as i32,
                        *nout as i32,
                        z_y,
                        act_min,
                        127,
                    ],
                );
            }
            Op::Lstm {
                w,
                r,
                bw,
                br,
                input,
                hidden,
                reverse,
            }
            | Op::Gru {
                w,
                r,
                bw,
                br,
                input,
                hidden,
                reverse,
            }
            | Op::Rnn {
                w,
                r,
                bw,
                br,
                input,
                hidden,
                reverse,
                ..
            } => {
                let x = x.unwrap_or(0);
                let (s_x, z_x) = b.qp[x];
                let h = *hidden;
                let gates = match n.op {
                    Op::Lstm { .. } => 4,
                    Op::Gru { .. } => 3,
                    _ => 1,
                };
                let t_steps = g.values[x].numel() / input;
                if t_steps != seq_len {
                    bail!(
                        "node '{}' runs {t_steps} steps but the model's sequence has {seq_len}",
                        n.name
                    );
                }
                if !b.timed[x] {
                    b.not_streamable(format!("the input of '{}' is not time-major", n.name));
                }
                if *reverse {
                    b.not_streamable(format!("'{}' runs in reverse (bidirectional)", n.name));
                }
                b.timed[n.output] = true;
                let (wq, sw) = quantize_rows(w, gates * h, *input);
                let (rq_r, sr) = quantize_rows(r, gates * h, h);
                let relu = matches!(
                    n.op,
                    Op::Rnn {
                        act: RnnAct::Relu,
                        ..
                    }
                );
                // Gate pre-activations go to Q3.12, or for a ReLU RNN straight to h's scale.
                let target = if relu { s_y as f64 } else { 1.0 / 4096.0 };
                let bxq = fold_bias(bw, &wq, *input, s_x as f64, &sw, z_x);
                let bhq = fold_bias(br, &rq_r, h, s_y as f64, &sr, z_y);
                let rqx = rq_pairs(sw.iter().map(|s| s_x as f64 * s / target))?;
                let rqh = rq_pairs(sr.iter().map(|s| s_y as f64 * s / target))?;
                let xt = b.value_tensor(x, None)?;
                let gh = gates * h;
                // The unit16 layout (format::OP_FLAG_UNIT16): the same values, unit-major
                // rows, the matrices widened to int16 and interleaved for the DSP kernel.
                let unit16 = opts.lstm_unit16 && matches!(n.op, Op::Lstm { .. });
                let (bxq, bhq, rqx, rqh) = if unit16 {
                    (
                        unit_major(&bxq, h, 1),
                        unit_major(&bhq, h, 1),
                        unit_major(&rqx, h, 2),
                        unit_major(&rqh, h, 2),
                    )
                } else {
                    (bxq, bhq, rqx, rqh)
                };
                let gate_matrix = |b: &mut Builder, what: &str, m: &[i8], k: usize| {
                    let name = format!("{}/{what}", n.name);
                    if unit16 {
                        let kp = format::unit16_kp(k);
                        b.constant(
                            name,
                            DType::I16,
                            vec![gh, kp],
                            i16_bytes(&unit16_pack(m, h, k)),
                        )
                    } else {
                        b.constant(name, DType::I8, vec![gh, k], i8_bytes(m))
                    }
                };
                let wt = gate_matrix(&mut b, "w", &wq, *input);
                let rt = gate_matrix(&mut b, "r", &rq_r, h);
                let bxt = b.constant(
                    format!("{}/bias_x", n.name),
                    DType::I32,
                    vec![gh],
                    i32_bytes(&bxq),
                );
                let bht = b.constant(
                    format!("{}/bias_h", n.name),
                    DType::I32,
                    vec![gh],
                    i32_bytes(&bhq),
                );
                let rqxt = b.constant(
                    format!("{}/rq_x", n.name),
                    DType::I32,
                    vec![gh, 2],
                    i32_bytes(&rqx),
                );
                let rqht = b.constant(
                    format!("{}/rq_h", n.name),
                    DType::I32,
                    vec![gh, 2],
                    i32_bytes(&rqh),
                );
                let (sig, tanh) = b.act_tables();
                let hst = b.state(format!("{}/h", n.name), DType::I8, h, z_y, s_y);
                let yt = b.value_tensor(n.output, None)?;
                let s = seq_len as i32;
                let rev = *reverse as i32;
                match n.op {
                    Op::Lstm { .. } => {
                        let cmax =
                            ranges.cell_max.get(&ni).copied().unwrap_or(1.0).max(1e-6) as f64;
                        let cell_exp = (cmax.log2().ceil() as i32).clamp(0, 15);
                        let cst = b.state(
                            format!("{}/c", n.name),
                            DType::I16,
                            h,
                            0,
                            2f32.powi(cell_exp - 15),
                        );
                        // unit16: also room for the DSP kernel's requantization tables
                        // (format::UNIT16_SCRATCH_PER_UNIT).
                        let per_unit = if unit16 {
                            format::UNIT16_SCRATCH_PER_UNIT
                        } else {
                            4
                        };
                        let scr = b.scratch(format!("{}/gates", n.name), DType::I16, per_unit * h);
                        let (hm, hs) = quantize_multiplier(2f64.powi(-30) / s_y as f64)?;
                        b.push_op(
                            &n.name,
                            format::OP_LSTM,
                            true,
                            vec![
                                xt, wt, rt, bxt, bht, rqxt, rqht, sig, tanh, hst, cst, yt, scr,
                            ],
                            vec![s, *input as i32, h as i32, rev, z_y, cell_exp, hm, hs],
                        );
                        if unit16 {
                            if let Some(op) = b.m.ops.last_mut() {
                                op.unit16 = true;
                            }
                        }
                    }
                    Op::Gru { .. } => {
                        let scr = b.scratch(format!("{}/gates", n.name), DType::I16, 6 * h);
                        // The exact hidden state, Q0.15: int8 alone loses slow dynamics.
                        let h16 =
                            b.state(format!("{}/h16", n.name), DType::I16, h, 0, 2f32.powi(-15));
                        let (hm, hs) = quantize_multiplier(2f64.powi(-15) / s_y as f64)?;
                        b.push_op(
                            &n.name,
                            format::OP_GRU,
                            true,
                            vec![
                                xt, wt, rt, bxt, bht, rqxt, rqht, sig, tanh, hst, yt, scr, h16,
                            ],
                            vec![s, *input as i32, h as i32, rev, z_y, 0, 0, hm, hs],
                        );
                    }
                    _ => {
                        let (hm, hs) = if relu {
                            (0, 0)
                        } else {
                            quantize_multiplier(2f64.powi(-15) / s_y as f64)?
                        };
                        b.push_op(
                            &n.name,
                            format::OP_RNN,
                            true,
                            vec![xt, wt, rt, bxt, bht, rqxt, rqht, tanh, hst, yt],
                            vec![s, *input as i32, h as i32, rev, z_y, hm, hs, relu as i32],
                        );
                    }
                }
            }
            Op::Unary(u) => {
                let x = x.unwrap_or(0);
                let (s_x, z_x) = b.qp[x];
                b.timed[n.output] = b.timed[x];
                let table: Vec<i8> = (-128i32..128)
                    .map(|q| {
                        let xf = s_x * (q - z_x) as f32;
                        let yf = u.eval(xf);
                        ((yf / s_y).round() + z_y as f32).clamp(-128.0, 127.0) as i8
                    })
                    .collect();
                let xt = b.value_tensor(x, None)?;
                let tt = b.constant(
                    format!("{}/table", n.name),
                    DType::I8,
                    vec![256],
                    i8_bytes(&table),
                );
                let yt = b.value_tensor(n.output, None)?;
                let len = g.values[x].numel();
                let per_step = b.timed[x];
                let steps = if per_step { seq_len } else { 1 };
                b.push_op(
                    &n.name,
                    format::OP_LUT8,
                    per_step,
                    vec![xt, tt, yt],
                    vec![steps as i32, (len / steps) as i32],
                );
            }
            Op::Add => {
                let (a, bb) = (n.inputs[0], n.inputs[1]);
                let (a, bb) = if g.values[a].numel() >= g.values[bb].numel() {
                    (a, bb)
                } else {
                    (bb, a)
                };
                let (s_a, z_a) = b.qp[a];
                let (s_b, z_b) = b.qp[bb];
                let len = g.values[a].numel();
                let b_len = g.values[bb].numel();
                if len % b_len != 0 {
                    bail!(
                        "node '{}': cannot broadcast {b_len} elements over {len}",
                        n.name
                    );
                }
                let per_step = b.timed[a] && (b.timed[bb] || b_len < len / seq_len);
                if b.timed[bb] && !b.timed[a] {
                    b.not_streamable(format!("'{}' broadcasts a sequence", n.name));
                }
                b.timed[n.output] = b.timed[a];
                let ra = s_a as f64 / s_y as f64;
                let rb = s_b as f64 / s_y as f64;
                let maxr = ra.max(rb);
                let shift = ((2f64.powi(30) / maxr).log2().floor() as i32).clamp(1, 40);
                let am = (ra * 2f64.powi(shift)).round() as i32;
                let bm = (rb * 2f64.powi(shift)).round() as i32;
                let at = b.value_tensor(a, None)?;
                let bt = b.value_tensor(bb, None)?;
                let yt = b.value_tensor(n.output, None)?;
                let steps = if per_step { seq_len } else { 1 };
                let per = len / steps;
                let b_len_p = if b_len == len { per } else { b_len };
                b.push_op(
                    &n.name,
                    format::OP_ADD,
                    per_step,
                    vec![at, bt, yt],
                    vec![
                        steps as i32,
                        per as i32,
                        b_len_p as i32,
                        z_a,
                        z_b,
                        z_y,
                        am,
                        bm,
                        shift,
                        -128,
                        127,
                    ],
                );
            }
            Op::Softmax => {
                let x = x.unwrap_or(0);
                let (s_x, _) = b.qp[x];
                let shape = &g.values[x].shape;
                let len = *shape.last().unwrap_or(&1);
                let rows = g.values[x].numel() / len.max(1);
                let per_step = b.timed[x] && shape.last() != Some(&seq_len);
                b.timed[n.output] = per_step;
                let table: Vec<i32> = (0..256)
                    .map(|d| ((-(s_x as f64) * d as f64).exp() * 65536.0).round() as i32)
                    .collect();
                let xt = b.value_tensor(x, None)?;
                let tt = b.constant(
                    format!("{}/exp", n.name),
                    DType::I32,
                    vec![256],
                    i32_bytes(&table),
                );
                let yt = b.value_tensor(n.output, None)?;
                let steps = if per_step { seq_len } else { 1 };
                b.push_op(
                    &n.name,
                    format::OP_SOFTMAX,
                    per_step,
                    vec![xt, tt, yt],
                    vec![steps as i32, (rows / steps) as i32, len as i32],
                );
            }
            Op::Reshape => {
                let x = x.unwrap_or(0);
                let out_shape = &g.values[n.output].shape;
                b.timed[n.output] = b.timed[x] && time_axis_of(out_shape, seq_len).is_some();
                if b.timed[x] && !b.timed[n.output] {
                    b.not_streamable(format!("reshape '{}' mixes time steps", n.name));
                }
                b.value_tensor(n.output, Some(x))?;
            }
            Op::Slice { axis, start, end } => {
                let x = x.unwrap_or(0);
                let xs = g.values[x].shape.clone();
                let xt = b.value_tensor(x, None)?;
                let tax = if b.timed[x] {
                    time_axis_of(&xs, seq_len)
                } else {
                    None
                };
                if tax == Some(*axis) && *start == seq_len - 1 && *end == seq_len {
                    // Select the last time step.
                    let yt = b.value_tensor(n.output, None)?;
                    let row = g.values[x].numel() / seq_len;
                    b.push_op(
                        &n.name,
                        format::OP_SELECT_LAST,
                        true,
                        vec![xt, yt],
                        vec![seq_len as i32, row as i32],
                    );
                    continue;
                }
                if tax == Some(*axis) {
                    b.not_streamable(format!(
                        "slice '{}' picks steps other than the last",
                        n.name
                    ));
                }
                b.timed[n.output] = tax.is_some() && tax != Some(*axis);
                let yt = b.value_tensor(n.output, None)?;
                let mut strides = vec![1usize; xs.len()];
                for i in (0..xs.len().saturating_sub(1)).rev() {
                    strides[i] = strides[i + 1] * xs[i + 1];
                }
                let mut out_dims = xs.clone();
                out_dims[*axis] = end - start;
                let offset = start * strides[*axis];
                let params = copy_params(&n.name, &out_dims, &strides, offset)?;
                b.push_op(&n.name, format::OP_COPY, false, vec![xt, yt], params);
                if b.timed[n.output] {
                    b.not_streamable(format!("slice '{}' on a sequence", n.name));
                }
            }
            Op::Transpose { perm } => {
                let x = x.unwrap_or(0);
                let xs = g.values[x].shape.clone();
                if b.timed[x] {
                    b.not_streamable(format!("transpose '{}' on a sequence", n.name));
                }
                let xt = b.value_tensor(x, None)?;
                let yt = b.value_tensor(n.output, None)?;
                let mut strides = vec![1usize; xs.len()];
                for i in (0..xs.len().saturating_sub(1)).rev() {
                    strides[i] = strides[i + 1] * xs[i + 1];
                }
                let out_dims: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
                let out_strides: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
                let params = copy_params(&n.name, &out_dims, &out_strides, 0)?;
                b.push_op(&n.name, format::OP_COPY, false, vec![xt, yt], params);
            }
            Op::Concat { axis } => {
                let out_shape = g.values[n.output].shape.clone();
                let all_timed = n.inputs.iter().all(|&i| b.timed[i]);
                let tax = time_axis_of(&out_shape, seq_len);
                let per_step = all_timed && tax.is_some_and(|t| t < *axis);
                if in_timed && !per_step {
                    b.not_streamable(format!("concat '{}' joins along time", n.name));
                }
                b.timed[n.output] = per_step;
                let steps = if per_step { seq_len } else { 1 };
                let outer: usize = out_shape[..*axis].iter().product::<usize>() / steps;
                let mut ts = Vec::new();
                let mut chunks = Vec::new();
                for &i in &n.inputs {
                    ts.push(b.value_tensor(i, None)?);
                    chunks.push(g.values[i].shape[*axis..].iter().product::<usize>() as i32);
                }
                ts.push(b.value_tensor(n.output, None)?);
                let mut params = vec![steps as i32, outer as i32, 1, n.inputs.len() as i32];
                params.extend(chunks);
                b.push_op(&n.name, format::OP_CONCAT, per_step, ts, params);
            }
            Op::Constant { data } => {
                // A constant used as an activation (CLS token, positional embedding): int8
                // bytes in the file at the quantization its consumers share.
                let dims = fit_rank(&g.values[n.output].shape)?;
                let q: Vec<i8> = data
                    .iter()
                    .map(|&v| ((v / s_y).round() + z_y as f32).clamp(-128.0, 127.0) as i8)
                    .collect();
                let t = b.add_tensor(QTensor {
                    name: g.values[n.output].name.clone(),
                    dtype: DType::I8,
                    kind: TensorKind::Const,
                    dims,
                    time_axis: None,
                    scale: s_y,
                    zero_point: z_y,
                    data: i8_bytes(&q),
                    buffer: None,
                });
                b.tensor_of[n.output] = Some(t);
            }
            Op::LayerNorm { gamma, beta, eps } => {
                let x = x.unwrap_or(0);
                let (s_x, _) = b.qp[x];
                let d = gamma.len();
                let rows = g.values[x].numel() / d.max(1);
                let per_step = b.timed[x] && g.values[x].shape.last() != Some(&seq_len);
                b.timed[n.output] = per_step;
                let mut grq = Vec::with_capacity(2 * d);
                for &gm in gamma {
                    let m = gm as f64 / s_y as f64 / 4096.0;
                    let (mult, shift) = quantize_multiplier(m.abs())?;
                    grq.push(if m < 0.0 { -mult } else { mult });
                    grq.push(shift);
                }
                let bq: Vec<i32> = beta
                    .iter()
                    .map(|&bv| (bv as f64 / s_y as f64).round() as i32 + z_y)
                    .collect();
                let eps_q = (*eps as f64 * (d * d) as f64 / (s_x as f64 * s_x as f64))
                    .round()
                    .clamp(0.0, i32::MAX as f64) as i32;
                let xt = b.value_tensor(x, None)?;
                let gt = b.constant(
                    format!("{}/gamma_rq", n.name),
                    DType::I32,
                    vec![d, 2],
                    i32_bytes(&grq),
                );
                let bt = b.constant(
                    format!("{}/beta", n.name),
                    DType::I32,
                    vec![d],
                    i32_bytes(&bq),
                );
                let yt = b.value_tensor(n.output, None)?;
                let steps = if per_step { seq_len } else { 1 };
                b.push_op(
                    &n.name,
                    format::OP_LAYERNORM,
                    per_step,
                    vec![xt, gt, bt, yt],
                    vec![
                        steps as i32,
                        (rows / steps) as i32,
                        d as i32,
                        eps_q,
                        -128,
                        127,
                    ],
                );
            }
            Op::Attention {
                heads,
                scale,
                causal,
            } => {
                let (q, k, v) = (n.inputs[0], n.inputs[1], n.inputs[2]);
                let (s_q, z_q) = b.qp[q];
                let (s_k, z_k) = b.qp[k];
                let (s_v, z_v) = b.qp[v];
                let width = *g.values[q].shape.last().unwrap_or(&1);
                let dh = width / heads.max(&1);
                let tq = g.values[q].numel() / width.max(1);
                let tk = g.values[k].numel() / width.max(1);
                if in_timed {
                    b.not_streamable(format!("attention '{}' needs the whole sequence", n.name));
                }
                let (sm, ss) = quantize_multiplier(
                    s_q as f64 * s_k as f64 * *scale as f64 * std::f64::consts::LOG2_E * 1024.0,
                )?;
                let (om, os) = quantize_multiplier(s_v as f64 / s_y as f64 / 65536.0)?;
                let qt = b.value_tensor(q, None)?;
                let kt = b.value_tensor(k, None)?;
                let vt = b.value_tensor(v, None)?;
                let et = match b.exp2 {
                    Some(t) => t,
                    None => {
                        let exp2: Vec<i32> = (0..1024)
                            .map(|i| (2f64.powf(-(i as f64) / 1024.0) * 65536.0).round() as i32)
                            .collect();
                        let t =
                            b.constant("exp2_q16".into(), DType::I32, vec![1024], i32_bytes(&exp2));
                        b.exp2 = Some(t);
                        t
                    }
                };
                let yt = b.value_tensor(n.output, None)?;
                let st = b.scratch(format!("{}/scores", n.name), DType::I32, tk);
                b.push_op(
                    &n.name,
                    format::OP_ATTENTION,
                    false,
                    vec![qt, kt, vt, et, yt, st],
                    vec![
                        1,
                        tq as i32,
                        tk as i32,
                        *heads as i32,
                        dh as i32,
                        z_q,
                        z_k,
                        z_v,
                        z_y,
                        sm,
                        ss,
                        om,
                        os,
                        *causal as i32,
                    ],
                );
            }
            Op::Mean { axis } => {
                let x = x.unwrap_or(0);
                let (s_x, z_x) = b.qp[x];
                let xs = &g.values[x].shape;
                let outer: usize = xs[..*axis].iter().product();
                let cnt = xs[*axis];
                let inner: usize = xs[axis + 1..].iter().product();
                if b.timed[x] {
                    b.not_streamable(format!("mean '{}' over a sequence", n.name));
                }
                let (mm, ms) = quantize_multiplier(s_x as f64 / (cnt as f64 * s_y as f64))?;
                let xt = b.value_tensor(x, None)?;
                let yt = b.value_tensor(n.output, None)?;
                b.push_op(
                    &n.name,
                    format::OP_MEAN,
                    false,
                    vec![xt, yt],
                    vec![1, outer as i32, cnt as i32, inner as i32, z_x, z_y, mm, ms],
                );
            }
        }
    }
    for &o in &g.outputs {
        let t = b.value_tensor(o, None)?;
        b.m.outputs.push(t);
    }
    if !opts.meta.is_empty() {
        let bytes = opts.meta.as_bytes().to_vec();
        b.constant(META_TENSOR.into(), DType::I8, vec![bytes.len()], bytes);
    }
    // Liveness of buffers.
    let mut m = b.m;
    for &t in &m.inputs {
        if let Some(bf) = m.tensors[t].buffer {
            m.buffers[bf].first = -1;
        }
    }
    for (oi, op) in m.ops.iter().enumerate() {
        for &t in &op.tensors {
            if let Some(bf) = m.tensors[t].buffer {
                let buf = &mut m.buffers[bf];
                buf.first = buf.first.min(oi as i64);
                buf.last = buf.last.max(oi as i64);
            }
        }
    }
    for &t in &m.outputs {
        if let Some(bf) = m.tensors[t].buffer {
            m.buffers[bf].last = i64::MAX;
            m.buffers[bf].first = m.buffers[bf].first.min(i64::MAX - 1);
        }
    }
    Ok(m)
}

/// COPY parameters: `[steps, elem_size, in_step, in_offset, out_dims[4], in_strides[4]]`,
/// dropping size-1 output dims and merging what remains into at most 4.
fn copy_params(
    name: &str,
    out_dims: &[usize],
    in_strides: &[usize],
    offset: usize,
) -> Result<Vec<i32>> {
    let mut d: Vec<(usize, usize)> = out_dims
        .iter()
        .zip(in_strides)
        .filter(|(&n, _)| n != 1)
        .map(|(&n, &s)| (n, s))
        .collect();
    // Merge adjacent dims that are contiguous in the input.
    let mut i = 0;
    while i + 1 < d.len() {
        if d[i].1 == d[i + 1].0 * d[i + 1].1 {
            d[i] = (d[i].0 * d[i + 1].0, d[i + 1].1);
            d.remove(i + 1);
        } else {
            i += 1;
        }
    }
    if d.len() > 4 {
        bail!(
            "node '{name}': a copy of rank {} is beyond the runtime's 4",
            d.len()
        );
    }
    while d.len() < 4 {
        d.insert(0, (1, 0));
    }
    let mut p = vec![1, 1, 0, offset as i32];
    p.extend(d.iter().map(|x| x.0 as i32));
    p.extend(d.iter().map(|x| x.1 as i32));
    Ok(p)
}
