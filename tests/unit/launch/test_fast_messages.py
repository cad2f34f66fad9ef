"""The fast collector's MSI and MSI-X tracepoints: where they go in each recorded build
(``disassemble /r`` of msi_notify and msix_notify in 7.2, 10.0.13 and 10.2.2), what they
collect through the PCIDevice's fields, and their frames written as the breakpoint
collector's ``irq`` records (the message, the mask and pending bits)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from qtrace.errors import CollectorError
from qtrace.launch.fast.actions import RAW_STACK_BYTES, message_actions
from qtrace.launch.fast.decode import MessageHit, Role, decode_accesses
from qtrace.launch.fast.locate import MESSAGE_SITES, parse_disassembly, site_locations
from qtrace.launch.fast.locate import spill_slots
from qtrace.launch.fast.records import ConfigDevice, RecordMaker
from qtrace.launch.fast.run import plan_tracepoints, tracepoint_commands
from qtrace.launch.fast.tsave import Frame
from qtrace.trace.schema import Frame as StackFrame
from qtrace.trace.schema import Irq, Stack
from tests.unit.launch.fast_frames import BP, SP
from tests.unit.launch.test_fast_accesses import NUMBERS

RECORDED = Path(__file__).parent / "recorded"
DEV, OTHER = 0x5555_0000_A000, 0x5555_0000_B000
TABLE, PBA, CONFIG = 0x5555_0001_0000, 0x5555_0002_0000, 0x5555_0003_0000
# The first 5-byte instruction once both arguments are spilled, read off each build.
OFFSETS = {"7.2": (22, 19), "10.0.13": (22, 30), "10.2.2": (22, 30)}
FIELDS = {"msix_table": 1352, "msix_pba": 1360, "msix_function_masked": 2232, "config": 160,
          "msi_cap": 2240}  # fmt: skip  (10.2.2's)


def _functions(version: str) -> dict[str, str]:
    text = (RECORDED / f"fast-msi-{version}.txt").read_text()
    parts = text.split("Dump of assembler code for function ")[1:]
    return {part.split(":", 1)[0]: "Dump of assembler code for function " + part for part in parts}


@pytest.mark.parametrize("version", sorted(OFFSETS))
def test_each_message_site_is_found_before_any_branch(version: str) -> None:
    funcs = _functions(version)
    found = []
    for site in MESSAGE_SITES:
        code = parse_disassembly(funcs[site.function])
        [at] = site_locations(code, site)
        assert at.length >= 5
        assert not any(i.text.startswith(("j", "call")) for i in code if i.offset < at.offset)
        slots = spill_slots(code)
        assert {"rdi", "rsi"} <= set(slots)
        found.append(at.offset)
    assert tuple(found) == OFFSETS[version]


def test_message_actions_read_the_message_through_the_device_fields() -> None:
    slots = {"rdi": -0x18, "rsi": -0x1C}
    msix = message_actions("msix", slots, FIELDS)
    assert "teval $q_mr += (*(unsigned long *)($rbp + -24)) - $q_mr" in msix
    assert "teval $q_off += (*(unsigned int *)($rbp + -28)) - $q_off" in msix
    assert "teval $q_val += (*(unsigned long *)($q_mr + 1352) + 16 * $q_off) - $q_val" in msix
    assert "teval $q_mask += (*(unsigned long *)($q_mr + 1360) + ($q_off >> 3)) - $q_mask" in msix
    assert "teval $q_shift += (*(unsigned char *)($q_mr + 2232)) - $q_shift" in msix
    assert "collect *(unsigned char (*)[16])$q_val" in msix
    assert "collect *(unsigned char (*)[1])$q_mask" in msix
    msi = message_actions("msi", slots, FIELDS)
    assert ("teval $q_val += (*(unsigned long *)($q_mr + 160) + "
            "*(unsigned char *)($q_mr + 2240)) - $q_val") in msi  # fmt: skip
    assert "collect *(unsigned char (*)[14])$q_val" in msi
    for lines in (msix, msi):
        assert lines[-1] == f"collect *(unsigned char (*)[{RAW_STACK_BYTES}])$q_sp"
        assert all("$r" not in line for line in lines if line.startswith("collect"))


def _disassemble(function: str) -> str:
    funcs = _functions("10.2.2")
    if function in funcs:
        return funcs[function]
    return (RECORDED / "fast-pci-10.2.2.txt").read_text()  # the config and INTx sites


DEVICES = {DEV: ConfigDevice({"read": "pci_default_read_config", "write": "w"}),
           OTHER: ConfigDevice({"read": "r", "write": "w"}, "pcie-root-port")}  # fmt: skip


def test_the_plan_traces_messages_of_the_captured_device_only() -> None:
    def pci(function: str) -> str:
        text = (RECORDED / "fast-pci-10.2.2.txt").read_text()
        parts = {p.split(":", 1)[0]: p for p in text.split("Dump of assembler code for function ")}
        if function in parts:
            return "Dump of assembler code for function " + parts[function]
        return _disassemble(function)

    plan = plan_tracepoints({}, pci, None, DEVICES, message_fields=FIELDS)
    messages = [t for t in plan.tracepoints if t.role.kind in ("msi", "msix")]
    assert [(t.role.kind, t.where) for t in messages] == [
        ("msi", "msi_notify+22"), ("msix", "msix_notify+30")]  # fmt: skip
    commands = tracepoint_commands(plan)
    assert commands.count(f"condition $bpnum *(unsigned long *)($rbp - 24) == {DEV:#x}\n") == 1
    assert f"{OTHER:#x}\n" not in commands.split("# msix")[1]  # not the bridge's
    without = plan_tracepoints({}, pci, None, DEVICES)
    assert not [t for t in without.tracepoints if t.role.kind in ("msi", "msix")]

    def no_spills(function: str) -> str:
        if function == "msix_notify":
            return "   0x0000000000001000 <+0>:\t55\tpush   %rbp\n"
        return pci(function)

    with pytest.raises(CollectorError) as caught:
        plan_tracepoints({}, no_spills, None, DEVICES, message_fields=FIELDS)
    assert "msix_notify" in str(caught.value) and "--collector breakpoint" in str(caught.value.hint)


def _message_frame(index: int, tp: int, dev: int, vector: int, blocks: dict[int, bytes],
                   **extra: int) -> Frame:  # fmt: skip
    values = {"mr": dev, "off": vector, "sp": SP, "bp": BP, **extra}
    memory = ((SP, bytes(0x100)), *blocks.items())
    return Frame(index, tp, memory=memory,
                 variables={NUMBERS[f"q_{k}"]: v for k, v in values.items()})  # fmt: skip


def test_message_frames_decode_and_are_written_as_the_breakpoint_collectors() -> None:
    roles = {8: Role("msix", address=0x80, space="irq"), 9: Role("msi", address=0x90, space="irq")}
    entry = struct.pack("<IIII", 0xFEE00000, 0, 0x41, 0)  # unmasked
    masked = struct.pack("<IIII", 0xFEE00000, 0, 0x42, 1)
    cap64 = struct.pack("<BBHIIH", 0x05, 0, 0x80, 0xFEE01000, 0x1, 0x4021)  # 64-bit address
    frames = (
        _message_frame(0, 8, DEV, 0, {TABLE: entry, PBA: b"\x00"}, val=TABLE, mask=PBA,
                       shift=0),
        _message_frame(1, 8, DEV, 1, {TABLE + 16: masked, PBA: b"\x02"}, val=TABLE + 16,
                       mask=PBA, shift=0),
        _message_frame(2, 9, DEV, 2, {CONFIG + 0x50: cap64}, val=CONFIG + 0x50),
        _message_frame(3, 8, OTHER, 0, {TABLE: entry, PBA: b"\x00"}, val=TABLE, mask=PBA,
                       shift=0),  # another device's (the agent filters them)
        _message_frame(4, 8, DEV, 0, {}, val=TABLE, mask=PBA, shift=0),  # its entry lost
    )  # fmt: skip
    decoded = decode_accesses(frames, roles, set(), NUMBERS, lambda pc: False, {DEV})
    hits = decoded.accesses
    assert [type(h).__name__ for h in hits] == ["MessageHit"] * 3
    assert (decoded.other_devices, decoded.frames_without_values) == (1, 1)
    assert isinstance(hits[1], MessageHit) and hits[1].pending_byte == 2

    maker = RecordMaker({}, 3, DEVICES)
    out = list(maker.records(hits, lambda pcs: tuple(StackFrame(f"f{pc:x}") for pc in pcs)))
    irqs = [r for r in out if isinstance(r, Irq)]
    assert [(i.seq, i.line, i.level, i.address, i.data, i.masked, i.pending) for i in irqs] == [
        (3, "MSI-X:0", 1, 0xFEE00000, 0x41, False, False),
        (4, "MSI-X:1", 1, 0xFEE00000, 0x42, True, True),
        (5, "MSI:2", 1, 0x1_FEE01000, 0x4021 + 2, None, None),
    ]
    stacks = {s.id: s for s in out if isinstance(s, Stack)}
    assert [f.func for f in stacks[irqs[0].stack or ""].frames][0] == "f80"  # msix_notify's


def test_max_hits_counts_access_records_only() -> None:
    from qtrace.launch.fast.decode import Access as Decoded
    from qtrace.launch.fast.run import max_hits_cut

    def access(op: str) -> Decoded:
        return Decoded(op, 0x10, 0, 4, 0, (), 0)

    message = MessageHit("msix", DEV, 0, bytes(16), 0, False, (), 0)
    hits = [access("read"), message, access("irq"), access("write"), message, access("read")]
    # Two access records fit: the second is hits[3]; the message and INTx before it stay.
    assert max_hits_cut(hits, 2) == 4
    assert max_hits_cut(hits, 3) == 6 and max_hits_cut(hits, 0) == 0
    assert max_hits_cut(hits, 4) is None  # the segment holds three: all kept
