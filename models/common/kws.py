"""Shared keyword-spotting training code for models/kws_gru and models/kws_lstm.

Features come from the `kinglet features` CLI (the runtime's own front-end, decision 7 in
the design), never from a Python re-implementation: training, calibration, validation and
the device see the same numbers. Waveform augmentation is done here in numpy, the augmented
WAVs are written to a scratch folder, and their features are again computed by the CLI.

Data: ../shared/data/speech_commands (the Speech Commands v0.02 test set subset, 12 classes,
250 clips each), split by speaker with a fixed hash: 80 % of speakers train, 10 % validation,
10 % test. `_silence_` clips have no speaker id; each counts as its own "speaker".
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

CLASSES = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
           "_silence_", "_unknown_"]
FRAMES, BANDS = 49, 40
REPO = Path(__file__).resolve().parents[2]
ATTRIBUTION = ("Warden, P. (2018). Speech Commands: A Dataset for Limited-Vocabulary Speech "
               "Recognition. arXiv:1804.03209")


# ----------------------------------------------------------------------------------------------
# Features through the CLI
# ----------------------------------------------------------------------------------------------
def kinglet_command(kinglet: str | None) -> list[str]:
    if kinglet:
        return [kinglet]
    return ["cargo", "run", "--release", "-q", "-p", "kinglet-quantizer", "--"]


def run_features(cmd: list[str], data_dir: Path, out_dir: Path, name: str):
    """`kinglet features DATA_DIR --classes ...` -> (X [N,49,40], y [N], speakers, files)."""
    x_path, y_path = out_dir / f"{name}_x.npy", out_dir / f"{name}_y.npy"
    s_path, f_path = out_dir / f"{name}_speakers.txt", out_dir / f"{name}_files.txt"
    full = cmd + ["features", str(data_dir), "--classes", ",".join(CLASSES), "-o", str(x_path),
                  "--labels-out", str(y_path), "--speakers-out", str(s_path),
                  "--files-out", str(f_path)]
    print("+", " ".join(full), flush=True)
    subprocess.run(full, check=True, cwd=REPO)
    x = np.load(x_path)
    y = np.load(y_path)
    speakers = s_path.read_text().splitlines()
    files = f_path.read_text().splitlines()
    assert x.shape == (len(y), FRAMES, BANDS) and x.dtype == np.float32, x.shape
    assert len(speakers) == len(files) == len(y)
    return x, y, speakers, files


# ----------------------------------------------------------------------------------------------
# Split by speaker
# ----------------------------------------------------------------------------------------------
def split_of(speaker: str) -> str:
    """Fixed hash-based assignment: sha256(speaker) mod 100 -> <80 train, <90 val, else test."""
    h = int.from_bytes(hashlib.sha256(speaker.encode()).digest()[:8], "little") % 100
    return "train" if h < 80 else ("val" if h < 90 else "test")


# ----------------------------------------------------------------------------------------------
# Waveform augmentation (features of the results still come from the CLI)
# ----------------------------------------------------------------------------------------------
def read_wav(path: str) -> np.ndarray:
    with wave.open(path) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.astype("<i2").tobytes())


def shift_zero_fill(x: np.ndarray, shift: int) -> np.ndarray:
    """`x` moved by `shift` samples (later if positive), the samples moved in set to 0."""
    x = np.roll(x, shift)
    if shift > 0:
        x[:shift] = 0
    elif shift < 0:
        x[shift:] = 0
    return x


def augment(pcm: np.ndarray, noises: list[np.ndarray], rng: np.random.Generator,
            is_silence: bool) -> np.ndarray:
    """Time shift (+-100 ms, zero fill), gain (+-6 dB), background noise from a training-split
    `_silence_` clip at 3-25 dB SNR (70 % of clips)."""
    x = np.zeros(16000, dtype=np.float64)
    src = pcm[:16000].astype(np.float64)
    x[:len(src)] = src
    if not is_silence:
        x = shift_zero_fill(x, int(rng.integers(-1600, 1601)))
    x *= 10 ** (rng.uniform(-6, 6) / 20)
    if noises and rng.random() < 0.7:
        n = noises[int(rng.integers(len(noises)))].astype(np.float64)
        start = int(rng.integers(0, max(1, len(n) - 16000 + 1)))
        n = n[start:start + 16000]
        n = np.pad(n, (0, 16000 - len(n)))
        px, pn = np.mean(x ** 2) + 1e-9, np.mean(n ** 2) + 1e-9
        if is_silence:
            scale = 10 ** (rng.uniform(-20, 0) / 20) * math.sqrt(px / pn)
        else:
            snr_db = rng.uniform(3, 25)
            scale = math.sqrt(px / (pn * 10 ** (snr_db / 10)))
        x = x + scale * n
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def make_augmented(files, labels, noise_files, copies, seed, work: Path):
    """Writes `copies` augmented versions of every file to work/aug/<class>/ and returns the
    folder."""
    rng = np.random.default_rng(seed)
    root = work / "aug"
    if root.exists():
        shutil.rmtree(root)
    for c in CLASSES:
        (root / c).mkdir(parents=True)
    noises = [read_wav(f) for f in noise_files]
    silence = CLASSES.index("_silence_")
    for i, (f, lab) in enumerate(zip(files, labels)):
        pcm = read_wav(f)
        for k in range(copies):
            out = augment(pcm, noises, rng, lab == silence)
            write_wav(root / CLASSES[lab] / f"{i:05d}_{k:02d}.wav", out)
    return root


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------
class KwsRnn(nn.Module):
    """(x - mean) / std -> GRU or LSTM (40 -> hidden) -> last step -> Linear(hidden -> 12).

    The normalisation is folded into the recurrent layer's input weights for export
    (`folded()`), so the ONNX model takes the front-end's raw log-mel frames."""

    def __init__(self, cell: str, hidden: int, mean: np.ndarray, std: np.ndarray,
                 n_classes: int = len(CLASSES)):
        super().__init__()
        self.cell = cell
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = rnn(BANDS, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_classes)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.normalise = True

    def forward(self, x):
        if self.normalise:
            x = (x - self.mean) / self.std
        out, _ = self.rnn(x)
        return self.head(out[:, -1])

    def folded(self) -> "KwsRnn":
        """A copy whose input weights absorb the normalisation: W' = W / std,
        b' = b - W @ (mean / std). Exact for both cells (the input bias sits outside GRU's reset
        gate)."""
        m = KwsRnn(self.cell, self.rnn.hidden_size, self.mean.numpy(), self.std.numpy(),
                   self.head.out_features)
        m.load_state_dict(self.state_dict())
        with torch.no_grad():
            w = self.rnn.weight_ih_l0.double()
            inv = 1.0 / self.std.double()
            m.rnn.weight_ih_l0.copy_((w * inv).float())
            m.rnn.bias_ih_l0.copy_((self.rnn.bias_ih_l0.double() - w @ (self.mean.double() * inv)).float())
        m.normalise = False
        return m.eval()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def spec_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Two time masks (<= 6 frames) and two band masks (<= 5 bands) per sample, filled with 0
    (the training mean, as x is normalised)."""
    b = x.shape[0]
    x = x.clone()
    t_idx = torch.arange(FRAMES).view(1, FRAMES, 1)
    f_idx = torch.arange(BANDS).view(1, 1, BANDS)
    for _ in range(2):
        w = torch.randint(0, 7, (b, 1, 1), generator=gen)
        s = (torch.rand((b, 1, 1), generator=gen) * (FRAMES - w + 1)).long()
        x = x.masked_fill((t_idx >= s) & (t_idx < s + w), 0.0)
        w = torch.randint(0, 6, (b, 1, 1), generator=gen)
        s = (torch.rand((b, 1, 1), generator=gen) * (BANDS - w + 1)).long()
        x = x.masked_fill((f_idx >= s) & (f_idx < s + w), 0.0)
    return x


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(x[i:i + 512])) for i in range(0, len(x), 512)])
    return float((logits.argmax(1).numpy() == y).mean())


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------
def export_onnx(model: nn.Module, path: Path) -> list[str]:
    import contextlib
    import io
    import warnings

    import onnx

    example = torch.zeros(1, FRAMES, BANDS)
    log = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"],
                          do_constant_folding=True)
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    for node in m.graph.node:
        node.doc_string = ""
    onnx.save(m, str(path))
    return sorted({n.op_type for n in m.graph.node})


def onnxruntime_logits(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])


# ----------------------------------------------------------------------------------------------
# The whole recipe
# ----------------------------------------------------------------------------------------------
def main(cell: str, default_hidden: int, default_out: str, demo_clips: bool = False,
         default_epochs: int = 12) -> None:
    p = argparse.ArgumentParser(description=f"Train the {cell.upper()} keyword spotter on "
                                "Speech Commands (12 classes), features from `kinglet features`.")
    p.add_argument("--data", default="../shared/data/speech_commands",
                   help="Speech Commands folder with one sub-folder per class (relative paths are "
                        "relative to the repository root)")
    p.add_argument("--kinglet", default=None,
                   help="path to a built `kinglet` binary (default: cargo run --release -p "
                        "kinglet-quantizer --)")
    p.add_argument("--out", default=default_out, help="output folder (relative to the repo root)")
    p.add_argument("--hidden", type=int, default=default_hidden)
    p.add_argument("--epochs", type=int, default=default_epochs)
    p.add_argument("--aug-copies", type=int, default=4,
                   help="augmented copies of each training clip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = p.parse_args()
    args.defaults = {k: p.get_default(k) for k in ("hidden", "epochs", "aug_copies", "seed")}

    t_start = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    data = data if data.is_absolute() else (REPO / data).resolve()
    out = Path(args.out)
    out = out if out.is_absolute() else REPO / out
    out.mkdir(parents=True, exist_ok=True)
    work_ctx = tempfile.TemporaryDirectory(prefix="kws-") if args.work is None else None
    work = Path(args.work) if args.work else Path(work_ctx.name)
    work.mkdir(parents=True, exist_ok=True)
    cmd = kinglet_command(args.kinglet)

    # 1. Features of the original clips.
    x_all, y_all, speakers, files = run_features(cmd, data, work, "orig")
    split = np.array([split_of(s) for s in speakers])
    idx = {s: np.flatnonzero(split == s) for s in ("train", "val", "test")}
    sizes = {s: dict(clips=int(len(i)), speakers=int(len({speakers[j] for j in i})))
             for s, i in idx.items()}
    print("split by speaker:", json.dumps(sizes), flush=True)

    # 2. Augmented copies of the training clips, features again from the CLI.
    silence = CLASSES.index("_silence_")
    train_files = [files[i] for i in idx["train"]]
    noise_files = [files[i] for i in idx["train"] if y_all[i] == silence]
    t0 = time.time()
    aug_dir = make_augmented(train_files, y_all[idx["train"]], noise_files, args.aug_copies,
                             args.seed + 1, work)
    x_aug, y_aug, _, _ = run_features(cmd, aug_dir, work, "aug")
    shutil.rmtree(aug_dir)
    print(f"augmented: {len(y_aug)} clips in {time.time() - t0:.0f} s", flush=True)

    x_train = np.concatenate([x_all[idx["train"]], x_aug])
    y_train = np.concatenate([y_all[idx["train"]], y_aug])
    x_val, y_val = x_all[idx["val"]], y_all[idx["val"]]
    x_test, y_test = x_all[idx["test"]], y_all[idx["test"]]
    mean = x_train.mean(axis=(0, 1))
    std = x_train.std(axis=(0, 1)) + 1e-3

    # 3. Train.
    model = KwsRnn(cell, args.hidden, mean, std)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    batch = 128
    steps = args.epochs * math.ceil(len(y_train) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps,
                                                pct_start=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    best = (-1.0, None, -1)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(yt), generator=gen)
        total = 0.0
        for b in range(0, len(perm), batch):
            j = perm[b:b + batch]
            xb = spec_augment((xt[j] - model.mean) / model.std, gen)
            model.normalise = False
            loss = loss_fn(model(xb), yt[j])
            model.normalise = True
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(j)
        val = accuracy(model, x_val, y_val)
        if val >= best[0]:
            best = (val, {k: v.clone() for k, v in model.state_dict().items()}, epoch)
        print(f"epoch {epoch + 1:3d}  loss {total / len(yt):.4f}  val {val:.4f}  "
              f"({time.time() - t_start:.0f} s)", flush=True)
    model.load_state_dict(best[1])
    model.eval()
    val_acc = accuracy(model, x_val, y_val)
    test_acc = accuracy(model, x_test, y_test)
    train_acc = accuracy(model, x_all[idx["train"]], y_all[idx["train"]])
    print(f"best epoch {best[2] + 1}: train {train_acc:.4f} val {val_acc:.4f} "
          f"test {test_acc:.4f}", flush=True)

    # 4. Fold the normalisation, export, check with onnxruntime.
    folded = model.folded()
    with torch.no_grad():
        a = model(torch.from_numpy(x_test))
        b = folded(torch.from_numpy(x_test))
    fold_diff = float((a - b).abs().max())
    onnx_path = out / "model.onnx"
    ops = export_onnx(folded, onnx_path)
    ort_logits = onnxruntime_logits(onnx_path, x_test)
    ort_diff = float(np.abs(ort_logits - b.numpy()).max())
    ort_acc = float((ort_logits.argmax(1) == y_test).mean())
    print(f"fold max |diff| {fold_diff:.2e}, onnxruntime max |diff| {ort_diff:.2e}, "
          f"onnxruntime test acc {ort_acc:.4f}", flush=True)
    assert fold_diff < 1e-3 and ort_diff < 1e-3, (fold_diff, ort_diff)

    # 5. Data files.
    rng = np.random.default_rng(args.seed + 2)
    calib_idx = np.sort(rng.choice(idx["train"], size=min(300, len(idx["train"])), replace=False))
    np.save(out / "calib.npy", x_all[calib_idx].astype(np.float32))
    np.save(out / "test.npy", x_test.astype(np.float32))
    np.save(out / "labels.npy", y_test.astype(np.int64))
    (out / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    per_class = {c: float((ort_logits.argmax(1)[y_test == k] == k).mean())
                 for k, c in enumerate(CLASSES)}
    sorted_logits = np.sort(ort_logits, axis=1)
    margin = sorted_logits[:, -1] - sorted_logits[:, -2]
    arch = f"{cell.upper()}({BANDS}->{args.hidden}) -> out[:, -1] -> Linear({args.hidden}->12)"
    meta = dict(
        arch=arch, cell=cell, hidden=args.hidden, parameters=parameter_count(folded),
        exporter="legacy", opset=17, ops=ops, input_name="input", output_name="output",
        input_shape=[1, FRAMES, BANDS], output_shape=[1, len(CLASSES)], output_is_softmax=False,
        classes=CLASSES, split=sizes, split_rule="sha256(speaker) mod 100: <80 train, <90 val, else test",
        float_test_accuracy=test_acc, float_val_accuracy=val_acc, float_train_accuracy=train_acc,
        onnxruntime_test_accuracy=ort_acc, onnxruntime_vs_torch_max_abs_diff=ort_diff,
        per_class_test_accuracy=per_class, best_epoch=best[2] + 1, epochs=args.epochs,
        aug_copies=args.aug_copies, train_samples_with_augmentation=int(len(y_train)),
        calib_samples=int(len(calib_idx)), test_samples=int(len(y_test)),
        top1_margin_min=float(margin.min()), top1_margin_p05=float(np.percentile(margin, 5)),
        top1_margin_median=float(np.median(margin)),
        seed=args.seed, train_seconds=round(time.time() - t_start),
        versions=dict(torch=torch.__version__, numpy=np.__version__),
    )
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    # 6. Demo clips (only one model folder carries them, to keep the committed data small).
    clips = out / "clips"
    if clips.exists():
        shutil.rmtree(clips)
    picked = []
    used_speakers: set[str] = set()
    for k, c in enumerate(CLASSES if demo_clips else []):
        # The first two clips (by file name) of speakers not yet picked, for variety.
        pool = [i for i in idx["test"] if y_all[i] == k]
        fresh = [i for i in pool if speakers[i] not in used_speakers]
        chosen = []
        for i in fresh + pool:
            if len(chosen) < 2 and i not in chosen and all(speakers[i] != speakers[j] for j in chosen):
                chosen.append(i)
        used_speakers.update(speakers[i] for i in chosen)
        cand = [files[i] for i in chosen]
        (clips / c).mkdir(parents=True)
        for f in cand:
            shutil.copy(f, clips / c / Path(f).name)
            picked.append(f"{c}/{Path(f).name}")
    if demo_clips:
        (clips / "README.md").write_text(
            "# Demo clips\n\nTwo clips per class from the held-out TEST speakers of the split described "
            "in ../README.md, copied unmodified (16 kHz mono 16-bit WAV) from the Speech Commands "
            "v0.02 test set.\n\nLicence: CC BY 4.0. Attribution: " + ATTRIBUTION + "\n\n"
            + "\n".join(f"- `{p}`" for p in picked) + "\n")
    write_readme(out, meta, cell, args, demo_clips)
    print(f"wrote {out} in {time.time() - t_start:.0f} s", flush=True)
    if work_ctx is not None:
        work_ctx.cleanup()


def write_readme(out: Path, meta: dict, cell: str, args, demo_clips: bool) -> None:
    rel = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    s = meta["split"]
    pc = " | ".join(f"{c} {100 * a:.0f}" for c, a in meta["per_class_test_accuracy"].items())
    extra = "".join(f" --{k.replace('_', '-')} {v}" for k, v in
                    (("hidden", args.hidden), ("epochs", args.epochs),
                     ("aug_copies", args.aug_copies), ("seed", args.seed))
                    if v != args.defaults[k])
    text = f"""# Keyword spotter: {cell.upper()}, 12 classes (Speech Commands)

