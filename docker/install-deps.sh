#!/bin/bash
# Stage "packages": turn a plain Debian bookworm rootfs into the qtrace toolchain image.
# Runs inside a container with --network host (package downloads only).
# Usage: install-deps.sh PACKAGES_FILE WHEELS_DIR
# WHEELS_DIR holds meson and pycotap wheels downloaded by the host's pip (the host's pip
# is configured for its network; the container's need not be).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages_file=$1
wheels_dir=$2

# Source indexes for QEMU: bookworm (7.2), trixie (10.0.x) and sid (current).
cat > /etc/apt/sources.list.d/qtrace-src.list <<'LIST'
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian trixie main
deb-src http://deb.debian.org/debian sid main
LIST
# The archive may be a dated snapshot whose sid Release file has expired; it is still signed.
echo 'Acquire::Check-Valid-Until "false";' > /etc/apt/apt.conf.d/99qtrace-snapshot
echo "==> apt-get update"
apt-get update -q
echo "==> apt-get install"
grep -v '^#' "$packages_file" | xargs apt-get install -y -q --no-install-recommends
echo "==> meson and pycotap for QEMU's configure (Debian 12 ships meson 1.0)"
python3 -m venv /opt/qtrace-py
/opt/qtrace-py/bin/pip install -q --no-index --find-links "$wheels_dir" meson==1.9.0 pycotap==1.3.1
echo "==> Debian's kernel for the linux guest (only vmlinuz and the NIC drivers are kept)"
kernel_pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9][^ ]*\).*/\1/p' | head -n1)
mkdir -p /tmp/qtrace-kernel /opt/qtrace-linux
(cd /tmp/qtrace-kernel && apt-get download -q "$kernel_pkg" && dpkg-deb -x ./*.deb root)
cp /tmp/qtrace-kernel/root/boot/vmlinuz-* /opt/qtrace-linux/vmlinuz
find /tmp/qtrace-kernel/root/lib/modules -name 'e1000*.ko*' -exec cp {} /opt/qtrace-linux/ \;
echo "$kernel_pkg" > /opt/qtrace-linux/kernel-package.txt
rm -rf /tmp/qtrace-kernel
ls -l /opt/qtrace-linux

echo "==> QEMU versions listed by the source indexes"
mkdir -p /qtrace
apt-cache showsrc qemu | sed -n 's/^Version: //p' | sort -u > /qtrace/qemu-source-versions.txt
sed 's/^/qemu-source-version: /' /qtrace/qemu-source-versions.txt
apt-get clean
echo "==> done"
