"""The collector's stdlib-only modules, loaded with the host's Python for contract tests.

gdbscripts/ runs in gdb's own interpreter and never imports qtrace; the modules that hold
its side of a contract import no ``gdb`` either, so tests can load them from the file and
compare them with the host's definitions.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from functools import cache
from types import ModuleType

import pytest

from qtrace.paths import gdbscripts_dir


@cache
def gdb_module(name: str) -> ModuleType:
    """``gdbscripts/qtrace_gdb/<name>.py`` as a module (loaded once per test run)."""
    path = gdbscripts_dir() / "qtrace_gdb" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"qtrace_gdb_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StandInError(Exception):
    """What a stand-in ``gdb`` raises for gdb.error and gdb.MemoryError."""


class StandInBreakpoint:
    """gdb.Breakpoint as far as the collectors' constructors use it."""

    def __init__(self, location: str, internal: bool = False) -> None:
        self.location = location


def import_with_stand_in_gdb(
    monkeypatch: pytest.MonkeyPatch, modules: tuple[str, ...]
) -> tuple[ModuleType, ModuleType]:
    """(the last of ``modules`` — ``qtrace_gdb.*`` names, dependencies first — imported
    afresh under a stand-in ``gdb`` module, that stand-in): for the collector modules that
    import gdb. Call :func:`forget` with the same names when the test is done."""
    gdb = ModuleType("gdb")
    for name, value in {
        "Breakpoint": StandInBreakpoint,
        "GdbError": StandInError,
        "error": StandInError,
        "MemoryError": StandInError,
    }.items():
        setattr(gdb, name, value)
    monkeypatch.setitem(sys.modules, "gdb", gdb)
    monkeypatch.syspath_prepend(str(gdbscripts_dir()))
    for name in modules:
        monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module(modules[-1]), gdb


def forget(modules: tuple[str, ...]) -> None:
    """Drop modules imported under a stand-in gdb, so no later test gets them."""
    for name in modules:
        sys.modules.pop(name, None)
