"""The README's first command ends with the answer on screen (issue 14 item 1): a real
``qtrace capture e1000`` through the installed command prints, under its summary, the path of
the report's representative access (layers, functions, file:line), the short findings and the
path of report.html, which exists. One TCG capture (it runs anywhere)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from qtrace.image.builder import BuildResult
from qtrace.report.model import build_report

QTRACE = str(Path(sys.executable).with_name("qtrace"))


def test_capture_prints_the_path_of_one_access_and_writes_the_html_report(
    debug_image: BuildResult, tmp_path: Path
) -> None:
    out = tmp_path / "e1000-tcg"
    proc = subprocess.run(
        [QTRACE, "capture", "e1000", "--accel", "tcg", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    stdout = proc.stdout
    html = out / "report.html"
    assert html.is_file() and (out / "report.md").is_file()
    assert '<h2 id="sequence">One access, end to end</h2>' in html.read_text(encoding="utf-8")

    # Under the summary: the same access the report explains, with its real stack.
    assert stdout.index("distinct stacks") < stdout.index("One access, end to end")
    report = build_report(out)
    access = report.representative
    assert access is not None and access.stack is not None
    heading = next(line for line in stdout.splitlines() if "One access, end to end" in line)
    assert f"access {access.seq}, a {access.size}-byte {access.space} {access.op}" in heading
    assert "no exit (TCG softmmu)" in heading and "CPU 0/TCG" in heading
    view = report.stack_view(access.stack)
    assert view is not None
    printed = [
        (m["func"], m["where"])
        for m in re.finditer(r"[└├]── (?P<func>\w+)  (?P<where>\S+:\d+|0x[0-9a-f]+)", stdout)
    ]
    inner = [(f.func, f.location) for f in view.stack.frames]
    assert printed and all(frame in inner for frame in printed)
    # From the vCPU loop down to the device's handler, as the TCG softmmu path goes.
    funcs = [func for func, _ in printed]
    assert funcs[0] in ("mttcg_cpu_thread_fn", "rr_cpu_thread_fn")
    assert "cpu_exec" in funcs and "memory_region_dispatch_read" in funcs
    assert printed[-1] == ("e1000_mmio_read", inner[0][1])
    assert re.search(r"e1000_mmio_read  hw/net/e1000\.c:\d+", stdout)
    for layer in ("vCPU thread", "TCG softmmu", "memory API", "device model"):
        assert layer in stdout, layer

    # The short findings, what the trace shows, and where the report is.
    assert "synchronous" in stdout and "no KVM exit under TCG" in stdout
    threads = {f.key for f in report.findings} & {"all-on-vcpu-threads", "work-on-other-threads"}
    assert threads, "the trace names every record's thread"
    assert ("other threads" if "work-on-other-threads" in threads else "threads  ") in stdout
    assert stdout.rstrip().splitlines()[-1].split() == ["report", str(html)]
    summary = json.loads((out / "summary.json").read_text())
    assert {"report.md", "report.html"} <= set(summary["files"])
