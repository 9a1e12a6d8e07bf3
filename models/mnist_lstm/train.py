#!/usr/bin/env python3
"""Train TFLM's `mnist_lstm` architecture on MNIST (the first 8,000 test-set images in
../shared/data/mnist) and quantize it with Kinglet.

    /work/venv/bin/python models/mnist_lstm/train.py [--data ../shared/data/mnist] [--kinglet target/debug/kinglet]

Architecture (exactly TFLM's `mnist_lstm` example): input [1, 28, 28] (28 steps of 28 features, one
image row per step) -> nn.LSTM(28, 20, batch_first=True) -> all 28 step outputs reshaped to 560 ->
Linear(560, 10) -> softmax. 113,120 MACs per inference (LSTM 28 x 4 x 20 x (28 + 20), FC 560 x 10).

Split (ours, as models/vit_mnist): images 0-6399 of the 8,000 train, images 6400-7999 test. Input
float32 = pixel / 255. Writes model.onnx, calib.npy, test.npy, labels.npy, model.kgl, meta.json into
this folder (README.md is written by hand from meta.json). Run from anywhere; relative paths are
resolved against the repository root.
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


class MnistLstm(nn.Module):
    """LSTM(28 -> 20) over the 28 rows, every step's output flattened to 560, Linear(560 -> 10),
    softmax (the exported model ends in Softmax; training uses the logits)."""

    def __init__(self, hidden: int = 20):
        super().__init__()
        self.lstm = nn.LSTM(28, hidden, batch_first=True)
        self.fc = nn.Linear(28 * hidden, 10)
        self.softmax = True

    def logits(self, x):
        y, _ = self.lstm(x)
        return self.fc(y.reshape(y.shape[0], -1))

    def forward(self, x):
        z = self.logits(x)
        return torch.softmax(z, dim=-1) if self.softmax else z


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/mnist")
    p.add_argument("--kinglet", default="target/debug/kinglet")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--batch", type=int, default=64)
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
    x_tr, y_tr, x_te, y_te = imgs[:N_TRAIN], labs[:N_TRAIN], imgs[N_TRAIN:], labs[N_TRAIN:]

    model = MnistLstm()
    n_params = tfutil.parameter_count(model)
    print(f"parameters {n_params}", flush=True)
    steps_per_epoch = math.ceil(N_TRAIN / args.batch)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch,
                                                pct_start=0.2)
    gen = torch.Generator().manual_seed(args.seed)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    model.softmax = False
    for epoch in range(args.epochs):
        model.train()
        te = time.time()
        perm = torch.randperm(N_TRAIN, generator=gen)
        tot = 0.0
        for b in range(0, N_TRAIN, args.batch):
            j = perm[b:b + args.batch]
            loss = loss_fn(model(xt[j]), yt[j])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += loss.item() * len(j)
        acc = float((tfutil.run_torch(model, x_te).argmax(1) == y_te).mean())
        history.append(dict(epoch=epoch + 1, loss=tot / N_TRAIN, test_acc=acc))
        print(f"epoch {epoch + 1:2d} loss {tot / N_TRAIN:.4f} test {acc:.4f} ({time.time() - te:.0f} s)", flush=True)
    train_seconds = time.time() - t_start
    model.softmax = True
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
    q = tfutil.kinglet_quantize(args.kinglet, onnx_path, OUT / "calib.npy", kgl)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "test_all.npy", x_te.astype(np.float32))
        np.save(Path(tmp) / "labels_all.npy", y_te.astype(np.int64))
        v_all = tfutil.kinglet_validate(args.kinglet, onnx_path, kgl, Path(tmp) / "test_all.npy",
                                        labels=Path(tmp) / "labels_all.npy")
    v_500 = tfutil.kinglet_validate(args.kinglet, onnx_path, kgl, OUT / "test.npy", labels=OUT / "labels.npy")
    print(json.dumps(v_all), flush=True)

    meta = dict(
        task="classification", dataset="mnist (first 8,000 test-set images)",
        arch="LSTM(28->20, batch_first) over 28 rows -> all 28 outputs reshaped to 560 -> Linear(560->10) -> softmax "
             "(TFLM's mnist_lstm example)",
        macs=28 * 4 * 20 * (28 + 20) + 560 * 10,
        parameters=n_params, exporter="legacy", opset=17, ops=ops, input_name="input", output_name="output",
        input_shape=[1, 28, 28], output_shape=[1, 10], output_is_softmax=True, input_scaling="pixel / 255",
        split=dict(train="images 0-6399", test="images 6400-7999", test_committed="images 6400-6899 (test.npy)"),
        float_test_accuracy_torch=test_acc, float_train_accuracy_torch=train_acc,
        onnxruntime_test_accuracy=ort_acc, onnxruntime_vs_torch_max_abs_diff=ort_diff,
        kinglet_validate_all_1600=v_all, kinglet_validate_committed_500=v_500, kinglet_quantize=q,
        calib_samples=N_CALIB, hparams=vars(args), history=history, train_seconds=round(train_seconds),
        attribution=ATTRIBUTION,
        versions=dict(torch=torch.__version__, numpy=np.__version__, onnx=__import__("onnx").__version__),
    )
    (OUT / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"done in {time.time() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
