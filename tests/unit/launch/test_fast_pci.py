"""The fast collector's configuration-space and INTx tracepoints: where they go in each
recorded build (``disassemble /r`` of 7.2, 10.0.13 and 10.2.2), what they collect, the
agent's condition on the PCIDevice, and their frames decoded and written as the breakpoint
collector's ``pci-config`` access and ``irq`` records, in one ``seq`` with the register
accesses."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from qtrace.errors import CollectorError
from qtrace.launch.fast.actions import RAW_STACK_BYTES, config_actions
from qtrace.launch.fast.decode import Access as Decoded
from qtrace.launch.fast.decode import Role, decode_accesses
from qtrace.launch.fast.locate import CONFIG_SITES, IRQ_SITE, parse_disassembly, site_locations
from qtrace.launch.fast.locate import spill_slots
from qtrace.launch.fast.records import ConfigDevice, RegionOf, RecordMaker
from qtrace.launch.fast.run import config_devices, plan_tracepoints, tracepoint_commands
from qtrace.launch.fast.tsave import Frame
from qtrace.trace.schema import Access, Frame as StackFrame, Irq, Stack
from tests.unit.launch.fast_frames import BP, SP
from tests.unit.launch.test_fast_accesses import NUMBERS

RECORDED = Path(__file__).parent / "recorded"
DEV, BRIDGE, MR = 0x5555_0000_A000, 0x5555_0000_B000, 0x5555_0000_1C20


def _functions(version: str) -> dict[str, str]:
    text = (RECORDED / f"fast-pci-{version}.txt").read_text()
    parts = text.split("Dump of assembler code for function ")[1:]
    return {part.split(":", 1)[0]: part for part in parts}


# (version, site.at) -> the offsets of its instructions, measured in each build.
OFFSETS = {
    ("7.2", "call:trace_pci_cfg_read"): [325], ("7.2", "all-ones"): [62, 180],
    ("7.2", "after-spills"): [35],
    ("10.0.13", "call:trace_pci_cfg_read"): [302], ("10.0.13", "all-ones"): [69, 85, 157],
    ("10.0.13", "after-spills"): [35],
    ("10.2.2", "call:trace_pci_cfg_read"): [332], ("10.2.2", "all-ones"): [69, 187],
    ("10.2.2", "after-spills"): [35],
}  # fmt: skip
IRQ_CALLS = {"7.2": 176, "10.0.13": 183, "10.2.2": 183}  # pci_irq_handler's call


@pytest.mark.parametrize("version", ["7.2", "10.0.13", "10.2.2"])
def test_each_config_site_is_found_with_its_arguments_spilled(version: str) -> None:
    funcs = _functions(version)
    for site in CONFIG_SITES:
        code = parse_disassembly(funcs[site.function])
        found = site_locations(code, site)
        assert [i.offset for i in found] == OFFSETS[(version, site.at)]
        assert all(i.length >= 5 for i in found)
        slots = spill_slots(code)
        assert (slots["rdi"], slots["rsi"], slots["rcx"]) == (-0x28, -0x2C, -0x34)
        if site.op == "write":
            assert slots["r8"] == -0x38  # the size, pci_host_config_write_common's fifth
    irq = parse_disassembly(funcs[IRQ_SITE.function])
    [call] = site_locations(irq, IRQ_SITE)
    assert (call.offset, call.length) == (IRQ_CALLS[version], 5)
    assert "<pci_set_irq_state>" in call.text


def test_config_actions_read_the_arguments_from_their_slots_and_collect_no_register() -> None:
    slots = {"rdi": -0x28, "rsi": -0x2C, "rcx": -0x34, "r8": -0x38}
    read = config_actions(slots, "r9", "rcx")
    assert read[0] == "teval $q_nop += (0) - $q_nop"  # the agent skips the first teval
    assert "teval $q_mr += (*(unsigned long *)($rbp + -40)) - $q_mr" in read
    assert "teval $q_off += (*(unsigned int *)($rbp + -44)) - $q_off" in read
    assert "teval $q_size += (*(unsigned int *)($rbp + -52)) - $q_size" in read
    assert "teval $q_val += ($r9) - $q_val" in read
    assert read[-1] == f"collect *(unsigned char (*)[{RAW_STACK_BYTES}])$q_sp"
    assert all("$r" not in line for line in read if line.startswith("collect"))
    write = config_actions(slots, "slot:rcx", "r8")
    assert "teval $q_val += (*(unsigned int *)($rbp + -52)) - $q_val" in write
    assert "teval $q_size += (*(unsigned int *)($rbp + -56)) - $q_size" in write
    refused = config_actions(slots, "const:0xffffffff", "rcx")
    assert "teval $q_val += (4294967295) - $q_val" in refused
    irq = config_actions({}, "rdx", "rsi", in_registers=True)  # at the call: the registers
    assert "teval $q_mr += ($rdi) - $q_mr" in irq and "teval $q_val += ($rdx) - $q_val" in irq
    assert "teval $q_off += ($rsi) - $q_off" in irq


def _disassemble(function: str) -> str:
    return "Dump of assembler code for function " + _functions("10.2.2")[function]


REGIONS = {MR: RegionOf("dev-mmio", "mmio", {"read": "dev_read", "write": "dev_write"})}
DEVICES = {
    DEV: ConfigDevice({"read": "pci_default_read_config", "write": "dev_write_config"}),
    BRIDGE: ConfigDevice({"read": "pci_default_read_config", "write": "pci_bridge_write_config"},
                         "pcie-root-port"),
}  # fmt: skip


def test_the_plan_adds_the_config_tracepoints_with_a_condition_on_the_devices() -> None:
    plan = plan_tracepoints({}, _disassemble, None, DEVICES)
    assert [(t.role.kind, t.where) for t in plan.tracepoints] == [
        ("read", "pci_host_config_read_common+332"),
        ("read", "pci_host_config_read_common+69"),
        ("read", "pci_host_config_read_common+187"),
        ("write", "pci_host_config_write_common+35"),
        ("irq", "pci_irq_handler+183"),
    ]
    assert [t.role.space for t in plan.tracepoints] == ["pci-config"] * 4 + ["irq"]
    commands = tracepoint_commands(plan)
    condition = (f"condition $bpnum *(unsigned long *)($rbp - 40) == {DEV:#x} || "
                 f"*(unsigned long *)($rbp - 40) == {BRIDGE:#x}")  # fmt: skip
    assert commands.count(condition) == 4
    # The device's own interrupt only (not a bridge's), from the call's argument register:
    assert f"condition $bpnum $rdi == {DEV:#x}\n" in commands
    assert "teval $q_val += (*(unsigned int *)($rbp + -52)) - $q_val" in commands
    assert "collect $regs" not in commands
    assert plan_tracepoints({}, _disassemble, None).tracepoints == []  # no device: none


def test_a_build_without_the_shape_is_refused_with_the_way_out() -> None:
    def bare(function: str) -> str:
        return "   0x0000000000001000 <+0>:\t55\tpush   %rbp\n"

    with pytest.raises(CollectorError) as caught:
        plan_tracepoints({}, bare, None, DEVICES)
    assert "pci_host_config_read_common" in str(caught.value)
    assert "--collector breakpoint" in str(caught.value.hint)


def test_discoverys_config_devices_are_read_by_pointer() -> None:
    reply = [
        {"pointer": "0x5555aaaa", "read": "pci_default_read_config", "write": "w", "device": None},
        {"pointer": "0x5555bbbb", "read": "r", "write": "w2", "device": "pcie-root-port"},
    ]
    devices = config_devices(reply)
    assert devices[0x5555AAAA] == ConfigDevice({"read": "pci_default_read_config", "write": "w"})
    assert devices[0x5555BBBB].device == "pcie-root-port"


def _hit(index: int, tp: int, mr: int, off: int, size: int, val: int) -> Frame:
    values = {"mr": mr, "off": off, "size": size, "val": val, "sp": SP, "bp": BP}
    return Frame(index, tp, memory=((SP, bytes(0x100)),),
                 variables={NUMBERS[f"q_{k}"]: v for k, v in values.items()})  # fmt: skip


def test_config_frames_decode_masked_by_size_among_the_register_accesses() -> None:
    roles = {
        1: Role("read", address=0x10),
        5: Role("read", address=0x20, space="pci-config"),
        6: Role("write", address=0x30, space="pci-config"),
    }
    frames = (
        _hit(0, 5, DEV, 0x0, 4, 0x100E8086),
        _hit(1, 1, MR, 0x8, 4, 0x80080783),
        _hit(2, 6, DEV, 0x4, 2, 0xDEAD0107),  # a 2-byte write: the low 16 bits
        _hit(3, 5, DEV, 0x3D, 1, -1),  # a refused read: all ones, one byte
        _hit(4, 5, 0x5555_0000_C000, 0x0, 4, 1),  # another device (the agent filters them)
    )
    decoded = decode_accesses(frames, roles, {MR}, NUMBERS, lambda pc: False, {DEV})
    assert [(a.space, a.op, a.offset, a.size, a.value) for a in decoded.accesses] == [
        ("pci-config", "read", 0x0, 4, 0x100E8086),
        ("", "read", 0x8, 4, 0x80080783),
        ("pci-config", "write", 0x4, 2, 0x0107),
        ("pci-config", "read", 0x3D, 1, 0xFF),
    ]
    assert decoded.other_devices == 1


def test_config_accesses_are_written_as_the_breakpoint_collectors_in_one_seq() -> None:
    accesses = [
        Decoded("read", DEV, 0x0, 4, 0x100E8086, (0x20, 0xA1), 0, space="pci-config"),
        Decoded("read", MR, 0x8, 4, 5, (0x10, 0xA2), 1),
        Decoded("write", BRIDGE, 0x4, 2, 0x107, (0x30, 0xA1), 2, space="pci-config"),
        Decoded("write", 0x999, 0x4, 2, 0x107, (0x30, 0xA1), 3, space="pci-config"),
    ]

    def symbolize(pcs: tuple[int, ...]) -> tuple[StackFrame, ...]:
        return tuple(StackFrame(func=f"f{pc:x}") for pc in pcs)

    maker = RecordMaker(REGIONS, devices=DEVICES)
    assert maker.new_stacks(accesses) == [(0x20, 0xA1), (0x10, 0xA2), (0x30, 0xA1)]
    out = list(maker.records(accesses, symbolize))
    records = [r for r in out if isinstance(r, Access)]
    assert [(r.seq, r.space, r.region, r.handler, r.device) for r in records] == [
        (1, "pci-config", "pci-config", "pci_default_read_config", None),
        (2, "mmio", "dev-mmio", "dev_read", None),
        (3, "pci-config", "pci-config", "pci_bridge_write_config", "pcie-root-port"),
    ]
    stacks = {s.id: s for s in out if isinstance(s, Stack)}
    # A config stack starts in pci_host_config_*_common (the tracepoint's own function); a
    # register access's with the handler named by its region's ops.
    assert [f.func for f in stacks[records[0].stack or ""].frames] == ["f20", "fa1"]
    assert [f.func for f in stacks[records[1].stack or ""].frames] == ["dev_read", "f10", "fa2"]


def test_an_intx_change_made_by_pci_set_irq_is_an_irq_record_in_the_seq() -> None:
    at = 0x5555_0000_0E00  # in pci_irq_handler, at its call of pci_set_irq_state
    roles = {1: Role("read", address=0x10), 7: Role("irq", address=at, space="irq")}
    frames = (_hit(0, 7, DEV, 0, 0, 1), _hit(1, 1, MR, 0xC0, 4, 0x4), _hit(2, 7, DEV, 0, 0, 0),
              _hit(3, 7, DEV, 0, 0, 1))  # fmt: skip
    decoded = decode_accesses(frames, roles, {MR}, NUMBERS, lambda pc: False, {DEV})
    assert [(a.op, a.value) for a in decoded.accesses] == [("irq", 1), ("read", 4), ("irq", 0),
                                                           ("irq", 1)]  # fmt: skip
    paths = [(at, 0xB1, 0xC1), (0x10, 0xA2), (at, 0xB1, 0xC2), (at, 0xB9, 0xC1)]
    accesses = [replace(a, pcs=p) for a, p in zip(decoded.accesses, paths, strict=True)]
    names = {at: "pci_irq_handler", 0xB1: "pci_set_irq", 0xB9: "pci_device_deassert_intx"}

    def symbolize(pcs: tuple[int, ...]) -> tuple[StackFrame, ...]:
        return tuple(StackFrame(func=names.get(pc, f"f{pc:x}")) for pc in pcs)

    maker = RecordMaker(REGIONS, devices=DEVICES)
    out = list(maker.records(accesses, symbolize))
    events = [r for r in out if isinstance(r, (Access, Irq))]
    assert [(type(r).__name__, r.seq) for r in events] == [("Irq", 1), ("Access", 2),
                                                           ("Irq", 3)]  # fmt: skip
    irqs = [r for r in events if isinstance(r, Irq)]
    assert [(i.level, i.line) for i in irqs] == [(1, "INTx"), (0, "INTx")]
    stacks = {s.id: s for s in out if isinstance(s, Stack)}
    # From pci_set_irq on, as the breakpoint collector's irq stacks begin:
    assert [f.func for f in stacks[irqs[0].stack or ""].frames] == ["pci_set_irq", "fc1"]
    assert maker.irq_other_paths == 1  # another path to pci_irq_handler: not recorded
