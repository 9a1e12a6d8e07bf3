//! Float interpreter of Kinglet's IR: exact ONNX semantics in f32 (accumulations in f64),
//! reporting every intermediate to an observer (calibration records ranges from these).

use crate::import::tensor::transpose_index;
use crate::ir::{Graph, Op, RnnAct, ValueId};
use anyhow::{bail, ensure, Context, Result};

/// What the interpreter reports while running.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A value was computed (also reported for the graph inputs).
    Value {
        /// The value.
        id: ValueId,
        /// Its data, row-major.
        data: &'a [f32],
    },
    /// All cell-state values of an `Lstm` node, `[T, H]` in time order (for a reverse node,
    /// row `t` is the state after processing input step `t`).
    LstmCell {
        /// Index of the node in [`Graph::nodes`].
        node: usize,
        /// `[T, H]` cell states.
        c: &'a [f32],
    },
    /// All gate pre-activations of a recurrent node, `[T, G·H]` in time order, gates in ONNX
    /// order (`Lstm`: i, o, f, c; `Gru`: z, r, h; `Rnn`: the single gate). Each is the
    /// argument of the gate's nonlinearity: `W x + bw + R h + br`, except GRU's `h` gate
    /// (linear_before_reset = 1), which is `W_h x + bw_h + r ⊙ (R_h h + br_h)`.
    GatePre {
        /// Index of the node in [`Graph::nodes`].
        node: usize,
        /// `[T, G·H]` pre-activations.
        data: &'a [f32],
    },
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `out[j] = b0[j] + b1[j] + Σ_k m[j, k] · v[k]` for `j < rows`, in f64.
fn matvec(m: &[f32], v: &[f32], rows: usize, out: &mut [f64]) {
    let k = v.len();
    for j in 0..rows {
        let row = &m[j * k..(j + 1) * k];
        let mut acc = 0f64;
        for (a, b) in row.iter().zip(v) {
            acc += *a as f64 * *b as f64;
        }
        out[j] += acc;
    }
}

