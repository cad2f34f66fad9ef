"""The linux guest's initramfs builder (``qtrace/guests/linux/mkinitramfs.py``) on the host.

The capture image runs the same script with Debian's busybox and the image's module tree;
here fake inputs stand in for them. The archive must be byte-identical across runs, hold exactly
the files the init script expects, in newc format, and be what the kernel can unpack.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qtrace.guests.linux_output import read_workloads
from qtrace.guests.linux_plan import INITRAMFS_NAME

LINUX_DIR = Path(__file__).resolve().parents[3] / "qtrace" / "guests" / "linux"
SCRIPT = LINUX_DIR / "mkinitramfs.py"
INIT = LINUX_DIR / "init"
WORKLOADS = LINUX_DIR / "workloads"

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


KVER = "6.1.0-50-amd64"
MODULES = {
    "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko": b"\x7fELF fake e1000e" * 100,
    "kernel/drivers/virtio/virtio.ko": b"\x7fELF fake virtio" * 10,
    "modules.alias": b"alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n",
    "modules.dep": b"kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko:\n"
    b"kernel/drivers/virtio/virtio.ko:\n",
}


def _fake_inputs(root: Path, with_alias: bool = True) -> tuple[Path, Path]:
    kernel_dir = root / "kernel"
    tree = kernel_dir / "modules" / "lib" / "modules" / KVER
    for name, data in MODULES.items():
        if name == "modules.alias" and not with_alias:
            continue
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    busybox = root / "busybox"
    busybox.write_bytes(b"\x7fELF fake busybox" * 1000)
    return kernel_dir, busybox


def _run(tmp: Path, kernel_dir: Path, busybox: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--out",
            str(tmp / name),
            "--kernel-dir",
            str(kernel_dir),
            "--busybox",
            str(busybox),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _build(tmp: Path, kernel_dir: Path, busybox: Path, name: str) -> bytes:
    run = _run(tmp, kernel_dir, busybox, name)
    assert run.returncode == 0, run.stderr
    image = (tmp / name / INITRAMFS_NAME).read_bytes()
    assert hashlib.sha256(image).hexdigest() in run.stdout
    return image


@pytest.fixture()
def fake(tmp_path: Path) -> tuple[Path, Path]:
    return _fake_inputs(tmp_path)


def test_byte_identical_across_runs(tmp_path: Path, fake: tuple[Path, Path]) -> None:
    first = _build(tmp_path, *fake, "a")
    # A later mtime on the inputs must not change a byte of the output.
    for path in (*fake[0].rglob("*.ko"), fake[1]):
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
    tree = f"lib/modules/{KVER}"
    modules = {f"{tree}/{name}" for name in MODULES}
    directories = {
        "lib",
        "lib/modules",
        tree,
        f"{tree}/kernel",
        f"{tree}/kernel/drivers",
        f"{tree}/kernel/drivers/net",
        f"{tree}/kernel/drivers/net/ethernet",
        f"{tree}/kernel/drivers/net/ethernet/intel",
        f"{tree}/kernel/drivers/net/ethernet/intel/e1000e",
        f"{tree}/kernel/drivers/virtio",
    }
    fixed = {".", "bin", "bin/busybox", "dev", "dev/console", "init", "proc", "sys", "tmp"}
    assert set(names) == fixed | {"workloads"} | modules | directories
    assert all(mtime == 0 and uid == 0 for _mode, mtime, uid, _data, _rdev in entries.values())
    assert entries["init"][0] == 0o100755 and entries["init"][3] == INIT.read_bytes()
    assert entries["workloads"][3] == WORKLOADS.read_bytes()
    assert (
        entries["bin/busybox"][0] == 0o100755 and entries["bin/busybox"][3] == fake[1].read_bytes()
    )
    for name, data in MODULES.items():
        assert entries[f"{tree}/{name}"][3] == data, "modules are packed as the image has them"
        assert entries[f"{tree}/{name}"][0] == 0o100644
    assert all(entries[d][0] == 0o040755 for d in directories)
    assert entries["dev/console"][0] == 0o020600 and entries["dev/console"][4] == (5, 1)
    assert entries["proc"][0] == 0o040755 and entries["tmp"][0] == 0o041777


def test_an_image_without_a_module_tree_fails_cleanly(tmp_path: Path) -> None:
    kernel_dir, busybox = _fake_inputs(tmp_path, with_alias=False)
    run = _run(tmp_path, kernel_dir, busybox, "o")
    assert run.returncode == 1
    assert "modules.alias" in run.stderr and "qtrace build" in run.stderr
    assert not (tmp_path / "o").exists()


def test_init_script_contract() -> None:
    """What the plan and the host's parser rely on: link-local addresses only, the line
    forms, the exit port, the device from qtrace_pci, drivers from modprobe (modules.alias),
    never a named driver."""
    text = INIT.read_text()
    assert text.startswith("#!/bin/busybox sh\n")
    assert "qtrace-linux: $*" in text
    for kind in ("start", "load", "no-module", "bound", "workload", "done", "FAIL"):
        assert f'say "{kind} ' in text, kind
    assert "/dev/port" in text and "$qtrace_exit_port" in text and "$qtrace_pci" in text
    assert "poweroff -f" in text
    assert 'modprobe -D "$alias"' in text and 'modprobe "$alias"' in text
    assert not re.search(r"^\s*insmod\s", text, re.M), "drivers come from modprobe only"
    assert "</workloads" in text
    for address in re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", text):
        assert address.startswith("169.254."), f"{address} is not link-local"


def test_init_reads_the_workload_table_in_its_column_order() -> None:
    """init's `read` names the columns the host's reader gives the same meaning."""
    text = INIT.read_text()
    assert "read -r row_class row_detect row_workload row_evidence row_params" in text
    rows = read_workloads(WORKLOADS)
    assert set(rows) == {"network", "block", "rng"}
    for row in rows.values():
        assert f"workload_{row.workload}()" in text, row.workload
        assert row.detect.startswith("under:") or row.detect == "rng"
        for key in row.parameters:
            assert f"arg_{key}" in text, key
    assert rows["network"].evidence == "tx_packets" and rows["block"].parameters == {"mib": 4}
