"""Shared helpers for the Transformer example models (models/vit_mnist, models/kws_transformer,
models/forecast_transformer): ONNX export (single file, batch 1), onnxruntime check, and the
`kinglet quantize` / `kinglet validate --json` calls.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]


def resolve(p: str | Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() else (REPO / p).resolve()


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, exporter: str = "legacy",
                opset: int = 17) -> list[str]:
    """Export batch-1, fixed-shape, single-file ONNX (input `input`, output `output`), strip doc
    strings / dynamo metadata, check, return the sorted op types."""
    import onnx

    path = Path(path)
    tmp = str(path) + ".tmp.onnx"
    log = io.StringIO()
    model.eval()
    with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            torch.onnx.export(model, (example,), tmp, dynamo=False, opset_version=opset,
                              input_names=["input"], output_names=["output"], do_constant_folding=True)
        else:
            prog = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                     input_names=["input"], output_names=["output"], optimize=True,
                                     external_data=False)
            prog.save(tmp, external_data=False)
    m = onnx.load(tmp)
    for p in (tmp, tmp + ".data"):
        if os.path.exists(p):
            os.remove(p)
    for node in m.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        del vi.metadata_props[:]
    for init in m.graph.initializer:
        del init.metadata_props[:]
    onnx.checker.check_model(m, full_check=True)
    onnx.save_model(m, str(path), save_as_external_data=False)
    return sorted({n.op_type for n in m.graph.node})


def run_ort(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])


def run_torch(model: torch.nn.Module, x: np.ndarray, batch: int = 256) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + batch])).numpy()
                               for i in range(0, len(x), batch)])


def kinglet_quantize(kinglet: str, onnx_path: Path, calib: Path, out: Path,
                     calibration: str = "minmax") -> dict:
    cmd = [kinglet, "quantize", str(onnx_path), "--calib", str(calib), "-o", str(out), "--json",
           "--calibration", calibration]
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kinglet quantize failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        return {"stdout": r.stdout}


def kinglet_validate(kinglet: str, onnx_path: Path, kgl: Path, data: Path, labels: Path | None = None,
                     targets: Path | None = None) -> dict:
    cmd = [kinglet, "validate", str(onnx_path), str(kgl), "--data", str(data), "--json"]
    if labels is not None:
        cmd += ["--labels", str(labels)]
    if targets is not None:
        cmd += ["--targets", str(targets)]
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kinglet validate failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return json.loads(r.stdout)
