#!/usr/bin/env python3
"""Train the ETTh1 forecasters (univariate `OT`, 96 hourly values in -> next 24 out).

    venv/bin/python models/forecast/train.py --cell lstm [--data CSV] [--kinglet PATH] ...
    venv/bin/python models/forecast/train.py --cell gru  ...

Writes models/forecast_<cell>/{model.onnx, calib.npy, test.npy, targets.npy, norm.json,
meta.json, model.kgl, README.md}. Run from the repository root (relative paths are resolved
against it). See models/forecast_lstm/README.md for the recipe and results.

Data: ETTh1.csv, Zhou, H. et al. (2021). Informer. AAAI. (github zhouhaoyi/ETDataset),
CC BY-ND 4.0. The CSV is read, never copied or modified; only derived windows are written.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import io
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[2]
SEQ_LEN, HORIZON = 96, 24
# Data rows (after the header) of the 12/4/4-month split, half-open.
SPLITS = {"train": (0, 8640), "val": (8640, 11520), "test": (11520, 14400)}
N_CALIB = 300
ATTRIBUTION = ("Zhou, H. et al. (2021). Informer. AAAI. (github zhouhaoyi/ETDataset) "
               "— ETDataset, CC BY-ND 4.0")
# Informer paper, Table 1, ETTh1 univariate, horizon 24 (z-scored data).
PAPER = {"LSTMa": (0.114, 0.272), "Informer": (0.098, 0.247)}


def read_ot(path: Path) -> np.ndarray:
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        col = header.index("OT")
        return np.array([float(r[col]) for r in rows], dtype=np.float64)


def windows(z: np.ndarray, lo: int, hi: int):
    """All stride-1 windows whose 96 inputs and 24 targets lie in rows [lo, hi)."""
    starts = np.arange(lo, hi - SEQ_LEN - HORIZON + 1)
    idx = starts[:, None] + np.arange(SEQ_LEN + HORIZON)[None, :]
    w = z[idx]
    x = w[:, :SEQ_LEN, None].astype(np.float32)
    y = w[:, SEQ_LEN:].astype(np.float32)
    return x, y


class Forecaster(nn.Module):
    """LSTM/GRU(1 -> H, L layers, batch_first) -> last step -> Linear(H -> 24)."""

    def __init__(self, cell: str, hidden: int, layers: int):
        super().__init__()
        cls = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = cls(1, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, HORIZON)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])

    def forward_fq(self, x, scale: float, qmax: int = 127):
        """The same model with the recurrent state `h` fake-quantized to int8 (`scale`, zero point
        0) after every step, as Kinglet's int8 GRU/LSTM keeps it; straight-through gradients.
        Single layer only. Used for quantization-aware fine-tuning of the GRU, whose only state
        is `h` (the LSTM keeps its memory in the int16 cell `c`)."""
        assert self.rnn.num_layers == 1 and isinstance(self.rnn, nn.GRU)
        r = self.rnn
        hsz = r.hidden_size
        gx = x @ r.weight_ih_l0.T + r.bias_ih_l0          # [B, T, 3H], PyTorch gate order r, z, n
        h = x.new_zeros(x.shape[0], hsz)
        for t in range(x.shape[1]):
            gh = h @ r.weight_hh_l0.T + r.bias_hh_l0
            rg = torch.sigmoid(gx[:, t, :hsz] + gh[:, :hsz])
            z = torch.sigmoid(gx[:, t, hsz:2 * hsz] + gh[:, hsz:2 * hsz])
            n = torch.tanh(gx[:, t, 2 * hsz:] + rg * gh[:, 2 * hsz:])
            h = (1 - z) * n + z * h
            hq = torch.clamp(torch.round(h / scale), -qmax - 1, qmax) * scale
            h = h + (hq - h).detach()
        return self.head(h)


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch: int = 512) -> np.ndarray:
    model.eval()
    return np.concatenate([model(torch.from_numpy(x[i:i + batch])).numpy()
                           for i in range(0, len(x), batch)])


@torch.no_grad()
def state_precision_sim(model: "Forecaster", x: np.ndarray, y: np.ndarray) -> dict:
    """Test MSE of the float GRU with only its state h rounded to a b-bit grid over [-1, 1)
    after every step (everything else float), for b = 8, 10, 12, 16."""
    model.eval()
    res = {}
    for bits in (8, 10, 12, 16):
        q = 2 ** (bits - 1)
        p = np.concatenate([model.forward_fq(torch.from_numpy(x[i:i + 512]), 1.0 / q, q - 1).numpy()
                            for i in range(0, len(x), 512)])
        res[f"int{bits}"] = mse_mae(p, y)[0]
    return res


def mse_mae(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    d = p.astype(np.float64) - y
    return float(np.mean(d * d)), float(np.mean(np.abs(d)))


def export_onnx(model: nn.Module, path: Path) -> None:
    model.eval()
    dummy = torch.zeros(1, SEQ_LEN, 1)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"])


def onnxruntime_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])


def kinglet_command(kinglet: str | None) -> list[str]:
    if kinglet:
        return [kinglet]
    return ["cargo", "run", "--release", "-q", "-p", "kinglet-quantizer", "--"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cell", choices=["lstm", "gru"], required=True)
    p.add_argument("--data", default="../shared/data/etth1/ETTh1.csv",
                   help="ETTh1.csv (relative to the repository root)")
    p.add_argument("--out", default=None, help="output folder (default models/forecast_<cell>)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--patience", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--kinglet", default=None,
                   help="path to a built `kinglet` binary (default: cargo run --release -p "
                        "kinglet-quantizer --); pass --no-kinglet to skip quantize/validate")
    p.add_argument("--no-kinglet", action="store_true")
    p.add_argument("--qat-epochs", type=int, default=None,
                   help="epochs of fine-tuning with the GRU state h fake-quantized to int8 "
                        "(default 8 for --cell gru, 0 for lstm)")
    p.add_argument("--qat-lr", type=float, default=3e-4)
    p.add_argument("--readme-only", action="store_true",
                   help="only rewrite README.md from the folder's meta.json (no training)")
    args = p.parse_args()

    os.chdir(ROOT)
    if args.readme_only:
        out = Path(args.out or f"models/forecast_{args.cell}")
        write_readme(out, json.loads((out / "meta.json").read_text()))
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out or f"models/forecast_{args.cell}")
    out.mkdir(parents=True, exist_ok=True)

    ot = read_ot(Path(args.data))
    assert len(ot) >= SPLITS["test"][1], f"{args.data}: only {len(ot)} rows"
    tr_lo, tr_hi = SPLITS["train"]
    mean, std = float(ot[tr_lo:tr_hi].mean()), float(ot[tr_lo:tr_hi].std())  # population std
    z = (ot - mean) / std
    data = {k: windows(z, lo, hi) for k, (lo, hi) in SPLITS.items()}
    for k, (x, _) in data.items():
        print(f"{k:5s} rows {SPLITS[k][0]}-{SPLITS[k][1] - 1}: {len(x)} windows")

    model = Forecaster(args.cell, args.hidden, args.layers)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    xtr, ytr = (torch.from_numpy(a) for a in data["train"])
    xva, yva = data["val"]
    g = torch.Generator().manual_seed(args.seed)
    best, best_state, best_epoch, bad = float("inf"), None, 0, 0
    history = []
    t0 = time.time()
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        tot = 0.0
        for i in range(0, len(perm), args.batch):
            b = perm[i:i + args.batch]
            loss = nn.functional.mse_loss(model(xtr[b]), ytr[b])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            tot += loss.item() * len(b)
        val_mse, val_mae = mse_mae(predict(model, xva), yva)
        sched.step(val_mse)
        history.append(dict(epoch=epoch, train_mse=tot / len(xtr), val_mse=val_mse, val_mae=val_mae))
        print(f"epoch {epoch:2d} train {tot / len(xtr):.4f} val mse {val_mse:.4f} mae {val_mae:.4f} "
              f"lr {opt.param_groups[0]['lr']:.1e} ({time.time() - t0:.0f} s)", flush=True)
        if val_mse < best - 1e-5:
            best, best_state, best_epoch, bad = val_mse, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            bad += 1
            if bad >= args.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    float_res = {k: mse_mae(predict(model, data[k][0]), data[k][1]) for k in ("val", "test")}

    # Quantization-aware fine-tuning of the GRU: Kinglet keeps the GRU state h in int8 (scale
    # 1/128 for h in [-1, 1]) between steps, and small updates of h below half a step are lost.
    qat_epochs = args.qat_epochs if args.qat_epochs is not None else (8 if args.cell == "gru" else 0)
    qat_history = []
    if qat_epochs > 0:
        hscale = 1.0 / 128
        def predict_fq(x, batch=512):
            with torch.no_grad():
                return np.concatenate([model.forward_fq(torch.from_numpy(x[i:i + batch]), hscale).numpy()
                                       for i in range(0, len(x), batch)])
        fq_best = mse_mae(predict_fq(xva), yva)[0]
        print(f"float model, h fake-quantized: val mse {fq_best:.4f}", flush=True)
        qat_history.append(dict(epoch=0, val_mse_fq=fq_best))
        best_state = copy.deepcopy(model.state_dict())
        opt = torch.optim.Adam(model.parameters(), lr=args.qat_lr)
        for epoch in range(1, qat_epochs + 1):
            model.train()
            perm = torch.randperm(len(xtr), generator=g)
            tot = 0.0
            for i in range(0, len(perm), args.batch):
                b = perm[i:i + args.batch]
                loss = nn.functional.mse_loss(model.forward_fq(xtr[b], hscale), ytr[b])
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                tot += loss.item() * len(b)
            model.eval()
            v_fq = mse_mae(predict_fq(xva), yva)[0]
            v_fl = mse_mae(predict(model, xva), yva)[0]
            qat_history.append(dict(epoch=epoch, train_mse_fq=tot / len(xtr), val_mse_fq=v_fq,
                                    val_mse_float=v_fl))
            print(f"qat epoch {epoch:2d} train {tot / len(xtr):.4f} val mse: h int8 {v_fq:.4f}, "
                  f"float {v_fl:.4f} ({time.time() - t0:.0f} s)", flush=True)
            if v_fq < fq_best - 1e-5:
                fq_best, best_state = v_fq, copy.deepcopy(model.state_dict())
        model.load_state_dict(best_state)
        model.eval()
    train_seconds = time.time() - t0
    if args.cell == "gru" and args.layers == 1:
        meta_state_sim = state_precision_sim(model, xte, yte)
        print("test MSE with the GRU state h rounded every step:", meta_state_sim)
    else:
        meta_state_sim = None

    xte, yte = data["test"]
    res = {k: mse_mae(predict(model, data[k][0]), data[k][1]) for k in ("train", "val", "test")}
    print(f"best epoch {best_epoch}: " + ", ".join(f"{k} mse {m:.4f} mae {a:.4f}"
                                                   for k, (m, a) in res.items()))

    # Calibration: 300 training windows at evenly spaced start positions (covers all 12 months).
    ci = np.linspace(0, len(data["train"][0]) - 1, N_CALIB).round().astype(int)
    np.save(out / "calib.npy", data["train"][0][ci])
    np.save(out / "test.npy", xte)
    np.save(out / "targets.npy", yte)
    (out / "norm.json").write_text(json.dumps({"mean": mean, "std": std}, indent=2) + "\n")
    onnx_path = out / "model.onnx"
    export_onnx(model, onnx_path)
    import onnx
    m = onnx.load(str(onnx_path))
    ops = sorted({n.op_type for n in m.graph.node})
    ort_pred = onnxruntime_outputs(onnx_path, xte)
    torch_pred = predict(model, xte)
    ort_diff = float(np.abs(ort_pred - torch_pred).max())
    print(f"onnxruntime vs torch max abs diff {ort_diff:.2e}; ops {ops}")

    meta = dict(
        task="forecast", dataset="etth1",
        description=f"ETTh1 OT, {SEQ_LEN} h in -> {HORIZON} h out",
        arch=(f"{args.cell.upper()}(1->{args.hidden}"
              + (f", {args.layers} layers" if args.layers > 1 else "")
              + f") -> out[:, -1] -> Linear({args.hidden}->{HORIZON})"),
        input_shape=[1, SEQ_LEN, 1], output_shape=[1, HORIZON],
        exporter="legacy", opset=17, ops=ops, parameters=n_params,
        split={k: dict(rows=[lo, hi - 1], windows=len(data[k][0])) for k, (lo, hi) in SPLITS.items()},
        calib_samples=N_CALIB, norm=dict(mean=mean, std=std),
        torch_mse={k: v[0] for k, v in res.items()}, torch_mae={k: v[1] for k, v in res.items()},
        onnxruntime_vs_torch_max_abs_diff=ort_diff,
        best_epoch=best_epoch, epochs_run=len(history), train_seconds=round(train_seconds, 1),
        before_qat=dict(val_mse=float_res["val"][0], test_mse=float_res["test"][0],
                        test_mae=float_res["test"][1]) if qat_epochs > 0 else None,
        qat_epochs=qat_epochs, qat_lr=args.qat_lr if qat_epochs > 0 else None,
        qat_history=qat_history,
        state_precision_sim_test_mse=meta_state_sim,
        hparams=dict(cell=args.cell, hidden=args.hidden, layers=args.layers, batch=args.batch, lr=args.lr,
                     max_epochs=args.epochs, patience=args.patience, seed=args.seed,
                     threads=args.threads),
        history=history,
        versions=dict(python=platform.python_version(), torch=torch.__version__,
                      numpy=np.__version__, onnx=onnx.__version__),
    )

    if not args.no_kinglet:
        cmd = kinglet_command(args.kinglet)
        kgl = out / "model.kgl"
        subprocess.run(cmd + ["quantize", str(onnx_path), "--calib", str(out / "calib.npy"),
                              "-o", str(kgl)], check=True, stdout=subprocess.DEVNULL)
        r = subprocess.run(cmd + ["validate", str(onnx_path), str(kgl), "--data",
                                  str(out / "test.npy"), "--targets", str(out / "targets.npy"),
                                  "--json"], check=True, capture_output=True, text=True)
        v = json.loads(r.stdout)
        meta["kinglet_validate"] = v
        print(f"tract float mse {v['mse_float']:.4f} mae {v['mae_float']:.4f} | "
              f"kinglet int8 mse {v['mse_int8']:.4f} mae {v['mae_int8']:.4f} | "
              f"SQNR {v['sqnr_db']:.1f} dB | model {v['model_bytes']} B arena {v['arena_bytes']} B")
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    write_readme(out, meta)


def write_readme(out: Path, meta: dict) -> None:
    hp = dict(meta["hparams"])
    hp.setdefault("cell", meta["arch"].split("(")[0].lower())
    cell = hp["cell"].upper()
    s = meta["split"]
    v = meta.get("kinglet_validate")
    if v:
        drop = 100.0 * (v["mse_int8"] / v["mse_float"] - 1.0)
        results = f"""| model | test MSE | test MAE |
