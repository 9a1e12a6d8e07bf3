//! Scaled dot-product attention, whatever its ONNX spelling, lowered to
//! `Fc` (q, k, v) → [`Op::Attention`] → (`Fc` out-projection, lowered as usual).
//!
//! * Decomposed attention (`MatMul(Q, Kᵀ)` → scale `Mul`/`Div` → optional mask `Add` → `Softmax`
//!   → optional NaN guard `Where(IsNaN(·), 0, ·)` → `MatMul(·, V)`, as emitted by both PyTorch
//!   exporters for `nn.MultiheadAttention` / `F.scaled_dot_product_attention`): a `MatMul` of
//!   two activations does not emit anything, it creates pending *scores* that the following
//!   nodes refine until the second `MatMul` emits the attention node. The exporters' scale
//!   `Mul`s on Q and Kᵀ (by `√scale` each) are absorbed into the attention scale.
//! * The opset-23 `Attention` op (4-D `[B, H, S, dh]` or 3-D `[B, S, H·dh]` inputs).
//!
//! The attention inputs are `[tokens, heads·dh]` rows. They are found by walking back from Q /
//! Kᵀ / V through pure data-movement nodes (Reshape / Transpose / Slice) and composing the index
//! maps: when the rows are a column block of an `Fc` output (the packed in-projection, split
//! into heads by any mix of Split / Slice / Gather / Reshape / Transpose), a new `Fc` with just
//! those weight rows computes them directly; otherwise Reshape/Transpose nodes build them. The
//! output is reshaped back to the ONNX layout; `finalize` then cancels the Transpose chains that
//! compose to the identity.

use super::tensor::{self, attr_f, attr_i, transpose_index, Tensor};
use super::{node_name, Importer, Sym};
use crate::ir::{Op, ValueId};
use anyhow::{anyhow, Result};
use tract_onnx::pb::NodeProto;

/// Pending attention logits `Q · Kᵀ` (not yet emitted).
#[derive(Debug, Clone)]
pub(crate) struct Scores {
    /// Q as `[..batch, Tq, dh]` (batch dims = heads).
    q: ValueId,
    /// Kᵀ as `[..batch, dh, Tk]`.
    kt: ValueId,
    heads: usize,
    tq: usize,
    tk: usize,
    dh: usize,
    /// ONNX shape of the scores `[..batch, Tq, Tk]`.
    shape: Vec<usize>,
    scale: f32,
    causal: bool,
    softmax: bool,
    /// This name is `IsNaN(scores)` (the exporters' guard against fully masked rows).
    nan_of: bool,
}

/// How a value holds attention rows.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Logical `[H, T, dh]` (leading batch dims of size 1 allowed).
    Heads,
    /// Logical `[H, dh, T]` (Kᵀ).
    HeadsT,
    /// Logical `[T, H·dh]`.
    Rows,
}

/// `MatMul(a, b)` of two activations: starts pending scores.
pub(crate) fn start_scores(
    imp: &mut Importer,
    node: &NodeProto,
    a: ValueId,
    b: ValueId,
) -> Result<()> {
    let (sa, sb) = (imp.shape(a).to_vec(), imp.shape(b).to_vec());
    let bad = || {
        imp.unsupported(
            node,
            &format!(
                "MatMul of two activations {sa:?} x {sb:?} is only supported as the Q·Kᵀ product \
                 of scaled dot-product attention (same head count on both sides)"
            ),
        )
    };
    if sa.len() < 2 || sb.len() < 2 {
        return Err(bad());
    }
    let (tq, dh) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (dk, tk) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    let ba: Vec<usize> = sa[..sa.len() - 2].to_vec();
    let bb: Vec<usize> = sb[..sb.len() - 2].to_vec();
    let heads: usize = ba.iter().product();
    let trim = |v: &[usize]| {
        v.iter()
            .copied()
            .skip_while(|&d| d == 1)
            .collect::<Vec<_>>()
    };
    if dk != dh || trim(&ba) != trim(&bb) {
        return Err(bad());
    }
    let mut shape = if ba.len() >= bb.len() { ba } else { bb };
    shape.extend([tq, tk]);
    let s = Scores {
        q: a,
        kt: b,
        heads,
        tq,
        tk,
        dh,
        shape,
        scale: 1.0,
        causal: false,
        softmax: false,
        nan_of: false,
    };
    imp.scores.insert(node.output[0].clone(), s);
    Ok(())
}

