"""Where a -O0 handler keeps its parameters (gdbscripts/qtrace_gdb/frame_slots.py), from the
disassembly gdb gave of QEMU 10.2.2's handlers (tests/fixtures/collector/) and from small
made-up functions for what those do not show. Host Python: the module needs no gdb."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.gdb_side import gdb_module

HANDLERS = json.loads(
    (Path(__file__).parents[2] / "fixtures" / "collector" / "handlers-10.2.2.json").read_text()
)
READ = [8, 8, 4]  # opaque, addr, size
READ_WITH_ATTRS = [8, 8, 8, 4]  # opaque, addr, data, size
WRITE = [8, 8, 8, 4]  # opaque, addr, data, size


@pytest.fixture(scope="module")
def slots() -> ModuleType:
    return gdb_module("frame_slots")


@pytest.mark.parametrize(
    ("function", "widths", "expected"),
    [
        # e1000_mmio_read only reads its parameters (index = (addr & 0x1ffff) >> 2)
        ("e1000_mmio_read", READ, [(-0x18, 8), (-0x20, 8), (-0x24, 4)]),
        ("subpage_read", READ_WITH_ATTRS, [(-0x28, 8), (-0x30, 8), (-0x38, 8), (-0x3C, 4)]),
        # a leaf: no sub $N,%rsp, its slots in the red zone, no push or call to clobber them
        ("amdvi_mem_ir_read", READ_WITH_ATTRS, [(-8, 8), (-0x10, 8), (-0x18, 8), (-0x1C, 4)]),
        # a 128-byte frame is set up with add $-0x80,%rsp; slots still within the red zone
        ("mailbox_reg_read", READ, [(-0x68, 8), (-0x70, 8), (-0x74, 4)]),
        ("igbvf_mmio_read", READ, None),  # addr = vf_to_pf_addr(addr, ...)
        ("fw_cfg_data_read", READ, None),  # while (size--)
        ("proxy_bar_read", READ, None),  # moves rsp, then pushes: rsp-relative writes unknown
    ],
)
def test_handlers_that_keep_their_parameters_are_found(
    slots: ModuleType, function: str, widths: list[int], expected: list[tuple[int, int]] | None
) -> None:
    assert slots.kept_at_return(HANDLERS[function], widths) == expected


def test_a_write_handlers_slots_come_from_its_prologue(slots: ModuleType) -> None:
    found = slots.prologue(HANDLERS["e1000_mmio_write"], WRITE)
    assert found.slots == [(-0x18, 8), (-0x20, 8), (-0x28, 8), (-0x2C, 4)]
    assert found.rsp_offset == -0x30
    assert HANDLERS["e1000_mmio_write"][found.body].startswith("mov    -0x18(%rbp)")


def _function(*body: str, frame: int = 0x30) -> list[str]:
    """A -O0 read handler (opaque, addr, size) whose body is ``body``."""
    return [
        "push   %rbp",
        "mov    %rsp,%rbp",
        "sub    $0x%x,%%rsp" % frame,
        "mov    %rdi,-0x18(%rbp)",
        "mov    %rsi,-0x20(%rbp)",
        "mov    %edx,-0x24(%rbp)",
        *body,
        "leave",
        "ret",
    ]


@pytest.mark.parametrize(
    ("body", "kept"),
    [
        (["mov    -0x20(%rbp),%rax", "cmpl   $0x4,-0x24(%rbp)", "mov    %eax,-0x4(%rbp)"], True),
        (["movl   $0x0,-0x28(%rbp)"], True),  # the 4 bytes below size: a local of its own
        (["movq   $0x0,-0x28(%rbp)"], False),  # 8 bytes from there reach into size
        (["addq   $0x4,-0x20(%rbp)"], False),  # addr += 4
        (["lea    -0x20(%rbp),%rax", "mov    %rax,%rdi", "call   0x1000 <f>"], False),
        (["xchg   -0x18(%rbp),%rax"], False),  # xchg writes its first operand too
        (["movb   $0x1,-0x1d(%rbp)"], False),  # a byte inside addr
        (["mov    %rax,0x0(%rbp)"], False),  # the saved rbp, read at the ret
        (["mov    %rax,(%rsp)", "call   0x1000 <f>"], True),  # outgoing arguments, below the slots
        (["sub    $0x10,%rsp", "mov    %rax,0x8(%rsp)"], False),  # rsp moved: place unknown
        (["mov    %rax,-0x20(%rbp,%rcx,8)"], False),  # an indexed place in the frame
        (["rep stos %rax,%es:(%rdi)"], True),  # rdi comes from a lea, which would be caught
        (["fstpl  -0x30(%rbp)"], False),  # x87: the suffix is not the width; assume wide
    ],
)
def test_writes_to_the_slots_are_seen(slots: ModuleType, body: list[str], kept: bool) -> None:
    assert (slots.kept_at_return(_function(*body), READ) is not None) is kept


def test_slots_below_the_red_zone_are_not_trusted_at_the_return(slots: ModuleType) -> None:
    deep = [a.replace("-0x18(%rbp)", "-0x80(%rbp)") for a in _function(frame=0x90)]
    assert slots.keeps_parameters(deep, slots.prologue(deep, READ))
    assert slots.kept_at_return(deep, READ) is None


@pytest.mark.parametrize(
    "asms",
    [
        ["mov    %rsp,%rbp", "mov    %rdi,-0x18(%rbp)"],  # no push %rbp: not the -O0 prologue
        _function()[:4] + _function()[5:],  # addr (rsi) never stored
        [a.replace("%edx,-0x24", "%dx,-0x24") for a in _function()],  # stored narrower
    ],
)
def test_a_prologue_it_does_not_know_gives_no_slots(slots: ModuleType, asms: list[str]) -> None:
    assert slots.prologue(asms, READ) is None


def test_disassembly_text_is_split_into_mnemonic_and_operands(slots: ModuleType) -> None:
    assert slots.split("lea    0x173933e(%rip),%rax        # 0x1bfa400 <macreg_readops>") == (
        "lea",
        ["0x173933e(%rip)", "%rax"],
    )
    assert slots.split("call   0x4c0f2c <set_ics>") == ("call", ["0x4c0f2c"])
    assert slots.split("lock addl $0x1,(%rax,%rdx,4)") == ("addl", ["$0x1", "(%rax,%rdx,4)"])
    assert slots.split("endbr64") == ("endbr64", [])
