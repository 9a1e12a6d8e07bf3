//! Dead-row elimination: when the model's output reads only some rows of a tensor (a
//! Transformer's CLS token, `h[:, 0]`), the row-wise ops before that selection compute rows
//! nobody reads. This pass moves the selection up the graph, through every op that treats rows
//! independently, so those ops run on the selected rows only.
//!
//! A backward pass gives every value a *demand*: the whole tensor, or only the rows
//! `start..end` along one axis. A [`Op::Slice`] demands its rows of its input; an op that is
//! row-wise for that axis (FC, LayerNorm and Softmax over another axis, a pointwise function,
//! ADD, a reshape that keeps the axis, a transpose, a slice or concatenation along another axis,
//! a mean over another axis, a constant) passes the demand of its output on to its inputs;
//! [`Op::Attention`] passes it to its query rows only (every query still reads all keys and
//! values), and with `causal` only for rows that start at 0 (a query row's index decides which
//! keys it sees). A value read by two consumers that demand different things (the residual
//! stream feeding both the next layer's K / V projections and its residual ADD) is demanded
//! whole. The forward pass then rebuilds the graph: a node whose output is demanded in part
//! and which can pass that demand on is emitted over the selected rows only; where such a node
//! needs rows of a value that exists whole, a new [`Op::Slice`] reads them (a COPY of a row).
//!
//! The integer result is unchanged bit for bit: every pruned op does, per row, exactly the
//! arithmetic it did before, and every value keeps the quantization that calibration of the
//! whole graph gave it (ranges are carried over from the value it is a part of, after the
//! sharing of quantization between reshapes, slices and concatenations is resolved).
//! Graphs with a recurrent op are left alone (their time-axis bookkeeping for `step` depends on
//! where the selection of the last step sits), and so is any graph where the pass would prune
//! nothing, so the pass never changes a model it does not apply to.

use crate::calibrate::Ranges;
use crate::ir::{Graph, Node, Op, Value, ValueId};
use std::collections::{HashMap, HashSet};

/// Rows `start..end` along `axis` of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Sel {
    axis: usize,
    start: usize,
    end: usize,
}

/// What an op needs of one of its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// The whole tensor.
    Whole,
    /// These rows only.
    Rows(Sel),
}

/// What the pass did, for reports and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Nodes now computing fewer rows (constants included).
    pub pruned_nodes: usize,
    /// Row selections added where a whole tensor is also read elsewhere.
    pub added_slices: usize,
}

/// The axis of `inp` that a selection along `axis` of `out` maps to, when `out` is a reshape
/// of `inp` that keeps that axis intact (the same elements before, on and after it).
fn reshape_axis(inp: &[usize], out: &[usize], axis: usize) -> Option<usize> {
    let before: usize = out[..axis].iter().product();
    let after: usize = out[axis + 1..].iter().product();
    (0..inp.len()).find(|&a| {
        inp[a] == out[axis]
            && inp[..a].iter().product::<usize>() == before
            && inp[a + 1..].iter().product::<usize>() == after
    })
}