/// A node reading pending scores.
pub(crate) fn scores_use(imp: &mut Importer, node: &NodeProto) -> Result<()> {
    let op = node.op_type.as_str();
    let sname = node
        .input
        .iter()
        .find(|i| imp.scores.contains_key(*i))
        .cloned()
        .unwrap_or_default();
    let mut s = imp.scores[&sname].clone();
    let pos = node.input.iter().position(|i| *i == sname).unwrap_or(0);
    let out = node.output.first().cloned().unwrap_or_default();
    let unsupported = |imp: &Importer, why: &str| {
        imp.unsupported(
            node,
            &format!(
                "attention scores (a MatMul of two activations, '{sname}') are only supported in \
                 the pattern MatMul(Q, Kᵀ) → scale → causal mask → Softmax → MatMul(·, V): {why}"
            ),
        )
    };
    let konst = |imp: &Importer, i: usize| -> Option<Tensor> {
        match imp.syms.get(node.input.get(i)?) {
            Some(Sym::C(t)) => Some(t.clone()),
            _ => None,
        }
    };
    match op {
        "Mul" | "Div" => {
            let c = konst(imp, 1 - pos.min(1))
                .filter(|c| c.numel() == 1)
                .ok_or_else(|| unsupported(imp, "only a scalar constant scale is supported"))?;
            if s.softmax || (op == "Div" && pos != 0) {
                return Err(unsupported(imp, "scaling after Softmax"));
            }
            let v = c.as_f32()[0];
            s.scale = if op == "Mul" {
                s.scale * v
            } else {
                s.scale / v
            };
        }
        "Add" => {
            if s.softmax {
                return Err(unsupported(imp, "Add after Softmax"));
            }
            let c = konst(imp, 1 - pos.min(1)).ok_or_else(|| {
                unsupported(imp, "the attention mask must be a constant (causal) mask")
            })?;
            let causal = mask_is_causal(&c, &s.shape, false)
                .map_err(|e| unsupported(imp, &format!("{e:#}")))?;
            s.causal |= causal;
        }
        "Softmax" => {
            let rank = s.shape.len() as i64;
            let default = if imp.opset < 13 { 1 } else { -1 };
            let axis = attr_i(node, "axis").unwrap_or(default);
            if (axis != -1 && axis != rank - 1) || s.softmax {
                return Err(unsupported(imp, "Softmax must be over the key axis"));
            }
            s.softmax = true;
        }
        "Cast" | "Identity" | "Dropout" => {}
        "Shape" | "Size" => {
            // Static: answered like for any activation.
            let t = if op == "Shape" {
                tensor::shape_of(node, &s.shape).map_err(|e| imp.node_err(node, e))?
            } else {
                Tensor::i(vec![], vec![s.shape.iter().product::<usize>() as i64])
            };
            imp.bind(&out, Sym::C(t));
            return Ok(());
        }
        "IsNaN" if s.softmax && !s.nan_of => s.nan_of = true,
        "Where" => {
            // Where(IsNaN(p), 0, p) → p
            let cond = imp.scores.get(&node.input[0]);
            let zero = konst(imp, 1).is_some_and(|t| t.all_zero());
            match (cond, imp.scores.get(&node.input[2])) {
                (Some(c), Some(p)) if c.nan_of && !p.nan_of && zero && p.softmax => {
                    s = p.clone();
                }
                _ => return Err(unsupported(imp, "Where other than the NaN guard")),
            }
        }
        "MatMul" if pos == 0 && s.softmax && !s.nan_of => {
            let v = match imp.syms.get(&node.input[1]) {
                Some(Sym::A(v)) => *v,
                _ => return Err(unsupported(imp, "V must be an activation")),
            };
            return emit_from_scores(imp, node, &s, v);
        }
        _ => return Err(unsupported(imp, "unexpected consumer")),
    }
    imp.scores.insert(out, s);
    Ok(())
}