`{meta['arch']}`, {meta['parameters']:,} parameters, float ONNX (`model.onnx`, legacy exporter,
opset 17, input `input` float32 `[1, 49, 40]`, output `output` = 12 logits, no softmax).

**Float top-1 on held-out speakers: {100 * meta['float_test_accuracy']:.1f} %**
({meta['test_samples']} test clips; validation {100 * meta['float_val_accuracy']:.1f} %,
training clips {100 * meta['float_train_accuracy']:.1f} %). onnxruntime on `model.onnx` agrees:
{100 * meta['onnxruntime_test_accuracy']:.1f} % (max |logit difference| to PyTorch
{meta['onnxruntime_vs_torch_max_abs_diff']:.1e}).

Per class (test, %): {pc}

Data: Speech Commands v0.02 canonical test set, the 250-clip-per-class subset in
`../shared/data/speech_commands` (3,000 clips). Licence CC BY 4.0. Attribution:
{ATTRIBUTION}

Not comparable with published Speech Commands figures (MLPerf Tiny's 90 % target, KWT's
97.7 %): those models train on the full 85k-clip training set; this one sees about
{s['train']['clips']:,} clips of {s['train']['speakers']} speakers.

## Inputs

Features are the runtime's front-end (`kinglet::frontend`, computed by `kinglet features`):
49 frames x 40 log-mel bands per 1 s clip (30 ms Hann window, 20 ms hop, 512-point FFT, HTK mel
20-7600 Hz, `ln(energy + 1e-6)`). The per-band normalisation used in training is folded into
the {cell.upper()}'s input weights, so the model takes the raw front-end output.

