"""qtrace diff: frames only one side has, and frames whose file or line moved."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from qtrace.errors import ReportError
from qtrace.report.diff import diff_captures
from qtrace.trace import Access, Frame, Header, Stack

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "traces"


def _rows(diff):  # type: ignore[no-untyped-def]
    return {(r.func, r.status): r for r in diff.rows}


def test_7_2_against_10_2_2_names_the_changed_frames() -> None:
    diff = diff_captures(FIXTURES / "e1000-kvm-7.2", FIXTURES / "e1000-kvm-10.2.2")
    rows = _rows(diff)
    assert diff.kind == "mmio read"
    step = rows[("flatview_read_continue_step", "only in B")]
    assert (
        step.layer == "address-space"
        and step.b is not None
        and step.b.startswith("system/physmem.c")
    )
    moved = rows[("memory_region_dispatch_read", "file changed")]
    assert moved.a.startswith("softmmu/memory.c:") and moved.b.startswith("system/memory.c:")  # type: ignore[union-attr]
    assert rows[("kvm_cpu_exec", "line changed")].a == "accel/kvm/kvm-all.c:2958"
    assert rows[("kvm_cpu_exec", "line changed")].b == "accel/kvm/kvm-all.c:3248"
    assert ("kvm_vcpu_thread_fn", "same") in rows
    assert not [r for r in diff.rows if r.status == "only in A"]


def test_kvm_against_tcg_differs_in_whole_layers() -> None:
    diff = diff_captures(FIXTURES / "e1000-kvm-10.2.2", FIXTURES / "e1000-tcg-10.2.2")
    only_a = {r.func for r in diff.rows if r.status == "only in A"}
    only_b = {r.func for r in diff.rows if r.status == "only in B"}
    assert {"kvm_cpu_exec", "address_space_rw", "flatview_read"} <= only_a
    assert {"helper_ldul_mmu", "cpu_tb_exec", "code_gen_buffer"} <= only_b
    assert ("e1000_mmio_read", "same") in _rows(diff)


def test_synthetic_pair_names_exactly_the_changed_frames(make_capture: Callable[..., Path]) -> None:
    def capture(name: str, frames: tuple[Frame, ...]) -> Path:
        return make_capture(
            name,
            [
                Header(device="e1000", qemu_version="9.0", accel="kvm"),
                Stack("s1", frames),
                Access(1, "write", "mmio", 0xD0, 4, 0x1F, stack="s1"),
            ],
        )

    common = (
        Frame("kvm_cpu_exec", "accel/kvm/kvm-all.c", 10),
        Frame("kvm_vcpu_thread_fn", "accel/kvm/kvm-accel-ops.c", 5),
    )
    a = capture(
        "a",
        (
            Frame("e1000_mmio_write", "hw/net/e1000.c", 100),
            Frame("memory_region_write_accessor", "softmmu/memory.c", 7),
            Frame("flatview_write", "softmmu/physmem.c", 20),
        )
        + common,
    )
    b = capture(
        "b",
        (
            Frame("e1000_mmio_write", "hw/net/e1000.c", 100),
            Frame("memory_region_write_accessor", "system/memory.c", 7),
            Frame("flatview_write_continue", "system/physmem.c", 30),
            Frame("flatview_write", "system/physmem.c", 20),
        )
        + common,
    )
    diff = diff_captures(a, b, "mmio write")
    changed = {(r.func, r.status) for r in diff.rows if r.status != "same"}
    assert changed == {
        ("memory_region_write_accessor", "file changed"),
        ("flatview_write_continue", "only in B"),
        ("flatview_write", "file changed"),
    }
    assert diff.rows[0].func == "e1000_mmio_write"  # innermost first
    data = diff.to_json()
    assert data["format"] == "qtrace-diff/1" and data["summary"]["only in B"] == 1


def test_missing_kind_is_a_report_error_with_a_hint() -> None:
    with pytest.raises(ReportError) as info:
        diff_captures(
            FIXTURES / "e1000-tcg-10.2.2", FIXTURES / "e1000-kvm-10.2.2", "pci-config read"
        )
    assert info.value.hint and "mmio read" in info.value.hint


def test_a_handler_frame_named_only_says_so(make_capture: Callable[..., Path]) -> None:
    """The fast collector names the handler without a place (its tracepoint is in the
    accessor below it): the diff says "by name only" where it used to print "?", and
    calls the frame's place unknown, not a changed file."""

    def capture(name: str, handler: Frame) -> Path:
        frames = (handler, Frame("memory_region_write_accessor", "system/memory.c", 7))
        return make_capture(
            name,
            [Header(device="e1000", qemu_version="10.2.2", accel="tcg"), Stack("s1", frames),
             Access(1, "write", "mmio", 0xD0, 4, 0x1F, stack="s1")],
        )  # fmt: skip

    fast = capture("fast", Frame("e1000_mmio_write"))
    full = capture("full", Frame("e1000_mmio_write", "hw/net/e1000.c", 100))
    diff = diff_captures(fast, full)
    row = _rows(diff)[("e1000_mmio_write", "place unknown")]
    assert (row.a, row.b) == ("by name only", "hw/net/e1000.c:100")
    assert diff.counts()["place unknown"] == 1 and diff.counts()["file changed"] == 0
    assert _rows(diff_captures(fast, fast))[("e1000_mmio_write", "same")].a == "by name only"
