"""Where the source text of a frame comes from.

The QEMU source tree lives in the debug image, not on the host, so annotation asks a
:class:`SourceProvider` for lines. Two providers exist:

* :class:`DirectorySourceProvider` reads a local tree (a QEMU checkout, or the files the
  capture copied out of the image into ``<capture>/source/``);
* :class:`SourceSnippets` is the snippet cache ``<capture>/source-snippets.json``, which a
  capture writes with :func:`write_source_snippets` so that reports re-render without the
  image. Its format (``qtrace-source-snippets/1``)::

      {
        "format": "qtrace-source-snippets/1",
        "qemu_version": "10.2.2",
        "files": {"hw/net/e1000.c": {"1289": "...", "1290": "...", "1291": "..."}},
        "functions": {"hw/net/e1000.c": {"e1000_mmio_read": [1280, 1302]}}
      }

  ``files`` maps a path (relative to the QEMU source root, as in the trace) to line
  number (a decimal string) -> line text without its newline; ``functions`` maps a path to
  function name -> [first line, last line] of its definition. Both may be partial.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from qtrace.errors import QtraceError, ReportError
from qtrace.trace import Stack

__all__ = [
    "SNIPPETS_FORMAT",
    "SNIPPETS_FILE",
    "SOURCE_DIR",
    "SourceProvider",
    "TreeSourceProvider",
    "DirectorySourceProvider",
    "FileReader",
    "ReaderSourceProvider",
    "is_tree_path",
    "SourceSnippets",
    "snippet",
    "build_snippets",
    "write_source_snippets",
    "capture_source",
]

SNIPPETS_FORMAT = "qtrace-source-snippets/1"
SNIPPETS_FILE = "source-snippets.json"
SOURCE_DIR = "source"


class SourceProvider(Protocol):
    """Source lines and function extents of a QEMU tree, by path relative to its root."""

    def line_text(self, file: str, line: int) -> str | None:
        """The text of ``line`` (1-based) of ``file`` without newline, or ``None``."""

    def function_range(self, file: str, func: str) -> tuple[int, int] | None:
        """First and last line of ``func``'s definition in ``file``, or ``None``."""


def _definition_pattern(func: str) -> re.Pattern[str]:
    # QEMU style: a definition starts at column 0 (return type on the same or previous
    # line); a call or a declaration is indented or ends with ';'. Templates included
    # several times (system/memory_ldst.c.inc) name it glue(func, SUFFIX) with SUFFIX empty.
    name = re.escape(func)
    return re.compile(
        rf"^(?:[A-Za-z_][\w\s\*]*[\s\*])?(?:{name}|glue\(\s*{name}\s*,\s*\w+\s*\))\s*\("
    )


# "static uint64_t" alone on the line before a definition's name (another QEMU style).
_RETURN_TYPE_LINE = re.compile(r"^[A-Za-z_][\w\s\*]*$")


def is_tree_path(file: str) -> bool:
    """Whether ``file`` is a path inside the QEMU tree (not glibc's ``./nptl/...``, not
    absolute)."""
    return bool(file) and not file.startswith(("/", ".", "<")) and ".." not in file.split("/")


class TreeSourceProvider:
    """Lines and function extents of whole files of a QEMU tree; subclasses say how a file is
    read."""

    def __init__(self) -> None:
        self._files: dict[str, list[str] | None] = {}

    def _read(self, file: str) -> str | None:
        """The text of ``file`` (a tree path), or ``None`` if it cannot be read (the I/O seam)."""
        raise NotImplementedError

    def _lines(self, file: str) -> list[str] | None:
        if file not in self._files:
            text = self._read(file) if is_tree_path(file) else None
            self._files[file] = text.splitlines() if text is not None else None
        return self._files[file]

    def line_text(self, file: str, line: int) -> str | None:
        lines = self._lines(file)
        if lines is None or not 1 <= line <= len(lines):
            return None
        return lines[line - 1]

    def function_range(self, file: str, func: str) -> tuple[int, int] | None:
        lines = self._lines(file)
        if lines is None or not func.isidentifier():
            return None
        pattern = _definition_pattern(func)
        for start, text in enumerate(lines):
            if not pattern.match(text):
                continue
            # A prototype ends with ';' before any '{'; a body ends with '}' at column 0.
            opened = False
            for end in range(start, len(lines)):
                opened = opened or "{" in lines[end]
                if not opened and lines[end].rstrip().endswith(";"):
                    break
                if opened and lines[end].startswith("}"):
                    first = (
                        start - 1 if start and _RETURN_TYPE_LINE.match(lines[start - 1]) else start
                    )
                    return first + 1, end + 1
        return None


class DirectorySourceProvider(TreeSourceProvider):
    """Reads a source tree on disk; paths outside ``root`` are refused."""

    def __init__(self, root: Path | str) -> None:
        super().__init__()
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"DirectorySourceProvider({str(self.root)!r})"

    def _read(self, file: str) -> str | None:
        path = (self.root / file).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None


class FileReader(Protocol):
    """Anything that returns a tree file's text by path (e.g. the capture container's tree)."""

    def read(self, path: str) -> str:
        """The text of ``path``; raises an exception if it cannot be read."""


