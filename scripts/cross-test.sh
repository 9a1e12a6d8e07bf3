#!/usr/bin/env bash
# Cross tests of the runtime crate (`kinglet`) for aarch64 Linux, under QEMU user mode:
#
#   cortex-a72  Raspberry Pi 4: NEON without the dot-product extension -> `neon` kernel
#   cortex-a76  Raspberry Pi 5: NEON with `sdot`                        -> `neon-sdot` kernel
#
# Runs the runtime's target-dependent tests once per CPU: the unit tests (every kernel,
# including every SIMD level against the reference), the fixtures SIMD vs reference end to
# end, and the golden hashes of runtime/tests/golden.txt (which the x86 host and the Cortex-M
# firmware check too); and checks that the expected kernel was the one selected. The other
# integration tests (hostile files, property tests) exercise target-independent parsing and
# take many minutes under emulation: CROSS_TEST_ALL=1 runs them too. Only the runtime is built
# for aarch64 (not the quantizer / tract).
#
# Installs what is missing first (scripts/aarch64-tools.sh: QEMU user mode, the aarch64 cross
# gcc as linker, libc, the rustup target). Linker and runner are set through environment
# variables, not in a committed .cargo/config.toml, so nothing else changes.
# The kinglet tool and the Raspberry Pi keyword app are tested on aarch64 by scripts/pi-test.sh.
#
# Usage: scripts/cross-test.sh [extra cargo test args, e.g. --release]
set -euo pipefail
cd "$(dirname "$0")/.."

start=$SECONDS
# shellcheck source=scripts/aarch64-tools.sh
. scripts/aarch64-tools.sh
echo "cross-test: tools ready after $((SECONDS - start)) s"

# Emulated debug code is slow (a property test takes minutes at opt-level 0); opt-level 1
# keeps debug assertions and overflow checks and runs several times faster.
export CARGO_PROFILE_DEV_OPT_LEVEL=${CARGO_PROFILE_DEV_OPT_LEVEL:-1}
if [ -n "${CROSS_TEST_ALL:-}" ]; then
    tests=()
else
    tests=(--lib --test golden --test simd_vs_reference)
fi

# Build once (the runner does not affect the build), then run per CPU.
t0=$SECONDS
cargo test -p kinglet --target "$TARGET" "${tests[@]}" --no-run "$@"
echo "cross-test: built in $((SECONDS - t0)) s"

status=0
for spec in cortex-a72:neon cortex-a76:neon-sdot; do
    cpu=${spec%%:*}
    isa=${spec#*:}
    t0=$SECONDS
    echo "cross-test: === $TARGET on qemu -cpu $cpu (expect kernel $isa) ==="
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="timeout 600 qemu-aarch64 -L $SYSROOT -cpu $cpu"
    # The SIMD-vs-reference test asserts the selected kernel when KINGLET_EXPECT_ISA is set.
    # First the kernel comparison alone, visibly: which levels ran and which were skipped.
    if KINGLET_EXPECT_ISA=$isa cargo test -q -p kinglet --target "$TARGET" --lib "$@" \
        kernels::matvec -- --nocapture 2>&1 | grep -E '^matvec' &&
        KINGLET_EXPECT_ISA=$isa cargo test -p kinglet --target "$TARGET" "${tests[@]}" "$@"; then
        echo "cross-test: $cpu passed in $((SECONDS - t0)) s"
    else
        echo "cross-test: $cpu FAILED after $((SECONDS - t0)) s"
        status=1
    fi
done
echo "cross-test: total $((SECONDS - start)) s"
exit $status
