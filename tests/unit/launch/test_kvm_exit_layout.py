"""The breakpoint collector's KVM exit decode through a learned ``struct kvm_run`` layout
(gdbscripts/qtrace_gdb/kvm_exit.py, kvm_run_layout.py): it reads what the fast collector's
host-side decode reads from the same bytes (qtrace/launch/fast/kvm_run.py, Linux's x86-64
ABI), it is used only after it agreed with gdb's own decode at a breakpoint's first hit, and
a disagreement is a collector error after which gdb decodes every exit. Host Python, with a
stand-in ``gdb`` module, memory and registers."""

from __future__ import annotations

import struct
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from qtrace.launch.fast.kvm_run import KVM_RUN_BYTES, exit_fields
from tests.gdb_side import StandInError, forget, import_with_stand_in_gdb

# Linux's x86-64 ABI, as gdb's type of QEMU's build gives it: name -> (offset, size).
FIELDS = {
    "exit_reason": (8, 4), "kvm_valid_regs": (288, 8), "rip": (432, 8),
    "io.direction": (32, 1), "io.size": (33, 1), "io.port": (34, 2), "io.count": (36, 4),
    "io.data_offset": (40, 8),
    "mmio.phys_addr": (32, 8), "mmio.data": (40, 8), "mmio.len": (48, 4),
    "mmio.is_write": (52, 1),
}  # fmt: skip
RBP, RUN, CPU = 0x1100, 0x4000, 0x8000
RUN_SLOT, CPU_SLOT, CPU_INDEX = -0x18, -0x20, (0x10, 4)
NAMES = ("qtrace_gdb", "qtrace_gdb.base", "qtrace_gdb.regs", "qtrace_gdb.kvm_run_layout",
         "qtrace_gdb.kvm_exit")  # fmt: skip


class Space:
    """A made-up address space: QEMU's stack slots, one vCPU's kvm_run and its CPUState."""

    def __init__(self) -> None:
        self.bytes = bytearray(0x9000)
        struct.pack_into("<QQ", self.bytes, RBP + CPU_SLOT, CPU, RUN)  # cpu, then run
        struct.pack_into("<i", self.bytes, CPU + CPU_INDEX[0], 0)

    def read(self, address: int, length: int) -> bytes:
        if address < 0 or address + length > len(self.bytes):
            raise StandInError(f"Cannot access memory at address {address:#x}")
        return bytes(self.bytes[address : address + length])

    def exit_io(self, port: int, size: int, out: bool, data: bytes = b"") -> None:
        self._head(2)
        struct.pack_into("<BBHIQ", self.bytes, RUN + 32, int(out), size, port, 1, 0x800)
        self.bytes[RUN + 0x800 : RUN + 0x800 + len(data)] = data

    def exit_mmio(self, address: int, length: int, write: bool, data: bytes = b"") -> None:
        self._head(6)
        struct.pack_into("<Q8sIB", self.bytes, RUN + 32, address, data, length, int(write))

    def _head(self, reason: int) -> None:
        self.bytes[RUN : RUN + KVM_RUN_BYTES] = bytes(KVM_RUN_BYTES)
        struct.pack_into("<I", self.bytes, RUN + 8, reason)
        struct.pack_into("<Q", self.bytes, RUN + 288, 1)  # KVM_SYNC_X86_REGS
        struct.pack_into("<Q", self.bytes, RUN + 432, 0xFFF0)


class Session:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.exits: list[dict[str, Any]] = []

    def note_error(self, message: str) -> None:
        self.errors.append(message)

    def record_exit(self, record: dict[str, Any], frame: object) -> bool:
        self.exits.append(dict(record))
        return False


@pytest.fixture
def space() -> Space:
    return Space()


