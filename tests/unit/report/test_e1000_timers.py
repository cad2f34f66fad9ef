"""The e1000's timers (interrupt moderation, autonegotiation) in the committed captures and
in the reports made from them: armed where the guest's register write ran, run on the thread
where they fire (issue 11's acceptance), as the records show and the reports say."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtrace.trace import Trace, read_trace

REPORTS = Path(__file__).resolve().parents[3] / "reports"
LINUX = REPORTS / "captures" / "e1000-tcg-linux"
TIMERS = ("e1000_mit_timer", "e1000_autoneg_timer")


def _funcs(trace: Trace, stack: str | None) -> list[str]:
    assert stack is not None
    return [f.func for f in trace.stacks[stack].frames]


@pytest.mark.parametrize("callback", TIMERS)
def test_the_linux_capture_arms_each_timer_on_the_vcpu_and_runs_it_on_the_main_loop(
    callback: str,
) -> None:
    trace = read_trace(LINUX / "trace.jsonl")
    assert trace.header.extra.get("record_async") == ["timer"]  # the e1000 pack asks for it
    arms = [a for a in trace.asyncs if (a.kind, a.op, a.callback) == ("timer", "arm", callback)]
    runs = [a for a in trace.asyncs if (a.kind, a.op, a.callback) == ("timer", "run", callback)]
    assert arms and runs
    first = arms[0]
    assert first.thread == "CPU 0/TCG" and "e1000_mmio_write" in _funcs(trace, first.stack)
    assert runs[0].seq > first.seq
    for run in runs:
        funcs = _funcs(trace, run.stack)
        assert run.thread == "main" and funcs[0] == callback
        assert "timerlist_run_timers" in funcs and "main_loop_wait" in funcs
        assert not any(f.startswith(("kvm_cpu_exec", "cpu_exec", "qemu_wait_io")) for f in funcs)
    if callback == "e1000_autoneg_timer":
        # The driver restarts autonegotiation through the PHY's control register (MDIC).
        access = max((a for a in trace.accesses if a.seq < first.seq), key=lambda a: a.seq)
        assert (access.region, access.offset, access.op) == ("e1000-mmio", 0x20, "write")


def test_the_linux_report_shows_them_on_the_thread_where_they_fire() -> None:
    text = (REPORTS / "e1000" / "tcg-linux.md").read_text(encoding="utf-8")
    section = text.split("## Where the work ran", 1)[1].split("\n## ", 1)[0]
    main_row = next(line for line in section.splitlines() if line.startswith("| main loop |"))
    for callback in TIMERS:
        assert f"timer {callback}" in main_row
        assert f"- {callback} (timer) was armed on CPU 0/TCG" in section
        line = next(x for x in section.splitlines() if x.startswith(f"- {callback} (timer)"))
        assert "and ran on main loop" in line
    assert "mmio write of MDIC" in section
    assert "recorded only the kind timer" in section


def test_the_probe_reports_and_the_guide_show_the_moderation_timer_where_it_fires() -> None:
    for name in ("kvm-probe", "tcg-probe"):
        text = (REPORTS / "e1000" / f"{name}.md").read_text(encoding="utf-8")
        assert "- e1000_mit_timer (timer) was armed on CPU 0/" in text
        assert "and ran on main loop" in text
    guide = (REPORTS / "README.md").read_text(encoding="utf-8")
    section = guide.split("## 9. ", 1)[1].split("\n## ", 1)[0]
    for callback in TIMERS:
        line = next(x for x in section.splitlines() if x.startswith(f"- `{callback}()`"))
        assert "armed on CPU 0/TCG" in line and "ran on the main loop" in line
