#!/usr/bin/env bash
# Builds every firmware app for every target, runs each under QEMU (qemu-run.sh, which decodes
# the apps' defmt frames with defmt-print) and diffs what it prints against the snapshot in
# expected/<app>-<target>.out. Also:
#   - kws: the device's detections (clip, time, keyword, score) against the host's own
#     `kinglet kws --stream` on the same WAV files (../target/debug/kinglet, built if missing);
#   - the arena refusal: forecast on thumbv6m built with a 512-byte arena must refuse to start;
#   - on thumbv7em (mps2-an386), exact instruction counts and estimated Cortex-M4 cycles per
#     inference / step from the m4cycles QEMU plugin (../../shared/tools/m4cycles; skipped,
#     with a message, if that source is not there), against expected/<app>-thumbv7em-none-eabihf.m4cycles.
# Each snapshot holds the app's output, its exit status and its section sizes.
#
# usage: ./check.sh            check; exits non-zero on any difference
#        ./check.sh --bless    rewrite the snapshots from this run (after a deliberate change)
# Needs: cargo with the three thumb targets, qemu-system-arm 7.2 (QEMU=... to override),
# defmt-print (cargo install defmt-print), nm and size (binutils), gcc for the plugin.
set -euo pipefail

# The .cargo/config.toml flags of each target, plus a remap of the checkout's absolute path,
# so that panic-location strings (and so .rodata sizes) do not depend on where the repository
# was cloned: the snapshots must match on any machine.
root=$(cd "$(dirname "$0")/.." && pwd)
flags_for() {
    local f="-C link-arg=-Tlink.x --remap-path-prefix=$root=/kinglet"
    case $1 in thumbv8m.main-none-eabihf) f="-C target-cpu=cortex-m33 $f" ;; esac
    echo "$f"
}
cd "$(dirname "$0")"
bless=0
[ "${1:-}" = --bless ] && bless=1

targets=(thumbv7em-none-eabihf thumbv8m.main-none-eabihf thumbv6m-none-eabi)
apps=(forecast kws)
work=target/check
mkdir -p "$work" expected
pass=0 fail=0

# compare NAME FILE: FILE against expected/NAME (or write it with --bless).
# Code and section sizes move by a few bytes with the path of the checkout: cargo's metadata
# hash of a path dependency includes its path, so symbol names, and with them LTO's layout and
# alignment padding, differ between clones (measured: +4 bytes of .text in /tmp/ci/main against
# /work/main, same commit). The size lines (`sections:`, `flash bytes:`, `flash_code_bytes`) are
# therefore compared within SIZE_SLACK bytes per figure; every other line, instruction counts
# included, exactly.
SIZE_SLACK=${SIZE_SLACK:-64}
size_re='^sections: |flash bytes: |"flash_code_bytes"'
# masked FILE: FILE with the numbers of its size lines replaced by N.
masked() { sed -E "/$size_re/ s/[0-9]+/N/g" "$1"; }
# sizes_close WANT GOT: the size lines' numbers agree pairwise within SIZE_SLACK.
sizes_close() {
    local a b
    a=$(grep -E "$size_re" "$1" | grep -oE '[0-9]+' | tr '\n' ' ' || true)
    b=$(grep -E "$size_re" "$2" | grep -oE '[0-9]+' | tr '\n' ' ' || true)
    awk -v a="$a" -v b="$b" -v slack="$SIZE_SLACK" 'BEGIN {
        n = split(a, x, " "); m = split(b, y, " ")
        if (n != m) exit 1
        for (i = 1; i <= n; i++) { d = x[i] - y[i]; if (d < 0) d = -d; if (d > slack) exit 1 }
    }'
}

compare() {
    local want=expected/$1
    if [ "$bless" = 1 ]; then
        cp "$2" "$want"
        echo "blessed $want"
        pass=$((pass + 1))
    elif [ -f "$want" ] && diff -u <(masked "$want") <(masked "$2") && sizes_close "$want" "$2"; then
        if ! diff -q "$want" "$2" >/dev/null; then
            echo "     $1: sizes within $SIZE_SLACK bytes of the snapshot:"
            diff "$want" "$2" | grep -E '^[<>]' | sed 's/^/     /' || true
        fi
        echo "ok   $1"
        pass=$((pass + 1))
    else
        if [ -f "$want" ] && ! sizes_close "$want" "$2"; then
            echo "     sizes differ by more than $SIZE_SLACK bytes:"
            diff "$want" "$2" | grep -E "^[<>].*($size_re)" | sed 's/^/     /' || true
        fi
        [ -f "$want" ] || echo "missing snapshot $want (run ./check.sh --bless to create it)"
        echo "FAIL $1 (differs from $want; if the change is intended: ./check.sh --bless)"
        fail=$((fail + 1))
    fi
}

