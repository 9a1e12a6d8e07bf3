#!/usr/bin/env bash
# Cargo runner: boots a firmware ELF in QEMU with semihosting, picking the machine from the
# target directory in the ELF's path (target/<triple>/<profile>/<bin>).
# `-icount shift=0` makes the virtual clock advance one nanosecond per instruction, so SysTick
# counts executed instructions exactly and runs are repeatable.
# The apps log with defmt over semihosting: QEMU's stdout carries binary defmt frames, which
# `defmt-print -e ELF` (cargo install defmt-print) decodes into text here, one line per message
# ("LEVEL message"). KINGLET_RAW=1 passes QEMU's stdout through undecoded (the bench app prints
# plain text).
# Override the binaries with QEMU=/path/to/qemu-system-arm and DEFMT_PRINT=/path/to/defmt-print.
set -euo pipefail
elf=${1:?usage: qemu-run.sh path/to/elf}
case "$elf" in
*thumbv7em-none-eabi*) cpu=cortex-m4 machine=mps2-an386 ;;
*thumbv8m.main-none-eabi*) cpu=cortex-m33 machine=mps2-an505 ;;
*thumbv6m-none-eabi*) cpu=cortex-m0 machine=microbit ;;
*)
    echo "qemu-run.sh: cannot tell the target from '$elf'" >&2
    exit 2
    ;;
esac
qemu() {
    timeout "${QEMU_TIMEOUT:-120}" "${QEMU:-qemu-system-arm}" -cpu "$cpu" -machine "$machine" -nographic \
        -semihosting-config enable=on,target=native -icount shift=0 -kernel "$elf"
}
if [ "${KINGLET_RAW:-0}" = 1 ] || [ "$(basename "$elf")" = bench ]; then
    qemu
else
    # pipefail: the exit status is QEMU's (the app's) unless the decoder fails.
    qemu | "${DEFMT_PRINT:-defmt-print}" --log-format '{L:<5} {s}' -e "$elf"
fi
