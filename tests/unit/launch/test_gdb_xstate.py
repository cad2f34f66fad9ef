"""The gdb xstate shim (qtrace.launch.gdb_xstate): used only on CPUs with XSAVE state past
gdb 13's buffer, and its source builds into a shared object that wraps ptrace."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from qtrace.launch.gdb_xstate import SHIM_SOURCE, needs_xstate_shim, shim_build_command


@pytest.mark.parametrize(
    ("flags", "needed"),
    [
        ("fpu sse avx avx512f xsave pku ospke", False),
        ("fpu sse avx avx512f xsave amx_bf16 amx_tile amx_int8", True),
    ],
)
def test_the_shim_is_needed_only_with_amx_tile_state(
    tmp_path: Path, flags: str, needed: bool
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n", encoding="utf-8")
    assert needs_xstate_shim(cpuinfo) is needed


def test_no_cpuinfo_means_no_shim(tmp_path: Path) -> None:
    assert needs_xstate_shim(tmp_path / "absent") is False


def test_the_build_command_compiles_the_source_it_wrote_and_removes_it(tmp_path: Path) -> None:
    command = shim_build_command(tmp_path, "/out")
    written = list(tmp_path.iterdir())
    assert len(written) == 1 and written[0].read_text(encoding="utf-8") == SHIM_SOURCE
    script = command[-1]
    assert f"/out/{written[0].name}" in script and "rm -f" in script and "-shared" in script


def test_the_shim_source_builds_and_exports_ptrace(tmp_path: Path) -> None:
    """scripts/setup installs build-essential: no compiler is a failure, not a skip."""
    source = tmp_path / "shim.c"
    source.write_text(SHIM_SOURCE, encoding="utf-8")
    library = tmp_path / "shim.so"
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"], check=True
    )
    symbols = subprocess.run(
        ["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True, check=True
    ).stdout
    assert " T ptrace" in symbols
