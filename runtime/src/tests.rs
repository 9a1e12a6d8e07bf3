//! Model-level tests: files built in memory with [`crate::builder`], parsed, fuzzed, and run
//! whole and step by step.

use crate::builder::{reseal, Builder};
use crate::format::*;
use crate::kernels::reference::{add, attention, concat, fc, layernorm, lut, mean};
use crate::kernels::testutil::{
    fold_bias, le32, quantize_multiplier, quantize_rows, rq_pairs, sigmoid_table, tanh_table, Rng,
};
use crate::{Error, Model, Session};
use std::vec;
use std::vec::Vec;

const S_X: f64 = 2.0 / 255.0;
const Z_X: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    Lstm,
    Gru,
    Rnn,
}

/// Quantized FC constants for `x` with `(sx, zx)`: returns `(w, bias, rq, (sy, zy))`.
#[allow(clippy::type_complexity)]
fn fc_consts(
    rng: &mut Rng,
    k: usize,
    n: usize,
    sx: f64,
    zx: i32,
) -> (Vec<i8>, Vec<i32>, Vec<i32>, (f64, i32)) {
    let w: Vec<f64> = (0..n * k)
        .map(|_| rng.f64_in(-1.0, 1.0) / (k as f64).sqrt())
        .collect();
    let bias: Vec<f64> = (0..n).map(|_| rng.f64_in(-0.2, 0.2)).collect();
    let (wq, sw) = quantize_rows(&w, k);
    let bq = fold_bias(&bias, &wq, k, sx, &sw, zx);
    let (sy, zy) = (4.0 / 255.0, -2);
    let rq = rq_pairs(sw.iter().map(|s| sx * s / sy));
    (wq, bq, rq, (sy, zy))
}

#[allow(clippy::too_many_arguments)]
fn add_fc(
    b: &mut Builder,
    rng: &mut Rng,
    x: u16,
    (sx, zx): (f64, i32),
    steps: usize,
    rows: usize,
    k: usize,
    n: usize,
    per_step: bool,
    y_dims: &[usize],
    y_ta: Option<usize>,
) -> (u16, (f64, i32)) {
    let (wq, bq, rq, (sy, zy)) = fc_consts(rng, k, n, sx, zx);
    let wt = b.konst_i8("fc/w", &[n, k], &wq);
    let bt = b.konst_i32("fc/bias", &[n], &bq);
    let rt = b.konst_i32("fc/rq", &[n, 2], &rq);
    let y = b.act("fc/y", DType::I8, y_dims, y_ta, sy as f32, zy);
    let p = [steps as i32, rows as i32, k as i32, n as i32, zy, -128, 127];
    b.op(OP_FC, per_step, &[x, wt, bt, rt, y], &p);
    (y, (sy, zy))
}

fn table_vec(t: &crate::kernels::reference::ActTable) -> Vec<i16> {
    t.iter().map(|v| v.get()).collect()
}

/// Adds a recurrent cell over `x [t, i]`; returns `y [t, h]` and its quantization.
#[allow(clippy::too_many_arguments)]
fn add_cell(
    b: &mut Builder,
    rng: &mut Rng,
    cell: Cell,
    x: u16,
    t: usize,
    i: usize,
    h: usize,
    reverse: bool,
) -> (u16, (f64, i32)) {
    let g = match cell {
        Cell::Lstm => 4,
        Cell::Gru => 3,
        Cell::Rnn => 1,
    };
    let gh = g * h;
    let w: Vec<f64> = (0..gh * i)
        .map(|_| rng.f64_in(-1.5, 1.5) / (i as f64).sqrt())
        .collect();
    let r: Vec<f64> = (0..gh * h)
        .map(|_| rng.f64_in(-1.5, 1.5) / (h as f64).sqrt())
        .collect();
    let bw: Vec<f64> = (0..gh).map(|_| rng.f64_in(-0.5, 0.5)).collect();
    let br: Vec<f64> = (0..gh).map(|_| rng.f64_in(-0.5, 0.5)).collect();
    let (sh, zh) = (2.0 / 255.0, -1);
    let (wq, sw) = quantize_rows(&w, i);
    let (rq_r, sr) = quantize_rows(&r, h);
    let bx = fold_bias(&bw, &wq, i, S_X, &sw, Z_X);
    let bh = fold_bias(&br, &rq_r, h, sh, &sr, zh);
    let rqx = rq_pairs(sw.iter().map(|s| S_X * s * 4096.0));
    let rqh = rq_pairs(sr.iter().map(|s| sh * s * 4096.0));
    let wt = b.konst_i8("w", &[gh, i], &wq);
    let rt = b.konst_i8("r", &[gh, h], &rq_r);
    let bxt = b.konst_i32("bias_x", &[gh], &bx);
    let bht = b.konst_i32("bias_h", &[gh], &bh);
    let rqxt = b.konst_i32("rq_x", &[gh, 2], &rqx);
    let rqht = b.konst_i32("rq_h", &[gh, 2], &rqh);
    let sig = b.konst_i16("sigmoid", &[ACT_TABLE_LEN], &table_vec(&sigmoid_table()));
    let tanh = b.konst_i16("tanh", &[ACT_TABLE_LEN], &table_vec(&tanh_table()));
    let hs = b.state("h", DType::I8, h, sh as f32, zh);
    let y = b.act("y", DType::I8, &[t, h], Some(0), sh as f32, zh);
    let (t, i32_, h32, rev) = (t as i32, i as i32, h as i32, reverse as i32);
    match cell {
        Cell::Lstm => {
            let cs = b.state("c", DType::I16, h, 2f32.powi(2 - 15), 0);
            let scr = b.act("scratch", DType::I16, &[gh], None, 0.0, 0);
            let (hm, hsh) = quantize_multiplier(2f64.powi(-30) / sh);
            b.op(
                OP_LSTM,
                true,
                &[x, wt, rt, bxt, bht, rqxt, rqht, sig, tanh, hs, cs, y, scr],
                &[t, i32_, h32, rev, zh, 2, hm, hsh],
            );
        }
        Cell::Gru => {
            let scr = b.act("scratch", DType::I16, &[2 * gh], None, 0.0, 0);
            let h16 = b.state("h16", DType::I16, h, 2f32.powi(-15), 0);
            let (hm, hsh) = quantize_multiplier(2f64.powi(-15) / sh);
            b.op(
                OP_GRU,
                true,
                &[x, wt, rt, bxt, bht, rqxt, rqht, sig, tanh, hs, y, scr, h16],
                &[t, i32_, h32, rev, zh, 0, 0, hm, hsh],
            );
        }
        Cell::Rnn => {
            let (hm, hsh) = quantize_multiplier(2f64.powi(-15) / sh);
            b.op(
                OP_RNN,
                true,
                &[x, wt, rt, bxt, bht, rqxt, rqht, tanh, hs, y],
                &[t, i32_, h32, rev, zh, hm, hsh, 0],
            );
        }
    }
    (y, (sh, zh))
}

const T: usize = 6;
const I: usize = 5;
const H: usize = 8;
const O: usize = 3;

