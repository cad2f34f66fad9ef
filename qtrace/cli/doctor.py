"""``qtrace doctor``: a table of environment checks, each failing one with its fix."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from qtrace.image.versions import DEFAULT_QEMU_VERSION
from qtrace.cli.app import qtrace_command
from qtrace.cli.console import console
from qtrace.doctor import checks_as_json, doctor_ok, run_checks
from qtrace.errors import DoctorFailed

__all__ = ["doctor"]

_STYLE = {"ok": "green", "warning": "yellow", "error": "bold red"}


@qtrace_command("doctor")
def doctor(
    qemu_version: Annotated[
        str, typer.Option("--qemu-version", help="Which debug image to check.")
    ] = DEFAULT_QEMU_VERSION,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the checks as JSON on stdout.")
    ] = False,
) -> None:
    """\
    Check Docker, /dev/kvm (by creating a VM in a container), the debug image, gdb and disk space.

    Exits 0 only when everything `qtrace capture` needs with KVM is there; a missing KVM is a
    warning (TCG still works) and a missing Docker daemon an error; both exit 3 (the
    table, or the JSON on stdout, comes first; the error line goes to stderr).
    """
    checks = run_checks(qemu_version)
    if as_json:
        console.print_json(json.dumps({"ok": doctor_ok(checks), "checks": checks_as_json(checks)}))
    else:
        table = Table(title="qtrace doctor")
        for column in ("check", "status", "detail", "fix"):
            table.add_column(column)
        for check in checks:
            table.add_row(
                check.name, f"[{_STYLE[check.status]}]{check.status}[/]", check.detail, check.fix
            )
        console.print(table)
    if not doctor_ok(checks):
        raise DoctorFailed([check.name for check in checks if check.status != "ok"])