/// Whether a constant mask (additive float: 0 = keep, ≤ -1e4 = masked; or bool: true = keep)
/// broadcast onto `[.., Tq, Tk]` scores is causal (`j ≤ i` kept); `false` for an all-keep mask;
/// an error for anything else.
pub(crate) fn mask_is_causal(m: &Tensor, scores: &[usize], bool_keep: bool) -> Result<bool> {
    let shape = tensor::broadcast(&m.shape, scores)?;
    if shape != scores {
        return Err(anyhow!(
            "mask {:?} does not broadcast onto the scores {scores:?}",
            m.shape
        ));
    }
    let idx = tensor::broadcast_index(&m.shape, scores);
    let v = m.as_f32();
    let is_bool = m.dt == tensor::dt::BOOL || bool_keep;
    let (tq, tk) = (scores[scores.len() - 2], scores[scores.len() - 1]);
    let mut all_keep = true;
    let mut causal = true;
    for (n, &i) in idx.iter().enumerate() {
        let x = v[i];
        let keep = if is_bool {
            x != 0.0
        } else if x == 0.0 {
            true
        } else if x <= -1e4 {
            false
        } else {
            return Err(anyhow!(
                "additive attention masks must be 0 or -inf (found {x}); attention biases are \
                 not supported"
            ));
        };
        let (i_q, j_k) = ((n / tk) % tq, n % tk);
        all_keep &= keep;
        causal &= keep == (j_k <= i_q);
    }
    if all_keep {
        Ok(false)
    } else if causal {
        Ok(true)
    } else {
        Err(anyhow!(
            "only causal masks (query i sees keys j ≤ i) are supported; this mask is not one"
        ))
    }
}

fn emit_from_scores(imp: &mut Importer, node: &NodeProto, s: &Scores, v: ValueId) -> Result<()> {
    let sv = imp.shape(v).to_vec();
    let n = sv.len();
    let vb: usize = sv[..n.saturating_sub(2)].iter().product();
    if n < 2 || sv[n - 2] != s.tk || sv[n - 1] != s.dh || vb != s.heads {
        return Err(imp.unsupported(
            node,
            &format!(
                "attention V {sv:?} does not match Q·Kᵀ scores {:?} (V must have the heads, \
                 key tokens and head size of Q and K)",
                s.shape
            ),
        ));
    }
    let name = node_name(node);
    let out = node.output[0].clone();
    let (q, fq) = rows(
        imp,
        &name,
        s.q,
        Layout::Heads,
        s.heads,
        s.tq,
        s.dh,
        true,
        "q",
    );
    let (k, fk) = rows(
        imp,
        &name,
        s.kt,
        Layout::HeadsT,
        s.heads,
        s.tk,
        s.dh,
        true,
        "k",
    );
    let (vr, _) = rows(
        imp,
        &name,
        v,
        Layout::Heads,
        s.heads,
        s.tk,
        s.dh,
        false,
        "v",
    );
    let d = s.heads * s.dh;
    let att = imp.emit(
        &name,
        Op::Attention {
            heads: s.heads,
            scale: s.scale * fq * fk,
            causal: s.causal,
        },
        vec![q, k, vr],
        &format!("{out}/attention"),
        vec![s.tq, d],
    );
    // Back to the ONNX layout [..batch(H), Tq, dh].
    let mut shape = s.shape.clone();
    *shape.last_mut().unwrap() = s.dh;
    let y = imp.reshape(
        &name,
        att,
        vec![s.tq, s.heads, s.dh],
        &format!("{out}/split"),
    );
    let y = imp.permute(&name, y, vec![1, 0, 2], &format!("{out}/heads"));
    let y = imp.reshape(&name, y, shape, &out);
    imp.bind(&out, Sym::A(y));
    Ok(())
}

