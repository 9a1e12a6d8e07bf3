# Sourced by scripts/cross-test.sh and scripts/pi-test.sh: installs what building for and
# running on aarch64 Linux under QEMU user mode needs, if missing (idempotent): the QEMU
# user-mode emulator, the aarch64 cross gcc (as linker) and libc, and the rustup target; then
# sets the linker through the environment (no committed .cargo/config.toml, so native builds,
# on x86 or on a Pi, are untouched).
TARGET=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

pkgs=()
# qemu-utils in the same apt line: otherwise apt may remove a newer preinstalled one.
command -v qemu-aarch64 >/dev/null || pkgs+=(qemu-user qemu-utils)
command -v aarch64-linux-gnu-gcc >/dev/null || pkgs+=(gcc-aarch64-linux-gnu)
[ -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ] && [ -e "$SYSROOT/lib/libc.so" ] ||
    pkgs+=(libc6-dev-arm64-cross)
if [ ${#pkgs[@]} -gt 0 ]; then
    echo "aarch64 tools: installing ${pkgs[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
