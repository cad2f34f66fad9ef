"""Build the probe guest with the host's gcc and check the ELF that QEMU will load.

QEMU's multiboot loader accepts only ELF32 and looks for the 0x1BADB002 header in the
first 8 KiB; the capture image builds from a read-only mount and must get the same
bytes every time, so reproducibility and "writes only into OUT" are tested too.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from qtrace.guests import PROBE_ELF_NAME, PROBE_SOURCE_DIR

MULTIBOOT_MAGIC = 0x1BADB002
MULTIBOOT_SEARCH_BYTES = 8192
EM_386 = 3
ET_EXEC = 2

# make, gcc and ld come from Debian's build-essential, which scripts/setup installs: a
# missing toolchain fails these tests rather than skipping them.


def _build(out: Path, src: Path = PROBE_SOURCE_DIR) -> Path:
    subprocess.run(
        ["make", "-s", "-C", str(src), f"OUT={out}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out / PROBE_ELF_NAME


@pytest.fixture(scope="module")
def probe_elf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _build(tmp_path_factory.mktemp("probe")).read_bytes()


def test_is_elf32_i386_executable(probe_elf: bytes) -> None:
    assert probe_elf[:4] == b"\x7fELF"
    assert probe_elf[4] == 1, "ELFCLASS32 (QEMU's multiboot loader rejects ELF64)"
    assert probe_elf[5] == 1, "little endian"
    e_type, e_machine = struct.unpack_from("<HH", probe_elf, 16)
    assert (e_type, e_machine) == (ET_EXEC, EM_386)
    (e_entry,) = struct.unpack_from("<I", probe_elf, 24)
    assert e_entry >= 0x100000, "linked at 1 MiB"


def test_multiboot_header_in_first_8k(probe_elf: bytes) -> None:
    head = probe_elf[:MULTIBOOT_SEARCH_BYTES]
    for off in range(0, len(head) - 12 + 1, 4):
        magic, flags, checksum = struct.unpack_from("<III", head, off)
        if magic == MULTIBOOT_MAGIC:
            assert (magic + flags + checksum) & 0xFFFFFFFF == 0
            assert not flags & 0x10000, "ELF load path: no a.out address fields"
            return
    pytest.fail("no 4-byte aligned multiboot header in the first 8 KiB")


def test_build_is_reproducible_and_path_free(tmp_path: Path, probe_elf: bytes) -> None:
    other = _build(tmp_path / "some" / "other" / "dir").read_bytes()
    assert other == probe_elf
    assert str(tmp_path).encode() not in other
    assert str(PROBE_SOURCE_DIR).encode() not in other


def test_builds_from_read_only_source(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(PROBE_SOURCE_DIR, src)
    for p in [src, *src.iterdir()]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    # Root ignores permission bits, so also check that nothing new appeared in src.
    before = sorted(p.name for p in src.iterdir())
    try:
        elf = _build(tmp_path / "out", src)
        assert elf.is_file()
        assert sorted(p.name for p in src.iterdir()) == before
    finally:
        src.chmod(0o755)


def test_relative_out_is_refused() -> None:
    result = subprocess.run(
        ["make", "-s", "-C", str(PROBE_SOURCE_DIR), "OUT=relative/dir"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "absolute" in result.stderr