/// `x [T, I] → cell → (SELECT_LAST → FC [O]) | (FC per step [T, O])`.
fn recurrent_model(cell: Cell, last: bool, reverse: bool, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new(T, !reverse);
    let x = b.act("x", DType::I8, &[T, I], Some(0), S_X as f32, Z_X);
    b.inputs.push(x);
    let (y, q) = add_cell(&mut b, &mut rng, cell, x, T, I, H, reverse);
    let out = if last {
        let s = b.act("last", DType::I8, &[H], None, q.0 as f32, q.1);
        b.op(OP_SELECT_LAST, true, &[y, s], &[T as i32, H as i32]);
        add_fc(&mut b, &mut rng, s, q, 1, 1, H, O, false, &[O], None).0
    } else {
        add_fc(&mut b, &mut rng, y, q, T, 1, H, O, true, &[T, O], Some(0)).0
    };
    b.outputs.push(out);
    b.build()
}

/// Every non-recurrent op: `x [2, 16] → FC → LUT8 → REQUANT → COPY (row 1) → ADD (broadcast)
/// → SOFTMAX → CONCAT(softmax, requant)`.
fn mixed_model(seed: u64) -> (Vec<u8>, Builder) {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new(1, false);
    let x = b.act("x", DType::I8, &[2, 16], None, S_X as f32, Z_X);
    b.inputs.push(x);
    let (y, (sy, zy)) = add_fc(
        &mut b,
        &mut rng,
        x,
        (S_X, Z_X),
        1,
        2,
        16,
        8,
        false,
        &[2, 8],
        None,
    );
    let table: Vec<i8> = (-128i32..128)
        .map(|q| ((sy * (q - zy) as f64).tanh() * 127.0).round() as i8)
        .collect();
    let tt = b.konst_i8("tanh8", &[256], &table);
    let l = b.act("lut", DType::I8, &[2, 8], None, 1.0 / 127.0, 0);
    b.op(OP_LUT8, false, &[y, tt, l], &[1, 16]);
    let (m, s) = quantize_multiplier(0.5);
    let r = b.act("rq", DType::I8, &[2, 8], None, 2.0 / 127.0, 1);
    b.op(OP_REQUANT, false, &[l, r], &[1, 16, 0, 1, m, s]);
    let row = b.act("row1", DType::I8, &[8], None, 2.0 / 127.0, 1);
    b.op(
        OP_COPY,
        false,
        &[r, row],
        &[1, 1, 0, 8, 1, 1, 1, 8, 0, 0, 0, 1],
    );
    let a = b.act("add", DType::I8, &[2, 8], None, 3.0 / 127.0, 0);
    let shift = 30;
    let am = ((1.0 / 127.0) / (3.0 / 127.0) * 2f64.powi(shift)).round() as i32;
    let bm = ((2.0 / 127.0) / (3.0 / 127.0) * 2f64.powi(shift)).round() as i32;
    b.op(
        OP_ADD,
        false,
        &[l, row, a],
        &[1, 16, 8, 0, 1, 0, am, bm, shift, -128, 127],
    );
    let et: Vec<i32> = (0..256)
        .map(|d| ((-(3.0 / 127.0) * d as f64).exp() * 65536.0).round() as i32)
        .collect();
    let ett = b.konst_i32("exp", &[256], &et);
    let sm = b.act("softmax", DType::I8, &[2, 8], None, 1.0 / 256.0, -128);
    b.op(OP_SOFTMAX, false, &[a, ett, sm], &[1, 2, 8]);
    let cat = b.act("cat", DType::I8, &[2, 16], None, 1.0 / 256.0, -128);
    b.op(OP_CONCAT, false, &[sm, r, cat], &[1, 2, 1, 2, 8, 8]);
    b.outputs.push(cat);
    (b.build(), b)
}

const TT: usize = 5; // input tokens (plus a CLS token)
const HEADS: usize = 2;
const DH: usize = 8;
const D: usize = HEADS * DH;
const TK_MEM: usize = 3; // keys of the constant memory (`const_kv`)

fn exp2_q16() -> Vec<i32> {
    (0..1024)
        .map(|i| (2f64.powf(-(i as f64) / 1024.0) * 65536.0).round() as i32)
        .collect()
}

fn i8_data(b: &Builder, t: u16) -> Vec<i8> {
    b.tensors[t as usize]
        .data
        .iter()
        .map(|&v| v as i8)
        .collect()
}

