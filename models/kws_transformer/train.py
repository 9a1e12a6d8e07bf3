#!/usr/bin/env python3
"""Train a KWT-style keyword transformer on the Speech Commands features of models/kws_gru.

    /work/venv/bin/python models/kws_transformer/train.py [--data ../shared/data/speech_commands]
        [--kinglet target/release/kinglet] [--work DIR]

Features, speaker split, waveform augmentation (4 copies: shift, gain, background noise) and
SpecAugment are exactly those of models/kws_gru (models/common/kws.py); the features come from
`kinglet features` (the runtime's Rust front-end). With `--work DIR` the computed features are kept
there and reused on the next run.

Model: (x - mean) / std folded into Linear(40 -> 64) per frame -> [CLS; x] + learned pos-emb
(50 tokens) -> 2 pre-norm GELU encoder blocks (4 heads, MLP 128) -> LayerNorm -> CLS ->
Linear(64 -> 12). Input [1, 49, 40] raw log-mel frames.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
import kws  # noqa: E402
import tfutil  # noqa: E402

OUT = Path(__file__).resolve().parent
CLASSES, FRAMES, BANDS = kws.CLASSES, kws.FRAMES, kws.BANDS


class KWT(nn.Module):
    def __init__(self, d, heads, layers, mlp, mean, std):
        super().__init__()
        self.embed = nn.Linear(BANDS, d)
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, d))
        self.pos = nn.Parameter(0.02 * torch.randn(1, FRAMES + 1, d))
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=mlp, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        self.head = nn.Linear(d, len(CLASSES))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.normalise = True

    def forward(self, x):
        if self.normalise:
            x = (x - self.mean) / self.std
        h = self.embed(x)
        h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)
        h = self.enc(h + self.pos)
        return self.head(h[:, 0])

    def folded(self) -> "KWT":
        """Copy with the normalisation folded into the embedding: W' = W / std, b' = b - W (mean / std)."""
        m = KWT(self.embed.out_features, self.enc.layers[0].self_attn.num_heads, len(self.enc.layers),
                self.enc.layers[0].linear1.out_features, self.mean.numpy(), self.std.numpy())
        m.load_state_dict(self.state_dict())
        with torch.no_grad():
            w = self.embed.weight.double()
            inv = 1.0 / self.std.double()
            m.embed.weight.copy_((w * inv).float())
            m.embed.bias.copy_((self.embed.bias.double() - w @ (self.mean.double() * inv)).float())
        m.normalise = False
        return m.eval()


def features(cmd, data: Path, work: Path, copies: int, seed: int):
    """Original-clip and augmented-clip features via `kinglet features`, cached in `work`."""
    stamp = work / f"aug_{copies}_{seed}.ok"
    if (work / "orig_x.npy").exists() and stamp.exists():
        load = lambda n: (np.load(work / f"{n}_x.npy"), np.load(work / f"{n}_y.npy"),
                          (work / f"{n}_speakers.txt").read_text().splitlines(),
                          (work / f"{n}_files.txt").read_text().splitlines())
        print(f"reusing cached features in {work}", flush=True)
        return load("orig"), load("aug")
    orig = kws.run_features(cmd, data, work, "orig")
    x_all, y_all, speakers, files = orig
    split = np.array([kws.split_of(s) for s in speakers])
    tr = np.flatnonzero(split == "train")
    silence = CLASSES.index("_silence_")
    train_files = [files[i] for i in tr]
    noise_files = [files[i] for i in tr if y_all[i] == silence]
    aug_dir = kws.make_augmented(train_files, y_all[tr], noise_files, copies, seed + 1, work)
    aug = kws.run_features(cmd, aug_dir, work, "aug")
    shutil.rmtree(aug_dir)
    stamp.write_text("")
    return orig, aug


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/speech_commands")
    p.add_argument("--kinglet", default="target/release/kinglet",
                   help="kinglet binary for `features`, `quantize`, `validate`")
    p.add_argument("--work", default=None, help="feature cache folder (default: a temporary one)")
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--mlp", type=int, default=128)
    p.add_argument("--epochs", type=int, default=14)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--aug-copies", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    t_start = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    data = tfutil.resolve(args.data)
    kinglet = str(tfutil.resolve(args.kinglet))
    work_ctx = tempfile.TemporaryDirectory(prefix="kwt-") if args.work is None else None
    work = Path(args.work) if args.work else Path(work_ctx.name)
    work.mkdir(parents=True, exist_ok=True)

    (x_all, y_all, speakers, files), (x_aug, y_aug, _, _) = features([kinglet], data, work, args.aug_copies,
                                                                     args.seed)
    split = np.array([kws.split_of(s) for s in speakers])
    idx = {s: np.flatnonzero(split == s) for s in ("train", "val", "test")}
    sizes = {s: dict(clips=int(len(i)), speakers=int(len({speakers[j] for j in i}))) for s, i in idx.items()}
    print("split by speaker:", json.dumps(sizes), flush=True)
    x_train = np.concatenate([x_all[idx["train"]], x_aug])
    y_train = np.concatenate([y_all[idx["train"]], y_aug])
    x_val, y_val = x_all[idx["val"]], y_all[idx["val"]]
    x_test, y_test = x_all[idx["test"]], y_all[idx["test"]]
    mean = x_train.mean(axis=(0, 1))
    std = x_train.std(axis=(0, 1)) + 1e-3
    t_train = time.time()

    model = KWT(args.d, args.heads, args.layers, args.mlp, mean, std)
    n_params = tfutil.parameter_count(model)
    print(f"parameters {n_params}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    batch = 128
    steps = args.epochs * math.ceil(len(y_train) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    best = (-1.0, None, -1)
    history = []
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(yt), generator=gen)
        total = 0.0
        for b in range(0, len(perm), batch):
            j = perm[b:b + batch]
            xb = kws.spec_augment((xt[j] - model.mean) / model.std, gen)
            model.normalise = False
            loss = loss_fn(model(xb), yt[j])
            model.normalise = True
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(j)
        val = kws.accuracy(model, x_val, y_val)
        if val >= best[0]:
            best = (val, {k: v.clone() for k, v in model.state_dict().items()}, epoch)
        history.append(dict(epoch=epoch + 1, loss=total / len(yt), val_acc=val))
        print(f"epoch {epoch + 1:3d}  loss {total / len(yt):.4f}  val {val:.4f}  ({time.time() - t_train:.0f} s)",
              flush=True)
    train_seconds = time.time() - t_train
    model.load_state_dict(best[1])
    model.eval()
    val_acc = kws.accuracy(model, x_val, y_val)
    test_acc = kws.accuracy(model, x_test, y_test)
    train_acc = kws.accuracy(model, x_all[idx["train"]], y_all[idx["train"]])
    print(f"best epoch {best[2] + 1}: train {train_acc:.4f} val {val_acc:.4f} test {test_acc:.4f}", flush=True)

    folded = model.folded()
    a = tfutil.run_torch(model, x_test)
    b = tfutil.run_torch(folded, x_test)
    fold_diff = float(np.abs(a - b).max())
    onnx_path = OUT / "model.onnx"
    ops = tfutil.export_onnx(folded, torch.from_numpy(x_test[:1]), onnx_path, "legacy", 17)
    got = tfutil.run_ort(onnx_path, x_test)
    ort_diff = float(np.abs(got - b).max())
    ort_acc = float((got.argmax(1) == y_test).mean())
    print(f"fold max |diff| {fold_diff:.2e}, onnxruntime max |diff| {ort_diff:.2e}, acc {ort_acc:.4f}", flush=True)
    assert fold_diff < 1e-3 and ort_diff < 1e-3

    # Same calibration choice, test set and labels as models/kws_gru (kws.main step 5).
    rng = np.random.default_rng(args.seed + 2)
    calib_idx = np.sort(rng.choice(idx["train"], size=min(300, len(idx["train"])), replace=False))
    np.save(OUT / "calib.npy", x_all[calib_idx].astype(np.float32))
    np.save(OUT / "test.npy", x_test.astype(np.float32))
    np.save(OUT / "labels.npy", y_test.astype(np.int64))
    (OUT / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    gru_dir = OUT.parent / "kws_gru"
    same_as_gru = None
    if (gru_dir / "test.npy").exists():
        gx, gy = np.load(gru_dir / "test.npy"), np.load(gru_dir / "labels.npy")
        same_as_gru = bool(gx.shape == x_test.shape and np.array_equal(gx, x_test) and np.array_equal(gy, y_test))
        print(f"test.npy/labels.npy identical to models/kws_gru: {same_as_gru}", flush=True)

    kgl = OUT / "model.kgl"
    q = tfutil.kinglet_quantize(kinglet, onnx_path, OUT / "calib.npy", kgl,
                                calibration="mse")  # docs/decisions.md, Calibration
    v = tfutil.kinglet_validate(kinglet, onnx_path, kgl, OUT / "test.npy", labels=OUT / "labels.npy")
    print(json.dumps(v), flush=True)
    pred = got.argmax(1)
    per_class = {c: float((pred[y_test == k] == k).mean()) for k, c in enumerate(CLASSES)}
    meta = dict(
        arch=f"Linear({BANDS}->{args.d}) per frame (normalisation folded in) -> [CLS; x] + learned pos-emb "
             f"({FRAMES + 1} tokens) -> {args.layers} pre-norm GELU encoder blocks ({args.heads} heads, MLP "
             f"{args.mlp}) -> LayerNorm -> CLS -> Linear({args.d}->12)",
        parameters=tfutil.parameter_count(folded), exporter="legacy", opset=17, ops=ops, input_name="input",
        output_name="output", input_shape=[1, FRAMES, BANDS], output_shape=[1, len(CLASSES)],
        output_is_softmax=False, classes=CLASSES, split=sizes,
        split_rule="sha256(speaker) mod 100: <80 train, <90 val, else test (as models/kws_gru)",
        test_set_identical_to_kws_gru=same_as_gru,
        float_test_accuracy=test_acc, float_val_accuracy=val_acc, float_train_accuracy=train_acc,
        onnxruntime_test_accuracy=ort_acc, onnxruntime_vs_torch_max_abs_diff=ort_diff, fold_max_abs_diff=fold_diff,
        per_class_test_accuracy=per_class, best_epoch=best[2] + 1, history=history,
        train_samples_with_augmentation=int(len(y_train)), calib_samples=int(len(calib_idx)),
        test_samples=int(len(y_test)), kinglet_validate=v, kinglet_quantize=q, hparams=vars(args),
        train_seconds=round(train_seconds), total_seconds=round(time.time() - t_start),
        versions=dict(torch=torch.__version__, numpy=np.__version__, onnx=__import__("onnx").__version__),
    )
    (OUT / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"done in {time.time() - t_start:.0f} s", flush=True)
    if work_ctx is not None:
        work_ctx.cleanup()


if __name__ == "__main__":
    main()
