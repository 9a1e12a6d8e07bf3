#!/usr/bin/env bash
# Benchmarks one model on a Cortex-M target under QEMU and prints ONE line of JSON:
#   {"model":...,"target":...,"instructions_per_inference":N,"est_m4_cycles":N,"flash_code_bytes":N,
#    "flash_model_bytes":N,"arena_bytes":N,"peak_stack_bytes":N}
#
# usage: ./bench.sh MODEL.kgl [TARGET]     (TARGET: thumbv7em-none-eabihf (default),
#                                          thumbv8m.main-none-eabihf, thumbv6m-none-eabi)
#
# Builds the `bench` app with the model embedded (KINGLET_BENCH_MODEL), runs it once under
# qemu-system-arm with the m4cycles plugin (../../shared/tools/m4cycles, or M4CYCLES_SRC=) and
# reads the interval between the app's two kinglet_mark() calls: one whole inference (copying
# the input in, every op, softmax included). The app checks its int8 outputs against the
# host's (build.rs); a mismatch, a fault or a build error exits non-zero with the reason on
# stderr, and prints no JSON.
#   instructions_per_inference  exact executed instructions (m4cycles "insns")
#   est_m4_cycles               m4cycles' Cortex-M4 TRM estimate (zero wait states); null on
#                               targets other than thumbv7em (the cost model is the M4's)
#   flash_code_bytes            .vector_table + .text + .rodata + .data, less the model file
#                               and the embedded input: the code and constants of the app
#   flash_model_bytes           the .kgl file, read in place from flash
#   arena_bytes                 Model::arena_bytes()
#   peak_stack_bytes            stack painting around the inference (from the top of the stack)
# Needs what check.sh needs: cargo with the thumb targets, qemu-system-arm 7.2 (QEMU=...),
# gcc, nm and size.
set -euo pipefail

model=${1:?usage: bench.sh MODEL.kgl [TARGET]}
target=${2:-thumbv7em-none-eabihf}
[ -f "$model" ] || { echo "bench.sh: no such model file: $model" >&2; exit 2; }
model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$(dirname "$0")"

case $target in
thumbv7em-none-eabihf) cpu=cortex-m4 machine=mps2-an386 flags="" ;;
thumbv8m.main-none-eabihf) cpu=cortex-m33 machine=mps2-an505 flags="-C target-cpu=cortex-m33" ;;
thumbv6m-none-eabi) cpu=cortex-m0 machine=microbit flags="" ;;
*) echo "bench.sh: unknown target $target" >&2; exit 2 ;;
esac
# The same flags as check.sh, so both share one build cache.
flags="$flags -C link-arg=-Tlink.x --remap-path-prefix=$root=/kinglet"

work=target/bench
mkdir -p "$work"
tmp=$(mktemp -d "$work/run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

plugin_src=${M4CYCLES_SRC:-../../shared/tools/m4cycles/m4cycles.c}
[ -f "$plugin_src" ] || { echo "bench.sh: m4cycles plugin source not found: $plugin_src" >&2; exit 2; }
gcc -O2 -Wall -shared -fPIC -o "$tmp/libm4cycles.so" "$plugin_src"

# One build at a time in this folder's target/; the ELF is copied out under the lock.
(
    flock 9
    if ! KINGLET_BENCH_MODEL=$model RUSTFLAGS=$flags cargo build --release --quiet --target "$target" --bin bench >"$tmp/build.log" 2>&1; then
        cat "$tmp/build.log" >&2
        echo "bench.sh: build failed for $model on $target" >&2
        exit 1
    fi
    cp "target/$target/release/bench" "$tmp/bench.elf"
) 9>"$work/lock"

elf=$tmp/bench.elf
mark=$(nm "$elf" | awk '$3 == "kinglet_mark" { print "0x" $1 }')
[ -n "$mark" ] || { echo "bench.sh: no kinglet_mark in $elf" >&2; exit 1; }
rc=0
timeout "${QEMU_TIMEOUT:-300}" "${QEMU:-qemu-system-arm}" -cpu "$cpu" -machine "$machine" -nographic \
    -semihosting-config enable=on,target=native -icount shift=0 \
    -d plugin -D "$tmp/m4cycles.log" -plugin "$tmp/libm4cycles.so,mark=$mark" \
    -kernel "$elf" >"$tmp/out.txt" 2>"$tmp/err.txt" || rc=$?
if [ "$rc" != 0 ] || ! grep -q ': OK$' "$tmp/out.txt"; then
    cat "$tmp/out.txt" "$tmp/err.txt" >&2
    echo "bench.sh: the app failed (exit status $rc) for $model on $target" >&2
    exit 1
fi

field() { sed -n "s/.*[ ]$1=\([0-9]*\).*/\1/p" "$2" | head -n1; }
line=$(grep '^bench: ' "$tmp/out.txt")
echo "$line" >"$tmp/bench.txt"
model_bytes=$(field model_bytes "$tmp/bench.txt")
input_bytes=$(field input_bytes "$tmp/bench.txt")
arena=$(field arena_bytes "$tmp/bench.txt")
stack=$(field peak_stack_bytes "$tmp/bench.txt")
grep '^m4cycles: interval 0 ' "$tmp/m4cycles.log" >"$tmp/interval.txt" || {
    echo "bench.sh: no measured interval in the m4cycles log" >&2
    exit 1
}
insns=$(field insns "$tmp/interval.txt")
cycles=$(field cycles "$tmp/interval.txt")
[ "$target" = thumbv7em-none-eabihf ] || cycles=null
flash=$(size -A "$elf" | awk '$1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" || $1 == ".data" { s += $2 } END { print s }')
code=$((flash - model_bytes - input_bytes))
name=$(basename "$(dirname "$model")")
printf '{"model":"%s","target":"%s","instructions_per_inference":%s,"est_m4_cycles":%s,"flash_code_bytes":%s,"flash_model_bytes":%s,"arena_bytes":%s,"peak_stack_bytes":%s}\n' \
    "$name" "$target" "$insns" "$cycles" "$code" "$model_bytes" "$arena" "$stack"