/// The rows `n` needs of each input when only rows `s` of its output are needed, or `None`
/// when `n` cannot compute a part of its output from parts of its inputs.
fn pull(g: &Graph, n: &Node, s: Sel) -> Option<Vec<Need>> {
    let out = &g.values[n.output].shape;
    let rank = out.len();
    let shape = |v: ValueId| &g.values[v].shape;
    let same = |v: ValueId| shape(v) == out;
    match &n.op {
        // Over the last axis: any other axis is rows.
        Op::Fc { .. } | Op::LayerNorm { .. } | Op::Softmax => {
            let x = n.inputs[0];
            (s.axis + 1 < rank
                && shape(x).len() == rank
                && shape(x)[..s.axis + 1] == out[..s.axis + 1])
                .then(|| vec![Need::Rows(s)])
        }
        Op::Unary(_) => same(n.inputs[0]).then(|| vec![Need::Rows(s)]),
        Op::Add => {
            let mut needs = Vec::new();
            for &x in &n.inputs {
                let xs = shape(x);
                if xs == out {
                    needs.push(Need::Rows(s));
                    continue;
                }
                // A broadcast operand (repeated over the leading elements of `out`).
                let inner: usize = out[s.axis + 1..].iter().product();
                let n_x: usize = xs.iter().product();
                let lead = rank.checked_sub(xs.len())?;
                if n_x > 0 && inner % n_x == 0 {
                    // Repeats within one row: read whole, unchanged.
                    needs.push(Need::Whole);
                } else if s.axis >= lead
                    && xs[s.axis - lead..] == out[s.axis..]
                    && out[..s.axis].iter().all(|&d| d == 1)
                {
                    needs.push(Need::Rows(Sel {
                        axis: s.axis - lead,
                        ..s
                    }));
                } else {
                    return None;
                }
            }
            Some(needs)
        }
        Op::Reshape => {
            let x = n.inputs[0];
            let a = reshape_axis(shape(x), out, s.axis)?;
            Some(vec![Need::Rows(Sel { axis: a, ..s })])
        }
        Op::Transpose { perm } => Some(vec![Need::Rows(Sel {
            axis: *perm.get(s.axis)?,
            ..s
        })]),
        Op::Slice { axis, start, .. } => {
            if *axis == s.axis {
                Some(vec![Need::Rows(Sel {
                    axis: s.axis,
                    start: start + s.start,
                    end: start + s.end,
                })])
            } else {
                Some(vec![Need::Rows(s)])
            }
        }
        Op::Concat { axis } => (*axis != s.axis
            && n.inputs.iter().all(|&x| shape(x).len() == rank))
        .then(|| vec![Need::Rows(s); n.inputs.len()]),
        // The reduced axis stays, as size 1.
        Op::Mean { axis } => {
            (*axis != s.axis && shape(n.inputs[0]).len() == rank).then(|| vec![Need::Rows(s)])
        }
        Op::Constant { .. } => Some(Vec::new()),
        Op::Attention { causal, .. } => {
            // Output rows `[tq, width]`: the selection must be of whole query rows.
            let tokens_axis_ok = out[..rank - 1]
                .iter()
                .enumerate()
                .all(|(a, &d)| a == s.axis || d == 1);
            if s.axis + 1 >= rank || !tokens_axis_ok || (*causal && s.start != 0) {
                return None;
            }
            let q = shape(n.inputs[0]);
            let tq = out[s.axis];
            let qa = (0..q.len().checked_sub(1)?)
                .find(|&a| q[a] == tq && q[..q.len() - 1].iter().product::<usize>() == tq)?;
            Some(vec![
                Need::Rows(Sel { axis: qa, ..s }),
                Need::Whole,
                Need::Whole,
            ])
        }
        Op::Lstm { .. } | Op::Gru { .. } | Op::Rnn { .. } => None,
    }
}

/// The selection a row slice makes of its input, if it is one (not the whole axis).
fn slice_sel(g: &Graph, n: &Node) -> Option<Sel> {
    match n.op {
        Op::Slice { axis, start, end } => {
            let d = g.values[n.inputs[0]].shape[axis];
            (axis + 1 < g.values[n.inputs[0]].shape.len() && !(start == 0 && end == d))
                .then_some(Sel { axis, start, end })
        }
        _ => None,
    }
}

/// The ranges every value is quantized with after quantization is shared between a value and
/// its reshapes, transposes, slices and concatenations (what `quantize` does): each value gets
/// its group's hull.
pub fn shared_ranges(g: &Graph, values: &[(f32, f32)]) -> Vec<(f32, f32)> {
    let nv = g.values.len();
    let mut parent: Vec<usize> = (0..nv).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for n in &g.nodes {
        if matches!(
            n.op,
            Op::Reshape | Op::Transpose { .. } | Op::Slice { .. } | Op::Concat { .. }
        ) {
            for &i in &n.inputs {
                let (a, b) = (find(&mut parent, n.output), find(&mut parent, i));
                if a != b {
                    parent[b] = a;
                }
            }
        }
    }
    let mut hull = vec![(f32::INFINITY, f32::NEG_INFINITY); nv];
    for (v, r) in values.iter().enumerate().take(nv) {
        let root = find(&mut parent, v);
        hull[root].0 = hull[root].0.min(r.0);
        hull[root].1 = hull[root].1.max(r.1);
    }
    (0..nv).map(|v| hull[find(&mut parent, v)]).collect()
}

