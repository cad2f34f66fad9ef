"""``qtrace verify``: replay a captured trace against the reference e1000 model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from qtrace.cli.app import qtrace_command
from qtrace.cli.console import console
from qtrace.errors import VerifyMismatch
from qtrace.verify import Mismatch, VerifyResult, verify_file

__all__ = ["render_result", "verify"]

_MAX_ROWS = 50


@qtrace_command("verify")
def verify(
    device: Annotated[str, typer.Argument(help="Device whose reference model to use (e1000).")],
    trace: Annotated[
        Path,
        typer.Option(
            "--trace", help="A trace.jsonl, or a capture directory holding one.", exists=True
        ),
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")] = False,
    from_reset: Annotated[
        bool,
        typer.Option(
            "--from-reset",
            help="The capture began at power-on: compare every read strictly, adopt no firmware state.",
        ),
    ] = False,
) -> None:
    """Replay a trace's register accesses against the reference model and compare every read.

    Exit status 0 when every compared read agrees, 4 when any differs. Registers the model
    does not implement are listed, not compared; time- and host-dependent bits are
    compared under the documented mask rules (docs/refemu.md).
    """
    result = verify_file(trace, device, from_reset=from_reset)
    if json_output:
        console.print_json(json.dumps(result.to_dict()))
    else:
        render_result(result)
    if not result.ok:
        first = result.mismatches[0]
        raise VerifyMismatch(
            f"{len(result.mismatches)} read(s) differ from the model; first: {first.register} "
            f"at {first.space} {first.offset:#x} (seq {first.seq}): QEMU {first.expected:#x}, "
            f"model {first.actual:#x}",
            hint="Each difference is either a QEMU bug or a model bug: check the datasheet.",
        )


def render_result(result: VerifyResult) -> None:
    """Summary, mismatches, unimplemented registers and volatile rules, as rich tables."""
    summary = Table(title=f"verify {result.device}", show_header=False)
    summary.add_column("what")
    summary.add_column("count", justify="right")
    rows = (
        ("accesses replayed", result.accesses_replayed),
        ("writes", result.writes),
        ("reads compared", result.reads_compared),
        ("matches", result.matches),
        ("  of which under a volatile mask", result.masked),
        ("reads synchronised (firmware state)", result.synced),
        ("mismatches", len(result.mismatches)),
        ("unimplemented accesses", result.unimplemented_accesses),
        ("DMA reads preloaded", result.dma_preloaded),
    )
    for label, count in rows:
        style = "bold red" if label == "mismatches" and count else None
        summary.add_row(label, str(count), style=style)
    console.print(summary)
    if result.mismatches:
        console.print(_mismatch_table(result.mismatches))
    if result.unimplemented:
        table = Table(title="registers the model does not implement")
        for col in ("register", "space", "offset", "reads", "writes", "reason"):
            table.add_column(col)
        for use in result.unimplemented:
            table.add_row(
                use.register,
                use.space,
                f"{use.offset:#x}",
                str(use.reads),
                str(use.writes),
                use.reason,
            )
        console.print(table)
    if result.rules_applied:
        table = Table(title="reads that agreed only under a volatile rule")
        table.add_column("rule")
        table.add_column("reads", justify="right")
        for rule, count in result.rules_applied.most_common():
            table.add_row(rule, str(count))
        console.print(table)
    for feature, count in result.unmodelled_features.items():
        console.print(f"[yellow]not modelled[/]: {feature} ({count}x)")
    verdict = (
        "[green]OK[/]: no mismatch"
        if result.ok
        else f"[red]FAIL[/]: {len(result.mismatches)} mismatch(es)"
    )
    console.print(verdict)


def _mismatch_table(mismatches: list[Mismatch]) -> Table:
    table = Table(title="mismatches (QEMU vs model)")
    for col in (
        "seq",
        "register",
        "offset",
        "QEMU",
        "model",
        "differing fields",
        "previous accesses",
    ):
        table.add_column(col, overflow="fold")
    for m in mismatches[:_MAX_ROWS]:
        width = 2 * m.size
        previous = "\n".join(f"#{p.seq} {p.op} {p.value:#0{width + 2}x}" for p in m.previous) or "-"
        table.add_row(
            str(m.seq),
            m.register,
            f"{m.space} {m.offset:#x}",
            f"{m.expected:#0{width + 2}x}",
            f"{m.actual:#0{width + 2}x}",
            "\n".join(m.fields),
            previous,
        )
    if len(mismatches) > _MAX_ROWS:
        table.caption = f"first {_MAX_ROWS} of {len(mismatches)}; --json lists all"
    return table