|---|---|---|
| this model, float (tract, `model.onnx`) | {v['mse_float']:.4f} | {v['mae_float']:.4f} |
| this model, int8 (Kinglet, `model.kgl`) | {v['mse_int8']:.4f} | {v['mae_int8']:.4f} |
| Informer paper, LSTMa (Table 1, univariate, horizon 24) | {PAPER['LSTMa'][0]:.3f} | {PAPER['LSTMa'][1]:.3f} |
| Informer paper, Informer (same row) | {PAPER['Informer'][0]:.3f} | {PAPER['Informer'][1]:.3f} |

int8 vs float: test MSE {drop:+.2f} %, SQNR of the int8 output against the float output
{v['sqnr_db']:.1f} dB. Model file {v['model_bytes']} bytes, arena {v['arena_bytes']} bytes,
{meta['parameters']} float parameters (PyTorch `parameters()`)."""
    else:
        results = "(not quantized: run without `--no-kinglet`)"
    tm = meta["torch_mse"]
    sim = meta.get("state_precision_sim_test_mse")
    if v and sim and v["mse_int8"] > 1.02 * v["mse_float"]:
        pre = meta.get("investigation_before_qat")
        pre_txt = "" if not pre else f""" Before the fine-tuning, the same GRU
(float training only) gave tract float {pre['tract_float_test_mse']:.4f} and Kinglet int8
{pre['kinglet_int8_test_mse']:.4f} ({100 * (pre['kinglet_int8_test_mse'] / pre['tract_float_test_mse'] - 1):+.0f} %, SQNR
{pre['sqnr_db']:.1f} dB); with its h rounded to int8 in float it gave
{pre['state_precision_sim_test_mse']['int8']:.4f}, to int10 {pre['state_precision_sim_test_mse']['int10']:.4f}, to int12
{pre['state_precision_sim_test_mse']['int12']:.4f}; clipping the output to its int8 range changed nothing
({pre['output_clipping_test_mse']:.4f}), and the calibration windows cover the test inputs (test z in
[-2.27, -0.26], calibration [-2.31, 3.15])."""
        results += f"""

