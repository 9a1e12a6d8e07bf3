#!/usr/bin/env python3
"""Train a tiny ViT on MNIST (the first 8,000 test-set images in ../shared/data/mnist).

    /work/venv/bin/python models/vit_mnist/train.py [--data ../shared/data/mnist] [--kinglet target/debug/kinglet]

Split (ours): images 0-6399 of the 8,000 train, images 6400-7999 test. Input [1, 1, 28, 28] float32
= pixel / 255. Writes model.onnx, calib.npy, test.npy, labels.npy, model.kgl, meta.json, README.md
into this folder. Run from anywhere; relative paths are resolved against the repository root.
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
import tfutil  # noqa: E402

OUT = Path(__file__).resolve().parent
N_TRAIN, N_TEST_COMMIT, N_CALIB = 6400, 500, 200
ATTRIBUTION = "LeCun, Y., Cortes, C., Burges, C. MNIST database"


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class ViT(nn.Module):
    """Conv2d(1, d, k=p, s=p) patches -> + learned pos-emb -> pre-norm GELU encoder blocks ->
    final LayerNorm -> mean over tokens -> Linear(d -> 10)."""

    def __init__(self, d: int, heads: int, layers: int, mlp: int, patch: int):
        super().__init__()
        self.embed = nn.Conv2d(1, d, kernel_size=patch, stride=patch)
        n_tok = (28 // patch) ** 2
        self.pos = nn.Parameter(0.02 * torch.randn(1, n_tok, d))
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=mlp, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        h = self.embed(x).flatten(2).transpose(1, 2)
        h = self.enc(h + self.pos)
        return self.head(h.mean(dim=1))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random affine: rotation +-12 deg, scale 0.9-1.1, translation +-2.5 px (zero fill)."""
    b = x.shape[0]
    ang = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(12)
    sc = 0.9 + 0.2 * torch.rand(b, generator=gen)
    tr = (torch.rand(b, 2, generator=gen) * 2 - 1) * (2.5 / 14)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, tr[:, 0]], 1), torch.stack([sin, cos, tr[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/mnist")
    p.add_argument("--kinglet", default="target/debug/kinglet")
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--mlp", type=int, default=128)
    p.add_argument("--patch", type=int, default=7, choices=[4, 7])
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    t_start = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    data = tfutil.resolve(args.data)
    imgs = read_idx(data / "t10k-first8000-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    labs = read_idx(data / "t10k-first8000-labels-idx1-ubyte.gz").astype(np.int64)
    assert imgs.shape == (8000, 28, 28) and labs.shape == (8000,)
    x = imgs[:, None]
    x_tr, y_tr, x_te, y_te = x[:N_TRAIN], labs[:N_TRAIN], x[N_TRAIN:], labs[N_TRAIN:]

    model = ViT(args.d, args.heads, args.layers, args.mlp, args.patch)
    n_params = tfutil.parameter_count(model)
    print(f"parameters {n_params}", flush=True)
    batch = 128
    steps_per_epoch = math.ceil(N_TRAIN / batch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch,
                                                pct_start=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    history = []
    for epoch in range(args.epochs):
        model.train()
        te = time.time()
        perm = torch.randperm(N_TRAIN, generator=gen)
        tot = 0.0
        for b in range(0, N_TRAIN, batch):
            j = perm[b:b + batch]
            loss = loss_fn(model(augment(xt[j], gen)), yt[j])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += loss.item() * len(j)
        acc = float((tfutil.run_torch(model, x_te).argmax(1) == y_te).mean()) if (epoch % 5 == 4 or epoch == args.epochs - 1) else None
        history.append(dict(epoch=epoch + 1, loss=tot / N_TRAIN, test_acc=acc))
        print(f"epoch {epoch + 1:2d} loss {tot / N_TRAIN:.4f} {'' if acc is None else f'test {acc:.4f}'} "
              f"({time.time() - te:.0f} s)", flush=True)
    train_seconds = time.time() - t_start
    model.eval()
    ref = tfutil.run_torch(model, x_te)
    test_acc = float((ref.argmax(1) == y_te).mean())
    train_acc = float((tfutil.run_torch(model, x_tr).argmax(1) == y_tr).mean())

    onnx_path = OUT / "model.onnx"
    ops = tfutil.export_onnx(model, torch.from_numpy(x_te[:1]), onnx_path, "legacy", 17)
    got = tfutil.run_ort(onnx_path, x_te)
    ort_diff = float(np.abs(got - ref).max())
    ort_acc = float((got.argmax(1) == y_te).mean())
    print(f"onnxruntime acc {ort_acc:.4f}, max |diff| {ort_diff:.2e}", flush=True)
    assert ort_diff < 1e-3

    rng = np.random.default_rng(args.seed + 1)
    calib_idx = np.sort(rng.choice(N_TRAIN, size=N_CALIB, replace=False))
    np.save(OUT / "calib.npy", x_tr[calib_idx].astype(np.float32))
    np.save(OUT / "test.npy", x_te[:N_TEST_COMMIT].astype(np.float32))
    np.save(OUT / "labels.npy", y_te[:N_TEST_COMMIT].astype(np.int64))

    kgl = OUT / "model.kgl"
    q = tfutil.kinglet_quantize(args.kinglet, onnx_path, OUT / "calib.npy", kgl,
                                calibration="mse")  # docs/decisions.md, Calibration
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "test_all.npy", x_te.astype(np.float32))
        np.save(Path(tmp) / "labels_all.npy", y_te.astype(np.int64))
        v_all = tfutil.kinglet_validate(args.kinglet, onnx_path, kgl, Path(tmp) / "test_all.npy",
                                        labels=Path(tmp) / "labels_all.npy")
    v_500 = tfutil.kinglet_validate(args.kinglet, onnx_path, kgl, OUT / "test.npy", labels=OUT / "labels.npy")
    print(json.dumps(v_all), flush=True)

    meta = dict(
        task="classification", dataset="mnist (first 8,000 test-set images)",
        arch=f"Conv2d(1,{args.d},k{args.patch},s{args.patch}) patches ({(28 // args.patch) ** 2}) + learned pos-emb "
             f"-> {args.layers} pre-norm GELU encoder blocks ({args.heads} heads, MLP {args.mlp}) -> LayerNorm "
             f"-> mean over tokens -> Linear({args.d}->10)",
        parameters=n_params, exporter="legacy", opset=17, ops=ops, input_name="input", output_name="output",
        input_shape=[1, 1, 28, 28], output_shape=[1, 10], output_is_softmax=False, input_scaling="pixel / 255",
        split=dict(train="images 0-6399", test="images 6400-7999", test_committed="images 6400-6899 (test.npy)"),
        float_test_accuracy_torch=test_acc, float_train_accuracy_torch=train_acc,
        onnxruntime_test_accuracy=ort_acc, onnxruntime_vs_torch_max_abs_diff=ort_diff,
        kinglet_validate_all_1600=v_all, kinglet_validate_committed_500=v_500, kinglet_quantize=q,
        calib_samples=N_CALIB, hparams=vars(args), history=history, train_seconds=round(train_seconds),
        versions=dict(torch=torch.__version__, numpy=np.__version__, onnx=__import__("onnx").__version__),
    )
    (OUT / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"done in {time.time() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