/// The opset-23 `Attention` op.
pub(crate) fn lower_attention_op(
    imp: &mut Importer,
    node: &NodeProto,
    ins: &[Option<Sym>],
) -> Result<()> {
    let name = node_name(node);
    let out = node.output[0].clone();
    for (k, o) in node.output.iter().enumerate().skip(1) {
        if !o.is_empty() && imp.uses.get(o).copied().unwrap_or(0) > 0 {
            return Err(imp.unsupported(
                node,
                &format!("output {k} (present key/value or QK output) is used"),
            ));
        }
    }
    if ins.len() > 4 && ins[4..].iter().any(Option::is_some) {
        return Err(imp.unsupported(node, "past key/value inputs are not supported"));
    }
    if attr_f(node, "softcap").unwrap_or(0.0) != 0.0 {
        return Err(imp.unsupported(node, "softcap is not supported"));
    }
    let q = imp.act(node, ins, 0)?;
    let k = imp.act(node, ins, 1)?;
    let v = imp.act(node, ins, 2)?;
    let (sq, sk, sv) = (
        imp.shape(q).to_vec(),
        imp.shape(k).to_vec(),
        imp.shape(v).to_vec(),
    );
    let bad = |imp: &Importer, msg: String| imp.unsupported(node, &msg);
    let (layout, heads, tq, tk, dh) = match sq.len() {
        4 => {
            if sq[0] != 1 || sk.len() != 4 || sv.len() != 4 || sk != sv || sk[1] != sq[1] {
                return Err(bad(
                    imp,
                    format!(
                        "Q {sq:?}, K {sk:?}, V {sv:?}: batch 1 and equal head counts/sizes \
                         (no grouped-query attention) are required"
                    ),
                ));
            }
            if sk[3] != sq[3] {
                return Err(bad(imp, "Q and V head sizes differ".into()));
            }
            (Layout::Heads, sq[1], sq[2], sk[2], sq[3])
        }
        3 => {
            let h = attr_i(node, "q_num_heads").unwrap_or(0).max(0) as usize;
            let hk = attr_i(node, "kv_num_heads").unwrap_or(h as i64).max(0) as usize;
            if sq[0] != 1 || h == 0 || hk != h || sk != sv || sk[2] != sq[2] || sq[2] % h != 0 {
                return Err(bad(
                    imp,
                    format!(
                        "3-D Q {sq:?}, K {sk:?}, V {sv:?} need batch 1, q_num_heads = \
                         kv_num_heads and equal widths"
                    ),
                ));
            }
            (Layout::Rows, h, sq[1], sk[1], sq[2] / h)
        }
        _ => return Err(bad(imp, format!("Q of rank {} is not supported", sq.len()))),
    };
    let mut causal = attr_i(node, "is_causal").unwrap_or(0) != 0;
    if let Some(m) = imp.opt_cst(node, ins, 3)? {
        let scores = vec![1, heads, tq, tk];
        causal |= mask_is_causal(m, &scores, false).map_err(|e| imp.node_err(node, e))?;
    }
    let scale = attr_f(node, "scale").unwrap_or(1.0 / (dh as f32).sqrt());
    let (qr, _) = rows(imp, &name, q, layout, heads, tq, dh, false, "q");
    let (kr, _) = rows(imp, &name, k, layout, heads, tk, dh, false, "k");
    let (vr, _) = rows(imp, &name, v, layout, heads, tk, dh, false, "v");
    let d = heads * dh;
    let att = imp.emit(
        &name,
        Op::Attention {
            heads,
            scale,
            causal,
        },
        vec![qr, kr, vr],
        &format!("{out}/attention"),
        vec![tq, d],
    );
    let y = match layout {
        Layout::Rows => imp.reshape(&name, att, sq.clone(), &out),
        _ => {
            let y = imp.reshape(&name, att, vec![tq, heads, dh], &format!("{out}/split"));
            let y = imp.permute(&name, y, vec![1, 0, 2], &format!("{out}/heads"));
            imp.reshape(&name, y, sq.clone(), &out)
        }
    };
    imp.bind(&out, Sym::A(y));
    Ok(())
}

/// Flat index of logical row element `(t, c)` (`c = h·dh + j`) in a value of `layout`.
fn canon(layout: Layout, heads: usize, t_len: usize, dh: usize) -> Vec<usize> {
    let d = heads * dh;
    let mut m = Vec::with_capacity(t_len * d);
    for t in 0..t_len {
        for h in 0..heads {
            for j in 0..dh {
                m.push(match layout {
                    Layout::Heads => (h * t_len + t) * dh + j,
                    Layout::HeadsT => (h * dh + j) * t_len + t,
                    Layout::Rows => t * d + h * dh + j,
                });
            }
        }
    }
    m
}