**The int8 MSE is not within 2 % of float.** The cause is the GRU's recurrent state: Kinglet
keeps `h` in int8 (scale about 1/128) from step to step, and over 96 steps the updates of `h`
smaller than half a step are lost. The LSTM does not suffer from this because its memory is
the int16 cell `c`. Running this float model in PyTorch with only `h` rounded after every step
gives test MSE {sim['int8']:.4f} (int8), {sim['int10']:.4f} (int10), {sim['int12']:.4f} (int12) and
{sim['int16']:.4f} (int16), against {v['mse_float']:.4f} in float. So the int8 state alone accounts
for Kinglet's gap, and a state of 10 bits or more would close it. The model was therefore
fine-tuned for {meta['qat_epochs']} epochs with `h` fake-quantized to int8 (straight-through, lr
{meta['qat_lr']}), keeping the epoch with the best validation MSE under int8 `h`. On validation
that brings the int8-`h` MSE to the float level, but on the test months the gap remains.{pre_txt}"""
    text = f"""# ETTh1 forecaster: {cell}

{meta['arch']}, trained on ETTh1 `OT` (oil temperature, univariate): the last {SEQ_LEN} hourly
values in, the next {HORIZON} out. Everything here comes from `models/forecast/train.py`.

Data: {ATTRIBUTION}. The CSV is not in this repository; `test.npy`, `targets.npy` and
`calib.npy` are windows derived from it (z-scored `OT` values).