# run_app NAME ELF: run under QEMU, record output, exit status and sizes, compare.
run_app() {
    local out=$work/$1.out rc=0
    ./qemu-run.sh "$2" >"$out" 2>"$work/$1.stderr" || rc=$?
    echo "exit status: $rc" >>"$out"
    size -A "$2" | awk '$1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" || $1 == ".data" || $1 == ".bss" { printf "%s%s %s", sep, $1, $2; sep = ", " } END { print "" }' |
        sed 's/^/sections: /' >>"$out"
    [ -s "$work/$1.stderr" ] && sed 's/^/qemu stderr: /' "$work/$1.stderr"
    compare "$1.out" "$out"
}

start=$SECONDS
for t in "${targets[@]}"; do
    RUSTFLAGS=$(flags_for "$t") cargo build --release --quiet --target "$t" --bins
    for a in "${apps[@]}"; do
        run_app "$a-$t" "target/$t/release/$a"
    done
done

# An arena that does not fit must be refused at start, giving both sizes.
KINGLET_ARENA_BYTES=512 RUSTFLAGS=$(flags_for thumbv6m-none-eabi) cargo build --release --quiet --target thumbv6m-none-eabi --bin forecast
run_app forecast-thumbv6m-none-eabi-arena512 target/thumbv6m-none-eabi/release/forecast
# Leave the normal build in place.
RUSTFLAGS=$(flags_for thumbv6m-none-eabi) cargo build --release --quiet --target thumbv6m-none-eabi --bin forecast

# kws: the device's detections, written as `kinglet kws --stream` prints them, must equal the
# host tool's output on the same clips (the score to the 3 decimals the tool prints; the device
# also checks every score's f32 bits against build.rs's host computation).
kinglet=${KINGLET:-../target/debug/kinglet}
[ -x "$kinglet" ] || (cd .. && cargo build --quiet -p kinglet-quantizer --bin kinglet)
clips=$(sed -n 's/^INFO  clip [0-9]* \(.*\): [0-9]* samples.*/\1/p' "$work/kws-thumbv7em-none-eabihf.out")
if [ -z "$clips" ]; then
    echo "FAIL kws-host: no clips in the device output"
    fail=$((fail + 1))
else
    (cd .. && for c in $clips; do "${kinglet#../}" kws --stream models/kws_gru/model.kgl "models/kws_gru/clips/$c"; done) \
        >"$work/kws-host.txt"
    for t in thumbv7em-none-eabihf thumbv8m.main-none-eabihf; do
        awk '
            /^INFO  clip [0-9]+ .*: detected / {
                name = $4; sub(":$", "", name); ms = $8
                printf "models/kws_gru/clips/%s\t%.2f s\t%s\t%.3f\n", name, ms / 1000, $6, $13
                seen[name] = 1
            }
            /^INFO  clip [0-9]+ .*: [0-9]+ samples/ {
                name = $4; sub(":$", "", name)
                if (!(name in seen)) printf "models/kws_gru/clips/%s\t(no keyword above 0.60)\n", name
            }' "$work/kws-$t.out" >"$work/kws-device-$t.txt"
        if diff -u "$work/kws-host.txt" "$work/kws-device-$t.txt"; then
            echo "ok   kws-$t detections = kinglet kws --stream ($(grep -c . "$work/kws-host.txt") clips)"
            pass=$((pass + 1))
        else
            echo "FAIL kws-$t detections differ from kinglet kws --stream"
            fail=$((fail + 1))
        fi
    done
fi

# Exact instructions and estimated M4 cycles between the apps' kinglet_mark() calls.
plugin_src=${M4CYCLES_SRC:-../../shared/tools/m4cycles/m4cycles.c}
if [ -f "$plugin_src" ]; then
    gcc -O2 -Wall -shared -fPIC -o "$work/libm4cycles.so" "$plugin_src"
    t=thumbv7em-none-eabihf
    for a in "${apps[@]}"; do
        elf=target/$t/release/$a
        mark=$(nm "$elf" | awk '$3 == "kinglet_mark" { print "0x" $1 }')
        timeout 120 "${QEMU:-qemu-system-arm}" -cpu cortex-m4 -machine mps2-an386 -nographic \
            -semihosting-config enable=on,target=native -icount shift=0 \
            -d plugin -D "$work/$a.m4cycles.log" -plugin "$work/libm4cycles.so,mark=$mark" \
            -kernel "$elf" >/dev/null
        # Marks come in pairs around each measured call: even intervals are the calls. kws
        # measures each 20 ms hop of audio (front-end, quantize, step, posterior), 50 hops per
        # 1 s clip, the first of which only fills the front-end's window; forecast measures
        # each Session::run.
        case $a in kws) group=50 ;; *) group=1 ;; esac
        awk -v group="$group" -v app="$a" '
            /interval/ {
                k = $3
                if (k % 2) next
                n = k / 2
                kind = (group == 1) ? "forecast (run)" : (n % group == 0 ? "first hop of a clip (no frame yet)" : "hop (front-end + step + posterior)")
                # + 0: numbers, not strings (sub() leaves strings, which compare as text, so
                # 99283 > 100191 once the counts cross a digit boundary).
                i = $4; sub("insns=", "", i); i += 0; c = $5; sub("cycles=", "", c); c += 0
                cnt[kind]++; si[kind] += i; sc[kind] += c
                if (!(kind in lo) || i < lo[kind]) lo[kind] = i
                if (i > hi[kind]) hi[kind] = i
            }
            END {
                for (kind in cnt)
                    printf "m4cycles %s per %s: insns mean %d (min %d, max %d), est. M4 cycles mean %d, over %d\n",
                        app, kind, si[kind] / cnt[kind], lo[kind], hi[kind], sc[kind] / cnt[kind], cnt[kind]
            }' "$work/$a.m4cycles.log" | sort >"$work/$a-$t.m4cycles"
        compare "$a-$t.m4cycles" "$work/$a-$t.m4cycles"
    done