class ReaderSourceProvider(TreeSourceProvider):
    """A tree read through a :class:`FileReader` (the QEMU source inside the debug image).

    A file the reader fails on (missing, container gone) reads as absent: the cache is best
    effort and a frame without source still renders.
    """

    def __init__(self, reader: FileReader) -> None:
        super().__init__()
        self._reader = reader

    def __repr__(self) -> str:
        return f"ReaderSourceProvider({self._reader!r})"

    def _read(self, file: str) -> str | None:
        try:
            return self._reader.read(file)
        except (OSError, QtraceError):  # docker's APIError is an OSError (via requests)
            return None


@dataclass
class SourceSnippets:
    """The snippet cache: a :class:`SourceProvider` over a fixed set of lines."""

    qemu_version: str = ""
    files: dict[str, dict[int, str]] = field(default_factory=dict)
    functions: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)

    def line_text(self, file: str, line: int) -> str | None:
        return self.files.get(file, {}).get(line)

    def function_range(self, file: str, func: str) -> tuple[int, int] | None:
        return self.functions.get(file, {}).get(func)

    def to_json(self) -> str:
        """The cache as deterministic JSON text (sorted paths and line numbers)."""
        data = {
            "format": SNIPPETS_FORMAT,
            "qemu_version": self.qemu_version,
            "files": {
                path: {str(n): self.files[path][n] for n in sorted(self.files[path])}
                for path in sorted(self.files)
            },
            "functions": {
                path: {
                    name: list(self.functions[path][name]) for name in sorted(self.functions[path])
                }
                for path in sorted(self.functions)
            },
        }
        return json.dumps(data, indent=1, ensure_ascii=False) + "\n"

    def save(self, path: Path) -> None:
        """Write the cache to ``path``."""
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> SourceSnippets:
        """Read a cache file.

        Raises:
            ReportError: the file is unreadable or not ``qtrace-source-snippets/1``.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ReportError(f"cannot read source snippets {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != SNIPPETS_FORMAT:
            raise ReportError(f"{path} is not a {SNIPPETS_FORMAT} file")
        try:
            files = {
                str(p): {int(n): str(t) for n, t in lines.items()}
                for p, lines in data.get("files", {}).items()
            }
            functions = {
                str(p): {str(f): (int(r[0]), int(r[1])) for f, r in funcs.items()}
                for p, funcs in data.get("functions", {}).items()
            }
        except (AttributeError, TypeError, ValueError, IndexError) as exc:
            raise ReportError(f"{path}: malformed source snippets: {exc}") from exc
        return cls(str(data.get("qemu_version", "")), files, functions)


def snippet(
    source: SourceProvider, file: str, line: int, func: str | None = None, context_lines: int = 2
) -> tuple[tuple[int, str], ...]:
    """The lines around ``file:line`` that ``source`` knows, clipped to ``func``'s body."""
    first, last = line - context_lines, line + context_lines
    extent = source.function_range(file, func) if func else None
    if extent is not None and extent[0] <= line <= extent[1]:
        first, last = max(first, extent[0]), min(last, extent[1])
    out = []
    for number in range(max(first, 1), last + 1):
        text = source.line_text(file, number)
        if text is not None:
            out.append((number, text))
    return tuple(out)


def build_snippets(
    stacks: Iterable[Stack], source: SourceProvider, qemu_version: str, context_lines: int = 3
) -> SourceSnippets:
    """Copy, from ``source``, every line the stacks' frames need (with context) into a cache."""
    cache = SourceSnippets(qemu_version=qemu_version)
    for stack in stacks:
        for frame in stack.frames:
            if frame.file is None or frame.line is None:
                continue
            extent = source.function_range(frame.file, frame.func)
            if extent is not None:
                cache.functions.setdefault(frame.file, {})[frame.func] = extent
                cache.files.setdefault(frame.file, {}).setdefault(
                    extent[0], source.line_text(frame.file, extent[0]) or ""
                )
            for number, text in snippet(source, frame.file, frame.line, None, context_lines):
                cache.files.setdefault(frame.file, {})[number] = text
    return cache


def write_source_snippets(
    capture_dir: Path,
    stacks: Iterable[Stack],
    source: SourceProvider,
    qemu_version: str,
    context_lines: int = 3,
) -> Path:
    """Write ``<capture_dir>/source-snippets.json`` for the stacks; returns its path."""
    path = Path(capture_dir) / SNIPPETS_FILE
    build_snippets(stacks, source, qemu_version, context_lines).save(path)
    return path


def capture_source(capture_dir: Path | str) -> SourceProvider | None:
    """The best source a capture directory offers: its snippet cache, else ``source/``."""
    capture_dir = Path(capture_dir)
    if capture_dir.is_file():
        capture_dir = capture_dir.parent
    cache = capture_dir / SNIPPETS_FILE
    if cache.is_file():
        return SourceSnippets.load(cache)
    tree = capture_dir / SOURCE_DIR
    if tree.is_dir():
        return DirectorySourceProvider(tree)
    return None
