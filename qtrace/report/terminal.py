"""Terminal views of a report model and of a stack diff, as rich renderables.

Only builds renderables; printing them is the CLI's job (``qtrace.cli.show``/``diff``, and
``qtrace.cli.capture``, which ends with :func:`answer_renderables`).
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from qtrace.annotate import AnnotatedFrame, Layer
from qtrace.report.diff import DiffSide, StackDiff
from qtrace.report.model import CaptureReport, RegionsView, StackView
from qtrace.report.recorded import Recorded
from qtrace.report.render import (
    finding_rows,
    finding_text,
    frame_location,
    path_sentences,
    region_sentences,
    size_text,
)
from qtrace.report.sequence import HIDDEN_LAYERS

__all__ = [
    "access_path_tree",
    "answer_renderables",
    "diff_renderables",
    "region_table",
    "register_table",
    "show_renderables",
    "stack_tree",
]

_STATUS_STYLE = {
    "same": "dim",
    "line changed": "yellow",
    "file changed": "magenta",
    "place unknown": "dim",
    "only in A": "red",
    "only in B": "green",
}


def _summary(report: CaptureReport) -> Table:
    h = report.header
    table = Table(title=escape(report.title), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for label, value in (
        ("capture", report.name),
        ("device", h.device),
        ("QEMU", h.qemu_version),
        ("accelerator", h.accel),
        ("machine / guest", f"{h.machine} / {h.guest}"),
        ("started", h.started or "?"),
        ("ended", report.end.status if report.end else "(no end record)"),
    ):
        table.add_row(label, escape(str(value)))
    for label, n in report.counts:
        table.add_row(label, str(n))
    return table


def _findings(report: CaptureReport) -> list[RenderableType]:
    out: list[RenderableType] = []
    for finding in report.findings:
        mark = Text("yes ", style="bold green") if finding.holds else Text("no ", style="bold red")
        out.append(mark + Text(finding_text(finding)))
    return out


def register_table(report: CaptureReport) -> Table:
    """Accesses per register: reads, writes, last value, decoded."""
    table = Table(title="Accesses per register", title_justify="left")
    for name, justify in (
        ("space", "left"),
        ("offset", "right"),
        ("register", "left"),
        ("reads", "right"),
        ("writes", "right"),
        ("last value", "right"),
        ("decoded", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in report.registers:
        register = Text(row.name, style="" if row.known or row.by_region else "red")
        last = f"0x{row.last_value:0{row.last_size * 2}x} ({row.last_op})"
        table.add_row(
            row.space,
            f"{row.offset:#06x}",
            register,
            str(row.reads),
            str(row.writes),
            last,
            escape(row.decoded),
        )
    return table


def region_table(view: RegionsView) -> Table:
    """The device's regions (header ``regions``): BAR, offset, size, kind, callbacks, and the
    accesses of this capture that reached each."""
    table = Table(title="Regions (found in the running QEMU)", title_justify="left")
    for name, justify in (
        ("BAR", "left"),
        ("region", "left"),
        ("offset", "right"),
        ("size", "right"),
        ("kind", "left"),
        ("callbacks", "left"),
        ("accesses", "right"),
        ("handled by", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in view.rows:
        g = row.region
        if g.bar is None:
            bar = "config space"
        else:
            bar = "" if g.depth else f"BAR {g.bar} ({'I/O' if g.space == 'pio' else 'MMIO'})"
        handled = row.region.kind in ("io", "pci-config")
        hit = ", ".join(f"{func} x{n}" for func, n in row.handlers_hit)
        counted = view.counted(row)
        if not counted:
            hit = hit or f"not recorded by {view.recorded.by}"
        kind = g.kind + (f" of {g.alias_of}" if g.alias_of else "")
        table.add_row(
            bar,
            escape("  " * g.depth + g.name),
            "" if g.bar is None else f"{g.offset:#x}",
            size_text(g.size),
            escape(kind),
            escape(", ".join(g.handlers.values())),
            "not recorded" if not counted else str(row.accesses) if handled or row.accesses else "",
            escape(hit or ("none in this capture" if handled else "")),
        )
    return table


def stack_tree(view: StackView, recorded: Recorded | None = None) -> Tree:
    """A stack as a tree: layers in call order (outermost first), frames under each;
    ``recorded``: what the capture recorded (without exits, no exit is said to be unlinked)."""
    recorded = recorded if recorded is not None else Recorded()
    via = ", ".join(f"{k} x{n}" for k, n in view.exit_kinds)
    if via:
        reached = f"reached via {via}"
    elif recorded.has("kvm_exits"):
        reached = "reached via no linked exit"
    else:
        reached = f"KVM exits not recorded by {recorded.by}"
    tree = Tree(Text.assemble((f"stack {view.id}", "bold"), f"  {view.title}  ", (reached, "cyan")))
    _add_layers(tree, view.stack.layer_runs(), detail=True, recorded=recorded)
    return tree


def _add_layers(
    tree: Tree,
    runs: list[tuple[Layer, list[AnnotatedFrame]]],
    *,
    detail: bool,
    recorded: Recorded,
) -> None:
    """Under ``tree``, one branch per layer and its frames (``detail``: with each frame's
    explanation and source line)."""
    for layer, frames in runs:
        branch = tree.add(Text(layer.label, style=f"bold {layer.color}"))
        for frame in frames:
            where = frame_location(frame, recorded)
            label = Text.assemble((frame.func, "bold"), f"  {where}", style="")
            node = branch.add(label)
            if detail:
                node.add(Text(frame.explain, style="dim"))
                if frame.source:
                    node.add(Text(frame.source, style="italic"))


def access_path_tree(report: CaptureReport) -> Tree | None:
    """The report's representative access (its "one access, end to end" section), compact:
    a heading saying which access, then its stack's layers from the vCPU loop inwards, one
    line per frame (function, file:line). ``None`` when the report has no such access."""
    access = report.representative
    view = report.stack_view(access.stack) if access is not None else None
    if access is None or view is None:
        return None
    decoded = report.representative_decoded
    register = f" ({decoded.name})" if decoded is not None else ""
    meaning = decoded.summary() if decoded is not None else ""
    value = f"0x{access.value:0{max(access.size, 1) * 2}x}" + (f" = {meaning}" if meaning else "")
    record = report.representative_exit
    if record is not None:
        via = f"after {record.reason}"
    elif report.header.accel == "tcg":
        via = "no exit (TCG softmmu)"
    elif not report.recorded.has("kvm_exits"):
        via = f"KVM exits not recorded by {report.recorded.by}"
    else:
        via = "no linked exit"
    where = f", on {access.thread}" if access.thread else ""
    tree = Tree(
        Text.assemble(
            ("One access, end to end", "bold"),
            f": access {access.seq}, a {access.size}-byte {access.space} {access.op} at "
            f"offset {access.offset:#x}{register}, value {value}; ",
            (f"{via}{where}", "cyan"),
            (f"  (stack {view.id}, {view.uses}x)", "dim"),
        )
    )
    runs = [(layer, frames) for layer, frames in view.stack.layer_runs()]
    _add_layers(
        tree,
        [run for run in runs if run[0].id not in HIDDEN_LAYERS],
        detail=False,
        recorded=report.recorded,
    )
    return tree


def answer_renderables(
    report: CaptureReport, report_file: str | None = None
) -> list[RenderableType]:
    """What ``qtrace capture`` prints under its summary: the representative access's path
    (:func:`access_path_tree`), the findings in their short form, and where the report is."""
    out: list[RenderableType] = []
    tree = access_path_tree(report)
    if tree is not None:
        out.append(tree)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for finding in report.findings:
        style = "green" if finding.holds else "red"
        for label, text in finding_rows(finding):
            grid.add_row(Text(label, style=style), Text(text))
    if report_file is not None:
        grid.add_row(Text("report"), Text(report_file))
    if grid.row_count:
        out.append(grid)
    return out


def show_renderables(report: CaptureReport, *, stacks: bool = True) -> list[RenderableType]:
    """Everything ``qtrace show`` prints, in order."""
    out: list[RenderableType] = [_summary(report), Text("")]
    out += _findings(report)
    if report.regions is not None:
        out += [Text(""), region_table(report.regions)]
        out += [Text(line) for line in region_sentences(report.regions)]
    if report.path is not None:
        out += [Text(""), Text("The path to the device", style="bold")]
        out += [Text(line) for line in path_sentences(report.path)]
    out += [Text(""), register_table(report)]
    if stacks:
        for view in report.stacks:
            out += [Text(""), stack_tree(view, report.recorded)]
    return out


def diff_renderables(diff: StackDiff) -> list[RenderableType]:
    """The diff as a table (innermost frame first) and a one-line summary."""
    a, b = diff.a, diff.b

    def where(side: DiffSide) -> str:
        regions = f", {'/'.join(side.regions)}" if side.regions else ""
        return f"{side.capture} ({side.qemu_version}, {side.accel}, stack {side.stack}{regions})"

    table = Table(
        title=escape(f"{diff.kind}: A = {where(a)}  B = {where(b)}"),
        title_justify="left",
    )
    for name in ("layer", "function", "status", "A", "B"):
        table.add_column(name, overflow="fold")
    for row in diff.rows:
        style = _STATUS_STYLE[row.status]
        table.add_row(row.layer, row.func, Text(row.status, style=style), row.a or "", row.b or "")
    summary = ", ".join(f"{n} {status}" for status, n in diff.counts().items())
    return [Group(table, Text(summary))]
