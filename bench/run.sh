#!/usr/bin/env bash
# The benchmark table: Kinglet (SIMD and reference), tract, ONNX Runtime (float32, dynamic and
# static int8) on every example model, plus the Cortex-M4 figures; rewrites the section between
# <!-- bench:begin --> and <!-- bench:end --> of README.md. Not part of CI.
#
#   bash bench/run.sh [--no-m4] [--slice-ms N] [--only a,b] [--passes N]
#
# --no-m4      skip firmware/bench.sh (Cortex-M4 instructions, flash, arena, stack under QEMU)
# --slice-ms   timed milliseconds per engine in each of 5 rounds (default 200)
# --only       only these model folders under models/
# --passes     this many passes over the models (default 3), each alternating Kinglet + tract
#              and ONNX Runtime model by model; each engine and model keeps its pass with the
#              lowest median (bench/table.py): on a shared machine, one quiet or loaded
#              stretch no longer decides a ratio
# Needs /work/venv/bin/python (or $PYTHON) with bench/requirements.txt installed.
# Raw results go to bench/out/ (kinglet.N.MODEL.json, ort.N.MODEL.json per pass N, m4.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."

M4=1
SLICE=200
ONLY=""
PASSES=3
while [ $# -gt 0 ]; do
    case "$1" in
        --no-m4) M4=0 ;;
        --slice-ms) SLICE="$2"; shift ;;
        --only) ONLY="$2"; shift ;;
        --passes) PASSES="$2"; shift ;;
        *) echo "usage: bash bench/run.sh [--no-m4] [--slice-ms N] [--only a,b] [--passes N]" >&2; exit 2 ;;
    esac
    shift
done
PY="${PYTHON:-/work/venv/bin/python}"
OUT=bench/out
mkdir -p "$OUT"

echo "== build (release)"
cargo build --release -p kinglet-quantizer
KINGLET=target/release/kinglet

# The models: --only's list, or every folder with a model.kgl (fixtures* excepted).
if [ -n "$ONLY" ]; then
    IFS=, read -r -a MODELS <<< "$ONLY"
else
    MODELS=()
    for kgl in models/*/model.kgl; do
        name=$(basename "$(dirname "$kgl")")
        # fixtures: not example models; *_unit16: a Cortex-M layout of another folder's model,
        # which the host runs on the reference loop (the M4 loop below still measures it).
        case "$name" in fixtures* | *_unit16) continue ;; esac
        MODELS+=("$name")
    done
fi
# Passes of the whole list; within a pass, model by model, Kinglet + tract then ONNX Runtime,
# so that the engines compared meet the machine minutes apart at most, not a whole run apart.
rm -f "$OUT"/kinglet.*.json "$OUT"/ort.*.json
KJSON=() OJSON=()
for pass in $(seq "$PASSES"); do
    for m in "${MODELS[@]}"; do
        echo "== pass $pass/$PASSES, $m: Kinglet and tract, ONNX Runtime"
        "$KINGLET" bench --slice-ms "$SLICE" --only "$m" --json "$OUT/kinglet.$pass.$m.json"
        KJSON+=("$OUT/kinglet.$pass.$m.json")
        "$PY" bench/ort_bench.py --slice-ms "$SLICE" --only "$m" --json "$OUT/ort.$pass.$m.json" \
            2> >(grep -v -E '^WARNING|^$' >&2)
        OJSON+=("$OUT/ort.$pass.$m.json")
    done
done

M4ARGS=()
if [ "$M4" = 1 ]; then
    if [ -x firmware/bench.sh ] || [ -f firmware/bench.sh ]; then
        echo "== Cortex-M4 (firmware/bench.sh under QEMU)"
        : > "$OUT/m4.jsonl"
        for kgl in models/*/model.kgl; do
            name=$(basename "$(dirname "$kgl")")
            case "$name" in fixtures*) continue ;; esac
            if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then continue; fi
            if line=$(bash firmware/bench.sh "$kgl" | grep '^{' | tail -1) && [ -n "$line" ]; then
                echo "$line" | tee -a "$OUT/m4.jsonl"
            else
                echo "firmware/bench.sh $kgl failed; its M4 cells stay empty" >&2
            fi
        done
        M4ARGS=(--m4 "$OUT/m4.jsonl")
    else
        echo "firmware/bench.sh is not there: M4 columns left empty (or pass --no-m4)" >&2
        M4ARGS=(--m4-note "Cortex-M4 columns: not measured in this run (firmware/bench.sh missing).")
    fi
else
    M4ARGS=(--m4-note "Cortex-M4 columns: not measured in this run (--no-m4); see the firmware table above.")
fi

CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
MACHINE="$CPU, $(nproc) cores under KVM, shared with other builds (load average $(cut -d' ' -f1-3 /proc/loadavg))"
CMD="bash bench/run.sh"
[ "$M4" = 0 ] && CMD="$CMD --no-m4"
[ "$SLICE" != 200 ] && CMD="$CMD --slice-ms $SLICE"
[ -n "$ONLY" ] && CMD="$CMD --only $ONLY"
[ "$PASSES" != 3 ] && CMD="$CMD --passes $PASSES"
echo "== table"
"$PY" bench/table.py --kinglet "${KJSON[@]}" --ort "${OJSON[@]}" "${M4ARGS[@]}" \
    --readme README.md --machine "$MACHINE" --command "$CMD"
