"""``qtrace verify``: check QEMU's device against its pack's reference model.

``--trace FILE`` replays a captured trace; ``--live`` runs the differential test against
QEMU under qtest in the debug image; ``--list`` shows which devices have a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from qtrace.image.builder import qemu_image_tag, require_image
from qtrace.image.versions import DEFAULT_QEMU_VERSION
from qtrace.cli.app import qtrace_command
from qtrace.cli.console import console, err_console
from qtrace.docker_env import connect
from qtrace.errors import UsageError, VerifyMismatch
from qtrace.verify import (
    EventMismatch,
    Mismatch,
    VerifyResult,
    describe_comparisons,
    devices_with_model,
    verify_device,
    verify_file,
)
from qtrace.verify.coverage import CoverageReport, group_arrays
from qtrace.verify.explain import Explainer
from qtrace.verify.live import LiveResult, run_live
from qtrace.verify.qemu_qtest import QemuQtest

__all__ = ["render_coverage", "render_live_result", "render_result", "verify"]

_MAX_ROWS = 50


@qtrace_command("verify")
def verify(
    device: Annotated[
        str | None,
        typer.Argument(help="Device whose reference model to use (see --list), e.g. e1000."),
    ] = None,
    list_models: Annotated[
        bool, typer.Option("--list", help="List the devices that have a reference model.")
    ] = False,
    trace: Annotated[
        Path | None,
        typer.Option(
            "--trace", help="A trace.jsonl, or a capture directory holding one.", exists=True
        ),
    ] = None,
    live: Annotated[
        bool,
        typer.Option("--live", help="Differential test against QEMU under qtest (debug image)."),
    ] = False,
    sequences: Annotated[
        int, typer.Option("--sequences", min=0, help="Random sequences to run with --live.")
    ] = 2000,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", help="Which random sequences --live runs (default 0: the same every time)."
        ),
    ] = None,
    qemu_version: Annotated[
        str, typer.Option("--qemu-version", help="Which debug image to run with --live.")
    ] = DEFAULT_QEMU_VERSION,
    json_output: Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")] = False,
    from_reset: Annotated[
        bool,
        typer.Option(
            "--from-reset",
            help=(
                "The capture began at power-on: compare every read strictly, adopt no "
                "firmware state."
            ),
        ),
    ] = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help=(
                "With --trace: the model's account of every access (why a read returned "
                "its value, what a write did), from the model's own state changes."
            ),
        ),
    ] = False,
) -> None:
    """Compare the reference model with QEMU: replay a trace, or test live through qtest.

    With --trace, every read in the trace is compared; registers the model does not
    implement are listed, time- and host-dependent bits are compared under the documented
    mask rules (docs/refemu.md); --explain prints the model's account of each access.
    With --live, fixed scenarios and --sequences random register sequences run on the
    model and on QEMU side by side; every read, the
    interrupt line and DMA-written memory are compared after each step, and the bit
    coverage of the random sequences is reported (each register bit written 0 and 1 and
    read back).

    Exit status 0 when everything agrees, 4 on any difference.
    """
    if list_models:
        _list_models(json_output)
        return
    if device is None:
        raise UsageError(
            "name the device whose model to use",
            hint="`qtrace verify --list` shows the devices that have a model.",
        )
    if (trace is None) == (not live):
        raise UsageError(
            "give exactly one of --trace FILE and --live",
            hint=(
                f"`qtrace verify {device} --trace CAPTURE/trace.jsonl` or "
                f"`qtrace verify {device} --live`."
            ),
        )
    if live and explain:
        raise UsageError("--explain explains a replayed trace", hint="Use it with --trace FILE.")
    if live:
        _verify_live(device, sequences, seed, qemu_version, json_output)
        return
    assert trace is not None
    explainer = Explainer(verify_device(device)) if explain else None
    result = verify_file(trace, device, from_reset=from_reset, observer=explainer)
    if explainer is not None:
        explainer.mark(result)
    if json_output:
        out = result.to_dict()
        if explainer is None:
            console.print_json(json.dumps(out))
        else:  # thousands of entries: rich's pretty-printer would take seconds
            out["explanations"] = [e.to_dict() for e in explainer.explanations]
            console.file.write(json.dumps(out) + "\n")
    else:
        if explainer is not None:
            lines = (line for e in explainer.explanations for line in e.lines())
            console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
        render_result(result)
    hint = "Each difference is either a QEMU bug or a model bug: check the datasheet."
    if result.dma_unrecorded:
        hint = (
            f"This trace records no DMA (a --collector fast capture): the model made "
            f"{result.dma_unrecorded} DMA read(s) whose data the trace does not hold, so a "
            "difference after them may be the missing data's. Capture with --collector "
            "breakpoint to verify this device."
        )
    if result.mismatches:
        first = result.mismatches[0]
        raise VerifyMismatch(
            f"{len(result.mismatches)} read(s) differ from the model; first: {first.register} "
            f"at {first.space} {first.offset:#x} (seq {first.seq}): QEMU {first.expected:#x}, "
            f"model {first.actual:#x}",
            register=first.register,
            expected=first.expected,
            actual=first.actual,
            count=len(result.mismatches) + len(result.event_mismatches),
            hint=hint,
        )
    if result.event_mismatches:
        event = result.event_mismatches[0]
        what = {"irq": "interrupt line", "msi": "MSI messages"}.get(event.kind, "DMA")
        raise VerifyMismatch(
            f"{len(result.event_mismatches)} access(es) where QEMU's DMA or interrupt line "
            f"differs from the model's; first: {what} after the {event.register} access "
            f"(seq {event.seq}): QEMU {event.expected}, model {event.actual}",
            register=event.register,
            count=len(result.event_mismatches),
            hint=hint,
        )


def _list_models(json_output: bool) -> None:
    names = devices_with_model()
    models = [describe_comparisons(verify_device(name)) for name in names]
    if json_output:
        console.print_json(json.dumps({"devices_with_model": names, "models": models}))
        return
    table = Table(title="devices with a reference model, and what verify compares")
    for col in ("device", "model of", "replay (--trace)", "live (--live)"):
        table.add_column(col, overflow="fold")
    for model in models:
        covers = ", ".join(model["covers"])
        table.add_row(
            model["device"],
            f"{covers}\n{model['summary']}" if model["summary"] else covers,
            "\n".join(f"• {line}" for line in model["replay"]),
            "\n".join(f"• {line}" for line in model["live"]) or "no ([model.qtest] missing)",
        )
    console.print(table)


def _verify_live(
    device: str, sequences: int, seed: int | None, qemu_version: str, json_output: bool
) -> None:
    target = verify_device(device)
    if target.qtest is None:
        raise UsageError(
            f"the {target.name} pack says nothing of how to start it under qtest",
            hint=(
                f"Add [model.qtest] to its pack.toml, or use `qtrace verify {device} --trace FILE`."
            ),
        )
    client = connect()
    require_image(client, qemu_version)

    def progress(what: str) -> None:
        if not json_output:
            err_console.print(f"[dim]• {what}[/]")

    with QemuQtest(client, qemu_image_tag(qemu_version), target) as qemu:
        result = run_live(qemu, target, sequences=sequences, seed=seed, progress=progress)
    if json_output:
        console.print_json(json.dumps(result.to_dict()))
    else:
        render_live_result(result, target.name)
    divergences = result.divergences
    if divergences:
        first = divergences[0]
        raise VerifyMismatch(
            f"{len(divergences)} divergence(s) between QEMU and the model; first: {first}",
            register=first.register,
            expected=first.qemu,
            actual=first.model,
            count=len(divergences),
            hint="Each difference is either a QEMU bug or a model bug: check the datasheet.",
        )


def render_live_result(result: LiveResult, device: str) -> None:
    """Per-scenario table, random-sequence counts, and any shrunk counterexample."""
    table = Table(title=f"verify {device} --live (model vs QEMU under qtest)")
    for col in ("scenario", "steps", "reads", "irq checks", "DMA bytes", "frames", "result"):
        table.add_column(col, overflow="fold")
    rows = [(s.name, s.counts, s.divergence) for s in result.scenarios]
    if result.sequences_run:
        label = f"random sequences ({result.sequences_run} run, seed {result.seed})"
        rows.append((label, result.sequence_counts, result.counterexample_divergence))
    for name, counts, divergence in rows:
        table.add_row(
            name,
            str(counts.steps),
            str(counts.reads_compared),
            str(counts.irq_checks),
            str(counts.dma_bytes_compared),
            str(counts.frames),
            "[green]agree[/]" if divergence is None else f"[red]{divergence}[/]",
        )
    console.print(table)
    if result.counterexample:
        where = (
            f" from sequence {result.failing_sequence} of seed {result.seed}, "
            f"{result.shrink_runs} shrinking runs"
            if result.failing_sequence is not None
            else ""
        )
        console.print(
            f"[bold red]shrunk counterexample[/] (after machine reset and PCI setup{where}):"
        )
        for line in result.counterexample:
            console.print(f"  {line}", markup=False, highlight=False)
    if result.coverage is not None:
        render_coverage(result.coverage)
    console.print(
        f"reads compared: {result.reads_compared}; elapsed {result.elapsed_s:.1f} s; "
        + ("[green]OK[/]: no divergence" if result.ok else "[red]FAIL[/]")
    )


def _mask(value: int, width_bits: int) -> str:
    return f"{value:#0{width_bits // 4 + 2}x}"


def render_coverage(report: CoverageReport) -> None:
    """Per register (arrays on one row): bits written 0 and 1 and read back, held, missing."""
    table = Table(title="bit coverage of the random sequences (written 0 / 1, then read back)")
    for col in ("register", "offset", "bits covered", "0 read back", "1 read back", "held"):
        table.add_column(col, overflow="fold")
    table.add_column("missing", overflow="fold")
    for name, rows in group_arrays(report.registers):
        width = rows[0].width_bits
        covered = sum(r.covered.bit_count() for r in rows)
        total = sum(r.width_bits for r in rows)
        # For an array, the bits so in every element (missing: in any element).
        zero = one = held = rows[0].all_bits
        missing = 0
        for r in rows:
            zero, one = zero & r.zero_read, one & r.one_read
            held &= r.held & ~r.covered
            missing |= r.missing
        label = name if len(rows) == 1 else f"{name[:-2]}[0-{len(rows) - 1}]"
        table.add_row(
            label,
            f"{rows[0].space} {rows[0].offset:#x}",
            f"{covered}/{total}",
            _mask(zero, width),
            _mask(one, width),
            _mask(held, width) if held else "-",
            _mask(missing, width) if missing else "-",
            style="red" if missing else None,
        )
    console.print(table)
    if report.held:
        rules = Table(title="bits the generator holds (deliberately not written freely)")
        for col in ("register", "bits", "held at", "in sequences", "for", "why"):
            rules.add_column(col, overflow="fold")
        for rule in report.held:
            rules.add_row(
                rule.register,
                f"{rule.bits:#010x}",
                f"{rule.value & rule.bits:#010x}",
                rule.sequences,
                rule.applies_to,
                rule.why,
            )
        console.print(rules)
    console.print(
        f"bit coverage: {report.bits_covered} of {report.bits_total} bits "
        f"({report.percent:.2f}% of those not held); {report.bits_held} held in every "
        f"sequence, {report.bits_missing} missing"
    )


def render_result(result: VerifyResult) -> None:
    """Summary, mismatches, unimplemented registers and volatile rules, as rich tables."""
    summary = Table(title=f"verify {result.device}", show_header=False)
    summary.add_column("what")
    summary.add_column("count", justify="right")
    rows: tuple[tuple[str, int], ...] = (
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
    if result.dma_recorded:
        rows += (
            ("  of which recorded in part (truncated)", result.dma_truncated),
            ("DMA reads compared (address, size)", result.dma_reads_compared),
            ("DMA writes compared (address, bytes)", result.dma_writes_compared),
            ("DMA transfers no access caused", result.dma_async),
        )
    if result.irq_recorded:
        rows += (
            ("interrupt line compared (after an access)", result.irq_compared),
            ("line changes no access caused (timers)", result.irq_async),
            ("  accesses after which the lines stayed apart", result.irq_unsynced),
        )
    if result.host_inputs_replayed:
        rows += (("frames from the host replayed into the model", result.host_inputs_replayed),)
    if result.async_work_replayed:
        rows += (("work off the vCPU replayed (thread, timer, bh)", result.async_work_replayed),)
    if result.msi_compared:
        rows += (("MSI / MSI-X messages compared", result.msi_compared),)
    rows += (("DMA / interrupt mismatches", len(result.event_mismatches)),)
    for label, count in rows:
        style = "bold red" if "mismatches" in label and count else None
        summary.add_row(label, str(count), style=style)
    console.print(summary)
    if result.mismatches:
        console.print(_mismatch_table(result.mismatches))
    if result.event_mismatches:
        console.print(_event_mismatch_table(result.event_mismatches))
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
        else f"[red]FAIL[/]: {len(result.mismatches) + len(result.event_mismatches)} mismatch(es)"
    )
    console.print(verdict)


def _event_mismatch_table(mismatches: list[EventMismatch]) -> Table:
    table = Table(title="DMA and interrupt-line mismatches (QEMU vs model, after the access)")
    for col in ("seq", "access to", "what", "QEMU", "model"):
        table.add_column(col, overflow="fold")
    for m in mismatches[:_MAX_ROWS]:
        what = {"irq": "interrupt line", "msi": "MSI messages"}.get(m.kind, "DMA transfers")
        table.add_row(str(m.seq), m.register, what, m.expected, m.actual)
    if len(mismatches) > _MAX_ROWS:
        table.caption = f"first {_MAX_ROWS} of {len(mismatches)}; --json lists all"
    return table


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