else
    echo "skipped: m4cycles ($plugin_src not found)"
fi

# kernels: the DSP matvec against the reference on 451 shapes on the device (M4, M33; the
# reference itself on M0), plus exact counts on M4 for the matvec (64², 128², 256²) and the ops
# of mnist_lstm and kws_gru. bench: bench.sh's JSON line for mnist_lstm (both LSTM layouts) on M4. Both so that
# instruction counts show in review.
for t in "${targets[@]}"; do
    KINGLET_RAW=1 run_app "kernels-$t" "target/$t/release/kernels"
done
if [ -f "$plugin_src" ]; then
    t=thumbv7em-none-eabihf elf=target/thumbv7em-none-eabihf/release/kernels
    mark=$(nm "$elf" | awk '$3 == "kinglet_mark" { print "0x" $1 }')
    timeout 120 "${QEMU:-qemu-system-arm}" -cpu cortex-m4 -machine mps2-an386 -nographic \
        -semihosting-config enable=on,target=native -icount shift=0 \
        -d plugin -D "$work/kernels.m4cycles.log" -plugin "$work/libm4cycles.so,mark=$mark" \
        -kernel "$elf" >/dev/null
    # Intervals (kernels.rs): 0, 2, 4 the products; 6-8 mnist_lstm's ops; 10-12 kws_gru's;
    # 14-16 mnist_lstm_unit16's.
    awk '
        BEGIN {
            name[0] = "matvec 64x64"; macs[0] = 4096
            name[2] = "matvec 128x128"; macs[2] = 16384
            name[4] = "matvec 256x256"; macs[4] = 65536
            name[6] = "mnist_lstm LSTM op (28 steps)"; macs[6] = 107520
            name[7] = "mnist_lstm FC op"; macs[7] = 5600
            name[8] = "mnist_lstm SOFTMAX op"
            name[10] = "kws_gru GRU op (49 steps)"; macs[10] = 978432
            name[11] = "kws_gru FC op"; macs[11] = 768
            name[12] = "kws_gru SOFTMAX op"
            name[14] = "mnist_lstm_unit16 LSTM op (28 steps)"; macs[14] = 107520
            name[15] = "mnist_lstm_unit16 FC op"; macs[15] = 5600
            name[16] = "mnist_lstm_unit16 SOFTMAX op"
        }
        /interval/ {
            k = $3
            if (!(k in name)) next
            i = $4; sub("insns=", "", i); c = $5; sub("cycles=", "", c)
            if (k in macs)
                printf "m4cycles kernels %s: insns %d (%.3f per MAC), est. M4 cycles %d (%.3f per MAC)\n", name[k], i, i / macs[k], c, c / macs[k]
            else
                printf "m4cycles kernels %s: insns %d, est. M4 cycles %d\n", name[k], i, c
        }' "$work/kernels.m4cycles.log" >"$work/kernels-$t.m4cycles"
    compare "kernels-$t.m4cycles" "$work/kernels-$t.m4cycles"
    # mnist_lstm in both LSTM layouts (the same model; unit16 takes the unit16 DSP kernel).
    for m in mnist_lstm mnist_lstm_unit16; do
        if ./bench.sh "../models/$m/model.kgl" "$t" >"$work/bench-$m-$t.json"; then
            compare "bench-$m-$t.json" "$work/bench-$m-$t.json"
        else
            echo "FAIL bench-$m-$t (bench.sh failed)"
            fail=$((fail + 1))
        fi
    done
fi

echo "firmware checks took $((SECONDS - start)) s"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