/// The pruned graph and its ranges, or `None` when the pass does not apply (nothing to prune,
/// or a recurrent op in the graph).
pub fn prune_rows(g: &Graph, ranges: &Ranges) -> Option<(Graph, Ranges, Summary)> {
    if g.nodes
        .iter()
        .any(|n| matches!(n.op, Op::Lstm { .. } | Op::Gru { .. } | Op::Rnn { .. }))
    {
        return None;
    }
    let nv = g.values.len();
    // Backward: what is needed of every value.
    let mut demand: Vec<Option<Need>> = vec![None; nv];
    let merge = |d: &mut Option<Need>, need: Need| {
        *d = match *d {
            None => Some(need),
            Some(old) if old == need => Some(old),
            Some(_) => Some(Need::Whole),
        };
    };
    for &o in &g.outputs {
        merge(&mut demand[o], Need::Whole);
    }
    // Per node: the needs of its inputs when it is emitted over part of its output.
    let mut part: Vec<Option<(Sel, Vec<Need>)>> = vec![None; g.nodes.len()];
    for (ni, n) in g.nodes.iter().enumerate().rev() {
        let needs: Vec<Need> = match demand[n.output] {
            None => continue,
            Some(Need::Rows(s)) => match pull(g, n, s) {
                Some(needs) => {
                    part[ni] = Some((s, needs.clone()));
                    needs
                }
                None => vec![Need::Whole; n.inputs.len()],
            },
            Some(Need::Whole) => match slice_sel(g, n) {
                Some(s) => vec![Need::Rows(s)],
                None => vec![Need::Whole; n.inputs.len()],
            },
        };
        for (&x, need) in n.inputs.iter().zip(needs) {
            merge(&mut demand[x], need);
        }
    }
    let pruned_nodes = part
        .iter()
        .zip(&g.nodes)
        .filter(|(p, n)| p.is_some() && !matches!(n.op, Op::Slice { .. } | Op::Reshape))
        .count();
    if pruned_nodes == 0 {
        return None;
    }

    // Forward: rebuild.
    let shared = shared_ranges(g, &ranges.values);
    let mut out = Graph::default();
    let mut out_ranges: Vec<(f32, f32)> = Vec::new();
    let mut taken: HashSet<String> = g.values.iter().map(|v| v.name.clone()).collect();
    let mut whole: Vec<Option<ValueId>> = vec![None; nv];
    let mut rows: Vec<Option<ValueId>> = vec![None; nv];
    let mut slices: HashMap<(ValueId, Sel), ValueId> = HashMap::new();
    let mut node_map: HashMap<usize, usize> = HashMap::new();
    let mut added_slices = 0;
    let new_value = |out: &mut Graph, r: &mut Vec<(f32, f32)>, name: String, shape, of| {
        out.values.push(Value { name, shape });
        r.push(shared[of]);
        out.values.len() - 1
    };
    for &i in &g.inputs {
        let v = new_value(
            &mut out,
            &mut out_ranges,
            g.values[i].name.clone(),
            g.values[i].shape.clone(),
            i,
        );
        whole[i] = Some(v);
        out.inputs.push(v);
    }
    let sel_shape = |shape: &[usize], s: Sel| {
        let mut sh = shape.to_vec();
        sh[s.axis] = s.end - s.start;
        sh
    };
    for (ni, n) in g.nodes.iter().enumerate() {
        let Some((s, needs)) = part[ni].clone() else {
            // Whole output (or an output only a part of which is needed that this op cannot
            // compute by parts: consumers read their rows from it). A row slice whose input is
            // now computed over just the rows it selects is that input.
            let sliced = match demand[n.output] {
                Some(Need::Whole) => slice_sel(g, n).and_then(|_| rows[n.inputs[0]]),
                _ => None,
            };
            if let Some(r) = sliced {
                if !g.outputs.contains(&n.output) {
                    whole[n.output] = Some(r);
                    continue;
                }
                // A graph output keeps its name: an aliasing reshape.
                let v = new_value(
                    &mut out,
                    &mut out_ranges,
                    g.values[n.output].name.clone(),
                    g.values[n.output].shape.clone(),
                    n.output,
                );
                out.nodes.push(Node {
                    name: n.name.clone(),
                    op: Op::Reshape,
                    inputs: vec![r],
                    output: v,
                });
                whole[n.output] = Some(v);
                continue;
            }
            // A value read whole is produced whole (`None` is not reachable).
            let ins = n
                .inputs
                .iter()
                .map(|&x| whole[x])
                .collect::<Option<Vec<ValueId>>>()?;
            let v = new_value(
                &mut out,
                &mut out_ranges,
                g.values[n.output].name.clone(),
                g.values[n.output].shape.clone(),
                n.output,
            );
            node_map.insert(ni, out.nodes.len());
            out.nodes.push(Node {
                name: n.name.clone(),
                op: n.op.clone(),
                inputs: ins,
                output: v,
            });
            whole[n.output] = Some(v);
            continue;
        };
        // Over rows `s` of its output.
        let mut ins = Vec::new();
        for (&x, need) in n.inputs.iter().zip(&needs) {
            let v = match *need {
                Need::Whole => whole[x]?,
                Need::Rows(sx) => match rows[x] {
                    Some(r) if demand[x] == Some(Need::Rows(sx)) => r,
                    _ => {
                        let src = whole[x]?;
                        match slices.get(&(x, sx)) {
                            Some(&r) => r,
                            None => {
                                let mut name =
                                    format!("{}[{}:{}]", g.values[x].name, sx.start, sx.end);
                                while taken.contains(&name) {
                                    name.push('\'');
                                }
                                taken.insert(name.clone());
                                let r = new_value(
                                    &mut out,
                                    &mut out_ranges,
                                    name.clone(),
                                    sel_shape(&g.values[x].shape, sx),
                                    x,
                                );
                                out.nodes.push(Node {
                                    name,
                                    op: Op::Slice {
                                        axis: sx.axis,
                                        start: sx.start,
                                        end: sx.end,
                                    },
                                    inputs: vec![src],
                                    output: r,
                                });
                                added_slices += 1;
                                slices.insert((x, sx), r);
                                r
                            }
                        }
                    }
                },
            };
            ins.push(v);
        }
        let op = match &n.op {
            // Rows of rows along the same axis: the input already is them.
            Op::Slice { axis, .. } if *axis == s.axis => {
                rows[n.output] = Some(ins[0]);
                continue;
            }
            Op::Constant { data } => {
                let sh = &g.values[n.output].shape;
                let outer: usize = sh[..s.axis].iter().product();
                let inner: usize = sh[s.axis + 1..].iter().product();
                let mut d = Vec::with_capacity(outer * (s.end - s.start) * inner);
                for o in 0..outer {
                    let base = o * sh[s.axis] * inner;
                    d.extend_from_slice(&data[base + s.start * inner..base + s.end * inner]);
                }
                Op::Constant { data: d }
            }
            op => op.clone(),
        };
        let v = new_value(
            &mut out,
            &mut out_ranges,
            g.values[n.output].name.clone(),
            sel_shape(&g.values[n.output].shape, s),
            n.output,
        );
        node_map.insert(ni, out.nodes.len());
        out.nodes.push(Node {
            name: n.name.clone(),
            op,
            inputs: ins,
            output: v,
        });
        rows[n.output] = Some(v);
    }
    for &o in &g.outputs {
        out.outputs.push(whole[o]?);
    }
    let remap = |m: &HashMap<usize, f32>| -> HashMap<usize, f32> {
        m.iter()
            .filter_map(|(k, v)| node_map.get(k).map(|&k2| (k2, *v)))
            .collect()
    };
    let ranges = Ranges {
        values: out_ranges,
        cell_max: remap(&ranges.cell_max),
        gate_max: remap(&ranges.gate_max),
        samples: ranges.samples,
    };
    Some((
        out,
        ranges,
        Summary {
            pruned_nodes,
            added_slices,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Unary;

    #[test]
    fn reshapes_keep_an_axis_only_when_its_blocks_stay_whole() {
        assert_eq!(reshape_axis(&[50, 64], &[1, 50, 64], 1), Some(0));
        assert_eq!(reshape_axis(&[1, 50, 64], &[50, 1, 64], 0), Some(1));
        assert_eq!(reshape_axis(&[1, 50, 4, 16], &[1, 50, 64], 1), Some(1));
        // Tokens split into two axes: no single axis holds them.
        assert_eq!(reshape_axis(&[1, 5, 10, 64], &[1, 50, 64], 1), None);
        // Rows merged with features.
        assert_eq!(reshape_axis(&[3200], &[1, 50, 64], 1), None);
    }

    fn value(g: &mut Graph, name: &str, shape: &[usize]) -> ValueId {
        g.values.push(Value {
            name: name.into(),
            shape: shape.to_vec(),
        });
        g.values.len() - 1
    }

    fn node(g: &mut Graph, op: Op, inputs: Vec<ValueId>, name: &str, shape: &[usize]) -> ValueId {
        let output = value(g, name, shape);
        g.nodes.push(Node {
            name: name.into(),
            op,
            inputs,
            output,
        });
        output
    }

    /// `x [1, 4, 3]`: `h = x + pos`, `y = gelu(fc(h)) + h`, output `y[:, sel]` (or the mean
    /// over tokens).
    fn residual_graph(select: Option<(usize, usize)>) -> Graph {
        let mut g = Graph::default();
        let x = value(&mut g, "x", &[1, 4, 3]);
        g.inputs.push(x);
        let pos = node(
            &mut g,
            Op::Constant {
                data: (0..12).map(|i| i as f32 * 0.1 - 0.5).collect(),
            },
            vec![],
            "pos",
            &[1, 4, 3],
        );
        let h = node(&mut g, Op::Add, vec![x, pos], "h", &[1, 4, 3]);
        let fc = Op::Fc {
            w: (0..9).map(|i| (i as f32 - 4.0) * 0.3).collect(),
            b: vec![0.1, -0.2, 0.3],
            n: 3,
            k: 3,
            relu: false,
        };
        let f = node(&mut g, fc, vec![h], "f", &[1, 4, 3]);
        let a = node(&mut g, Op::Unary(Unary::Gelu), vec![f], "a", &[1, 4, 3]);
        let y = node(&mut g, Op::Add, vec![a, h], "y", &[1, 4, 3]);
        let out = match select {
            Some((start, end)) => node(
                &mut g,
                Op::Slice {
                    axis: 1,
                    start,
                    end,
                },
                vec![y],
                "out",
                &[1, end - start, 3],
            ),
            None => node(&mut g, Op::Mean { axis: 1 }, vec![y], "out", &[1, 1, 3]),
        };
        g.outputs.push(out);
        g
    }

    fn ranges(g: &Graph) -> Ranges {
        Ranges {
            values: vec![(-1.0, 1.0); g.values.len()],
            cell_max: HashMap::new(),
            gate_max: HashMap::new(),
            samples: 1,
        }
    }

    fn eval(g: &Graph, x: &[f32]) -> Vec<f32> {
        crate::float_eval::eval(g, &[x], &mut |_| {})
            .unwrap()
            .remove(0)
    }

    #[test]
    fn a_row_selection_moves_above_row_wise_ops_and_stops_at_a_shared_value() {
        let g = residual_graph(Some((2, 3)));
        let (p, r, summary) = prune_rows(&g, &ranges(&g)).expect("the pass applies");
        // `h` feeds both the FC and the residual ADD, and is computed on row 2 only; `x` is a
        // graph input, so row 2 of it is read by one added slice; the constant is cut to row 2.
        assert_eq!(summary.added_slices, 1);
        assert_eq!(summary.pruned_nodes, 5, "pos, h, f, a, y");
        assert_eq!(r.values.len(), p.values.len());
        let shape_of = |name: &str| {
            p.values
                .iter()
                .find(|v| v.name == name)
                .map(|v| v.shape.clone())
        };
        for name in ["h", "f", "a", "y"] {
            assert_eq!(shape_of(name), Some(vec![1, 1, 3]), "{name}");
        }
        assert_eq!(shape_of("x[2:3]"), Some(vec![1, 1, 3]));
        let pos = p.nodes.iter().find(|n| n.name == "pos").unwrap();
        match &pos.op {
            Op::Constant { data } => {
                let row2: Vec<f32> = (6..9).map(|i| i as f32 * 0.1 - 0.5).collect();
                assert_eq!(data, &row2);
            }
            op => panic!("{op:?}"),
        }
        // The output has its name and the same values, bit for bit.
        assert_eq!(p.values[p.outputs[0]].name, "out");
        let x: Vec<f32> = (0..12).map(|i| ((i * 7) % 5) as f32 * 0.37 - 0.6).collect();
        let (a, b) = (eval(&g, &x), eval(&p, &x));
        assert_eq!(a.len(), 3);
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_value_keeps_the_quantization_it_shared_with_the_slice_that_is_gone() {
        // `out = fc(y[:, 2:3])`: before, `y` and the slice share one quantization (the hull of
        // their ranges); after, the slice is gone and `y` (one row) must keep that hull.
        let mut g = residual_graph(Some((2, 3)));
        let sel = g.outputs[0];
        let fc = Op::Fc {
            w: vec![1.0; 6],
            b: vec![0.0; 2],
            n: 2,
            k: 3,
            relu: false,
        };
        let head = node(&mut g, fc, vec![sel], "head", &[1, 1, 2]);
        g.outputs = vec![head];
        let mut r = ranges(&g);
        let y = g.values.iter().position(|v| v.name == "y").unwrap();
        r.values[y] = (-1.0, 1.0);
        r.values[sel] = (-2.0, 0.5);
        let (p, pr, _) = prune_rows(&g, &r).expect("the pass applies");
        assert!(
            p.values.iter().all(|v| v.name != "out"),
            "the slice is gone"
        );
        let y = p.values.iter().position(|v| v.name == "y").unwrap();
        assert_eq!(p.values[y].shape, vec![1, 1, 3]);
        assert_eq!(pr.values[y], (-2.0, 1.0));
    }

    #[test]
    fn nothing_changes_without_a_row_selection() {
        // A mean over tokens reads every row.
        let g = residual_graph(None);
        assert!(prune_rows(&g, &ranges(&g)).is_none());
        // Selecting every row selects nothing.
        let g = residual_graph(Some((0, 4)));
        assert!(prune_rows(&g, &ranges(&g)).is_none());
    }
}