@pytest.fixture
def kvm_exit(monkeypatch: pytest.MonkeyPatch, space: Space) -> Iterator[types.ModuleType]:
    module, _ = import_with_stand_in_gdb(monkeypatch, NAMES)
    layout = sys.modules["qtrace_gdb.kvm_run_layout"]
    words = [0] * 27
    words[layout.RBP] = RBP
    monkeypatch.setattr(layout, "registers", lambda: words)
    monkeypatch.setattr(layout, "memory", space.read)
    monkeypatch.setattr(module, "memory", space.read)
    learned = layout.Layout(RUN_SLOT, CPU_SLOT, FIELDS, CPU_INDEX)
    monkeypatch.setattr(layout, "learn", lambda frame: (learned, None))
    yield module
    forget(NAMES)


def _breakpoint(module: types.ModuleType, by_gdb: list[dict[str, Any]]) -> Any:
    """An ExitBreakpoint whose gdb decode gives ``by_gdb`` in turn; it counts its frames."""
    breakpoint = module.ExitBreakpoint(Session(), "kvm-all.c:3248", ["KVM_EXIT_MMIO"])
    breakpoint.frames = 0

    def newest_frame() -> object:
        breakpoint.frames += 1
        return object()

    sys.modules["gdb"].newest_frame = newest_frame  # type: ignore[attr-defined]
    answers = iter(by_gdb)
    breakpoint._decode = lambda frame: dict(next(answers))
    return breakpoint


@pytest.mark.parametrize(
    "setup",
    [
        lambda s: s.exit_io(0xCF8, 4, out=True, data=b"\x00\x08\x00\x80"),
        lambda s: s.exit_io(0xCFC, 2, out=False),
        lambda s: s.exit_mmio(0xFEBC0008, 4, write=False),
        lambda s: s.exit_mmio(0xFEBC00D0, 4, write=True, data=b"\x9d\x00\x00\x00"),
    ],
    ids=["port-out", "port-in", "mmio-read", "mmio-write"],
)
def test_the_learned_layout_reads_what_the_fast_collectors_decode_reads(
    kvm_exit: types.ModuleType, space: Space, setup: Any
) -> None:
    setup(space)
    record = kvm_exit.ExitBreakpoint._decode_fast(None, kvm_exit.kvm_run_layout.learn(None)[0])
    io_data = space.read(RUN + 0x800, 64)
    fields, truncated = exit_fields(space.read(RUN, KVM_RUN_BYTES), io_data)
    assert not truncated
    assert record.pop("type") == "exit" and record.pop("vcpu") == 0
    assert record == fields
    assert list(record) == list(fields), "the same key order: the trace lines are compared"


def test_after_the_first_hit_agrees_exits_are_read_without_a_gdb_frame(
    kvm_exit: types.ModuleType, space: Space
) -> None:
    space.exit_mmio(0xFEBC0008, 4, write=False)
    first = kvm_exit.ExitBreakpoint._decode_fast(None, kvm_exit.kvm_run_layout.learn(None)[0])
    breakpoint = _breakpoint(kvm_exit, [first])
    for _ in range(3):
        breakpoint.on_hit()
    assert breakpoint.frames == 1 and breakpoint.session.errors == []
    assert breakpoint.session.exits == [first] * 3


def test_a_layout_that_disagrees_with_gdb_is_noted_and_gdb_decodes_from_then_on(
    kvm_exit: types.ModuleType, space: Space
) -> None:
    space.exit_mmio(0xFEBC0008, 4, write=False)
    fast = kvm_exit.ExitBreakpoint._decode_fast(None, kvm_exit.kvm_run_layout.learn(None)[0])
    by_gdb = {**fast, "phys_addr": 0xFEBC000C}
    breakpoint = _breakpoint(kvm_exit, [by_gdb] * 3)
    for _ in range(3):
        breakpoint.on_hit()
    assert breakpoint.frames == 3, "every exit through gdb"
    assert breakpoint.session.exits == [by_gdb] * 3
    (error,) = breakpoint.session.errors
    assert f"phys_addr={0xFEBC0008} where gdb read {0xFEBC000C} (KVM_EXIT_MMIO)" in error
    other = _breakpoint(kvm_exit, [fast, fast])
    other.on_hit()
    other.on_hit()  # the second breakpoint does not try the layout again
    assert other.frames == 2 and other.session.errors == []
