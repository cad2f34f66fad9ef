#!/usr/bin/env python3
"""Build the linux guest's initramfs, byte for byte the same on every run.

Runs inside the capture container (``python3 /qtrace/guests/linux/mkinitramfs.py --out
/out/linux``) and, for the tests, on any host with Python 3.9+: it needs only the standard
library, so no cpio, gzip or root (the /dev/console node is written into the archive
directly, not created with mknod).

The archive (newc cpio, gzip without name or time) holds::

    /init          this directory's init script
    /bin/busybox   Debian's busybox-static (init installs its applet links at boot)
    /driver.ko     the NIC driver (decompressed if Debian ships it as .ko.xz)
    /driver.name   its name, for the guest's messages
    /dev/console   character device 5:1, so the kernel gives init a console
    /proc /sys     mount points

Every entry has uid/gid 0, mtime 0 and a fixed mode; entries are in sorted order and
numbered from 1, so the output depends only on the input files' bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import lzma
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_KERNEL_DIR = Path("/opt/qtrace-linux")
DEFAULT_BUSYBOX = Path("/bin/busybox")
OUTPUT_NAME = "initramfs.cpio.gz"

S_IFDIR = 0o040000
S_IFREG = 0o100000
S_IFCHR = 0o020000
CONSOLE_MAJOR, CONSOLE_MINOR = 5, 1


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


def cpio_newc(entries: dict[str, tuple[int, bytes, tuple[int, int]]]) -> bytes:
    """A newc archive of ``{name: (mode, data, rdev)}``, sorted by name, with its trailer."""
    chunks = []
    for ino, name in enumerate(sorted(entries), start=1):
        mode, data, rdev = entries[name]
        nlink = 2 if mode & S_IFDIR else 1
        chunks.append(newc_entry(ino, name, mode, data, nlink, rdev))
    chunks.append(newc_entry(0, "TRAILER!!!", 0))
    return b"".join(chunks)


def read_module(kernel_dir: Path, module: str) -> bytes:
    """``<module>.ko`` from ``kernel_dir``, decompressing ``.ko.xz`` if that is what is there."""
    plain = kernel_dir / f"{module}.ko"
    if plain.is_file():
        return plain.read_bytes()
    packed = kernel_dir / f"{module}.ko.xz"
    if packed.is_file():
        return lzma.decompress(packed.read_bytes())
    raise FileNotFoundError(f"neither {plain} nor {packed} exists")


def initramfs_entries(
    init: bytes, busybox: bytes, driver: bytes, module: str
) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """The archive's contents (see the module docstring)."""
    none = (0, 0)
    return {
        ".": (S_IFDIR | 0o755, b"", none),
        "bin": (S_IFDIR | 0o755, b"", none),
        "bin/busybox": (S_IFREG | 0o755, busybox, none),
        "dev": (S_IFDIR | 0o755, b"", none),
        "dev/console": (S_IFCHR | 0o600, b"", (CONSOLE_MAJOR, CONSOLE_MINOR)),
        "driver.ko": (S_IFREG | 0o644, driver, none),
        "driver.name": (S_IFREG | 0o644, module.encode() + b"\n", none),
        "init": (S_IFREG | 0o755, init, none),
        "proc": (S_IFDIR | 0o755, b"", none),
        "sys": (S_IFDIR | 0o755, b"", none),
    }


def gzip_fixed(data: bytes) -> bytes:
    """gzip with no file name and mtime 0 (what ``gzip -n`` does)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory (created)")
    parser.add_argument(
        "--module", required=True, help="the NIC driver module to load (the device pack names it)"
    )
    parser.add_argument(
        "--kernel-dir",
        type=Path,
        default=DEFAULT_KERNEL_DIR,
        help="holds vmlinuz and <module>.ko[.xz]",
    )
    parser.add_argument("--busybox", type=Path, default=DEFAULT_BUSYBOX, help="a static busybox")
    parser.add_argument("--init", type=Path, default=HERE / "init", help="the /init script")
    args = parser.parse_args(argv)
    try:
        driver = read_module(args.kernel_dir, args.module)
        entries = initramfs_entries(
            args.init.read_bytes(), args.busybox.read_bytes(), driver, args.module
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
