#!/bin/bash
# Stage "linux modules": the part of Debian's kernel module tree the linux guest loads its
# drivers from, with the modules.alias and modules.dep that choose and order them.
# Runs in a container made from the compiled QEMU image (--network host: one package
# download), after the compile, so a change here rebuilds only this stage
# (qtrace/image/builder.py). The toolchain stage (install-deps.sh) put the kernel itself in
# /opt/qtrace-linux; this stage takes the modules of the same package.
# Usage: install-linux-modules.sh
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
out=/opt/qtrace-linux

# A module is kept when it lies in one of these trees (the drivers of the device classes the
# guest has a workload for: network, block, nvme, virtio, hwrng) and modules.alias binds it
# to a PCI or virtio device; with it, everything modules.dep says it needs, wherever that
# lies (lib/, crypto/, net/, block/). No wireless: QEMU emulates no PCI wireless card.
keep_trees='^kernel/drivers/(net|block|nvme|virtio|char/hw_random)/'
skip_trees='^kernel/drivers/net/wireless/'

stage() { echo "==> stage: $1"; }

stage "linux modules"
work=$(mktemp -d)
cd "$work"
pkg=$(cat "$out/kernel-package.txt")
if ! apt-get download -q "$pkg"; then
    # The archive moved on to a newer kernel since the toolchain was built: take the current
    # one, kernel and modules both (a module loads only into the kernel it was built for).
    echo "qtrace: $pkg is no longer in the archive; taking the current kernel"
    apt-get update -q
    pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9][^ ]*\).*/\1/p' | head -n1)
    apt-get download -q "$pkg"
fi
dpkg-deb -x ./*.deb root
kver=$(ls root/lib/modules)
cp root/boot/vmlinuz-"$kver" "$out/vmlinuz"
echo "$pkg" > "$out/kernel-package.txt"
# The toolchain stage's e1000.ko and e1000e.ko: the guest takes every driver from the tree now.
rm -f "$out"/*.ko
# Debian's package ships no modules.dep or modules.alias (its postinst runs depmod).
busybox depmod -b root "$kver"
tree=root/lib/modules/$kver
awk -v keep="$keep_trees" -v skip="$skip_trees" '
    FNR == NR { if ($2 ~ /^(pci|virtio):/) bound[$3] = 1; next }
    {
        path = $1; sub(/:$/, "", path)
        name = path; sub(/.*\//, "", name); sub(/\.ko.*$/, "", name); gsub(/-/, "_", name)
        if (path ~ keep && path !~ skip && name in bound) { print path; for (i = 2; i <= NF; i++) print $i }
    }' "$tree/modules.alias" "$tree/modules.dep" | sort -u > keep.txt
rm -rf "$out/modules"
dest=$out/modules/lib/modules/$kver
mkdir -p "$dest"
(cd "$tree" && xargs cp --parents -t "$dest") < keep.txt
# The kept tree's own modules.dep and modules.alias: every path in them exists.
busybox depmod -b "$out/modules" "$kver"
rm -f "$dest/modules.symbols"
echo "kept $(wc -l < keep.txt) modules ($(du -sh "$dest" | cut -f1)) of $(wc -l < "$tree/modules.dep")"
cd / && rm -rf "$work"
ls -l "$out" "$dest"
echo "==> done"
