"""Frame annotation: which QEMU layer a stack frame belongs to and what it does there.

The knowledge is in ``rules/layers.toml`` (see the comment at its top); this module loads it
and applies it: the first rule whose conditions hold decides a frame. Frames no rule covers
get the layer ``unknown`` so a report shows them rather than hiding them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from qtrace.annotate.links import source_url
from qtrace.annotate.source import SourceProvider, snippet
from qtrace.devices import FrameRule, device_frame_rules, parse_frame_rules
from qtrace.errors import ReportError
from qtrace.trace import Frame, Stack

__all__ = [
    "UNKNOWN_LAYER",
    "Layer",
    "LayerRule",
    "RuleSet",
    "AnnotatedFrame",
    "AnnotatedStack",
    "load_rules",
    "default_rules",
    "annotate_stack",
]

UNKNOWN_LAYER = "unknown"
LAYERS_FORMAT = "qtrace-layers/1"


@dataclass(frozen=True)
class Layer:
    """One layer of QEMU as seen on a stack."""

    id: str
    label: str
    color: str = "#616161"


LayerRule = FrameRule
"""A frame rule (the format is shared with the device packs: :mod:`qtrace.devices.rules`)."""


@dataclass(frozen=True)
class AnnotatedFrame:
    """A frame with its layer, explanation, source line and source link."""

    index: int
    func: str
    file: str | None
    line: int | None
    pc: str | None
    layer: Layer
    explain: str
    source: str | None = None
    url: str | None = None
    snippet: tuple[tuple[int, str], ...] = ()

    @property
    def location(self) -> str:
        """``file:line`` (or what is known of it)."""
        if self.file is None:
            return self.pc or "?"
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass(frozen=True)
class AnnotatedStack:
    """A trace stack, innermost frame first, each frame annotated."""

    id: str
    frames: tuple[AnnotatedFrame, ...]

    def has_func(self, *prefixes: str) -> bool:
        """Whether any frame's function starts with one of ``prefixes``."""
        return any(f.func.startswith(prefixes) for f in self.frames)

    def layer_runs(self) -> list[tuple[Layer, list[AnnotatedFrame]]]:
        """Consecutive frames of one layer, outermost run first, frames outermost first."""
        runs: list[tuple[Layer, list[AnnotatedFrame]]] = []
        for frame in reversed(self.frames):
            if runs and runs[-1][0].id == frame.layer.id:
                runs[-1][1].append(frame)
            else:
                runs.append((frame.layer, [frame]))
        return runs


class RuleSet:
    """The ordered layer rules, with the layers they refer to."""

    def __init__(self, layers: list[Layer], rules: list[LayerRule]) -> None:
        self.layers = {layer.id: layer for layer in layers}
        if UNKNOWN_LAYER not in self.layers:
            self.layers[UNKNOWN_LAYER] = Layer(UNKNOWN_LAYER, UNKNOWN_LAYER)
        for rule in rules:
            if rule.layer not in self.layers:
                raise ReportError(f"layer rule names undefined layer {rule.layer!r}")
        self.rules = rules

    def classify(self, frame: Frame, accel: str | None = None) -> tuple[Layer, str]:
        """The layer and explanation of the first matching rule, or ``unknown``."""
        for rule in self.rules:
            if rule.matches(frame, accel):
                return self.layers[rule.layer], rule.explain
        return self.layers[UNKNOWN_LAYER], "No annotation rule covers this frame."

    def layer_order(self) -> list[str]:
        """Layer ids in the order the rules file lists them (outermost first)."""
        return list(self.layers)


def load_rules(path: Path | None = None) -> RuleSet:
    """Load layer rules from ``path`` (default: the packaged ``rules/layers.toml``).

    The rules file marks with ``device_packs = true`` where the device packs' own rules go
    (:func:`qtrace.devices.device_frame_rules`): after QEMU's shared layers, before the
    generic fallbacks, so a pack's precise rule wins over a fallback by path.

    Raises:
        ReportError: the file is not a valid rules file.
    """
    where = str(path or "layers.toml")
    try:
        if path is None:
            text = (
                resources.files("qtrace.annotate").joinpath("rules/layers.toml").read_text("utf-8")
            )
        else:
            text = Path(path).read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ReportError(f"cannot read layer rules {where}: {exc}") from exc
    if data.get("format") != LAYERS_FORMAT:
        raise ReportError(f"layer rules must declare format = {LAYERS_FORMAT!r}")
    try:
        layers = [
            Layer(str(d["id"]), str(d["label"]), str(d.get("color", "#616161")))
            for d in data["layer"]
        ]
        entries = data["rule"]
    except KeyError as exc:
        raise ReportError(f"layer rules: a layer or rule lacks {exc}") from exc
    rules: list[LayerRule] = []
    for entry in entries:
        if entry.get("device_packs") is True:
            rules += device_frame_rules()
        else:
            rules += parse_frame_rules([entry], where)
    return RuleSet(layers, rules)


@cache
def default_rules() -> RuleSet:
    """The packaged rules, loaded once."""
    return load_rules()


def annotate_stack(
    stack: Stack,
    *,
    qemu_version: str,
    accel: str | None = None,
    source: SourceProvider | None = None,
    rules: RuleSet | None = None,
    context_lines: int = 2,
) -> AnnotatedStack:
    """Annotate every frame of ``stack``.

    Args:
        stack: the trace stack, innermost frame first.
        qemu_version: used for the source links (tag ``v<version>``).
        accel: the capture's accelerator; some rules depend on it.
        source: where source lines come from; ``None`` means no source text.
        rules: the rule set (default: the packaged one).
        context_lines: lines of context on each side in the frame's snippet.

    Returns:
        The annotated stack.
    """
    ruleset = rules or default_rules()
    frames = []
    for index, frame in enumerate(stack.frames):
        layer, explain = ruleset.classify(frame, accel)
        text: str | None = None
        lines: tuple[tuple[int, str], ...] = ()
        if source is not None and frame.file is not None and frame.line is not None:
            text = source.line_text(frame.file, frame.line)
            lines = snippet(source, frame.file, frame.line, frame.func, context_lines)
        frames.append(
            AnnotatedFrame(
                index=index,
                func=frame.func,
                file=frame.file,
                line=frame.line,
                pc=frame.pc,
                layer=layer,
                explain=explain,
                source=text.strip() if text is not None else None,
                url=source_url(qemu_version, frame.file, frame.line),
                snippet=lines,
            )
        )
    return AnnotatedStack(stack.id, tuple(frames))
