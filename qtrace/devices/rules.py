"""Frame rules: which layer of QEMU a stack frame belongs to, and what it does there.

One rule format serves QEMU's shared layers (``qtrace/annotate/rules/layers.toml``) and each
device pack's own frames (the ``[[rule]]`` tables of its ``pack.toml``), so a pack's rule is
written exactly like a core one. Applying the rules is the annotate stage's job.

A rule's explanation is quoted as documentation, so a sentence that states a fact about
QEMU's code carries *anchors* (:class:`Anchor`): small, machine-checkable claims about a
function's body in a given QEMU version's source (it calls this, it contains that, it is
defined there). :func:`anchor_problems` checks one against a source tree, so a test can read
each release's tree and say which explanation a new QEMU version made stale.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Protocol

from qtrace.errors import ReportError
from qtrace.trace import Frame

__all__ = [
    "ANCHOR_KEYS",
    "Anchor",
    "FrameRule",
    "FunctionSource",
    "VersionRange",
    "anchor_problems",
    "find_function",
    "parse_frame_rules",
]

ANCHOR_KEYS = frozenset({"func", "defined_in", "calls", "contains", "lacks", "versions"})
"""The keys an anchor table may have (documented in layers.toml's header)."""

_VERSION_CLAUSE = re.compile(r"^\s*(>=|<)\s*(\d+(?:\.\d+)*)\s*$")


def _version_tuple(version: str) -> tuple[int, ...]:
    """``"10.0.13"`` -> ``(10, 0, 13)``; trailing non-numeric parts (``-rc1``) are ignored."""
    parts = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


@dataclass(frozen=True)
class VersionRange:
    """The QEMU releases a claim holds for: ``since <= version < until`` (either may be open).

    Written in rules as ``">=9.0"``, ``"<10.2"`` or ``">=8.1, <10.2"``; a bound compares by
    release components, so ``">=10.2"`` includes 10.2.2 and ``"<10.2"`` includes 10.0.13.
    """

    since: tuple[int, ...] = ()
    until: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str, where: str) -> VersionRange:
        """Parse ``text``; raises :class:`ReportError` naming ``where`` if it is malformed."""
        since: tuple[int, ...] = ()
        until: tuple[int, ...] = ()
        for clause in text.split(","):
            match = _VERSION_CLAUSE.match(clause)
            if match is None:
                raise ReportError(
                    f"{where}: anchor versions {text!r}: each clause is '>=X.Y' or '<X.Y'"
                )
            bound = _version_tuple(match.group(2))
            if match.group(1) == ">=":
                since = bound
            else:
                until = bound
        if since and until and since >= until:
            raise ReportError(f"{where}: anchor versions {text!r} is empty")
        return cls(since, until)

    def __contains__(self, version: object) -> bool:
        if not isinstance(version, str):
            return False
        have = _version_tuple(version)
        return (not self.since or have >= self.since) and (not self.until or have < self.until)

    def __str__(self) -> str:
        parts = []
        if self.since:
            parts.append(">=" + ".".join(map(str, self.since)))
        if self.until:
            parts.append("<" + ".".join(map(str, self.until)))
        return ", ".join(parts) or "all versions"


@dataclass(frozen=True)
class Anchor:
    """A checkable claim an explanation makes about one function's body.

    Attributes:
        func: the function (a plain C name) whose definition is checked.
        defined_in: the file (path from the source root, glob allowed) that must define it.
        calls: names the body must call (``name(``; macros such as ``BQL_LOCK_GUARD`` count).
        contains: strings the body must contain (comments do not count).
        lacks: strings the body must not contain (comments do not count).
        versions: the releases the claim is made for; other releases are not checked.
    """

    func: str
    defined_in: str | None = None
    calls: tuple[str, ...] = ()
    contains: tuple[str, ...] = ()
    lacks: tuple[str, ...] = ()
    versions: VersionRange = VersionRange()

    def applies_to(self, qemu_version: str) -> bool:
        """Whether the explanation makes this claim for ``qemu_version``."""
        return qemu_version in self.versions

    def describe(self) -> str:
        """The anchor as one line for a test's failure message."""
        parts = [f"func={self.func}"]
        if self.defined_in:
            parts.append(f"defined_in={self.defined_in}")
        for key in ("calls", "contains", "lacks"):
            values = getattr(self, key)
            if values:
                parts.append(f"{key}={list(values)}")
        parts.append(f"versions={self.versions}")
        return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True)
class FrameRule:
    """Globs on function name and file, an optional accelerator, and what they mean."""

    layer: str
    explain: str
    funcs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    accel: str | None = None
    anchors: tuple[Anchor, ...] = ()

    def matches(self, frame: Frame, accel: str | None) -> bool:
        """Whether every condition of this rule holds for ``frame``."""
        if self.accel is not None and self.accel != accel:
            return False
        if self.funcs and not any(fnmatchcase(frame.func, g) for g in self.funcs):
            return False
        if self.files:
            if frame.file is None:
                return False
            if not any(fnmatchcase(frame.file, g) for g in self.files):
                return False
        return True