Classes in label order (`labels.txt`): {", ".join(CLASSES)}.

## Split (by speaker, never by file)

`sha256(speaker id)` mod 100: below 80 train, below 90 validation, else test. The speaker id is
the file name before `_nohash_`; `_silence_` clips have none and each counts as its own speaker.

| split | clips | speakers |
|---|---|---|
| train | {s['train']['clips']} | {s['train']['speakers']} |
| validation | {s['val']['clips']} | {s['val']['speakers']} |
| test | {s['test']['clips']} | {s['test']['speakers']} |

Training: the training clips plus {meta['aug_copies']} augmented copies of each (time shift +-100 ms,
gain +-6 dB, background noise from training-split `_silence_` clips at 3-25 dB SNR; the
augmented WAVs go through `kinglet features` too), SpecAugment masks on the features, AdamW,
one-cycle learning rate, {meta['epochs']} epochs, label smoothing 0.05; the epoch with the best
validation accuracy is kept (epoch {meta['best_epoch']}). Seed {meta['seed']}.

## Files

| file | content |
|---|---|
| `model.onnx` | float model, single file, ops: {", ".join(meta['ops'])} |
| `calib.npy` | float32 `[{meta['calib_samples']}, 49, 40]`, training-split clips (for `kinglet quantize --calib`) |
| `test.npy`, `labels.npy` | float32 `[{meta['test_samples']}, 49, 40]` and int64 `[{meta['test_samples']}]`, all test-speaker clips |
| `labels.txt` | class names, one per line, in label order |
| `meta.json` | everything above as JSON (accuracies, split, margins, versions) |
{"| `clips/` | two WAV clips per class from test speakers (for the demo), with attribution |" if demo_clips else ""}

## Reproduce

```sh
python -m venv venv && venv/bin/pip install -r models/requirements.txt
venv/bin/python models/kws_{cell}/train.py{extra}        # from the repository root; about {max(1, round(meta['train_seconds'] / 60))} min on 2 cores
```

It runs `cargo run --release -p kinglet-quantizer -- features ...` for the features (or pass
`--kinglet path/to/kinglet`). Seeds are fixed; other CPUs or library builds can change the
trained weights in their last bits.
"""
    (out / "README.md").write_text(text)


if __name__ == "__main__":
    sys.exit("run models/kws_gru/train.py or models/kws_lstm/train.py")
