"""ONNX Runtime side of the benchmark table: float32, dynamic int8 and static int8.

    /work/venv/bin/python bench/ort_bench.py [--models models] [--only a,b] [--slice-ms 200]
                                            [--json bench/out/ort.json]

For every example model (`models/<name>/` with model.onnx and test.npy; `fixtures*` skipped),
batch 1, one thread (intra_op_num_threads = inter_op_num_threads = 1, sequential execution,
all graph optimizations):

- `ort_f32`: the float ONNX as committed.
- `ort_dynamic`: `quantize_dynamic(weight_type=QInt8)` (int8 weights, activations quantized
  at run time to uint8; ORT quantizes MatMul, LSTM, Conv, Gather, Attention this way, not Gemm
  or GRU).
- `ort_static`: `quantize_static` in QDQ format with the model's committed calib.npy
  (MinMax, activations QUInt8, weights QInt8: ORT's recommended U8S8 on x86); ORT quantizes
  MatMul, Gemm, Conv and friends, not LSTM or GRU.

Before quantizing, the model goes through `quant_pre_process` (ORT's recommended shape
inference and optimization); if that fails the raw model is quantized. Each variant records
which compute ops (MatMul, Gemm, Conv, LSTM, GRU) ended up quantized, and its output SQNR
against ORT float on the timed samples, so a variant that quantized nothing, or quantized
badly, is visible.

Timing mirrors `kinglet bench`: calls cycle over the first 32 test samples, each call is timed
alone (`time.perf_counter_ns` around `InferenceSession.run`, so the Python call overhead is
included: `ort_call_floor` measures it on an Identity model of the same input), the variants
take turns in 5 rounds of a short warm-up plus `--slice-ms` of timed calls, and the report is
the median and 90th percentile of all timed calls.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

SAMPLES = 32
ROUNDS = 5
CALIB_SAMPLES = 100
COMPUTE_OPS = {"MatMul", "Gemm", "Conv", "LSTM", "GRU", "RNN"}
INT_OPS = {
    "MatMulInteger": "MatMul",
    "DynamicQuantizeMatMul": "MatMul",
    "ConvInteger": "Conv",
    "DynamicQuantizeLSTM": "LSTM",
    "QLinearMatMul": "MatMul",
    "QLinearConv": "Conv",
    "QGemm": "Gemm",
}


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def input_info(model):
    inits = {i.name for i in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    if len(ins) != 1:
        raise SystemExit(f"expected one graph input, found {[i.name for i in ins]}")
    dims = [d.dim_value if d.dim_value > 0 else 1 for d in ins[0].type.tensor_type.shape.dim]
    return ins[0].name, dims


def compute_ops(model):
    """Counts compute ops, float and quantized, by ONNX op type."""
    g = model.graph
    produced_by_dq = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    quant, floating = {}, {}
    for n in g.node:
        if n.op_type in INT_OPS:
            k = INT_OPS[n.op_type]
            quant[k] = quant.get(k, 0) + 1
        elif n.op_type in COMPUTE_OPS:
            # QDQ: the op is quantized when its weight comes through DequantizeLinear.
            w = n.input[1] if len(n.input) > 1 else ""
            d = quant if w in produced_by_dq else floating
            d[n.op_type] = d.get(n.op_type, 0) + 1
    return quant, floating


def describe(quant, floating):
    q = ", ".join(f"{v} {k}" for k, v in sorted(quant.items())) or "none"
    f = ", ".join(f"{v} {k}" for k, v in sorted(floating.items())) or "none"
    return f"int8: {q}; left float: {f}"


class Reader(CalibrationDataReader):
    def __init__(self, name, shape, calib):
        self.items = iter([{name: s.reshape(shape).astype(np.float32)} for s in calib])

    def get_next(self):
        return next(self.items, None)


def time_slice(fn, feeds, slice_s, times):
    i = 0
    t_end = time.perf_counter() + slice_s / 5
    while time.perf_counter() < t_end or i < 3:
        fn(feeds[i % len(feeds)])
        i += 1
    t_end = time.perf_counter() + slice_s
    timed = 0
    while time.perf_counter() < t_end or timed < 10:
        f = feeds[i % len(feeds)]
        t0 = time.perf_counter_ns()
        fn(f)
        times.append((time.perf_counter_ns() - t0) / 1e3)
        i += 1
        timed += 1


def stats(t):
    t = np.sort(np.asarray(t))
    at = lambda q: float(t[int(round((len(t) - 1) * q))])
    return {"median_us": at(0.5), "p90_us": at(0.9), "min_us": at(0.0), "runs": len(t)}


def sqnr(ref, got):
    ref = np.concatenate([r.ravel() for r in ref]).astype(np.float64)
    got = np.concatenate([g.ravel() for g in got]).astype(np.float64)
    noise = np.sum((ref - got) ** 2)
    return 200.0 if noise == 0 else float(10 * np.log10(np.sum(ref**2) / noise))


def identity_model(path, shape):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, path)


def bench_model(d, slice_s, tmp):
    name = os.path.basename(d.rstrip("/"))
    src = os.path.join(d, "model.onnx")
    model = onnx.load(src)
    in_name, shape = input_info(model)
    test = np.load(os.path.join(d, "test.npy"))[:SAMPLES].astype(np.float32)
    feeds = [{in_name: s.reshape(shape)} for s in test]
    out = {"name": name, "input_shape": shape, "onnx_bytes": os.path.getsize(src), "variants": {}}

    pre = os.path.join(tmp, f"{name}.pre.onnx")
    try:
        quant_pre_process(src, pre)
        qsrc = pre
    except Exception as e:  # noqa: BLE001 - report and fall back to the raw model
        out["pre_process_error"] = f"{type(e).__name__}: {e}"[:300]
        qsrc = src

    paths = {"ort_f32": src}
    notes = {}
    dyn = os.path.join(tmp, f"{name}.dynamic.onnx")
    try:
        quantize_dynamic(qsrc, dyn, weight_type=QuantType.QInt8)
        paths["ort_dynamic"] = dyn
    except Exception as e:  # noqa: BLE001
        notes["ort_dynamic"] = f"quantize_dynamic failed: {type(e).__name__}: {e}"[:300]
    sta = os.path.join(tmp, f"{name}.static.onnx")
    calib_path = os.path.join(d, "calib.npy")
    if os.path.exists(calib_path):
        calib = np.load(calib_path)[:CALIB_SAMPLES].astype(np.float32)
        try:
            quantize_static(
                qsrc,
                sta,
                Reader(in_name, shape, calib),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
            paths["ort_static"] = sta
        except Exception as e:  # noqa: BLE001
            notes["ort_static"] = f"quantize_static failed: {type(e).__name__}: {e}"[:300]
    else:
        notes["ort_static"] = "no calib.npy"

    sessions, ref = {}, None
    for k, p in paths.items():
        try:
            s = session(p)
        except Exception as e:  # noqa: BLE001
            notes[k] = f"ORT cannot load it: {type(e).__name__}: {e}"[:300]
            continue
        sessions[k] = s
        outs = [s.run(None, f)[0] for f in feeds]
        v = {"file_bytes": os.path.getsize(p)}
        if k == "ort_f32":
            ref = outs
        else:
            v["sqnr_vs_f32_db"] = sqnr(ref, outs)
            quant, floating = compute_ops(onnx.load(p))
            v["ops"] = describe(quant, floating)
            v["quantized_ops"] = sum(quant.values())
        out["variants"][k] = v

    times = {k: [] for k in sessions}
    for _ in range(ROUNDS):
        for k, s in sessions.items():
            time_slice(lambda f, s=s: s.run(None, f), feeds, slice_s, times[k])
    for k, t in times.items():
        out["variants"][k].update(stats(t))
    for k, n in notes.items():
        out["variants"].setdefault(k, {})["note"] = n

    idp = os.path.join(tmp, f"{name}.identity.onnx")
    identity_model(idp, shape)
    s = session(idp)
    t = []
    id_feeds = [{"x": next(iter(f.values()))} for f in feeds]
    for _ in range(ROUNDS):
        time_slice(lambda f: s.run(None, f), id_feeds, slice_s / 4, t)
    out["ort_call_floor"] = stats(t)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="models")
    ap.add_argument("--only", default="")
    ap.add_argument("--slice-ms", type=float, default=200)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    only = [o for o in a.only.split(",") if o]
    dirs = []
    for n in sorted(os.listdir(a.models)):
        d = os.path.join(a.models, n)
        if n == "fixtures" or n.startswith("fixtures_") or (only and n not in only):
            continue
        if os.path.isfile(os.path.join(d, "model.onnx")) and os.path.isfile(
            os.path.join(d, "test.npy")
        ):
            dirs.append(d)
    report = {
        "onnxruntime": ort.__version__,
        "slice_ms": a.slice_ms,
        "rounds": ROUNDS,
        "models": [],
    }
    print(f"onnxruntime {ort.__version__}, one thread, batch 1 (median/p90 µs)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for d in dirs:
            m = bench_model(d, a.slice_ms / 1e3, tmp)
            report["models"].append(m)
            cells = []
            for k in ("ort_f32", "ort_dynamic", "ort_static"):
                v = m["variants"].get(k, {})
                if "median_us" in v:
                    cells.append(f"{k} {v['median_us']:.1f}/{v['p90_us']:.1f}")
                else:
                    cells.append(f"{k} -")
            fl = m["ort_call_floor"]["median_us"]
            print(f"{m['name']:<22} " + "  ".join(cells) + f"  (call floor {fl:.1f})", flush=True)
            for k in ("ort_dynamic", "ort_static"):
                v = m["variants"].get(k, {})
                if "ops" in v:
                    print(f"    {k}: {v['ops']}; SQNR vs f32 {v['sqnr_vs_f32_db']:.1f} dB")
                if "note" in v:
                    print(f"    {k}: {v['note']}")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    sys.exit(main())
