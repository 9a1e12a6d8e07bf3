#!/usr/bin/env python3
"""Generate small, *trained* Transformer-encoder / tiny-ViT ONNX fixtures for Kinglet.

Usage:
    /work/venv/bin/python models/fixtures_tf/gen.py [--out models/fixtures_tf] [--only NAME[,NAME...]]

For every fixture NAME this writes NAME/{model.onnx, calib.npy, test.npy, labels.npy, meta.json}.
Everything is seeded.  See README.md in this folder for the fixtures and what the exporters emit.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import time
import traceback
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

T_SEQ, F_SEQ = 16, 12        # sequence encoders: input [1, T, F]
IMG = 28                     # tiny ViTs: input [1, 1, 28, 28]
N_CLASSES = 4
N_CALIB, N_TEST, N_TRAIN = 64, 200, 4096
INPUT_NAME, OUTPUT_NAME = "input", "output"

torch.set_num_threads(1)


# --------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------
# Sequences: class c puts a sinusoid of frequency W_SEQ[c] on channel 3c (random phase and
# amplitude); one random other channel carries a distractor sinusoid; N(0, 0.3) noise and a DC
# offset on every channel.
W_SEQ = np.array([0.4, 0.8, 1.2, 1.6])


def make_seq(n: int, seed: int):
    rng = np.random.default_rng(seed)
    t = np.arange(T_SEQ, dtype=np.float64)
    y = rng.integers(0, N_CLASSES, size=n)
    x = rng.normal(0.0, 0.3, size=(n, T_SEQ, F_SEQ))
    x += rng.uniform(-0.2, 0.2, size=(n, 1, F_SEQ))
    for i in range(n):
        c = y[i]
        x[i, :, 3 * c] += rng.uniform(0.8, 1.2) * np.sin(W_SEQ[c] * t + rng.uniform(0, 2 * math.pi))
        d = 3 * rng.integers(0, 4) + 1 + rng.integers(0, 2)
        x[i, :, d] += rng.uniform(0.5, 1.0) * np.sin(rng.uniform(0.2, 1.8) * t + rng.uniform(0, 2 * math.pi))
    return x.astype(np.float32), y.astype(np.int64)


# Images: class = orientation of a bright bar (0°, 45°, 90°, 135°) of random length, width,
# position and brightness, on a noisy background with a random blob distractor.
def make_img(n: int, seed: int):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:IMG, 0:IMG].astype(np.float64)
    y = rng.integers(0, N_CLASSES, size=n)
    x = rng.normal(0.0, 0.15, size=(n, 1, IMG, IMG))
    for i in range(n):
        ang = y[i] * math.pi / 4 + rng.uniform(-0.15, 0.15)
        cy, cx = rng.uniform(9, 19, size=2)
        dx, dy = math.cos(ang), math.sin(ang)
        along = (xx - cx) * dx + (yy - cy) * dy
        across = -(xx - cx) * dy + (yy - cy) * dx
        half_len, width = rng.uniform(6, 11), rng.uniform(1.0, 2.0)
        bar = (np.abs(along) < half_len) * np.exp(-(across / width) ** 2)
        by, bx = rng.uniform(4, 24, size=2)
        blob = np.exp(-((yy - by) ** 2 + (xx - bx) ** 2) / (2 * rng.uniform(1.5, 3.0) ** 2))
        x[i, 0] += rng.uniform(0.8, 1.2) * bar + rng.uniform(0.0, 0.8) * blob
    return x.astype(np.float32), y.astype(np.int64)


TASK_DATA = {"seq": make_seq, "img": make_img}


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------
class Encoder(nn.Module):
    """Linear(F->d) [+ CLS token] [+ learned pos-emb] -> nn.TransformerEncoder -> pool -> head."""

    def __init__(self, d, nhead, layers, ff, act, norm_first, final_norm, cls, pos, pool):
        super().__init__()
        self.embed = nn.Linear(F_SEQ, d)
        n_tok = T_SEQ + (1 if cls else 0)
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, d)) if cls else None
        self.pos = nn.Parameter(0.02 * torch.randn(1, n_tok, d)) if pos else None
        layer = nn.TransformerEncoderLayer(d, nhead, dim_feedforward=ff, dropout=0.0, activation=act,
                                           batch_first=True, norm_first=norm_first)
        self.enc = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d) if final_norm else None,
                                         enable_nested_tensor=False)
        self.head = nn.Linear(d, N_CLASSES)
        self.pool = pool

    def forward(self, x):
        h = self.embed(x)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)
        if self.pos is not None:
            h = h + self.pos
        h = self.enc(h)
        h = h[:, 0] if self.pool == "cls" else h.mean(dim=1)
        return self.head(h)


class CausalMHA(nn.Module):
    """Hand-written attention block: packed q/k/v Linear, F.scaled_dot_product_attention."""

    def __init__(self, d, heads, mode):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.heads = heads
        self.mode = mode  # "flag": is_causal=True; "mask": explicit bool tril mask

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        sh = lambda z: z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = sh(q), sh(k), sh(v)
        if self.mode == "flag":
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            mask = torch.ones(t, t, dtype=torch.bool).tril()
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        a = a.transpose(1, 2).reshape(b, t, d)
        return x + self.out(a)


class CausalNet(nn.Module):
    def __init__(self, d=16, heads=2):
        super().__init__()
        self.embed = nn.Linear(F_SEQ, d)
        self.att1 = CausalMHA(d, heads, "flag")
        self.att2 = CausalMHA(d, heads, "mask")
        self.ff = nn.Linear(d, d)
        self.head = nn.Linear(d, N_CLASSES)

    def forward(self, x):
        h = self.embed(x)
        h = self.att1(h)
        h = h + torch.relu(self.ff(h))
        h = self.att2(h)
        return self.head(h[:, -1])  # the last query sees every step


class ViT(nn.Module):
    """Tiny ViT on 28x28: 7x7 patches (16), Conv2d or unfold+Linear patch embedding."""

    def __init__(self, d, heads, layers, mlp, patch, cls, pool):
        super().__init__()
        self.patch = patch
        if patch == "conv":
            self.embed = nn.Conv2d(1, d, kernel_size=7, stride=7)
        else:
            self.embed = nn.Linear(49, d)
        n_tok = 16 + (1 if cls else 0)
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, d)) if cls else None
        self.pos = nn.Parameter(0.02 * torch.randn(1, n_tok, d))
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=mlp, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        self.head = nn.Linear(d, N_CLASSES)
        self.pool = pool

    def forward(self, x):
        b = x.shape[0]
        if self.patch == "conv":
            h = self.embed(x).flatten(2).transpose(1, 2)  # [B, 16, d]
        else:
            p = x.reshape(b, 1, 4, 7, 4, 7).permute(0, 2, 4, 1, 3, 5).reshape(b, 16, 49)
            h = self.embed(p)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(b, -1, -1), h], dim=1)
        h = self.enc(h + self.pos)
        h = h[:, 0] if self.pool == "cls" else h.mean(dim=1)
        return self.head(h)


FIXTURES = [
    dict(name="enc_post_relu_legacy_o17", task="seq", export=[("legacy", 17)],
         make=lambda: Encoder(32, 4, 2, 64, "relu", False, False, False, False, "mean"),
         arch="Linear(12->32) -> TransformerEncoder(2 layers, nhead 4, post-norm, ReLU, ff 64) "
              "-> mean over tokens -> Linear(32->4)",
         attention=2, layernorm=4),
    dict(name="enc_pre_gelu_dynamo_o18", task="seq", export=[("dynamo", 18)],
         make=lambda: Encoder(40, 5, 1, 64, "gelu", True, True, True, True, "cls"),
         arch="Linear(12->40) -> [CLS; x] + learned pos-emb -> TransformerEncoder(1 layer, nhead 5, "
              "pre-norm, GELU, ff 64, final LayerNorm) -> CLS -> Linear(40->4)",
         attention=1, layernorm=3),
    dict(name="enc_gelu_dynamo_o20", task="seq", export=[("dynamo", 20)],
         make=lambda: Encoder(32, 4, 1, 64, "gelu", False, False, False, True, "mean"),
         arch="Linear(12->32) + learned pos-emb -> TransformerEncoder(1 layer, nhead 4, post-norm, "
              "GELU, ff 64) -> mean over tokens -> Linear(32->4)",
         attention=1, layernorm=2),
    dict(name="enc_dynamo_o23", task="seq", export=[("dynamo", 23)],
         make=lambda: Encoder(32, 4, 2, 64, "relu", True, True, False, False, "mean"),
         arch="Linear(12->32) -> TransformerEncoder(2 layers, nhead 4, pre-norm, ReLU, ff 64, final "
              "LayerNorm) -> mean over tokens -> Linear(32->4)",
         attention=2, layernorm=5),
    dict(name="mha_legacy_o17", task="seq", export=[("legacy", 17)],
         make=lambda: CausalNet(16, 2), steps=800,
         arch="Linear(12->16) -> [packed qkv Linear, 2 heads, F.scaled_dot_product_attention("
              "is_causal=True), out Linear, residual] -> x + relu(Linear) -> [same, with an explicit "
              "bool tril attn_mask] -> last step -> Linear(16->4)",
         attention=2, layernorm=0),
    dict(name="vit_conv_legacy_o17", task="img", export=[("legacy", 17)],
         make=lambda: ViT(32, 4, 2, 64, "conv", True, "cls"), steps=300,
         arch="Conv2d(1,32,k7,s7) patches (16) -> [CLS; x] + pos-emb -> 2 pre-norm GELU blocks "
              "(4 heads, MLP 64) -> LayerNorm -> CLS -> Linear(32->4)",
         attention=2, layernorm=5),
    dict(name="vit_unfold_dynamo_o18", task="img", export=[("dynamo", 18)],
         make=lambda: ViT(32, 4, 1, 64, "unfold", False, "mean"), steps=300,
         arch="reshape/permute 7x7 patches (16x49) -> Linear(49->32) + pos-emb -> 1 pre-norm GELU "
              "block (4 heads, MLP 64) -> LayerNorm -> mean over tokens -> Linear(32->4)",
         attention=1, layernorm=3),
]


# --------------------------------------------------------------------------
# Training / export
# --------------------------------------------------------------------------
def train(model, x, y, steps, seed):
    g = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, xt.shape[0], (64,), generator=g)
        loss = F.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    return float(loss.detach())


def onnx_ops(m) -> list[str]:
    ops = {n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}" for n in m.graph.node}
    for fn in m.functions:
        ops |= {f"{fn.domain}::{n.op_type}" for n in fn.node}
    return sorted(ops)


def export_onnx(model, example, path, exporter, opset):
    import onnx

    tmp = path + ".tmp.onnx"
    log = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            torch.onnx.export(model, (example,), tmp, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True)
        else:
            prog = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                     input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                     optimize=True, external_data=False)
            prog.save(tmp, external_data=False)
    m = onnx.load(tmp)
    for p in (tmp, tmp + ".data"):
        if os.path.exists(p):
            os.remove(p)
    real = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    if real != opset:
        raise RuntimeError(f"exporter produced opset {real}, wanted {opset}")
    for node in m.graph.node:  # strip dynamo debug metadata / doc strings
        node.doc_string = ""
        del node.metadata_props[:]
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        del vi.metadata_props[:]
    for init in m.graph.initializer:
        del init.metadata_props[:]
    onnx.checker.check_model(m, full_check=True)
    onnx.save_model(m, path, save_as_external_data=False)
    return m


def run_ort(path, x):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def run_torch(model, x):
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + 1])).numpy() for i in range(len(x))])


def margins(pred):
    s = np.sort(pred, axis=-1)
    m = s[:, -1] - s[:, -2]
    return dict(top1_margin_min=float(m.min()), top1_margin_p05=float(np.percentile(m, 5)),
                top1_margin_median=float(np.median(m)))


def build(idx, spec, out_dir, steps):
    name, task = spec["name"], spec["task"]
    fdir = os.path.join(out_dir, name)
    os.makedirs(fdir, exist_ok=True)
    t0 = time.time()
    make = TASK_DATA[task]
    base = {"seq": 5000, "img": 6000}[task]
    x_tr, y_tr = make(N_TRAIN, base + 1)
    x_cal, _ = make(N_CALIB, base + 2)
    x_te, y_te = make(N_TEST, base + 3)

    torch.manual_seed(300 + idx)
    model = spec["make"]()
    n_steps = spec.get("steps", steps)
    final_loss = train(model, x_tr, y_tr, n_steps, seed=400 + idx)
    ref = run_torch(model, x_te)
    acc = float((ref.argmax(-1) == y_te).mean())

    path = os.path.join(fdir, "model.onnx")
    attempts, used = [], None
    for exporter, opset in spec["export"]:
        try:
            m = export_onnx(model, torch.from_numpy(x_te[:1]), path, exporter, opset)
            got = run_ort(path, x_te)
            diff = float(np.abs(got - ref).max())
            if not np.isfinite(diff) or diff > 1e-4:
                raise RuntimeError(f"onnxruntime mismatch: max abs diff {diff:g}")
            attempts.append(dict(exporter=exporter, opset=opset, ok=True))
            used = (exporter, opset, m, got, diff)
            break
        except Exception as e:
            msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:400]
            attempts.append(dict(exporter=exporter, opset=opset, ok=False, error=msg))
            print(f"  [{name}] export {exporter}/opset{opset} FAILED: {msg}", flush=True)
            if os.environ.get("GEN_VERBOSE"):
                traceback.print_exc()
    if used is None:
        raise RuntimeError(f"{name}: all export candidates failed: {attempts}")
    exporter, opset, m, got, diff = used
    np.save(os.path.join(fdir, "calib.npy"), x_cal)
    np.save(os.path.join(fdir, "test.npy"), x_te)
    np.save(os.path.join(fdir, "labels.npy"), y_te)
    meta = dict(
        exporter=exporter, opset=opset, arch=spec["arch"], input_shape=[1, *x_te.shape[1:]],
        task="classification", float_test_accuracy=acc, metric="top1_accuracy", ops=onnx_ops(m),
        input_name=m.graph.input[0].name, output_name=m.graph.output[0].name, output_shape=[1, N_CLASSES],
        input_dtype="float32", weight_dtype="float32", output_is_softmax=False, num_classes=N_CLASSES,
        expected_ir=dict(attention=spec["attention"], layernorm=spec["layernorm"]),
        onnxruntime_test_accuracy=float((got.argmax(-1) == y_te).mean()),
        onnxruntime_vs_torch_max_abs_diff=diff, export_attempts=attempts, train_steps=n_steps,
        train_final_loss=final_loss,
        data_files=dict(calib="calib.npy", test="test.npy", labels="labels.npy"),
        versions=dict(torch=torch.__version__, onnx=__import__("onnx").__version__,
                      onnxscript=_version("onnxscript"), onnxruntime=_version("onnxruntime"),
                      numpy=np.__version__),
        **margins(ref),
    )
    with open(os.path.join(fdir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    meta.update(_size=os.path.getsize(path), _secs=time.time() - t0, _name=name)
    return meta


def _version(mod):
    try:
        return __import__(mod).__version__
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--only", default="")
    ap.add_argument("--steps", type=int, default=150)
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    rows, failed = [], []
    for idx, spec in enumerate(FIXTURES):
        if only and spec["name"] not in only:
            continue
        print(f"== {spec['name']}", flush=True)
        try:
            rows.append(build(idx, spec, args.out, args.steps))
        except Exception:
            traceback.print_exc()
            failed.append(spec["name"])
    print()
    for r in rows:
        print(f"{r['_name']:26s} {r['exporter']:6s} {r['opset']:3d} acc {r['float_test_accuracy']:.3f} "
              f"ort {r['onnxruntime_test_accuracy']:.3f} diff {r['onnxruntime_vs_torch_max_abs_diff']:.1e} "
              f"{r['_size']:7d} B {r['_secs']:5.1f} s  {','.join(r['ops'])}")
    if failed:
        print("FAILED:", ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
