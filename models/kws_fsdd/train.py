#!/usr/bin/env python3
"""Train a spoken-digit GRU on the Free Spoken Digit Dataset: GRU(40->48) -> last step -> Linear(48->10).

    venv/bin/python models/kws_fsdd/train.py [--data DIR] [--kinglet PATH] [--epochs N] ...

A second keyword set for the same front-end and runtime as models/kws_gru. FSDD is 8 kHz; the
front-end (and a device's microphone path) is 16 kHz, so each recording is resampled 8 -> 16 kHz
here (zero-stuffing and a 127-tap Kaiser-windowed sinc low-pass at 3.8 kHz), centred in a 1 s
clip (recordings longer than 1 s lose their ends equally), written as a 16-bit WAV, and its
features are computed by `kinglet features` like every other model's.

Split: FSDD's official one: take index 0-4 of every digit and speaker is test (300 clips), 5-49
train; of the training takes, 5-9 are held out for validation (early stopping), 10-49 train.
All six speakers appear in every split (FSDD's protocol); the README also reports a
leave-one-speaker-out check.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
import kws  # noqa: E402

DIGITS = [str(d) for d in range(10)]
OUT = kws.REPO / "models" / "kws_fsdd"
ATTRIBUTION = ("Jackson, Z. et al., Free Spoken Digit Dataset "
               "(github Jakobovski/free-spoken-digit-dataset, commit 26eb9aa)")


def lowpass_taps(n: int = 127, cutoff: float = 3800.0, fs: float = 16000.0) -> np.ndarray:
    """Kaiser-windowed sinc, gain 2 (zero-stuffing halves the passband amplitude)."""
    t = np.arange(n) - (n - 1) / 2
    h = 2 * cutoff / fs * np.sinc(2 * cutoff / fs * t) * np.kaiser(n, 8.0)
    return 2.0 * h / h.sum()


def to_16k_one_second(pcm8: np.ndarray, taps: np.ndarray) -> np.ndarray:
    up = np.zeros(2 * len(pcm8))
    up[::2] = pcm8
    y = np.convolve(up, taps, mode="same")
    out = np.zeros(16000)
    if len(y) >= 16000:
        start = (len(y) - 16000) // 2
        out[:] = y[start:start + 16000]
    else:
        start = (16000 - len(y)) // 2
        out[start:start + len(y)] = y
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def read_wav8(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def shift_gain(pcm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Time shift +-150 ms (zero fill) and gain +-6 dB."""
    x = kws.shift_zero_fill(pcm.astype(np.float64), int(rng.integers(-2400, 2401)))
    x *= 10 ** (rng.uniform(-6, 6) / 20)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/fsdd", help="FSDD folder (with recordings/)")
    p.add_argument("--kinglet", default=None, help="kinglet binary (default: cargo run --release)")
    p.add_argument("--hidden", type=int, default=48)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--aug-copies", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    t0 = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    cmd = kws.kinglet_command(args.kinglet)
    data = Path(args.data)
    if not data.is_absolute():
        data = kws.REPO / data
    files = sorted((data / "recordings").glob("*.wav"))
    assert len(files) == 3000, f"expected FSDD's 3,000 recordings in {data}/recordings, found {len(files)}"

    taps = lowpass_taps()
    work = Path(tempfile.mkdtemp(prefix="kinglet-fsdd-"))
    split_of = {}
    for f in files:
        digit, speaker, take = f.stem.split("_")
        split = "test" if int(take) < 5 else ("val" if int(take) < 10 else "train")
        split_of[f.name] = (split, speaker)
        pcm = to_16k_one_second(read_wav8(f), taps)
        d = work / "orig" / digit
        d.mkdir(parents=True, exist_ok=True)
        kws.write_wav(d / f.name, pcm)
        if split == "train":
            a = work / "aug" / digit
            a.mkdir(parents=True, exist_ok=True)
            for c in range(args.aug_copies):
                kws.write_wav(a / f"{f.stem}_aug{c}.wav", shift_gain(pcm, rng))

    def features(root: Path, name: str):
        x_path, y_path, f_path = work / f"{name}_x.npy", work / f"{name}_y.npy", work / f"{name}_f.txt"
        full = cmd + ["features", str(root), "--classes", ",".join(DIGITS), "-o", str(x_path),
                      "--labels-out", str(y_path), "--files-out", str(f_path)]
        print("+", " ".join(full), flush=True)
        import subprocess
        subprocess.run(full, check=True, cwd=kws.REPO)
        return np.load(x_path), np.load(y_path), [Path(s).name for s in f_path.read_text().splitlines()]

    x_all, y_all, names = features(work / "orig", "orig")
    x_aug, y_aug, _ = features(work / "aug", "aug")
    splits = np.array([split_of[n][0] for n in names])
    speakers = np.array([split_of[n][1] for n in names])
    idx = {s: np.nonzero(splits == s)[0] for s in ("train", "val", "test")}
    x_train = np.concatenate([x_all[idx["train"]], x_aug])
    y_train = np.concatenate([y_all[idx["train"]], y_aug])
    mean = x_all[idx["train"]].reshape(-1, kws.BANDS).mean(0)
    std = x_all[idx["train"]].reshape(-1, kws.BANDS).std(0) + 1e-3

    def train(x_tr, y_tr, x_val, y_val, epochs):
        model = kws.KwsRnn("gru", args.hidden, mean, std, n_classes=10)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
        batch = 64
        steps = epochs * math.ceil(len(y_tr) / batch)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
        gen = torch.Generator().manual_seed(args.seed)
        xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
        best = (-1.0, None, 0)
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(yt), generator=gen)
            for i in range(0, len(yt), batch):
                j = perm[i:i + batch]
                xb = kws.spec_augment((xt[j] - model.mean) / model.std, gen)
                model.normalise = False
                loss = loss_fn(model(xb), yt[j])
                model.normalise = True
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            val = kws.accuracy(model, x_val, y_val)
            if val > best[0]:
                best = (val, {k: v.clone() for k, v in model.state_dict().items()}, epoch)
            print(f"epoch {epoch + 1:3d}  val {val:.4f}  ({time.time() - t0:.0f} s)", flush=True)
        model.load_state_dict(best[1])
        return model.eval(), best[2] + 1

    model, best_epoch = train(x_train, y_train, x_all[idx["val"]], y_all[idx["val"]], args.epochs)
    acc = {s: kws.accuracy(model, x_all[idx[s]], y_all[idx[s]]) for s in ("train", "val", "test")}
    print(f"best epoch {best_epoch}: {acc}", flush=True)

    # Leave one speaker out (theo): a speaker the model never heard, same recipe, original clips
    # of the other five speakers' training and validation takes only.
    held = "theo"
    tr = np.nonzero((splits != "test") & (speakers != held))[0]
    te = np.nonzero(speakers == held)[0]
    va = np.nonzero((splits == "val") & (speakers != held))[0]
    loso, _ = train(x_all[tr], y_all[tr], x_all[va], y_all[va], args.epochs)
    loso_acc = kws.accuracy(loso, x_all[te], y_all[te])
    print(f"leave-one-speaker-out ({held}, {len(te)} clips): {loso_acc:.4f}", flush=True)

    OUT.mkdir(parents=True, exist_ok=True)
    folded = model.folded()
    ops = kws.export_onnx(folded, OUT / "model.onnx")
    ort = kws.onnxruntime_logits(OUT / "model.onnx", x_all[idx["test"]])
    with torch.no_grad():
        pt = folded(torch.from_numpy(x_all[idx["test"]])).numpy()
    calib = x_all[rng.choice(idx["train"], 300, replace=False)]
    np.save(OUT / "calib.npy", calib)
    np.save(OUT / "test.npy", x_all[idx["test"]])
    np.save(OUT / "labels.npy", y_all[idx["test"]].astype(np.int64))
    (OUT / "labels.txt").write_text("\n".join(DIGITS) + "\n")
    meta = dict(
        arch=f"GRU(40->{args.hidden}) -> out[:, -1] -> Linear({args.hidden}->10)",
        parameters=kws.parameter_count(folded), exporter="legacy", opset=17, ops=ops,
        input_name="input", output_name="output", input_shape=[1, kws.FRAMES, kws.BANDS], output_shape=[1, 10],
        classes=DIGITS, split="FSDD official: take 0-4 test, 5-9 validation, 10-49 train (all 6 speakers)",
        clips=dict(train=int(len(idx["train"])), val=int(len(idx["val"])), test=int(len(idx["test"])),
                   train_with_augmentation=int(len(y_train))),
        accuracy_float_pytorch=acc, best_epoch=best_epoch, epochs=args.epochs, seed=args.seed,
        leave_one_speaker_out=dict(speaker=held, clips=int(len(te)), accuracy_float_pytorch=loso_acc),
        onnxruntime_max_abs_diff=float(np.abs(ort - pt).max()),
        onnxruntime_test_accuracy=float((ort.argmax(1) == y_all[idx["test"]]).mean()),
        resampling="8 -> 16 kHz, zero-stuffing + 127-tap Kaiser(8) sinc low-pass at 3.8 kHz, centred in 1 s",
        data="../shared/data/fsdd", licence="CC BY-SA 4.0", attribution=ATTRIBUTION,
        torch=torch.__version__, seconds=round(time.time() - t0),
    )
    (OUT / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
