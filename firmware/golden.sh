#!/usr/bin/env bash
# Golden hashes on Cortex-M: every committed model file (the names of runtime/tests/golden.txt)
# run on the device on the golden input and compared with the committed hash, which the host
# (x86 SIMD and reference) and aarch64 (QEMU) tests check too: the same bytes on every target.
#
# usage: ./golden.sh [TARGET...]   (default: thumbv7em-none-eabihf thumbv8m.main-none-eabihf
#                                   thumbv6m-none-eabi)
# Models are packed into as few builds of the `golden` app as each board's flash allows
# (budget for model bytes below); a model whose arena does not fit the board's RAM is skipped
# with a line saying so (kws_transformer's 16 KB on the 16 KB microbit). Exits non-zero on any
# mismatch, fault or build error. Needs what check.sh needs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$(dirname "$0")"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(thumbv7em-none-eabihf thumbv8m.main-none-eabihf thumbv6m-none-eabi)

# groups TARGET: one line per build, comma-separated names; "skip NAME why" lines for models
# that cannot run there.
groups() {
    python3 - "$root" "$1" <<'PY'
import os, struct, sys
root, target = sys.argv[1], sys.argv[2]
# Model bytes per build (flash less the app's ~60 KB) and the largest arena the RAM allows.
budget, arena_cap = {
    "thumbv7em-none-eabihf": (420_000, 96_000),
    "thumbv8m.main-none-eabihf": (3_500_000, 400_000),
    "thumbv6m-none-eabi": (180_000, 8_192),
}[target]
names = []
for line in open(os.path.join(root, "runtime/tests/golden.txt")):
    if line.strip() and not line.startswith("#"):
        names.append(line.split()[0])
def path(n):
    p = os.path.join(root, "models/fixtures", n, "model.kgl")
    return p if os.path.exists(p) else os.path.join(root, "models", n, "model.kgl")
groups, cur, size = [], [], 0
for n in names:
    b = open(path(n), "rb").read()
    arena = struct.unpack_from("<I", b, 20)[0]  # header.arena_bytes
    if arena > arena_cap:
        print(f"skip {n} arena {arena} bytes > {arena_cap} on this board's RAM")
        continue
    if cur and size + len(b) > budget:
        groups.append(cur); cur, size = [], 0
    cur.append(n); size += len(b)
if cur:
    groups.append(cur)
for g in groups:
    print(",".join(g))
PY
}

flags_for() {
    local f="-C link-arg=-Tlink.x --remap-path-prefix=$root=/kinglet"
    case $1 in thumbv8m.main-none-eabihf) f="-C target-cpu=cortex-m33 $f" ;; esac
    echo "$f"
}

ok=0 bad=0 skipped=0
for t in "${targets[@]}"; do
    while read -r line; do
        if [[ $line == skip* ]]; then
            echo "$t: $line"
            skipped=$((skipped + 1))
            continue
        fi
        KINGLET_GOLDEN_MODELS=$line RUSTFLAGS=$(flags_for "$t") \
            cargo build --release --quiet --target "$t" --bin golden </dev/null
        out=$(KINGLET_RAW=1 ./qemu-run.sh "target/$t/release/golden" </dev/null) || true
        want=$(tr ',' '\n' <<<"$line" | wc -l)
        got=$(grep -c '^golden .* OK$' <<<"$out" || true)
        sed "s/^/$t: /" <<<"$(grep '^golden ' <<<"$out")"
        ok=$((ok + got))
        [ "$got" = "$want" ] || { bad=$((bad + want - got)); echo "$t: FAIL: $got of $want models match" >&2; }
    done < <(groups "$t")
done
echo "golden on Cortex-M: $ok model runs match runtime/tests/golden.txt, $bad do not, $skipped skipped"
[ "$bad" = 0 ]
