#!/bin/bash
# Stage "source" + "configure" + "compile": a debug qemu-system-x86_64 at /src/qemu.
# Runs inside the toolchain image. The source comes either from Debian's archive
# (DEBIAN_VERSION set, needs --network host) or from a tree mounted at /qtrace-source.
# Usage: build-qemu.sh JOBS [DEBIAN_VERSION]
set -euo pipefail
jobs=$1
debian_version=${2:-}
src=/src/qemu

stage() { echo "==> stage: $1"; }

stage source
rm -rf "$src" /src/debian-pkg
mkdir -p /src/debian-pkg
if [ -n "$debian_version" ]; then
    cd /src/debian-pkg
    # Exit 42 tells qtrace the archive does not serve this version (try the next one).
    apt-get source --download-only -q "qemu=$debian_version" || exit 42
    dsc=$(ls qemu_*.dsc | head -n1)
    # dpkg-source applies Debian's patches; skip-unpack-edk2-blobs is needed for +ds tarballs.
    dpkg-source -x "$dsc" "$src"
    cd / && rm -rf /src/debian-pkg
else
    cp -a /qtrace-source/. "$src"
fi

stage configure
cd "$src"
py=/opt/qtrace-py/bin/python3
flags="--target-list=x86_64-softmmu --enable-debug --disable-docs --disable-werror --enable-kvm --enable-tcg --enable-slirp --disable-gtk --disable-sdl --disable-vnc --disable-opengl --disable-install-blobs"
help=$(./configure --help 2>&1 || true)
# Older trees (7.2) know no --disable-rust and insist on their embedded meson.
if grep -q -- '--disable-rust' <<<"$help"; then flags="$flags --disable-rust"; fi
# 7.2 rejects --python without its embedded meson, but takes --meson; newer trees build
# their own venv from --python (non-isolated, so it sees our meson).
if grep -q -- '--meson=' <<<"$help"; then
    flags="$flags --meson=/opt/qtrace-py/bin/meson"
else
    flags="$flags --python=$py"
fi
echo "configure flags: $flags"
echo "$flags" > /qtrace/configure-flags.txt
mkdir -p build && cd build
# shellcheck disable=SC2086
../configure $flags

stage compile
ninja -j"$jobs" qemu-system-x86_64

stage finish
./qemu-system-x86_64 --version | head -n1 | tee /qtrace/qemu-version.txt
ln -sf "$src/build/qemu-system-x86_64" /usr/local/bin/qemu-system-x86_64
# Object files are not needed to debug the binary; generated sources are kept for gdb.
find "$src/build" -name '*.o' -delete
find "$src/build" -name '*.a' -delete
echo "==> done"