/// Runs `graph` on `inputs` (one flat slice per graph input, row-major in the input's shape),
/// returning the graph outputs. `obs` sees every value, cell state and gate pre-activation.
pub fn eval(graph: &Graph, inputs: &[&[f32]], obs: &mut dyn FnMut(Event)) -> Result<Vec<Vec<f32>>> {
    ensure!(
        inputs.len() == graph.inputs.len(),
        "the graph has {} inputs, {} given",
        graph.inputs.len(),
        inputs.len()
    );
    let mut vals: Vec<Option<Vec<f32>>> = vec![None; graph.values.len()];
    for (&id, data) in graph.inputs.iter().zip(inputs) {
        let v = &graph.values[id];
        ensure!(
            data.len() == v.numel(),
            "input '{}' has shape {:?} ({} values), {} given",
            v.name,
            v.shape,
            v.numel(),
            data.len()
        );
        obs(Event::Value { id, data });
        vals[id] = Some(data.to_vec());
    }
    for (ni, node) in graph.nodes.iter().enumerate() {
        let ins: Vec<&[f32]> = node
            .inputs
            .iter()
            .map(|&i| {
                vals[i].as_deref().with_context(|| {
                    format!("node '{}' reads value {i} before it is computed", node.name)
                })
            })
            .collect::<Result<_>>()?;
        let out_v = &graph.values[node.output];
        let n_out = out_v.numel();
        let out: Vec<f32> = match &node.op {
            Op::Fc { w, b, n, k, relu } => {
                let x = ins[0];
                ensure!(
                    x.len() % k == 0,
                    "Fc '{}': input length {} not a multiple of {k}",
                    node.name,
                    x.len()
                );
                let rows = x.len() / k;
                let mut y = Vec::with_capacity(rows * n);
                let mut acc = vec![0f64; *n];
                for r in 0..rows {
                    acc.iter_mut().zip(b).for_each(|(a, &b)| *a = b as f64);
                    matvec(w, &x[r * k..(r + 1) * k], *n, &mut acc);
                    y.extend(acc.iter().map(|&a| {
                        let v = a as f32;
                        if *relu {
                            v.max(0.0)
                        } else {
                            v
                        }
                    }));
                }
                y
            }
            Op::Lstm {
                w,
                r,
                bw,
                br,
                input,
                hidden,
                reverse,
            } => {
                let (i_n, h) = (*input, *hidden);
                let x = ins[0];
                ensure!(x.len() % i_n == 0, "Lstm '{}': bad input length", node.name);
                let t_len = x.len() / i_n;
                let mut hs = vec![0f32; h];
                let mut cs = vec![0f64; h];
                let mut y = vec![0f32; t_len * h];
                let mut c_all = vec![0f32; t_len * h];
                let mut pre_all = vec![0f32; t_len * 4 * h];
                let mut g = vec![0f64; 4 * h];
                for step in 0..t_len {
                    let t = if *reverse { t_len - 1 - step } else { step };
                    for j in 0..4 * h {
                        g[j] = bw[j] as f64 + br[j] as f64;
                    }
                    matvec(w, &x[t * i_n..(t + 1) * i_n], 4 * h, &mut g);
                    matvec(r, &hs, 4 * h, &mut g);
                    for j in 0..4 * h {
                        pre_all[t * 4 * h + j] = g[j] as f32;
                    }
                    for j in 0..h {
                        let ig = sigmoid(g[j]);
                        let og = sigmoid(g[h + j]);
                        let fg = sigmoid(g[2 * h + j]);
                        let cg = g[3 * h + j].tanh();
                        cs[j] = fg * cs[j] + ig * cg;
                        let hv = og * cs[j].tanh();
                        hs[j] = hv as f32;
                        c_all[t * h + j] = cs[j] as f32;
                    }
                    y[t * h..(t + 1) * h].copy_from_slice(&hs);
                }
                obs(Event::GatePre {
                    node: ni,
                    data: &pre_all,
                });
                obs(Event::LstmCell {
                    node: ni,
                    c: &c_all,
                });
                y
            }
            Op::Gru {
                w,
                r,
                bw,
                br,
                input,
                hidden,
                reverse,
            } => {
                let (i_n, h) = (*input, *hidden);
                let x = ins[0];
                ensure!(x.len() % i_n == 0, "Gru '{}': bad input length", node.name);
                let t_len = x.len() / i_n;
                let mut hs = vec![0f32; h];
                let mut y = vec![0f32; t_len * h];
                let mut pre_all = vec![0f32; t_len * 3 * h];
                let mut gx = vec![0f64; 3 * h];
                let mut gh = vec![0f64; 3 * h];
                for step in 0..t_len {
                    let t = if *reverse { t_len - 1 - step } else { step };
                    for j in 0..3 * h {
                        gx[j] = bw[j] as f64;
                        gh[j] = br[j] as f64;
                    }
                    matvec(w, &x[t * i_n..(t + 1) * i_n], 3 * h, &mut gx);
                    matvec(r, &hs, 3 * h, &mut gh);
                    let mut new_h = vec![0f32; h];
                    for j in 0..h {
                        let zp = gx[j] + gh[j];
                        let rp = gx[h + j] + gh[h + j];
                        let z = sigmoid(zp);
                        let rr = sigmoid(rp);
                        let hp = gx[2 * h + j] + rr * gh[2 * h + j];
                        let hc = hp.tanh();
                        new_h[j] = ((1.0 - z) * hc + z * hs[j] as f64) as f32;
                        pre_all[t * 3 * h + j] = zp as f32;
                        pre_all[t * 3 * h + h + j] = rp as f32;
                        pre_all[t * 3 * h + 2 * h + j] = hp as f32;
                    }
                    hs = new_h;
                    y[t * h..(t + 1) * h].copy_from_slice(&hs);
                }
                obs(Event::GatePre {
                    node: ni,
                    data: &pre_all,
                });
                y
            }
            Op::Rnn {
                w,
                r,
                bw,
                br,
                input,
                hidden,
                reverse,
                act,
            } => {
                let (i_n, h) = (*input, *hidden);
                let x = ins[0];
                ensure!(x.len() % i_n == 0, "Rnn '{}': bad input length", node.name);
                let t_len = x.len() / i_n;
                let mut hs = vec![0f32; h];
                let mut y = vec![0f32; t_len * h];
                let mut pre_all = vec![0f32; t_len * h];
                let mut g = vec![0f64; h];
                for step in 0..t_len {
                    let t = if *reverse { t_len - 1 - step } else { step };
                    for j in 0..h {
                        g[j] = bw[j] as f64 + br[j] as f64;
                    }
                    matvec(w, &x[t * i_n..(t + 1) * i_n], h, &mut g);
                    matvec(r, &hs, h, &mut g);
                    for j in 0..h {
                        pre_all[t * h + j] = g[j] as f32;
                        hs[j] = match act {
                            RnnAct::Tanh => g[j].tanh() as f32,
                            RnnAct::Relu => g[j].max(0.0) as f32,
                        };
                    }
                    y[t * h..(t + 1) * h].copy_from_slice(&hs);
                }
                obs(Event::GatePre {
                    node: ni,
                    data: &pre_all,
                });
                y
            }
            Op::Unary(u) => ins[0].iter().map(|&v| u.eval(v)).collect(),
            Op::Add => {
                let (a, b) = (ins[0], ins[1]);
                ensure!(
                    !b.is_empty() && a.len() % b.len() == 0 && a.len() == n_out,
                    "Add '{}': operand lengths {} and {} do not broadcast to {n_out}",
                    node.name,
                    a.len(),
                    b.len()
                );
                a.iter()
                    .enumerate()
                    .map(|(i, &v)| v + b[i % b.len()])
                    .collect()
            }
            Op::Softmax => {
                let x = ins[0];
                let n = *out_v.shape.last().unwrap_or(&1);
                let mut y = Vec::with_capacity(x.len());
                for row in x.chunks(n.max(1)) {
                    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                    let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
                    let s: f64 = e.iter().sum();
                    y.extend(e.iter().map(|v| (v / s) as f32));
                }
                y
            }
            Op::Reshape => ins[0].to_vec(),
            Op::Transpose { perm } => {
                let in_shape = &graph.values[node.inputs[0]].shape;
                transpose_index(in_shape, perm)
                    .iter()
                    .map(|&i| ins[0][i])
                    .collect()
            }
            Op::Slice { axis, start, end } => {
                let in_shape = &graph.values[node.inputs[0]].shape;
                ensure!(
                    *end <= in_shape[*axis] && start < end,
                    "Slice '{}': bad range",
                    node.name
                );
                let outer: usize = in_shape[..*axis].iter().product();
                let inner: usize = in_shape[axis + 1..].iter().product();
                let dim = in_shape[*axis];
                let mut y = Vec::with_capacity(n_out);
                for o in 0..outer {
                    y.extend_from_slice(
                        &ins[0][(o * dim + start) * inner..(o * dim + end) * inner],
                    );
                }
                y
            }
            Op::Concat { axis } => {
                let outer: usize = out_v.shape[..*axis].iter().product();
                let mut y = Vec::with_capacity(n_out);
                for o in 0..outer {
                    for (k, &id) in node.inputs.iter().enumerate() {
                        let chunk: usize = graph.values[id].shape[*axis..].iter().product();
                        y.extend_from_slice(&ins[k][o * chunk..(o + 1) * chunk]);
                    }
                }
                y
            }
            Op::Constant { data } => {
                ensure!(
                    data.len() == n_out,
                    "Constant '{}': {} values for shape {:?}",
                    node.name,
                    data.len(),
                    out_v.shape
                );
                data.clone()
            }
            Op::LayerNorm { gamma, beta, eps } => {
                let x = ins[0];
                let d = gamma.len();
                ensure!(
                    d > 0 && x.len() % d == 0 && beta.len() == d,
                    "LayerNorm '{}': input length {} not a multiple of {d}",
                    node.name,
                    x.len()
                );
                let mut y = Vec::with_capacity(x.len());
                for row in x.chunks(d) {
                    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                    let var = row
                        .iter()
                        .map(|&v| (v as f64 - mean) * (v as f64 - mean))
                        .sum::<f64>()
                        / d as f64;
                    let inv = 1.0 / (var + *eps as f64).sqrt();
                    y.extend(
                        row.iter()
                            .zip(gamma.iter().zip(beta))
                            .map(|(&v, (&g, &b))| {
                                ((v as f64 - mean) * inv * g as f64 + b as f64) as f32
                            }),
                    );
                }
                y
            }
            Op::Attention {
                heads,
                scale,
                causal,
            } => {
                let width = *graph.values[node.inputs[0]].shape.last().unwrap_or(&0);
                ensure!(
                    ins[0].len() == n_out && ins[1].len() == ins[2].len() && width > 0,
                    "Attention '{}': q/k/v/output lengths {}/{}/{}/{n_out}",
                    node.name,
                    ins[0].len(),
                    ins[1].len(),
                    ins[2].len()
                );
                attention(ins[0], ins[1], ins[2], width, *heads, *scale, *causal)
                    .with_context(|| format!("Attention '{}'", node.name))?
            }
            Op::Mean { axis } => {
                let in_shape = &graph.values[node.inputs[0]].shape;
                ensure!(*axis < in_shape.len(), "Mean '{}': bad axis", node.name);
                let outer: usize = in_shape[..*axis].iter().product();
                let inner: usize = in_shape[axis + 1..].iter().product();
                let dim = in_shape[*axis];
                let x = ins[0];
                let mut y = Vec::with_capacity(outer * inner);
                for o in 0..outer {
                    for i in 0..inner {
                        let s: f64 = (0..dim).map(|k| x[(o * dim + k) * inner + i] as f64).sum();
                        y.push((s / dim as f64) as f32);
                    }
                }
                y
            }
        };
        if out.len() != n_out {
            bail!(
                "node '{}' produced {} values, but its output '{}' has shape {:?}",
                node.name,
                out.len(),
                out_v.name,
                out_v.shape
            );
        }
        obs(Event::Value {
            id: node.output,
            data: &out,
        });
        vals[node.output] = Some(out);
    }
    graph
        .outputs
        .iter()
        .map(|&o| vals[o].clone().context("graph output not computed"))
        .collect()
}

