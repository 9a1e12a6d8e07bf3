#!/usr/bin/env bash
# The Raspberry Pi side, for aarch64 Linux under QEMU user mode: the `kinglet` host tool
# (tract included) and the streaming keyword app `kinglet-pi-kws`, cross-built and run with
# -cpu cortex-a72 (Pi 4, `neon` kernel), the app also with -cpu cortex-a76 (Pi 5, `neon-sdot`).
# Their results are compared with the same programs built for this x86 host:
#
#   kinglet validate   kws_gru against tract on aarch64 (thresholds: the int8 file must agree
#                      with tract's float run; tract's own float kernels differ by target)
#   kinglet run        committed models: output .npy byte-identical to the x86 tool's
#   kinglet inspect    kws_gru --json (the file read through memmap2): identical
#   kinglet-pi-kws     the committed clips, as WAV files and as one raw PCM stream on stdin:
#                      detection lines identical to the x86 app's and to `kinglet kws --stream`
#
# Debug builds (tract in release takes ~10 min to build on 2 cores), with the runtime crate
# itself at opt-level 2 for aarch64 so `kinglet run` is not slowed by unoptimised kernels
# under emulation. Uses and keeps the shared target/ directory.
#
# Usage: scripts/pi-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
# shellcheck source=scripts/aarch64-tools.sh
. scripts/aarch64-tools.sh
echo "pi-test: tools ready after $((SECONDS - start)) s"

PKGS=(-p kinglet-quantizer -p kinglet-pi-kws)
AARCH64_OPT=(--config 'profile.dev.package.kinglet.opt-level=2')
t0=$SECONDS
cargo build -q "${PKGS[@]}"
echo "pi-test: x86 tools built in $((SECONDS - t0)) s"
t0=$SECONDS
cargo build -q "${PKGS[@]}" --target "$TARGET" "${AARCH64_OPT[@]}"
echo "pi-test: aarch64 tools built in $((SECONDS - t0)) s"

X86=target/debug
ARM=target/$TARGET/debug
qemu() {
    local cpu=$1
    shift
    timeout 600 qemu-aarch64 -L "$SYSROOT" -cpu "$cpu" "$@"
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
ok() { echo "ok   $*"; }
fail() {
    echo "FAIL $*"
    status=1
}
same() { # same NAME FILE1 FILE2
    if cmp -s "$2" "$3"; then ok "$1"; else
        fail "$1"
        diff "$2" "$3" | head -20 || true
    fi
}

echo "== kinglet validate on aarch64 (cortex-a72) against tract"
t0=$SECONDS
m=models/kws_gru
if qemu cortex-a72 "$ARM/kinglet" validate "$m/model.onnx" "$m/model.kgl" --data "$m/test.npy" \
    --labels "$m/labels.npy" --limit 20 --min-sqnr 35 --min-agreement 0.95 >"$work/validate.txt"; then
    ok "validate kws_gru: $(grep -E 'SQNR \(worst\)' "$work/validate.txt" | tr -s ' ') ($((SECONDS - t0)) s)"
else
    cat "$work/validate.txt"
    fail "validate kws_gru on aarch64"
fi

echo "== kinglet run / inspect on aarch64 (cortex-a72) against x86"
t0=$SECONDS
models=(models/kws_gru models/vit_mnist models/fixtures/*/)
n=0
for d in "${models[@]}"; do
    d=${d%/}
    [ -f "$d/model.kgl" ] && [ -f "$d/test.npy" ] || continue
    name=$(basename "$d")
    "$X86/kinglet" run "$d/model.kgl" --input "$d/test.npy" -o "$work/$name.x86.npy" >/dev/null
    if qemu cortex-a72 "$ARM/kinglet" run "$d/model.kgl" --input "$d/test.npy" \
        -o "$work/$name.arm.npy" >/dev/null && cmp -s "$work/$name.x86.npy" "$work/$name.arm.npy"; then
        n=$((n + 1))
    else
        fail "run $name: aarch64 output differs from x86 (or failed)"
    fi
done
ok "run: $n models, output bytes identical to x86 ($((SECONDS - t0)) s)"
"$X86/kinglet" inspect models/kws_gru/model.kgl --json >"$work/inspect.x86.json"
qemu cortex-a72 "$ARM/kinglet" inspect models/kws_gru/model.kgl --json >"$work/inspect.arm.json"
same "inspect kws_gru --json identical" "$work/inspect.x86.json" "$work/inspect.arm.json"

echo "== kinglet-pi-kws on aarch64 against x86 and kinglet kws --stream"
clips=(models/kws_gru/clips/*/*.wav)
# The clips as one raw s16le stream: each is a canonical 44-byte-header 16-bit mono WAV.
for c in "${clips[@]}"; do
    [ "$(head -c 40 "$c" | tail -c 4)" = data ] || {
        fail "$c: not a canonical WAV"
        continue
    }
    tail -c +45 "$c"
done >"$work/all.raw"
"$X86/kinglet" kws --stream models/kws_gru/model.kgl "${clips[@]}" >"$work/kws.host.txt"
"$X86/kinglet-pi-kws" models/kws_gru/model.kgl "${clips[@]}" >"$work/pi.x86.txt" 2>/dev/null
"$X86/kinglet-pi-kws" models/kws_gru/model.kgl - <"$work/all.raw" >"$work/pi-stdin.x86.txt" 2>/dev/null
same "x86 app = kinglet kws --stream on ${#clips[@]} clips" "$work/kws.host.txt" "$work/pi.x86.txt"
for spec in cortex-a72:neon cortex-a76:neon-sdot; do
    cpu=${spec%%:*}
    isa=${spec#*:}
    t0=$SECONDS
    qemu "$cpu" "$ARM/kinglet-pi-kws" models/kws_gru/model.kgl "${clips[@]}" \
        >"$work/pi.$cpu.txt" 2>"$work/pi.$cpu.log" || fail "app on $cpu: $(tail -1 "$work/pi.$cpu.log")"
    grep -q "kernels $isa\$" "$work/pi.$cpu.log" || fail "app on $cpu: kernel is not $isa: $(head -1 "$work/pi.$cpu.log")"
    same "app on $cpu ($isa), ${#clips[@]} clips = x86" "$work/pi.x86.txt" "$work/pi.$cpu.txt"
    qemu "$cpu" "$ARM/kinglet-pi-kws" models/kws_gru/model.kgl - <"$work/all.raw" \
        >"$work/pi-stdin.$cpu.txt" 2>"$work/pi-stdin.$cpu.log" || fail "app on $cpu, stdin"
    same "app on $cpu, $(($(wc -c <"$work/all.raw") / 32000)) s of PCM on stdin, $(grep -c . "$work/pi-stdin.x86.txt") detections = x86" \
        "$work/pi-stdin.x86.txt" "$work/pi-stdin.$cpu.txt"
    echo "     ($((SECONDS - t0)) s; debug build under emulation: $(tail -1 "$work/pi-stdin.$cpu.log" | cut -f2))"
done
echo "pi-test: total $((SECONDS - start)) s"
exit $status
