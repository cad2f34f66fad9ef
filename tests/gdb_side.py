"""The collector's stdlib-only modules, loaded with the host's Python for contract tests.

gdbscripts/ runs in gdb's own interpreter and never imports qtrace; the modules that hold
its side of a contract import no ``gdb`` either, so tests can load them from the file and
compare them with the host's definitions.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from types import ModuleType

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
