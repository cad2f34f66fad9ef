"""A kernel's ``modules.alias`` and ``modules.dep``: which module a device's modalias names,
and what must be loaded before it.

The linux guest chooses its drivers itself (busybox ``modprobe`` on each modalias in sysfs,
as udev does through libkmod); this is the host's reading of the same two files, from the
initramfs the capture booted, so a report or a test can say which ``modules.alias`` line
chose a driver and check the order the guest loaded modules in. The rules are kmod's: an
alias line is ``alias <pattern> <module>``, the pattern an ``fnmatch`` glob matched
case-sensitively against the whole modalias, and every matching line counts (a modalias
can name several modules). A ``modules.dep`` line is ``<path>: <dependency path>...``, with
the full set of dependencies, ordered so that loading them last to first works; a module's
name is its file name without ``.ko`` (and any compression suffix), ``-`` read as ``_``.

Pure: parses text, reads no file.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Alias", "ModuleTree", "module_name"]


def module_name(path: str) -> str:
    """``kernel/drivers/nvme/host/nvme-core.ko`` -> ``nvme_core`` (kmod's rule)."""
    base = path.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


@dataclass(frozen=True)
class Alias:
    """One ``modules.alias`` line."""

    pattern: str
    module: str

    def matches(self, modalias: str) -> bool:
        """Does this line name its module for ``modalias``?"""
        return fnmatch.fnmatchcase(modalias, self.pattern)


@dataclass(frozen=True)
class ModuleTree:
    """A kernel's ``modules.alias`` and ``modules.dep``, parsed."""

    aliases: tuple[Alias, ...]
    paths: dict[str, str]
    """Module name -> its path (relative to ``lib/modules/<version>/``)."""
    depends: dict[str, tuple[str, ...]]
    """Module name -> the names of all it depends on, in ``modules.dep``'s order."""

    @classmethod
    def parse(cls, alias_text: str, dep_text: str) -> ModuleTree:
        """Both files' text (comment and blank lines skipped)."""
        aliases = tuple(
            Alias(fields[1], fields[2])
            for fields in _lines(alias_text)
            if len(fields) == 3 and fields[0] == "alias"
        )
        paths: dict[str, str] = {}
        depends: dict[str, tuple[str, ...]] = {}
        for fields in _lines(dep_text):
            if not fields[0].endswith(":"):
                continue
            path = fields[0][:-1]
            paths[module_name(path)] = path
            depends[module_name(path)] = tuple(module_name(dep) for dep in fields[1:])
        return cls(aliases, paths, depends)

    def matching(self, modalias: str) -> tuple[Alias, ...]:
        """Every alias line that names a module for ``modalias``, in file order."""
        return tuple(alias for alias in self.aliases if alias.matches(modalias))

    def modules_for(self, modalias: str) -> tuple[str, ...]:
        """The modules ``modalias`` names (each once, in file order)."""
        return tuple(dict.fromkeys(alias.module for alias in self.matching(modalias)))

    def load_order(self, modules: Iterable[str]) -> tuple[str, ...]:
        """What loading ``modules`` loads, dependencies first: each module's
        ``modules.dep`` list from last to first, then the module (each once)."""
        order: dict[str, None] = {}
        for module in modules:
            for dep in reversed(self.depends.get(module, ())):
                order.setdefault(dep)
            order.setdefault(module)
        return tuple(order)


def _lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
