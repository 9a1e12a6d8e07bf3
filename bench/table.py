"""Writes the benchmark table into README.md between `<!-- bench:begin -->` and
`<!-- bench:end -->` from the JSON files `bench/run.sh` produced.

    python3 bench/table.py --kinglet K1.json [K2.json ...] --ort O1.json [O2.json ...]
                           [--m4 M4.jsonl] --readme README.md
                           --machine "..." --command "bash bench/run.sh"

Standard library only. Latency cells are `median (p90)` in µs; a peer's `×` figure is its
median divided by Kinglet SIMD's median (above 1: Kinglet is faster). With several passes
(files, one model or more each), each engine and model keeps the pass with its lowest median:
on a shared machine the other load only ever adds time, and every engine gets its quietest
pass.
"""

import argparse
import copy
import datetime
import json
import sys

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def us(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def cell(lat, base=None):
    if not lat or "median_us" not in lat:
        return "–"
    s = f"{us(lat['median_us'])} ({us(lat['p90_us'])})"
    if base:
        s += f" **{lat['median_us'] / base:.2f}×**"
    return s


def best_of(runs, slots):
    """The first run's header with the union of every run's models (by name, sorted), each
    latency dict (`slots(model)` lists `(key, container)`) the one with the lowest median
    across the runs that hold that model."""
    base = dict(runs[0])
    by_name = {}
    for r in runs:
        for m in r["models"]:
            if m["name"] not in by_name:
                by_name[m["name"]] = copy.deepcopy(m)
                continue
            best = by_name[m["name"]]
            cur_slots = dict((k, c) for k, c in slots(best))
            for key, cont in slots(m):
                cand = cont.get(key)
                if key not in cur_slots:
                    continue
                cur = cur_slots[key].get(key)
                if (
                    isinstance(cand, dict)
                    and "median_us" in cand
                    and (not isinstance(cur, dict) or "median_us" not in cur
                         or cand["median_us"] < cur["median_us"])
                ):
                    cur_slots[key][key] = cand
    base["models"] = [by_name[n] for n in sorted(by_name)]
    return base


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kinglet", required=True, nargs="+")
    ap.add_argument("--ort", required=True, nargs="+")
    ap.add_argument("--m4", default=None)
    ap.add_argument("--m4-note", default="")
    ap.add_argument("--readme", default="README.md")
    ap.add_argument("--machine", required=True)
    ap.add_argument("--command", default="bash bench/run.sh")
    a = ap.parse_args()

    ks = [json.load(open(f)) for f in a.kinglet]
    os_ = [json.load(open(f)) for f in a.ort]
    k, o = best_of(ks, lambda m: [("kinglet_simd", m), ("kinglet_reference", m), ("tract", m)]), best_of(
        os_, lambda m: [(x, m["variants"]) for x in m["variants"]] + [("ort_call_floor", m)]
    )
    counts = {}
    for r in ks:
        for m in r["models"]:
            counts[m["name"]] = counts.get(m["name"], 0) + 1
    passes = max(counts.values(), default=1)
    ort_by = {m["name"]: m for m in o["models"]}
    m4 = {}
    if a.m4:
        for line in open(a.m4):
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                # `model` may be a name or a path such as models/kws_gru/model.kgl.
                key = r["model"].rstrip("/").split("/")
                key = key[-2] if len(key) > 1 and key[-1].endswith(".kgl") else key[-1]
                m4[key] = r

    isa = k["isa"]
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {date} on {a.machine}; `{a.command}`. One thread, batch 1, float in and "
        f"float out; each call timed alone, engines taking turns in {k['rounds']} rounds of "
        f"{k['slice_ms']} ms"
        + (
            f", in {passes} passes, each alternating Kinglet + tract with ONNX Runtime model by "
            "model, each engine and model keeping its pass with the lowest median (shared "
            "machine: other load only adds time)"
            if passes > 1
            else ""
        )
        + f"; cells are median (p90) in µs, **×** = that engine's median ÷ "
        f"Kinglet SIMD's (above 1: Kinglet is faster). Kinglet SIMD = `{isa}` kernels; "
        f"tract 0.23 float32 in the same process; ONNX Runtime {o['onnxruntime']} through "
        f"its Python API (`bench/ort_bench.py`, its ~5-9 µs per-call floor included).",
        "",
        "| model | MACs | Kinglet SIMD | Kinglet reference | tract f32 | ORT f32 | "
        "ORT dynamic int8 | ORT static int8 | best peer ÷ Kinglet |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    notes = []
    for m in k["models"]:
        base = m["kinglet_simd"]["median_us"]
        om = ort_by.get(m["name"], {"variants": {}})
        v = om["variants"]
        peers = [m["tract"]] + [v.get(x, {}) for x in ("ort_f32", "ort_dynamic", "ort_static")]
        best = min((p["median_us"] for p in peers if "median_us" in p), default=None)
        lines.append(
            "| {} | {:,} | {} | {} | {} | {} | {} | {} | {} |".format(
                m["name"],
                m["macs"],
                cell(m["kinglet_simd"]),
                cell(m.get("kinglet_reference"), base),
                cell(m["tract"], base),
                cell(v.get("ort_f32"), base),
                cell(v.get("ort_dynamic"), base),
                cell(v.get("ort_static"), base),
                f"{best / base:.2f}×" if best else "–",
            )
        )
        for x in ("ort_dynamic", "ort_static"):
            d = v.get(x, {})
            if "ops" in d:
                notes.append(
                    f"{m['name']} {x.replace('ort_', '')}: {d['ops']}; "
                    f"SQNR vs ORT f32 {d['sqnr_vs_f32_db']:.1f} dB"
                )
            if "note" in d:
                notes.append(f"{m['name']} {x.replace('ort_', '')}: {d['note']}")
    lines += [
        "",
        "What ONNX Runtime's quantizers made of each model (ops quantized / left float):",
        "",
    ]
    lines += [f"- {n}" for n in notes]
    lines += [
        "",
        "| model | .kgl bytes | .onnx bytes | arena bytes | M4 instructions / inference "
        "| est. M4 cycles | M4 flash code + model bytes | M4 peak stack |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    rows = list(k["models"])
    # Cortex-M-only files (the unit16 LSTM layout): M4 cells, host columns empty.
    hosted = {m["name"] for m in rows}
    for name, r in sorted(m4.items()):
        if name not in hosted:
            rows.append({"name": name, "kgl_bytes": r["flash_model_bytes"], "onnx_bytes": None,
                         "arena_bytes": r["arena_bytes"]})
    for m in rows:
        r = m4.get(m["name"])
        if r:
            m4cells = [
                f"{r['instructions_per_inference']:,}",
                f"{r['est_m4_cycles']:,}",
                f"{r['flash_code_bytes']:,} + {r['flash_model_bytes']:,}",
                f"{r['peak_stack_bytes']:,}",
            ]
        else:
            m4cells = ["–"] * 4
        lines.append(
            "| {} | {:,} | {} | {:,} | {} |".format(
                m["name"], m["kgl_bytes"],
                "–" if m["onnx_bytes"] is None else f"{m['onnx_bytes']:,}",
                m["arena_bytes"], " | ".join(m4cells)
            )
        )
    if a.m4_note:
        lines += ["", a.m4_note]
    table = "\n".join(lines)

    text = open(a.readme).read()
    if BEGIN not in text or END not in text:
        sys.exit(f"{a.readme} has no {BEGIN} ... {END} section")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    open(a.readme, "w").write(head + BEGIN + "\n" + table + "\n" + END + tail)
    print(table)
    print(f"\nwrote {a.readme}")


if __name__ == "__main__":
    main()
