"""The linux guest's initramfs builder (``qtrace/guests/linux/mkinitramfs.py``) on the host.

The capture image runs the same script with Debian's busybox and e1000.ko; here fake
inputs stand in for them. The archive must be byte-identical across runs, hold exactly
the files the init script expects, in newc format, and be what the kernel can unpack.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qtrace.guests.linux_plan import INITRAMFS_NAME

LINUX_DIR = Path(__file__).resolve().parents[3] / "qtrace" / "guests" / "linux"
SCRIPT = LINUX_DIR / "mkinitramfs.py"
INIT = LINUX_DIR / "init"

Entry = tuple[int, int, int, bytes, tuple[int, int]]  # mode, mtime, uid, data, rdev


def _parse_newc(archive: bytes) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    pos = 0
    while True:
        assert archive[pos : pos + 6] == b"070701", f"newc magic at {pos}"
        fields = [int(archive[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        _ino, mode, uid, _gid, _nlink, mtime, size, _maj, _min, rmaj, rmin, namesize, _check = (
            fields
        )
        name_start = pos + 110
        name = archive[name_start : name_start + namesize - 1].decode()
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        data = archive[data_start : data_start + size]
        pos = data_start + size + (-size % 4)
        if name == "TRAILER!!!":
            assert pos == len(archive)
            return entries
        entries[name] = (mode, mtime, uid, data, (rmaj, rmin))


def _fake_inputs(root: Path, compressed: bool) -> tuple[Path, Path]:
    kernel_dir = root / "kernel"
    kernel_dir.mkdir()
    module = b"\x7fELF fake e1000 module" * 100
    if compressed:
        (kernel_dir / "e1000.ko.xz").write_bytes(lzma.compress(module, format=lzma.FORMAT_XZ))
    else:
        (kernel_dir / "e1000.ko").write_bytes(module)
    busybox = root / "busybox"
    busybox.write_bytes(b"\x7fELF fake busybox" * 1000)
    return kernel_dir, busybox


def _build(tmp: Path, kernel_dir: Path, busybox: Path, name: str) -> bytes:
    out = tmp / name
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--out",
            str(out),
            "--kernel-dir",
            str(kernel_dir),
            "--busybox",
            str(busybox),
            "--module",
            "e1000",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    image = (out / INITRAMFS_NAME).read_bytes()
    assert hashlib.sha256(image).hexdigest() in run.stdout
    return image


@pytest.fixture()
def fake(tmp_path: Path) -> tuple[Path, Path]:
    return _fake_inputs(tmp_path, compressed=False)


def test_byte_identical_across_runs(tmp_path: Path, fake: tuple[Path, Path]) -> None:
    first = _build(tmp_path, *fake, "a")
    # A later mtime on the inputs must not change a byte of the output.
    for path in (fake[0] / "e1000.ko", fake[1]):
        path.touch()
    assert _build(tmp_path, *fake, "b") == first


def test_gzip_header_has_no_name_or_time(tmp_path: Path, fake: tuple[Path, Path]) -> None:
    image = _build(tmp_path, *fake, "a")
    assert image[:2] == b"\x1f\x8b"
    flags, mtime = image[3], int.from_bytes(image[4:8], "little")
    assert flags & 0x08 == 0, "FNAME set"
    assert mtime == 0


def test_archive_contents(tmp_path: Path, fake: tuple[Path, Path]) -> None:
    entries = _parse_newc(gzip.decompress(_build(tmp_path, *fake, "a")))
    names = list(entries)
    assert names == sorted(names)
    assert set(names) == {
        ".",
        "bin",
        "bin/busybox",
        "dev",
        "dev/console",
        "driver.ko",
        "driver.name",
        "init",
        "proc",
        "sys",
    }
    assert all(mtime == 0 and uid == 0 for _mode, mtime, uid, _data, _rdev in entries.values())
    assert entries["init"][0] == 0o100755 and entries["init"][3] == INIT.read_bytes()
    assert (
        entries["bin/busybox"][0] == 0o100755 and entries["bin/busybox"][3] == fake[1].read_bytes()
    )
    assert entries["driver.ko"][3] == (fake[0] / "e1000.ko").read_bytes()
    assert entries["driver.name"][3] == b"e1000\n"
    assert entries["dev/console"][0] == 0o020600 and entries["dev/console"][4] == (5, 1)
    assert entries["proc"][0] == 0o040755


def test_xz_module_is_decompressed(tmp_path: Path) -> None:
    kernel_dir, busybox = _fake_inputs(tmp_path, compressed=True)
    entries = _parse_newc(gzip.decompress(_build(tmp_path, kernel_dir, busybox, "a")))
    assert entries["driver.ko"][3].startswith(b"\x7fELF fake e1000 module")


def test_missing_module_fails_cleanly(tmp_path: Path, fake: tuple[Path, Path]) -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--out",
            str(tmp_path / "o"),
            "--module",
            "nosuch",
            "--kernel-dir",
            str(fake[0]),
            "--busybox",
            str(fake[1]),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "nosuch.ko" in run.stderr
    assert not (tmp_path / "o").exists()


def test_init_script_contract() -> None:
    """What the plan relies on: link-local addresses only, the done line, the exit port."""
    text = INIT.read_text()
    assert text.startswith("#!/bin/busybox sh\n")
    assert "qtrace-linux: $*" in text and 'say "done' in text
    assert "/dev/port" in text and "$qtrace_exit_port" in text
    assert "poweroff -f" in text
    for address in re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", text):
        assert address.startswith("169.254."), f"{address} is not link-local"