/// `[T, heads·dh]` rows holding the data of `v` (in `layout`), and a scalar factor by which the
/// data of `v` is the rows times the factor (from absorbed scalar scales, only if
/// `allow_scale`).
#[allow(clippy::too_many_arguments)]
fn rows(
    imp: &mut Importer,
    name: &str,
    v: ValueId,
    layout: Layout,
    heads: usize,
    t_len: usize,
    dh: usize,
    allow_scale: bool,
    what: &str,
) -> (ValueId, f32) {
    let d = heads * dh;
    let canon = canon(layout, heads, t_len, dh);
    let chain = imp.trace(v, allow_scale);
    for (a, map, f) in chain.iter().rev() {
        let c: Vec<usize> = canon.iter().map(|&i| map[i]).collect();
        // A column block of an Fc output: a new Fc with those weight rows.
        if let Some(p) = imp.producer[*a] {
            if let Op::Fc { w, b, n, k, relu } = &imp.g.nodes[p].op {
                let (n, k, relu) = (*n, *k, *relu);
                let off = c[0];
                let rows_ok = imp.g.values[*a].numel() == t_len * n && off + d <= n;
                if rows_ok
                    && c.iter()
                        .enumerate()
                        .all(|(i, &x)| x == (i / d) * n + off + i % d)
                {
                    if off == 0 && d == n {
                        let y = imp.reshape(name, *a, vec![t_len, d], &format!("{name}/{what}"));
                        return (y, *f);
                    }
                    let key = (p, off, d);
                    if let Some(&y) = imp.fc_splits.get(&key) {
                        return (y, *f);
                    }
                    let w = w[off * k..(off + d) * k].to_vec();
                    let b = b[off..off + d].to_vec();
                    let x = imp.g.nodes[p].inputs[0];
                    let fc_name = imp.g.nodes[p].name.clone();
                    let x = imp.reshape(name, x, vec![t_len, k], &format!("{fc_name}/rows"));
                    let y = imp.emit(
                        &format!("{fc_name}/{what}"),
                        Op::Fc {
                            w,
                            b,
                            n: d,
                            k,
                            relu,
                        },
                        vec![x],
                        &format!("{fc_name}/{what}"),
                        vec![t_len, d],
                    );
                    imp.fc_splits.insert(key, y);
                    return (y, *f);
                }
            }
        }
        if imp.g.values[*a].numel() == t_len * d && c.iter().enumerate().all(|(i, &x)| x == i) {
            let y = imp.reshape(name, *a, vec![t_len, d], &format!("{name}/{what}"));
            return (y, *f);
        }
    }
    // Generic: Reshape/Transpose nodes from `v` itself.
    let y = match layout {
        Layout::Rows => imp.reshape(name, v, vec![t_len, d], &format!("{name}/{what}")),
        Layout::Heads => {
            let y = imp.reshape(name, v, vec![heads, t_len, dh], &format!("{name}/{what}3"));
            let y = imp.permute(name, y, vec![1, 0, 2], &format!("{name}/{what}t"));
            imp.reshape(name, y, vec![t_len, d], &format!("{name}/{what}"))
        }
        Layout::HeadsT => {
            let y = imp.reshape(name, v, vec![heads, dh, t_len], &format!("{name}/{what}3"));
            let y = imp.permute(name, y, vec![2, 0, 1], &format!("{name}/{what}t"));
            imp.reshape(name, y, vec![t_len, d], &format!("{name}/{what}"))
        }
    };
    (y, 1.0)
}

impl Importer {
    /// The ancestors of `v` through pure data movement (Reshape, Transpose, Slice, and uniform
    /// scalar `Fc`s with zero bias if `allow_scale`): `(a, map, f)` with
    /// `v[i] = f · a[map[i]]` (flat indices), nearest first (`v` itself first).
    pub(crate) fn trace(&self, v: ValueId, allow_scale: bool) -> Vec<(ValueId, Vec<usize>, f32)> {
        let n = self.g.values[v].numel();
        let mut out = vec![(v, (0..n).collect::<Vec<_>>(), 1.0f32)];
        loop {
            let (cur, map, f) = out.last().unwrap().clone();
            let Some(p) = self.producer[cur] else { break };
            let node = &self.g.nodes[p];
            let Some(&x) = node.inputs.first() else { break };
            let xs = &self.g.values[x].shape;
            let next = match &node.op {
                Op::Reshape => (x, map, f),
                Op::Transpose { perm } => {
                    let idx = transpose_index(xs, perm);
                    (x, map.iter().map(|&i| idx[i]).collect(), f)
                }
                Op::Slice { axis, start, end } => {
                    let inner: usize = xs[axis + 1..].iter().product();
                    let (dim, len) = (xs[*axis], end - start);
                    let m = map
                        .iter()
                        .map(|&i| {
                            let (o, r) = (i / (len * inner), i % (len * inner));
                            o * dim * inner + start * inner + r
                        })
                        .collect();
                    (x, m, f)
                }
                Op::Fc {
                    w,
                    b,
                    n,
                    k,
                    relu: false,
                } if allow_scale && n == k && b.iter().all(|&v| v == 0.0) => {
                    let s = w[0];
                    let uniform = (0..*n)
                        .all(|r| (0..*k).all(|c| w[r * k + c] == if r == c { s } else { 0.0 }));
                    if !uniform {
                        break;
                    }
                    (x, map, f * s)
                }
                _ => break,
            };
            out.push(next);
        }
        out
    }
}
