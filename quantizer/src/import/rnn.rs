//! Lowering of the ONNX `LSTM`, `GRU` and `RNN` ops: one IR node per direction, plus the
//! `Concat` / `Slice` / `Reshape` nodes that rebuild the ONNX `Y` and `Y_h` outputs.

use super::tensor::{attr, attr_i, attr_s, attr_strings, Tensor};
use super::{node_name, Importer, Sym};
use crate::ir::{Op, RnnAct};
use anyhow::Result;
use tract_onnx::pb::NodeProto;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Lstm,
    Gru,
    Rnn,
}

/// Lowers one `LSTM` / `GRU` / `RNN` node.
pub(super) fn lower(imp: &mut Importer, node: &NodeProto, ins: &[Option<Sym>]) -> Result<()> {
    let kind = match node.op_type.as_str() {
        "LSTM" => Kind::Lstm,
        "GRU" => Kind::Gru,
        _ => Kind::Rnn,
    };
    let gates = match kind {
        Kind::Lstm => 4,
        Kind::Gru => 3,
        Kind::Rnn => 1,
    };
    let name = node_name(node);

    // Attributes.
    if attr_i(node, "layout").unwrap_or(0) != 0 {
        return Err(imp.node_err(
            node,
            "layout=1 (batch-major) is not supported; export with the default layout=0 \
             (PyTorch's exporter inserts Transposes for batch_first)",
        ));
    }
    if attr(node, "clip").is_some() {
        return Err(imp.node_err(node, "cell clipping ('clip' attribute) is not supported"));
    }
    if kind == Kind::Lstm && attr_i(node, "input_forget").unwrap_or(0) != 0 {
        return Err(imp.node_err(node, "input_forget=1 (coupled gates) is not supported"));
    }
    if kind == Kind::Gru && attr_i(node, "linear_before_reset").unwrap_or(0) != 1 {
        return Err(imp.node_err(
            node,
            "GRU with linear_before_reset=0 is not supported (PyTorch exports \
             linear_before_reset=1)",
        ));
    }
    let direction = attr_s(node, "direction").unwrap_or_else(|| "forward".into());
    let dirs = match direction.as_str() {
        "forward" | "reverse" => 1,
        "bidirectional" => 2,
        d => return Err(imp.node_err(node, format!("unknown direction '{d}'"))),
    };
    let acts = attr_strings(node, "activations").unwrap_or_default();
    let default: &[&str] = match kind {
        Kind::Lstm => &["sigmoid", "tanh", "tanh"],
        Kind::Gru => &["sigmoid", "tanh"],
        Kind::Rnn => &["tanh"],
    };
    let mut rnn_acts = vec![RnnAct::Tanh; dirs];
    if !acts.is_empty() {
        let per = default.len();
        let norm: Vec<String> = acts.iter().map(|a| a.to_ascii_lowercase()).collect();
        let full: Vec<String> = if norm.len() == per && dirs == 2 {
            norm.iter().chain(norm.iter()).cloned().collect()
        } else {
            norm
        };
        if full.len() != per * dirs {
            return Err(imp.node_err(
                node,
                format!("{} activations for {dirs} direction(s)", acts.len()),
            ));
        }
        for d in 0..dirs {
            let a = &full[d * per..(d + 1) * per];
            if kind == Kind::Rnn && a[0] == "relu" {
                rnn_acts[d] = RnnAct::Relu;
            } else if a.iter().zip(default).any(|(x, y)| x != y) {
                return Err(imp.node_err(
                    node,
                    format!(
                        "non-default activations {acts:?} are not supported (expected {default:?})"
                    ),
                ));
            }
        }
    }

    // Inputs.
    let x = imp.act(node, ins, 0)?;
    let w = imp.cst(node, ins, 1)?.clone();
    let r = imp.cst(node, ins, 2)?.clone();
    let b = imp.opt_cst(node, ins, 3)?.cloned();
    let xs = imp.shape(x).to_vec();
    if xs.len() != 3 {
        return Err(imp.node_err(
            node,
            format!("input X has shape {xs:?}, expected [T, 1, I]"),
        ));
    }
    let (t_len, batch, input) = (xs[0], xs[1], xs[2]);
    if batch != 1 {
        return Err(imp.node_err(
            node,
            format!("batch size {batch} (only batch 1 is supported)"),
        ));
    }
    if w.shape.len() != 3 || w.shape[0] != dirs || w.shape[2] != input || w.shape[1] % gates != 0 {
        return Err(imp.node_err(
            node,
            format!(
                "W has shape {:?}, expected [{dirs}, {gates}·H, {input}]",
                w.shape
            ),
        ));
    }
    let hidden = w.shape[1] / gates;
    if let Some(h) = attr_i(node, "hidden_size") {
        if h as usize != hidden {
            return Err(imp.node_err(node, format!("hidden_size {h} does not match W ({hidden})")));
        }
    }
    let gh = gates * hidden;
    if r.shape != [dirs, gh, hidden] {
        return Err(imp.node_err(
            node,
            format!(
                "R has shape {:?}, expected [{dirs}, {gh}, {hidden}]",
                r.shape
            ),
        ));
    }
    if let Some(b) = &b {
        if b.shape != [dirs, 2 * gh] {
            return Err(imp.node_err(
                node,
                format!("B has shape {:?}, expected [{dirs}, {}]", b.shape, 2 * gh),
            ));
        }
    }
    match ins.get(4) {
        Some(Some(Sym::C(t))) if t.as_i64()?.iter().any(|&l| l != t_len as i64) => {
            return Err(imp.node_err(
                node,
                "sequence_lens differs from the sequence length (variable-length sequences \
                 are not supported)",
            ));
        }
        Some(Some(Sym::A(_))) => {
            return Err(imp.node_err(node, "sequence_lens computed at run time is not supported"))
        }
        _ => {}
    }
    let state_inputs: &[(usize, &str)] = match kind {
        Kind::Lstm => &[(5, "initial_h"), (6, "initial_c"), (7, "P (peepholes)")],
        _ => &[(5, "initial_h")],
    };
    for &(i, what) in state_inputs {
        match ins.get(i) {
            Some(Some(Sym::C(t))) if !t.all_zero() => {
                return Err(imp.node_err(
                    node,
                    format!(
                        "{what} is a non-zero constant; only zero initial states (and no \
                         peepholes) are supported"
                    ),
                ))
            }
            Some(Some(Sym::A(_))) => {
                return Err(imp.node_err(
                    node,
                    format!(
                        "{what} ('{}') is computed at run time; only absent or constant-zero \
                         initial states are supported",
                        node.input[i]
                    ),
                ))
            }
            _ => {}
        }
    }
    if kind == Kind::Lstm {
        if let Some(yc) = node.output.get(2) {
            if !yc.is_empty() && imp.uses.get(yc).copied().unwrap_or(0) > 0 {
                return Err(imp.node_err(
                    node,
                    format!(
                        "the final cell state Y_c ('{yc}') is used; only Y and Y_h are supported"
                    ),
                ));
            }
        }
    }

    // One IR node per direction.
    let wv = w.as_f32();
    let rv = r.as_f32();
    let bv = b
        .as_ref()
        .map(Tensor::as_f32)
        .unwrap_or_else(|| vec![0.0; dirs * 2 * gh]);
    let mut outs = Vec::new();
    for d in 0..dirs {
        let reverse = direction == "reverse" || d == 1;
        let wd = wv[d * gh * input..(d + 1) * gh * input].to_vec();
        let rd = rv[d * gh * hidden..(d + 1) * gh * hidden].to_vec();
        let bw = bv[d * 2 * gh..d * 2 * gh + gh].to_vec();
        let br = bv[d * 2 * gh + gh..(d + 1) * 2 * gh].to_vec();
        let op = match kind {
            Kind::Lstm => Op::Lstm {
                w: wd,
                r: rd,
                bw,
                br,
                input,
                hidden,
                reverse,
            },
            Kind::Gru => Op::Gru {
                w: wd,
                r: rd,
                bw,
                br,
                input,
                hidden,
                reverse,
            },
            Kind::Rnn => Op::Rnn {
                w: wd,
                r: rd,
                bw,
                br,
                input,
                hidden,
                reverse,
                act: rnn_acts[d],
            },
        };
        let suffix = if reverse { "bwd" } else { "fwd" };
        let id = imp.emit(
            &name,
            op,
            vec![x],
            &format!("{name}/{suffix}"),
            vec![t_len, 1, 1, hidden],
        );
        outs.push((id, reverse));
    }

    // Y: [T, dirs, 1, H].
    if let Some(y_name) = node.output.first().filter(|s| !s.is_empty()) {
        let y = if dirs == 1 {
            outs[0].0
        } else {
            imp.emit(
                &name,
                Op::Concat { axis: 1 },
                outs.iter().map(|o| o.0).collect(),
                y_name,
                vec![t_len, dirs, 1, hidden],
            )
        };
        imp.g.values[y].name = y_name.clone();
        imp.bind(y_name, Sym::A(y));
    }
    // Y_h: [dirs, 1, H] = last step of each direction.
    if let Some(yh_name) = node.output.get(1).filter(|s| !s.is_empty()) {
        if imp.uses.get(yh_name).copied().unwrap_or(0) > 0 {
            let mut parts = Vec::new();
            for (k, &(id, reverse)) in outs.iter().enumerate() {
                let (s, e) = if reverse { (0, 1) } else { (t_len - 1, t_len) };
                let sl = imp.emit(
                    &name,
                    Op::Slice {
                        axis: 0,
                        start: s,
                        end: e,
                    },
                    vec![id],
                    &format!("{yh_name}/{k}/last"),
                    vec![1, 1, 1, hidden],
                );
                let rs = imp.reshape(&name, sl, vec![1, 1, hidden], &format!("{yh_name}/{k}"));
                parts.push(rs);
            }
            let yh = if parts.len() == 1 {
                parts[0]
            } else {
                imp.emit(
                    &name,
                    Op::Concat { axis: 0 },
                    parts,
                    yh_name,
                    vec![dirs, 1, hidden],
                )
            };
            imp.g.values[yh].name = yh_name.clone();
            imp.bind(yh_name, Sym::A(yh));
        }
    }
    Ok(())
}