fn i32_data(b: &Builder, t: u16) -> Vec<zerocopy::little_endian::I32> {
    let d = &b.tensors[t as usize].data;
    le32(
        &d.chunks(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<_>>(),
    )
}

/// A transformer block in the ops the quantizer emits, and the same computation done by
/// calling the kernels directly:
/// `x [TT, D] → CONCAT(cls const, x) → ADD(pos const) → LAYERNORM → FC q, k, v → ATTENTION
/// (HEADS × DH) → MEAN over tokens → [D]`. With `const_kv`, `k` and `v` are constants (a
/// learned memory of `TK_MEM` rows) and the ADD's constant is its `a` operand.
fn transformer_model(seed: u64, causal: bool, const_kv: bool) -> (Vec<u8>, Vec<i8>, Vec<i8>) {
    let mut rng = Rng::new(seed);
    let mut b = Builder::new(1, false);
    let t1 = TT + 1;
    let x = b.act("x", DType::I8, &[TT, D], None, S_X as f32, Z_X);
    b.inputs.push(x);
    let cls = b.konst_act("cls", &[1, D], &rng.i8s(D), S_X as f32, Z_X);
    let cat = b.act("cat", DType::I8, &[t1, D], None, S_X as f32, Z_X);
    let cat_p = [1, 1, 1, 2, D as i32, (TT * D) as i32];
    b.op(OP_CONCAT, false, &[cls, x, cat], &cat_p);
    let pos = b.konst_act("pos", &[t1, D], &rng.i8s(t1 * D), S_X as f32, Z_X);
    let (s_h, z_h) = (2.0 * S_X, -4);
    let h = b.act("h", DType::I8, &[t1, D], None, s_h as f32, z_h);
    let shift = 30;
    let m = ((S_X / s_h) * 2f64.powi(shift)).round() as i32;
    let add_p = add::AddParams {
        steps: 1,
        len: t1 * D,
        b_len: t1 * D,
        b_step: 0,
        a_zp: Z_X,
        b_zp: Z_X,
        y_zp: z_h,
        a_mult: m,
        b_mult: m,
        shift: shift as u32,
        act_min: -128,
        act_max: 127,
    };
    let (add_a, add_b) = if const_kv { (pos, cat) } else { (cat, pos) };
    let n = (t1 * D) as i32;
    b.op(
        OP_ADD,
        false,
        &[add_a, add_b, h],
        &[1, n, n, Z_X, Z_X, z_h, m, m, shift, -128, 127],
    );
    // LayerNorm with γ of both signs.
    let (s_n, z_n) = (8.0 / 255.0, 1);
    let mut grq = Vec::new();
    for i in 0..D {
        let g = rng.f64_in(0.5, 1.5) * if i % 3 == 0 { -1.0 } else { 1.0 };
        let (gm, gs) = quantize_multiplier(g.abs() / s_n / 4096.0);
        grq.extend([if g < 0.0 { -gm } else { gm }, gs]);
    }
    let beta: Vec<i32> = (0..D)
        .map(|_| (rng.f64_in(-0.3, 0.3) / s_n).round() as i32 + z_n)
        .collect();
    let eps_q = (1e-5 * (D * D) as f64 / (s_h * s_h)).round() as i32;
    let gt = b.konst_i32("ln/gamma_rq", &[D, 2], &grq);
    let bt = b.konst_i32("ln/beta", &[D], &beta);
    let ln = b.act("ln", DType::I8, &[t1, D], None, s_n as f32, z_n);
    b.op(
        OP_LAYERNORM,
        false,
        &[h, gt, bt, ln],
        &[1, t1 as i32, D as i32, eps_q, -128, 127],
    );
    let nq = (s_n, z_n);
    let (q, qq) = add_fc(&mut b, &mut rng, ln, nq, 1, t1, D, D, false, &[t1, D], None);
    let (tk, k, kq, v, vq) = if const_kv {
        let (sk, zk) = (3.0 / 255.0, 2);
        let (sv, zv) = (2.0 / 255.0, -3);
        let k = b.konst_act("mem/k", &[TK_MEM, D], &rng.i8s(TK_MEM * D), sk, zk);
        let v = b.konst_act("mem/v", &[TK_MEM, D], &rng.i8s(TK_MEM * D), sv, zv);
        (TK_MEM, k, (sk as f64, zk), v, (sv as f64, zv))
    } else {
        let (k, kq) = add_fc(&mut b, &mut rng, ln, nq, 1, t1, D, D, false, &[t1, D], None);
        let (v, vq) = add_fc(&mut b, &mut rng, ln, nq, 1, t1, D, D, false, &[t1, D], None);
        (t1, k, kq, v, vq)
    };
    let (s_a, z_a) = (vq.0 * 0.9, 5);
    let scale = 1.0 / (DH as f64).sqrt();
    let (sm, ss) = quantize_multiplier(qq.0 * kq.0 * scale * core::f64::consts::LOG2_E * 1024.0);
    let (om, os) = quantize_multiplier(vq.0 / s_a / 65536.0);
    let et = b.konst_i32("exp2_q16", &[1024], &exp2_q16());
    let att = b.act("att", DType::I8, &[t1, D], None, s_a as f32, z_a);
    let scores = b.act("att/scores", DType::I32, &[tk], None, 0.0, 0);
    let att_p = attention::AttentionParams {
        steps: 1,
        tq: t1,
        tk,
        heads: HEADS,
        dh: DH,
        q_zp: qq.1,
        k_zp: kq.1,
        v_zp: vq.1,
        y_zp: z_a,
        score_mult: sm,
        score_shift: ss,
        out_mult: om,
        out_shift: os,
        causal,
    };
    b.op(
        OP_ATTENTION,
        false,
        &[q, k, v, et, att, scores],
        &[
            1,
            t1 as i32,
            tk as i32,
            HEADS as i32,
            DH as i32,
            qq.1,
            kq.1,
            vq.1,
            z_a,
            sm,
            ss,
            om,
            os,
            causal as i32,
        ],
    );
    let (s_m, z_m) = (s_a * 0.5, -7);
    let (mm, ms) = quantize_multiplier(s_a / (t1 as f64 * s_m));
    let out = b.act("mean", DType::I8, &[D], None, s_m as f32, z_m);
    b.op(
        OP_MEAN,
        false,
        &[att, out],
        &[1, 1, t1 as i32, D as i32, z_a, z_m, mm, ms],
    );
    b.outputs.push(out);
    let file = b.build();

    // The same chain, kernel by kernel.
    let input = rng.i8s(TT * D);
    let mut catv = std::vec![0u8; t1 * D];
    let as_u8 = |v: &[i8]| v.iter().map(|&x| x as u8).collect::<Vec<_>>();
    concat::concat_part(1, D, 0, &as_u8(&i8_data(&b, cls)), &mut catv);
    concat::concat_part(1, TT * D, D, &as_u8(&input), &mut catv);
    let catv: Vec<i8> = catv.iter().map(|&x| x as i8).collect();
    let posv = i8_data(&b, pos);
    let mut hv = std::vec![0i8; t1 * D];
    let (av, bv) = if const_kv {
        (&posv, &catv)
    } else {
        (&catv, &posv)
    };
    add::add_i8(&add_p, av, bv, &mut hv);
    let mut lnv = std::vec![0i8; t1 * D];
    let lp = layernorm::LayerNormParams {
        rows: t1,
        d: D,
        eps_q,
        act_min: -128,
        act_max: 127,
    };
    layernorm::layernorm_i8(&lp, &hv, &le32(&grq), &le32(&beta), &mut lnv);
    let fc_run = |first: u16, x: &[i8], zy: i32| {
        let p = fc::FcParams {
            rows: t1,
            k: D,
            n: D,
            y_zp: zy,
            act_min: -128,
            act_max: 127,
        };
        let mut y = std::vec![0i8; t1 * D];
        let (w, bias, rq) = (
            i8_data(&b, first),
            i32_data(&b, first + 1),
            i32_data(&b, first + 2),
        );
        fc::fc_i8(&p, x, &w, &bias, &rq, &mut y);
        y
    };
    // Each FC's constants are the three tensors just before its output.
    let qv = fc_run(q - 3, &lnv, qq.1);
    let (kv, vv) = if const_kv {
        (i8_data(&b, k), i8_data(&b, v))
    } else {
        (fc_run(k - 3, &lnv, kq.1), fc_run(v - 3, &lnv, vq.1))
    };
    let exp2: [zerocopy::little_endian::I32; 1024] = le32(&exp2_q16()).try_into().unwrap();
    let mut attv = std::vec![0i8; t1 * D];
    let mut sc = std::vec![0i32; tk];
    attention::attention_i8(&att_p, &exp2, &qv, &kv, &vv, &mut attv, &mut sc);
    let mp = mean::MeanParams {
        rows: 1,
        n: t1,
        inner: D,
        x_zp: z_a,
        y_zp: z_m,
        mult: mm,
        shift: ms,
    };
    let mut want = std::vec![0i8; D];
    mean::mean_i8(&mp, &attv, &mut want);
    (file, input, want)
}

fn run_whole(file: &[u8], input: &[i8]) -> Vec<i8> {
    let model = Model::parse(file).unwrap();
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut s = Session::new(&model, &mut arena).unwrap();
    let mut out = vec![0i8; model.output(0).unwrap().nbytes()];
    s.run(input, &mut out).unwrap();
    out
}

#[test]
fn parse_accessors() {
    let file = recurrent_model(Cell::Lstm, true, false, 1);
    let m = Model::parse(&file).unwrap();
    assert_eq!((m.n_inputs(), m.n_outputs(), m.n_ops()), (1, 1, 3));
    assert!(m.is_streamable());
    assert_eq!(m.seq_len(), T);
    assert_eq!(m.file_len(), file.len());
    assert_eq!(m.arena_bytes(), m.plan_bytes() + 15);
    let x = m.input(0).unwrap();
    assert_eq!(
        (x.name(), x.nbytes(), x.time_axis(), x.step_bytes(T)),
        ("x", T * I, Some(0), I)
    );
    assert_eq!(x.dims(), [T, I, 1, 1]);
    assert_eq!(m.output(0).unwrap().step_bytes(T), O);
    let names: Vec<&str> = (0..m.n_ops()).map(|i| m.op(i).unwrap().name()).collect();
    assert_eq!(names, ["LSTM", "SELECT_LAST", "FC"]);
    let lstm = m.op(0).unwrap();
    assert!(lstm.per_step());
    assert_eq!(lstm.n_tensors(), 13);
    assert_eq!(
        lstm.params().collect::<Vec<_>>()[..4],
        [T as i32, I as i32, H as i32, 0]
    );
    let consts =
        4 * H * I + 4 * H * H + 2 * 16 * H + 2 * 32 * H + 2 * 2 * 513 + O * H + 4 * O + 8 * O;
    assert_eq!(m.const_bytes(), consts);
    assert!(m.op(3).is_none() && m.tensor(m.n_tensors()).is_none() && m.input(1).is_none());
}

#[test]
fn fc_lut_wiring_matches_the_kernels() {
    let (file, b) = mixed_model(3);
    let m = Model::parse(&file).unwrap();
    let mut rng = Rng::new(4);
    let x = rng.i8s(32);
    let out = run_whole(&file, &x);
    // Recompute FC → LUT8 directly with the kernels and the builder's constants.
    let k = |i: usize| &b.tensors[i].data;
    let w: Vec<i8> = k(1).iter().map(|&v| v as i8).collect();
    let i32s = |d: &Vec<u8>| {
        le32(
            &d.chunks(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<_>>(),
        )
    };
    let p = fc::FcParams {
        rows: 2,
        k: 16,
        n: 8,
        y_zp: -2,
        act_min: -128,
        act_max: 127,
    };
    let mut y = [0i8; 16];
    fc::fc_i8(&p, &x, &w, &i32s(k(2)), &i32s(k(3)), &mut y);
    let table: [i8; 256] = core::array::from_fn(|i| k(5)[i] as i8);
    let mut l = [0i8; 16];
    lut::lut8_i8(&table, &y, &mut l);
    // The requant half of the concat is 1 + rq(l, 0.5).
    for r in 0..2 {
        for c in 0..8 {
            let want = (1 + crate::kernels::reference::fixed::rq(l[r * 8 + c] as i32, 1 << 30, 0))
                .clamp(-128, 127);
            assert_eq!(out[r * 16 + 8 + c] as i32, want);
        }
        // Softmax half: a distribution (scale 1/256, zp -128) that sums to ≈ 1.
        let sum: i32 = out[r * 16..r * 16 + 8]
            .iter()
            .map(|&v| v as i32 + 128)
            .sum();
        assert!((sum - 256).abs() <= 8, "softmax row sums to {sum}/256");
    }
    assert_eq!(m.op(3).unwrap().name(), "COPY");
}

#[test]
fn transformer_chain_matches_the_kernels() {
    for (seed, causal, const_kv) in [(30, false, false), (31, true, false), (32, false, true)] {
        let (file, input, want) = transformer_model(seed, causal, const_kv);
        let m = Model::parse(&file).unwrap();
        let names: Vec<&str> = (0..m.n_ops()).map(|i| m.op(i).unwrap().name()).collect();
        let fcs = if const_kv { 1 } else { 3 };
        let mut expect = std::vec!["CONCAT", "ADD", "LAYERNORM"];
        expect.extend(std::iter::repeat_n("FC", fcs));
        expect.extend(["ATTENTION", "MEAN"]);
        assert_eq!(names, expect);
        let out = run_whole(&file, &input);
        assert_eq!(out, want, "causal {causal} const_kv {const_kv}");
        assert!(out.iter().any(|&v| v != out[0]), "degenerate output");
        // Whole-model run is repeatable (nothing left over in the scores scratch).
        assert_eq!(run_whole(&file, &input), out);
    }
    // Causality changes the result.
    let (a, x, _) = transformer_model(33, false, false);
    let (b, _, _) = transformer_model(33, true, false);
    assert_ne!(run_whole(&a, &x), run_whole(&b, &x));
}

#[test]
fn layernorm_streams_per_step() {
    // x [T, I] → LAYERNORM per step (γ < 0 on odd columns) → [T, I]: step equals run.
    let mut b = Builder::new(T, true);
    let x = b.act("x", DType::I8, &[T, I], Some(0), S_X as f32, Z_X);
    b.inputs.push(x);
    let mut grq = Vec::new();
    for i in 0..I {
        let (gm, gs) = quantize_multiplier(1.0 / (4.0 / 255.0) / 4096.0);
        grq.extend([if i % 2 == 1 { -gm } else { gm }, gs]);
    }
    let gt = b.konst_i32("gamma_rq", &[I, 2], &grq);
    let bt = b.konst_i32("beta", &[I], &[0, 1, 2, 3, 4]);
    let y = b.act("y", DType::I8, &[T, I], Some(0), 4.0 / 255.0, 0);
    b.op(
        OP_LAYERNORM,
        true,
        &[x, gt, bt, y],
        &[T as i32, 1, I as i32, 3, -128, 127],
    );
    b.outputs.push(y);
    let file = b.build();
    let m = Model::parse(&file).unwrap();
    let mut arena = vec![0u8; m.arena_bytes()];
    let mut s = Session::new(&m, &mut arena).unwrap();
    let x = Rng::new(34).i8s(T * I);
    let mut whole = vec![0i8; T * I];
    s.run(&x, &mut whole).unwrap();
    let mut frame = vec![0i8; I];
    for t in 0..T {
        s.step(&x[t * I..(t + 1) * I], &mut frame).unwrap();
        assert_eq!(frame, whole[t * I..(t + 1) * I], "step {t}");
    }
}

#[test]
fn every_truncation_is_an_error() {
    for file in [
        mixed_model(5).0,
        recurrent_model(Cell::Gru, false, false, 6),
        transformer_model(35, true, false).0,
        transformer_model(36, false, true).0,
    ] {
        for len in 0..file.len() {
            let r = Model::parse(&file[..len]);
            assert!(r.is_err(), "len {len}");
            if len < 64 {
                assert_eq!(
                    r.unwrap_err(),
                    Error::Truncated {
                        needed: 64,
                        got: len
                    }
                );
            }
        }
        let mut long = file.clone();
        long.push(0);
        assert_eq!(
            Model::parse(&long).unwrap_err(),
            Error::TrailingBytes {
                expected: file.len(),
                got: file.len() + 1
            }
        );
    }
}

fn exercise(file: &[u8], rng: &mut Rng) {
    let Ok(m) = Model::parse(file) else { return };
    if m.arena_bytes() > 1 << 20 {
        return;
    }
    let mut arena = vec![0u8; m.arena_bytes()];
    let Ok(mut s) = Session::new(&m, &mut arena) else {
        return;
    };
    if let (Some(x), Some(y)) = (m.input(0), m.output(0)) {
        let input = rng.i8s(x.nbytes());
        let mut out = vec![0i8; y.nbytes()];
        let _ = s.run(&input, &mut out);
        let mut frame_out = vec![0i8; y.step_bytes(m.seq_len())];
        for _ in 0..2 {
            let _ = s.step(&input[..x.step_bytes(m.seq_len())], &mut frame_out);
        }
    }
    let _ = s.invoke();
    let _ = s.invoke_step();
}

#[test]
fn random_bit_flips_never_panic() {
    let files = [
        mixed_model(7).0,
        recurrent_model(Cell::Lstm, true, false, 8),
        recurrent_model(Cell::Gru, false, false, 9),
        recurrent_model(Cell::Rnn, true, false, 10),
        transformer_model(37, true, false).0,
        transformer_model(38, false, true).0,
    ];
    let mut rng = Rng::new(11);
    let mut parsed_ok = 0;
    for (n, file) in files.iter().enumerate() {
        for round in 0..2000 {
            let mut f = file.clone();
            let flips = 1 + rng.usize_below(3);
            for _ in 0..flips {
                let bit = rng.usize_below(f.len() * 8);
                f[bit / 8] ^= 1 << (bit % 8);
            }
            // Raw flips: caught by the checksum (or earlier checks).
            assert!(Model::parse(&f).is_err(), "file {n} round {round}");
            // Flips with a valid checksum: the structural checks must hold on their own.
            reseal(&mut f);
            if Model::parse(&f).is_ok() {
                parsed_ok += 1;
            }
            exercise(&f, &mut rng);
        }
    }
    // Flips in weights, names and scales parse fine; flips in structure do not.
    let total = 2000 * files.len();
    assert!(
        parsed_ok > total / 16 && parsed_ok < total * 15 / 16,
        "{parsed_ok} of {total} flipped files parsed"
    );
}

#[test]
fn arena_size_is_exact_and_any_alignment_works() {
    let file = recurrent_model(Cell::Lstm, false, false, 12);
    let m = Model::parse(&file).unwrap();
    let needed = m.arena_bytes();
    let mut buf = vec![0u8; needed + 16];
    assert_eq!(
        Session::new(&m, &mut buf[..needed - 1]).unwrap_err(),
        Error::ArenaTooSmall {
            needed,
            got: needed - 1
        }
    );
    let mut rng = Rng::new(13);
    let x = rng.i8s(T * I);
    let reference = run_whole(&file, &x);
    for shift in 0..16 {
        let mut s = Session::new(&m, &mut buf[shift..shift + needed]).unwrap();
        let mut out = vec![0i8; T * O];
        s.run(&x, &mut out).unwrap();
        assert_eq!(out, reference, "buffer offset {shift}");
    }
}

#[test]
fn step_equals_run() {
    let mut rng = Rng::new(14);
    for cell in [Cell::Lstm, Cell::Gru, Cell::Rnn] {
        for last in [false, true] {
            let file = recurrent_model(cell, last, false, 15);
            let m = Model::parse(&file).unwrap();
            let mut arena = vec![0u8; m.arena_bytes()];
            let mut s = Session::new(&m, &mut arena).unwrap();
            for _ in 0..3 {
                let x = rng.i8s(T * I);
                let out_len = m.output(0).unwrap().nbytes();
                let mut whole = vec![0i8; out_len];
                s.run(&x, &mut whole).unwrap();
                assert!(whole.iter().any(|&v| v != whole[0]), "degenerate output");
                s.reset();
                let step_len = O;
                let mut frames = Vec::new();
                let mut frame_out = vec![0i8; step_len];
                for t in 0..T {
                    s.step(&x[t * I..(t + 1) * I], &mut frame_out).unwrap();
                    frames.extend_from_slice(&frame_out);
                }
                let streamed = if last {
                    frames[(T - 1) * O..].to_vec()
                } else {
                    frames
                };
                assert_eq!(streamed, whole, "{cell:?} last {last}");
                // Without a reset the state carries over and the result differs.
                s.step(&x[..I], &mut frame_out).unwrap();
                s.reset();
            }
        }
    }
}

#[test]
fn reverse_cells_run_last_step_first() {
    // A reverse cell over x equals a forward cell over time-reversed x, with y reversed.
    let mut rng = Rng::new(16);
    for cell in [Cell::Lstm, Cell::Gru, Cell::Rnn] {
        let fwd = recurrent_model(cell, false, false, 17);
        let rev = recurrent_model(cell, false, true, 17);
        let m = Model::parse(&rev).unwrap();
        assert!(!m.is_streamable());
        let x = rng.i8s(T * I);
        let xr: Vec<i8> = (0..T)
            .rev()
            .flat_map(|t| x[t * I..(t + 1) * I].to_vec())
            .collect();
        let y_rev = run_whole(&rev, &x);
        let y_fwd = run_whole(&fwd, &xr);
        let y_fwd_back: Vec<i8> = (0..T)
            .rev()
            .flat_map(|t| y_fwd[t * O..(t + 1) * O].to_vec())
            .collect();
        assert_eq!(y_rev, y_fwd_back, "{cell:?}");
        let mut arena = vec![0u8; m.arena_bytes()];
        let mut s = Session::new(&m, &mut arena).unwrap();
        assert_eq!(s.step(&x[..I], &mut [0; O]), Err(Error::NotStreamable));
    }
}

#[test]
fn multi_io_api() {
    let mut b = Builder::new(1, false);
    let a = b.act("a", DType::I8, &[8], None, 0.1, 0);
    let c = b.act("b", DType::I8, &[8], None, 0.1, 0);
    let y = b.act("sum", DType::I8, &[8], None, 0.1, 0);
    b.op(
        OP_ADD,
        false,
        &[a, c, y],
        &[1, 8, 8, 0, 0, 0, 1 << 20, 1 << 20, 20, -128, 127],
    );
    let t: Vec<i8> = (0..256).map(|i| (127 - i) as i8).collect(); // x → -x - 1
    let tt = b.konst_i8("neg", &[256], &t);
    let z = b.act("z", DType::I8, &[8], None, 0.1, 0);
    b.op(OP_LUT8, false, &[y, tt, z], &[1, 8]);
    b.inputs.extend([a, c]);
    b.outputs.extend([y, z]);
    let file = b.build();
    let m = Model::parse(&file).unwrap();
    let mut arena = vec![0u8; m.arena_bytes()];
    let mut s = Session::new(&m, &mut arena).unwrap();
    s.input_mut(0)
        .unwrap()
        .copy_from_slice(&[1, 2, 3, 4, 100, 100, -100, -100]);
    s.input_mut(1)
        .unwrap()
        .copy_from_slice(&[10, 20, 30, 40, 50, -50, -50, 50]);
    s.invoke().unwrap();
    assert_eq!(s.output(0).unwrap(), &[11, 22, 33, 44, 127, 50, -128, -50]);
    assert_eq!(
        s.output(1).unwrap(),
        &[-12, -23, -34, -45, -128, -51, 127, 49]
    );
    assert_eq!(s.output(2).unwrap_err(), Error::NoSuchTensor { index: 2 });
    assert_eq!(
        s.input_mut(2).unwrap_err(),
        Error::NoSuchTensor { index: 2 }
    );
    assert_eq!(
        s.run(&[0; 8], &mut [0; 8]),
        Err(Error::IoCount {
            inputs: 2,
            outputs: 2
        })
    );
    assert_eq!(s.invoke_step(), Err(Error::NotStreamable));
}

#[test]
fn caller_buffer_lengths_are_checked() {
    let file = recurrent_model(Cell::Rnn, true, false, 18);
    let m = Model::parse(&file).unwrap();
    let mut arena = vec![0u8; m.arena_bytes()];
    let mut s = Session::new(&m, &mut arena).unwrap();
    let x = [0i8; T * I];
    assert_eq!(
        s.run(&x[1..], &mut [0; O]),
        Err(Error::InputLen {
            index: 0,
            expected: T * I,
            got: T * I - 1
        })
    );
    assert_eq!(
        s.run(&x, &mut [0; 2]),
        Err(Error::OutputLen {
            index: 0,
            expected: O,
            got: 2
        })
    );
    assert_eq!(
        s.step(&x, &mut [0; O]),
        Err(Error::InputLen {
            index: 0,
            expected: I,
            got: T * I
        })
    );
}

/// Builds the LSTM model, lets `edit` change the builder, and parses the result.
fn parse_edited(edit: impl FnOnce(&mut Builder)) -> Result<(), Error> {
    let mut rng = Rng::new(19);
    let mut b = Builder::new(T, true);
    let x = b.act("x", DType::I8, &[T, I], Some(0), S_X as f32, Z_X);
    b.inputs.push(x);
    let (y, q) = add_cell(&mut b, &mut rng, Cell::Lstm, x, T, I, H, false);
    let (out, _) = add_fc(&mut b, &mut rng, y, q, T, 1, H, O, true, &[T, O], Some(0));
    b.outputs.push(out);
    edit(&mut b);
    let file = b.build();
    Model::parse(&file).map(|_| ())
}

#[test]
fn op_validation_errors() {
    let bad = |op: usize, what: &'static str| Err(Error::BadOp { op, what });
    assert_eq!(parse_edited(|_| {}), Ok(()));
    // LSTM is op 0, FC op 1. Tensor ids: 0 x, 1 w, 2 r, 3 bias_x, 4 bias_h, 5 rq_x, 6 rq_h,
    // 7 sig, 8 tanh, 9 h, 10 y, 11 c, 12 scratch, 13 fc w, 14 bias, 15 rq, 16 fc y.
    assert_eq!(
        parse_edited(|b| b.ops[1].params[2] = 9),
        bad(1, "FC x must be int8 [steps·rows, k]")
    );
    assert_eq!(
        parse_edited(|b| b.ops[0].params[5] = 16),
        bad(0, "cell_exp outside [0, 15]")
    );
    assert_eq!(
        parse_edited(|b| b.ops[0].params[7] = 32),
        bad(0, "requantization pair out of range")
    );
    assert_eq!(
        parse_edited(|b| b.ops[0].params[3] = 2),
        bad(0, "reverse must be 0 or 1")
    );
    assert_eq!(
        parse_edited(|b| b.ops[0].params.push(0)),
        bad(0, "wrong number of parameters")
    );
    assert_eq!(
        parse_edited(|b| {
            b.ops[1].tensors.pop();
        }),
        bad(1, "wrong number of tensors")
    );
    // A bad pair inside a constant rq tensor.
    assert_eq!(
        parse_edited(|b| b.tensors[15].data[4..8].copy_from_slice(&(-31i32).to_le_bytes())),
        bad(1, "requantization pair out of range")
    );
    assert_eq!(
        parse_edited(|b| b.tensors[15].data[0..4].copy_from_slice(&(-1i32).to_le_bytes())),
        bad(1, "requantization pair out of range")
    );
    // The FC output placed on top of its input.
    assert_eq!(
        parse_edited(|b| b.tensors[16].offset = b.tensors[10].offset),
        bad(1, "an output overlaps an input in the arena")
    );
    // The LSTM's scratch overlapping its y.
    assert_eq!(
        parse_edited(|b| b.tensors[10].offset = b.tensors[12].offset),
        bad(0, "two outputs overlap in the arena")
    );
    // An activation placed on a state tensor (state must survive between steps).
    assert!(matches!(
        parse_edited(|b| b.tensors[16].offset = b.tensors[11].offset),
        Err(Error::Malformed {
            what: "state tensor shares arena bytes with another tensor",
            ..
        })
    ));
    // h must be state, w must be constant, tables must be 513 int16.
    assert_eq!(
        parse_edited(|b| b.tensors[9].kind = TensorKind::Activation),
        bad(0, "h must be int8 state [hidden]")
    );
    assert_eq!(
        parse_edited(|b| b.ops[0].tensors[1] = 2),
        bad(0, "w must be int8 constant [G·H, I]")
    );
    assert_eq!(
        parse_edited(|b| b.ops[0].tensors[7] = 3),
        bad(0, "sigmoid must be an int16 constant [513]")
    );
    assert_eq!(
        parse_edited(|b| b.ops[0].opcode = 99),
        Err(Error::UnknownOp { op: 0, opcode: 99 })
    );
    // The unit16 layout flag: LSTM only, and then with int16 gate matrices.
    assert!(matches!(
        parse_edited(|b| b.ops[1].unit16 = true),
        Err(Error::Malformed {
            what: "the unit16 layout flag on an op other than LSTM",
            ..
        })
    ));
    assert_eq!(
        parse_edited(|b| b.ops[0].unit16 = true),
        bad(
            0,
            "scratch must be an int16 activation [4·hidden] ([48·hidden] for unit16)"
        )
    );
    assert_eq!(
        parse_edited(|b| b.ops[0].tensors[0] = 999),
        bad(0, "tensor index out of range")
    );
    // Streaming model without a sequence input.
    assert!(matches!(
        parse_edited(|b| b.tensors[0].time_axis = None),
        Err(Error::Malformed {
            what: "streamable model without a sequence input",
            ..
        })
    ));
    // Time axis whose length is not seq_len.
    assert!(matches!(
        parse_edited(|b| b.seq_len = T + 1),
        Err(Error::Malformed {
            what: "bad time axis",
            ..
        })
    ));
    // Arena tensor beyond arena_bytes / misaligned.
    assert!(matches!(
        parse_edited(|b| b.tensors[12].offset = b.arena),
        Err(Error::Malformed {
            what: "arena tensor outside arena_bytes",
            ..
        })
    ));
    assert!(matches!(
        parse_edited(|b| b.tensors[12].offset += 8),
        Err(Error::Malformed {
            what: "arena tensor is not 16-aligned",
            ..
        })
    ));
}

#[test]
fn header_errors() {
    let file = mixed_model(20).0;
    let edit = |at: usize, v: &[u8], seal: bool| {
        let mut f = file.clone();
        f[at..at + v.len()].copy_from_slice(v);
        if seal {
            reseal(&mut f);
        }
        Model::parse(&f).map(|_| ())
    };
    assert_eq!(edit(0, b"KGLU", false), Err(Error::BadMagic));
    assert_eq!(
        edit(4, &[2, 0, 7, 0], false),
        Err(Error::UnsupportedVersion { major: 2, minor: 7 })
    );
    assert_eq!(edit(6, &[3, 0], true), Ok(())); // higher minors are read
    assert!(matches!(
        edit(100, &[0xAA], false),
        Err(Error::Checksum { .. })
    ));
    assert!(matches!(
        edit(16, &[2], true),
        Err(Error::Malformed { offset: 16, .. })
    ));
    assert!(matches!(
        edit(20, &[8], true),
        Err(Error::Malformed { offset: 20, .. })
    ));
    assert!(matches!(
        edit(60, &[1], true),
        Err(Error::Malformed { offset: 60, .. })
    ));
    // A tensor with a bad dtype: tensor table at 64, entry 0.
    assert!(matches!(
        edit(64, &[9], true),
        Err(Error::Malformed {
            offset: 64,
            what: "unknown dtype"
        })
    ));
    let e = Error::Malformed {
        offset: 64,
        what: "unknown dtype",
    };
    assert_eq!(
        std::format!("{e}"),
        "malformed model file at byte 64: unknown dtype"
    );
}

#[test]
fn float_helpers_round_half_away_from_zero() {
    let file = mixed_model(21).0;
    let m = Model::parse(&file).unwrap();
    let x = m.input(0).unwrap(); // scale 2/255, zero point 3
    let s = x.scale();
    let mut q = [0i8; 7];
    x.quantize(
        &[0.0, 0.5 * s, -0.5 * s, 1.49 * s, 1000.0, -1000.0, f32::NAN],
        &mut q,
    );
    assert_eq!(q, [3, 4, 2, 4, 127, -128, 3]);
    // Against `f64::round` (half away from zero) of the same f32 quotient, over exact halves,
    // their neighbours one ulp away, and values from the whole int8 range and past it.
    let mut rng = Rng::new(77);
    let mut xs = Vec::new();
    for k in -300..300 {
        let h = (k as f32 + 0.5) * s;
        xs.extend([
            h,
            f32::from_bits(h.to_bits() + 1),
            f32::from_bits(h.to_bits() - 1),
        ]);
        xs.push(k as f32 * s);
    }
    xs.extend((0..4000).map(|_| (rng.next_u64() as i32 as f32) * s / 1.0e7));
    let mut got = vec![0i8; xs.len()];
    x.quantize(&xs, &mut got);
    for (&v, &g) in xs.iter().zip(&got) {
        let want = (((v / s) as f64).round() as i64 + 3).clamp(-128, 127) as i8;
        assert_eq!(g, want, "{v}");
    }
    let mut f = [0f32; 3];
    x.dequantize(&[3, 4, -128], &mut f);
    assert_eq!(f, [0.0, s, -131.0 * s]);
}

/// Builds a compact `LAYERNORM → ATTENTION (q = k = v, or constant k, v with `const_kv`) →
/// MEAN` model, lets `edit` change the builder, and parses the result.
fn parse_transformer_edited(const_kv: bool, edit: impl FnOnce(&mut Builder)) -> Result<(), Error> {
    let mut rng = Rng::new(39);
    let mut b = Builder::new(1, false);
    let t1 = TT + 1;
    let x = b.act("x", DType::I8, &[t1, D], None, S_X as f32, Z_X);
    b.inputs.push(x);
    let mut grq = Vec::new();
    for i in 0..D {
        let (gm, gs) = quantize_multiplier(0.01);
        grq.extend([if i % 2 == 0 { -gm } else { gm }, gs]);
    }
    let gt = b.konst_i32("gamma_rq", &[D, 2], &grq); // 1
    let bt = b.konst_i32("beta", &[D], &[0; D]); // 2
    let ln = b.act("ln", DType::I8, &[t1, D], None, 0.03, 0); // 3
    b.op(
        OP_LAYERNORM,
        false,
        &[x, gt, bt, ln],
        &[1, t1 as i32, D as i32, 5, -128, 127],
    );
    let (k, v) = if const_kv {
        (
            b.konst_act("k", &[t1, D], &rng.i8s(t1 * D), 0.03, 0),
            b.konst_act("v", &[t1, D], &rng.i8s(t1 * D), 0.03, 0),
        )
    } else {
        (ln, ln)
    };
    let et = b.konst_i32("exp2", &[1024], &exp2_q16());
    let att = b.act("att", DType::I8, &[t1, D], None, 0.03, 0);
    let sc = b.act("scores", DType::I32, &[t1], None, 0.0, 0);
    let (sm, ss) = quantize_multiplier(0.5);
    let (om, os) = quantize_multiplier(1.0 / 65536.0);
    b.op(
        OP_ATTENTION,
        false,
        &[ln, k, v, et, att, sc],
        &[
            1,
            t1 as i32,
            t1 as i32,
            HEADS as i32,
            DH as i32,
            0,
            0,
            0,
            0,
            sm,
            ss,
            om,
            os,
            1,
        ],
    );
    let out = b.act("mean", DType::I8, &[D], None, 0.03, 0);
    let (mm, ms) = quantize_multiplier(1.0 / t1 as f64);
    b.op(
        OP_MEAN,
        false,
        &[att, out],
        &[1, 1, t1 as i32, D as i32, 0, 0, mm, ms],
    );
    b.outputs.push(out);
    edit(&mut b);
    let file = b.build();
    Model::parse(&file).map(|_| ())
}

#[test]
fn transformer_validation_errors() {
    let bad = |op: usize, what: &'static str| Err(Error::BadOp { op, what });
    let ok = |f: fn(&mut Builder)| parse_transformer_edited(false, f);
    assert_eq!(ok(|_| {}), Ok(()));
    assert_eq!(parse_transformer_edited(true, |_| {}), Ok(()));
    // Ops: 0 LAYERNORM, 1 ATTENTION, 2 MEAN. Tensors: 0 x, 1 gamma_rq, 2 beta, 3 ln,
    // (const_kv: 4 k, 5 v,) exp2, att, scores, mean.
    assert_eq!(
        ok(|b| b.ops[0].params[2] = (1 << 15) + 1),
        bad(0, "LAYERNORM d must be in [1, 2^15]")
    );
    assert_eq!(
        ok(|b| b.ops[0].params[3] = -1),
        bad(0, "LAYERNORM eps_q must be ≥ 0")
    );
    assert_eq!(
        ok(|b| b.ops[0].params[5] = -129),
        bad(0, "activation range outside [-128, 127] or empty")
    );
    // Negative γ multipliers are fine; −2^31 is not, nor a shift out of range.
    assert_eq!(
        ok(|b| b.tensors[1].data[0..4].copy_from_slice(&(-i32::MAX).to_le_bytes())),
        Ok(())
    );
    assert_eq!(
        ok(|b| b.tensors[1].data[0..4].copy_from_slice(&i32::MIN.to_le_bytes())),
        bad(0, "requantization pair out of range")
    );
    assert_eq!(
        ok(|b| b.tensors[1].data[4..8].copy_from_slice(&32i32.to_le_bytes())),
        bad(0, "requantization pair out of range")
    );
    assert_eq!(
        ok(|b| b.ops[0].tensors[2] = 1),
        bad(0, "LAYERNORM beta must be int32 constant [d]")
    );
    // Attention bounds and parameters.
    assert_eq!(
        ok(|b| b.ops[1].params[4] = 257),
        bad(1, "ATTENTION dh must be in [1, 256]")
    );
    assert_eq!(
        ok(|b| b.ops[1].params[2] = 4097),
        bad(1, "ATTENTION tk must be in [1, 4096]")
    );
    assert_eq!(
        ok(|b| b.ops[1].params[2] = 5),
        bad(1, "ATTENTION k must be int8 [steps·tk, heads·dh]")
    );
    assert_eq!(
        ok(|b| b.ops[1].params[3] = 4),
        bad(1, "ATTENTION q must be int8 [steps·tq, heads·dh]")
    );
    assert_eq!(
        ok(|b| b.ops[1].params[13] = 2),
        bad(1, "ATTENTION causal must be 0 or 1")
    );
    assert_eq!(
        ok(|b| b.ops[1].params[9] = -1),
        bad(1, "requantization pair out of range")
    );
    assert_eq!(
        ok(|b| b.ops[1].params[12] = -31),
        bad(1, "requantization pair out of range")
    );
    assert_eq!(
        ok(|b| b.ops[1].params[8] = 128),
        bad(1, "zero point outside [-128, 127]")
    );
    let exp2_bad = "ATTENTION exp2 must start at 65536 and stay in [0, 65536]";
    assert_eq!(
        ok(|b| b.tensors[4].data[0..4].copy_from_slice(&65535i32.to_le_bytes())),
        bad(1, exp2_bad)
    );
    assert_eq!(
        ok(|b| b.tensors[4].data[40..44].copy_from_slice(&70000i32.to_le_bytes())),
        bad(1, exp2_bad)
    );
    assert_eq!(
        ok(|b| b.tensors[4].data[40..44].copy_from_slice(&(-1i32).to_le_bytes())),
        bad(1, exp2_bad)
    );
    assert_eq!(
        ok(|b| b.tensors[6].dtype = DType::I8),
        bad(1, "ATTENTION scores must be an int32 activation [tk]")
    );
    // Scores on top of q, y on top of v.
    assert_eq!(
        ok(|b| b.tensors[6].offset = b.tensors[3].offset),
        bad(1, "an output overlaps an input in the arena")
    );
    assert_eq!(
        ok(|b| b.tensors[6].offset = b.tensors[5].offset),
        bad(1, "two outputs overlap in the arena")
    );
    // A constant is fine as k / v, never as an output or as LAYERNORM's input.
    assert_eq!(
        parse_transformer_edited(true, |b| b.ops[1].tensors[4] = 4),
        bad(
            1,
            "ATTENTION y must be an int8 activation [steps·tq, heads·dh]"
        )
    );
    assert_eq!(
        parse_transformer_edited(true, |b| b.ops[0].tensors[0] = 4),
        bad(0, "LAYERNORM x must be int8 [steps·rows, d]")
    );
    // A constant of the wrong size is refused like an arena tensor would be.
    assert_eq!(
        parse_transformer_edited(true, |b| b.ops[1].tensors[2] = 1),
        bad(1, "ATTENTION v must be int8 [steps·tk, heads·dh]")
    );
    // Mean.
    assert_eq!(
        ok(|b| b.ops[2].params[2] = (1 << 23) + 1),
        bad(2, "MEAN n must be in [1, 2^23]")
    );
    assert_eq!(
        ok(|b| b.ops[2].params[3] = 8),
        bad(2, "MEAN x must be int8 [steps·outer, n, inner]")
    );
    assert_eq!(
        ok(|b| b.ops[2].params.pop().map(|_| ()).unwrap_or(())),
        bad(2, "wrong number of parameters")
    );
}

#[test]
fn constant_operands_of_add_and_concat() {
    // ADD(const a, const b) and CONCAT(const, x, const): constants read straight from the file.
    let mut b = Builder::new(1, false);
    let x = b.act("x", DType::I8, &[4], None, 0.1, 0);
    b.inputs.push(x);
    let ca = b.konst_act("a", &[4], &[1, 2, 3, 4], 0.1, 0);
    let cb = b.konst_act("b", &[2], &[10, -10], 0.1, 0);
    let s = b.act("s", DType::I8, &[4], None, 0.1, 0);
    b.op(
        OP_ADD,
        false,
        &[ca, cb, s],
        &[1, 4, 2, 0, 0, 0, 1 << 20, 1 << 20, 20, -128, 127],
    );
    let y = b.act("y", DType::I8, &[2, 6], None, 0.1, 0);
    let c1 = b.konst_act("c1", &[2, 1], &[-1, -2], 0.1, 0);
    b.op(OP_CONCAT, false, &[c1, x, s, y], &[1, 2, 1, 3, 1, 2, 3]);
    b.outputs.push(y);
    let file = b.build();
    // Chunks 1, 2, 3 over outer 2 need c1 [2], x [4], s [6]: s has 4 elements, refused.
    assert_eq!(
        Model::parse(&file).map(|_| ()),
        Err(Error::BadOp {
            op: 1,
            what: "CONCAT inputs must be [steps·outer, chunk] of y's dtype"
        })
    );
    let mut b = Builder::new(1, false);
    let x = b.act("x", DType::I8, &[4], None, 0.1, 0);
    b.inputs.push(x);
    let ca = b.konst_act("a", &[4], &[1, 2, 3, 4], 0.1, 0);
    let cb = b.konst_act("b", &[2], &[10, -10], 0.1, 0);
    let s = b.act("s", DType::I8, &[4], None, 0.1, 0);
    b.op(
        OP_ADD,
        false,
        &[ca, cb, s],
        &[1, 4, 2, 0, 0, 0, 1 << 20, 1 << 20, 20, -128, 127],
    );
    let c1 = b.konst_act("c1", &[2, 1], &[-1, -2], 0.1, 0);
    let y = b.act("y", DType::I8, &[2, 5], None, 0.1, 0);
    b.op(OP_CONCAT, false, &[c1, x, s, y], &[1, 2, 1, 3, 1, 2, 2]);
    b.outputs.push(y);
    let file = b.build();
    let out = run_whole(&file, &[50, 51, 52, 53]);
    assert_eq!(out, [-1, 50, 51, 11, -8, -2, 52, 53, 13, -6]);
}

/// The prepared operands (`Model::prepared_bytes`): on AVX-512 VNNI one slot per recurrent op,
/// 64-aligned past the plan, written once by `Session::new` and found by the kernels; an arena
/// a byte short of the slots themselves keeps none. Every model gives the same outputs either way, whole
/// and step by step (here for the LSTM and GRU models; `tests/simd_vs_reference.rs` for every
/// committed fixture).
#[test]
fn recurrent_ops_prepare_their_operands_once() {
    use crate::kernels::{active_isa, Isa};
    for cell in [Cell::Lstm, Cell::Gru, Cell::Rnn] {
        let file = recurrent_model(cell, false, false, 11);
        let m = Model::parse(&file).unwrap();
        let input: Vec<i8> = (0..T * I).map(|k| (k * 37 % 256) as u8 as i8).collect();
        let mut outs = Vec::new();
        // `prepared_bytes` is the slots plus 64 bytes to align them.
        for extra in [0, m.prepared_bytes().saturating_sub(65), m.prepared_bytes()] {
            // Odd offsets too: the session aligns both regions itself.
            let mut buf = vec![0u8; m.arena_bytes() + extra + 1];
            let mut s = Session::new(&m, &mut buf[1..]).unwrap();
            let prepared = extra == m.prepared_bytes() && extra > 0;
            assert_eq!(!s.prep().is_empty(), prepared, "{cell:?} extra {extra}");
            assert!(s.prep().is_empty() || s.prep().as_ptr() as usize % 64 == 0);
            #[cfg(kinglet_prep)]
            if prepared {
                let slot = crate::kernels::x86_rnn::RNN_PREP_BYTES;
                assert_eq!(s.prep().len(), slot);
                // The slot's `meta` (its last 64 bytes) names a prepared op.
                assert_eq!(&s.prep()[slot - 64..slot - 60], b"KRNN", "{cell:?}");
            }
            let mut whole = vec![0i8; m.output(0).unwrap().nbytes()];
            s.run(&input, &mut whole).unwrap();
            s.reset();
            let mut steps = Vec::new();
            let mut y = vec![0i8; whole.len() / T];
            for t in 0..T {
                s.step(&input[t * I..(t + 1) * I], &mut y).unwrap();
                steps.extend_from_slice(&y);
            }
            assert_eq!(steps, whole, "{cell:?}: step by step");
            outs.push(whole);
        }
        assert!(outs.windows(2).all(|w| w[0] == w[1]), "{cell:?}");
        // The vanilla RNN keeps no prepared operands; the LSTM and GRU do on AVX-512 VNNI.
        let want = cell != Cell::Rnn && active_isa() == Isa::Avx512Vnni;
        assert_eq!(m.prepared_bytes() > 0, want, "{cell:?}");
    }
}