## Data and split

- Column `OT` only. Split of the data rows (after the header) in the usual 12/4/4 months:
  train rows {s['train']['rows'][0]}-{s['train']['rows'][1]}, val {s['val']['rows'][0]}-{s['val']['rows'][1]},
  test {s['test']['rows'][0]}-{s['test']['rows'][1]}.
- z-scored with the mean and (population) standard deviation of the training rows, in
  `norm.json`: mean {meta['norm']['mean']:.6f}, std {meta['norm']['std']:.6f}. Inputs, outputs and
  all metrics are in z-scored units.
- Windows: every start position with stride 1 whose 96 inputs **and** 24 targets lie inside one
  split: train {s['train']['windows']}, val {s['val']['windows']}, test {s['test']['windows']}.
  (The Informer code lets test inputs reach back into the validation rows and so has 2,857 test
  windows; ours stay inside the test rows, so the paper's figures are close but not the same set.)
- `calib.npy`: float32 `[{meta['calib_samples']}, 96, 1]`, training windows at evenly spaced start
  positions across all 12 training months. `test.npy`: float32 `[{s['test']['windows']}, 96, 1]`,
  `targets.npy`: float32 `[{s['test']['windows']}, 24]`.

## Training

Adam (lr {hp['lr']}, halved when val MSE stalls for 2 epochs), batch {hp['batch']}, MSE loss,
gradient clipping at 1.0, up to {hp['max_epochs']} epochs with early stopping on val MSE (patience
{hp['patience']}); the best epoch ({meta['best_epoch']} of {meta['epochs_run']} run) is kept.
Seed {hp['seed']}, {hp['threads']} CPU thread(s), {meta['train_seconds']:.0f} s of training. PyTorch float32 MSE:
train {tm['train']:.4f}, val {tm['val']:.4f}, test {tm['test']:.4f}.

Exported with the legacy exporter (`torch.onnx.export(..., dynamo=False, opset_version=17)`),
one file, batch 1, fixed shapes, input `input` `[1, 96, 1]`, output `output` `[1, 24]`. ONNX ops:
{', '.join(meta['ops'])}. onnxruntime matches PyTorch to {meta['onnxruntime_vs_torch_max_abs_diff']:.1e}
max abs diff on the test set.

## Results (test split, z-scored)

{results}

## Reproduce

```sh
python -m venv venv && venv/bin/pip install -r models/forecast/requirements.txt
cargo build -p kinglet-quantizer                       # or --release (then target/release/kinglet)
venv/bin/python models/forecast/train.py --cell {hp['cell']}{' --layers ' + str(hp['layers']) if hp['layers'] > 1 else ''} --kinglet target/debug/kinglet
# or, by hand, after training:
kinglet quantize {out}/model.onnx --calib {out}/calib.npy -o {out}/model.kgl
kinglet validate {out}/model.onnx {out}/model.kgl --data {out}/test.npy --targets {out}/targets.npy --json
```

Seeds are fixed; other CPUs or BLAS builds can change the trained weights in their last bits.

## Files

| file | content |
|---|---|
| `model.onnx` | float32 model, legacy exporter, opset 17 |
| `model.kgl` | int8 model from `kinglet quantize` |
| `calib.npy`, `test.npy`, `targets.npy` | see above |
| `norm.json` | `{{mean, std}}` of the training rows (°C), to de-normalise |
| `meta.json` | hyper-parameters, per-epoch history, metrics, versions |
"""
    (out / "README.md").write_text(text)


if __name__ == "__main__":
    main()