def _globs(value: object, what: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ReportError(f"{where}: rule field {what!r} must be a string or a list of strings")


def _anchors(value: object, funcs: tuple[str, ...], where: str) -> tuple[Anchor, ...]:
    """The anchors of a rule: one table or a list of tables; ``func`` defaults to the rule's
    first."""
    if value is None:
        return ()
    tables = [value] if isinstance(value, dict) else value
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ReportError(f"{where}: rule field 'anchor' must be a table or a list of tables")
    anchors = []
    for table in tables:
        unknown = set(table) - ANCHOR_KEYS
        if unknown:
            raise ReportError(
                f"{where}: anchor has unknown keys {sorted(unknown)} (known: {sorted(ANCHOR_KEYS)})"
            )
        names = _globs(table.get("func"), "anchor.func", where) or funcs[:1]
        if not names or not all(n.isidentifier() for n in names):
            raise ReportError(
                f"{where}: an anchor needs a plain function name "
                f"(its own func, or the rule's first)"
            )
        defined_in = table.get("defined_in")
        if defined_in is not None and not isinstance(defined_in, str):
            raise ReportError(f"{where}: anchor defined_in must be a string")
        checks = {
            key: _globs(table.get(key), f"anchor.{key}", where)
            for key in ("calls", "contains", "lacks")
        }
        if defined_in is None and not any(checks.values()):
            raise ReportError(f"{where}: anchor for {names[0]!r} checks nothing")
        versions_text = table.get("versions")
        if versions_text is not None and not isinstance(versions_text, str):
            raise ReportError(f"{where}: anchor versions must be a string such as '>=9.0'")
        versions = VersionRange.parse(versions_text, where) if versions_text else VersionRange()
        for name in names:
            anchors.append(
                Anchor(
                    func=name,
                    defined_in=defined_in,
                    calls=checks["calls"],
                    contains=checks["contains"],
                    lacks=checks["lacks"],
                    versions=versions,
                )
            )
    return tuple(anchors)


def parse_frame_rules(raw: Sequence[dict[str, Any]], where: str) -> list[FrameRule]:
    """Rules from the ``[[rule]]`` tables of a data file (``where`` names it in errors).

    Raises:
        ReportError: a rule lacks ``layer`` or ``explain``, has neither ``func`` nor ``file``,
            or has a malformed anchor.
    """
    rules = []
    for entry in raw:
        try:
            funcs = _globs(entry.get("func"), "func", where)
            rule = FrameRule(
                layer=str(entry["layer"]),
                explain=str(entry["explain"]),
                funcs=funcs,
                files=_globs(entry.get("file"), "file", where),
                accel=entry.get("accel"),
                anchors=_anchors(entry.get("anchor"), funcs, where),
            )
        except KeyError as exc:
            raise ReportError(f"{where}: a rule lacks {exc}") from exc
        if not rule.funcs and not rule.files:
            raise ReportError(f"{where}: rule for {rule.layer!r} has neither func nor file")
        rules.append(rule)
    return rules


# ---------------------------------------------------------------------------------------
# Checking anchors against a source tree
# ---------------------------------------------------------------------------------------


class FunctionSource(Protocol):
    """What anchor checking needs of a source tree (``qtrace.annotate.source`` providers fit)."""

    def line_text(self, file: str, line: int) -> str | None:
        """The text of ``line`` (1-based) of ``file`` without newline, or ``None``."""

    def function_range(self, file: str, func: str) -> tuple[int, int] | None:
        """First and last line of ``func``'s definition in ``file``, or ``None``."""


_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)


def find_function(source: FunctionSource, files: Iterable[str], func: str) -> list[tuple[str, str]]:
    """Every definition of ``func`` among ``files``: (file, body without comments).

    More than one is possible (a function defined per target or per configuration, or a
    stub); an anchor holds only if it holds for each definition in its ``defined_in`` file,
    or for every definition if it names no file.
    """
    found = []
    for file in files:
        extent = source.function_range(file, func)
        if extent is None:
            continue
        lines = [source.line_text(file, n) or "" for n in range(extent[0], extent[1] + 1)]
        found.append((file, _COMMENT.sub(" ", "\n".join(lines))))
    return found


def _calls(body: str, name: str) -> bool:
    # After the opening brace, so the definition's own name and parameters do not count.
    code = body[body.find("{") + 1 :] if "{" in body else body
    return re.search(rf"(?<![\w.>]){re.escape(name)}\s*\(", code) is not None


def anchor_problems(anchor: Anchor, source: FunctionSource, files: Iterable[str]) -> list[str]:
    """What in ``source`` contradicts ``anchor`` (empty: it holds); ``files`` are searched.

    The caller decides whether the anchor applies to the tree's version
    (:meth:`Anchor.applies_to`).
    """
    definitions = find_function(source, files, anchor.func)
    if not definitions:
        return [f"{anchor.func} is not defined in the source"]
    if anchor.defined_in is not None:
        elsewhere = [file for file, _ in definitions]
        definitions = [(f, b) for f, b in definitions if fnmatchcase(f, anchor.defined_in)]
        if not definitions:
            return [f"{anchor.func} is defined in {', '.join(elsewhere)}, not {anchor.defined_in}"]
    problems = []
    for file, body in definitions:
        problems += [
            f"{anchor.func} ({file}) does not call {n}" for n in anchor.calls if not _calls(body, n)
        ]
        problems += [
            f"{anchor.func} ({file}) lacks {s!r}" for s in anchor.contains if s not in body
        ]
        problems += [f"{anchor.func} ({file}) contains {s!r}" for s in anchor.lacks if s in body]
    return problems
