#!/usr/bin/env python3
"""Build the linux guest's initramfs, byte for byte the same on every run.

Runs inside the capture container (``python3 /qtrace/guests/linux/mkinitramfs.py --out
/out/linux``) and, for the tests, on any host with Python 3.9+: it needs only the standard
library, so no cpio, gzip or root (the /dev/console node is written into the archive
directly, not created with mknod).

The archive (newc cpio, gzip without name or time) holds::

    /init             this directory's init script
    /workloads        this directory's workload table (one workload per device class)
    /bin/busybox      Debian's busybox-static (init installs its applet links at boot)
    /lib/modules/...  the image's module tree (``<kernel-dir>/modules``): the drivers and
                      their dependencies, modules.alias and modules.dep, as the image
                      holds them; the guest chooses the driver itself, from modules.alias
    /dev/console      character device 5:1, so the kernel gives init a console
    /proc /sys /tmp   mount points and scratch space

No driver is chosen here: the guest finds its device's modalias in sysfs and loads what
modules.alias names for it, as udev would, so the initramfs is the same for every device.

Every entry has uid/gid 0, mtime 0 and a fixed mode; entries are in sorted order and
numbered from 1, so the output depends only on the input files' bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_KERNEL_DIR = Path("/opt/qtrace-linux")
DEFAULT_BUSYBOX = Path("/bin/busybox")
MODULES_SUBDIR = "modules"
"""Under the kernel directory: a root holding ``lib/modules/<version>/`` (the image's
``docker/install-linux-modules.sh`` puts it there)."""
OUTPUT_NAME = "initramfs.cpio.gz"
GZIP_LEVEL = 1
"""Most of the archive is kernel modules, which level 9 shrinks only a few percent more
at several times the cost (measured: 38 MB of modules, 11.4 MB in 0.4 s at level 1,
10.4 MB in 3.1 s at level 6); the guest unpacks it either way."""

S_IFDIR = 0o040000
S_IFREG = 0o100000
S_IFCHR = 0o020000
CONSOLE_MAJOR, CONSOLE_MINOR = 5, 1

Entry = tuple[int, bytes, tuple[int, int]]
"""An archive member: mode, data, (rdev major, minor)."""


def newc_entry(
    ino: int,
    name: str,
    mode: int,
    data: bytes = b"",
    nlink: int = 1,
    rdev: tuple[int, int] = (0, 0),
) -> bytes:
    """One newc record: header, NUL-terminated name and data, each padded to 4 bytes."""
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % value for value in fields)
    out = header + encoded
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


def cpio_newc(entries: dict[str, Entry]) -> bytes:
    """A newc archive of ``{name: (mode, data, rdev)}``, sorted by name, with its trailer."""
    chunks = []
    for ino, name in enumerate(sorted(entries), start=1):
        mode, data, rdev = entries[name]
        nlink = 2 if mode & S_IFDIR else 1
        chunks.append(newc_entry(ino, name, mode, data, nlink, rdev))
    chunks.append(newc_entry(0, "TRAILER!!!", 0))
    return b"".join(chunks)


def tree_entries(root: Path) -> dict[str, Entry]:
    """Every directory and regular file under ``root``, by path relative to it (modes
    normalised: 0755 directories, 0644 files); the directories leading to ``root`` are the
    caller's."""
    none = (0, 0)
    entries: dict[str, Entry] = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_dir():
            entries[name] = (S_IFDIR | 0o755, b"", none)
        elif path.is_file():
            entries[name] = (S_IFREG | 0o644, path.read_bytes(), none)
    return entries


def module_tree(kernel_dir: Path) -> dict[str, Entry]:
    """The image's module tree as archive entries (``lib/modules/<version>/...``).

    Raises:
        FileNotFoundError: the image has no module tree with a modules.alias (an image built
            before the linux-modules stage existed: rebuild it).
    """
    root = kernel_dir / MODULES_SUBDIR
    aliases = sorted(root.glob("lib/modules/*/modules.alias"))
    if not aliases:
        raise FileNotFoundError(
            f"no {root}/lib/modules/<version>/modules.alias (rebuild the image: qtrace build)"
        )
    return tree_entries(root)


def initramfs_entries(
    init: bytes, workloads: bytes, busybox: bytes, modules: dict[str, Entry]
) -> dict[str, Entry]:
    """The archive's contents (see the module docstring)."""
    none = (0, 0)
    return {
        **modules,
        ".": (S_IFDIR | 0o755, b"", none),
        "bin": (S_IFDIR | 0o755, b"", none),
        "bin/busybox": (S_IFREG | 0o755, busybox, none),
        "dev": (S_IFDIR | 0o755, b"", none),
        "dev/console": (S_IFCHR | 0o600, b"", (CONSOLE_MAJOR, CONSOLE_MINOR)),
        "init": (S_IFREG | 0o755, init, none),
        "proc": (S_IFDIR | 0o755, b"", none),
        "sys": (S_IFDIR | 0o755, b"", none),
        "tmp": (S_IFDIR | 0o1777, b"", none),
        "workloads": (S_IFREG | 0o644, workloads, none),
    }


def gzip_fixed(data: bytes) -> bytes:
    """gzip with no file name and mtime 0 (what ``gzip -n`` does)."""
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory (created)")
    parser.add_argument(
        "--kernel-dir",
        type=Path,
        default=DEFAULT_KERNEL_DIR,
        help=f"holds vmlinuz and the module tree ({MODULES_SUBDIR}/lib/modules/<version>)",
    )
    parser.add_argument("--busybox", type=Path, default=DEFAULT_BUSYBOX, help="a static busybox")
    parser.add_argument("--init", type=Path, default=HERE / "init", help="the /init script")
    parser.add_argument(
        "--workloads", type=Path, default=HERE / "workloads", help="the workload table"
    )
    args = parser.parse_args(argv)
    try:
        entries = initramfs_entries(
            args.init.read_bytes(),
            args.workloads.read_bytes(),
            args.busybox.read_bytes(),
            module_tree(args.kernel_dir),
        )
    except OSError as exc:
        print(f"mkinitramfs: {exc}", file=sys.stderr)
        return 1
    image = gzip_fixed(cpio_newc(entries))
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / OUTPUT_NAME
    target.write_bytes(image)
    print(f"{target}: {len(image)} bytes, sha256 {hashlib.sha256(image).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