/// Multi-head scaled dot-product attention on `[tokens, width]` rows, `width = heads ·
/// head_dim` (see [`Op::Attention`]).
fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    width: usize,
    heads: usize,
    scale: f32,
    causal: bool,
) -> Result<Vec<f32>> {
    ensure!(
        width % heads == 0 && q.len() % width == 0 && k.len() % width == 0,
        "bad attention shapes"
    );
    let dh = width / heads;
    let (tq, tk) = (q.len() / width, k.len() / width);
    let mut y = vec![0f32; q.len()];
    let mut logits = vec![0f64; tk];
    let mut acc = vec![0f64; dh];
    for h in 0..heads {
        let c0 = h * dh;
        for i in 0..tq {
            let qi = &q[i * width + c0..i * width + c0 + dh];
            // A causal query i sees keys j ≤ i (aligned at the start, as PyTorch's tril mask).
            let n_keys = if causal { (i + 1).min(tk) } else { tk };
            let mut m = f64::NEG_INFINITY;
            for (j, l) in logits.iter_mut().enumerate().take(n_keys) {
                let kj = &k[j * width + c0..j * width + c0 + dh];
                let dot: f64 = qi.iter().zip(kj).map(|(&a, &b)| a as f64 * b as f64).sum();
                *l = (dot as f32 * scale) as f64;
                m = m.max(*l);
            }
            let mut sum = 0f64;
            for l in logits.iter_mut().take(n_keys) {
                *l = (*l - m).exp();
                sum += *l;
            }
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (j, &p) in logits.iter().enumerate().take(n_keys) {
                let vj = &v[j * width + c0..j * width + c0 + dh];
                let p = (p / sum) as f32 as f64;
                for (a, &vv) in acc.iter_mut().zip(vj) {
                    *a += p * vv as f64;
                }
            }
            for (o, &a) in y[i * width + c0..i * width + c0 + dh].iter_mut().zip(&acc) {
                *o = a as f32;
            }
        }
    }
    Ok(y)
}
