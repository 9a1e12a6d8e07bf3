#!/usr/bin/env bash
# Installs qemu-system-arm 7.2 (Debian bookworm) for the firmware checks, if it is missing.
# Plain `apt-get install qemu-system-arm` fails on machines that carry a newer qemu-utils
# (10.x from backports breaks qemu-system-common < 8.0), and downgrading qemu-utils would
# touch the machine's own tools. So this unpacks the bookworm package under /opt/qemu72
# instead, installs only the shared libraries it needs, and links the binary into
# /usr/local/bin. Also installs binutils (nm, size) and gcc if absent. Needs root and apt.
set -euo pipefail
if command -v qemu-system-arm >/dev/null && qemu-system-arm --version | grep -q 'version 7\.2'; then
    exit 0
fi
apt-get update -qq
if ! apt-get install -y -qq qemu-system-arm >/dev/null 2>&1; then
    dir=$(mktemp -d)
    (cd "$dir" && apt-get download qemu-system-arm >/dev/null)
    mkdir -p /opt/qemu72
    dpkg -x "$dir"/qemu-system-arm_*.deb /opt/qemu72
    rm -rf "$dir"
    apt-get install -y -qq libfdt1 libpmem1 librdmacm1 libibverbs1 libslirp0 libvdeplug2 libcapstone4 \
        libaio1 libbpf1 libfuse3-3 libglib2.0-0 libgnutls30 libjpeg62-turbo libnuma1 libpixman-1-0 \
        libpng16-16 libsasl2-2 libseccomp2 liburing2 libzstd1 >/dev/null
    ln -sf /opt/qemu72/usr/bin/qemu-system-arm /usr/local/bin/qemu-system-arm
fi
command -v nm >/dev/null && command -v size >/dev/null || apt-get install -y -qq binutils >/dev/null
command -v gcc >/dev/null || apt-get install -y -qq gcc >/dev/null
qemu-system-arm --version | head -1
