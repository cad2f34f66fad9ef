"""The fast collector's KVM exit tracepoint: where it goes in each recorded build
(``disassemble /r kvm_cpu_exec`` of 7.2, 10.0.13 and 10.2.2), what it collects, how
``kvm_run``'s bytes decode, and the exits written as the breakpoint collector writes them:
the same reasons kept, quiet ports counted, and each access tied to its thread's exit."""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import pytest

from qtrace.errors import CollectorError
from qtrace.launch.fast.actions import RAW_STACK_BYTES, exit_actions
from qtrace.launch.fast.checks import FastChecks
from qtrace.launch.fast.decode import Access as Decoded
from qtrace.launch.fast.decode import ExitHit, Role, decode_accesses
from qtrace.launch.fast.kvm_run import EXIT_REASONS, IO_DATA_BYTES, KVM_RUN_BYTES, exit_fields
from qtrace.launch.fast.locate import exit_site, parse_disassembly
from qtrace.launch.fast.records import ExitsRecorded, RecordMaker, RegionOf
from qtrace.launch.fast.run import plan_tracepoints, tracepoint_commands
from qtrace.launch.evidence import summary
from qtrace.launch.fast.tsave import Frame
from qtrace.launch.live import TraceTail
from qtrace.trace.codec import TraceWriter
from qtrace.trace.kinds import CaptureStatus
from qtrace.trace.schema import Access, End, Exit, Frame as StackFrame, Header, Stack
from tests.unit.launch.fast_frames import BP, SP
from tests.unit.launch.test_fast_accesses import NUMBERS

RECORDED = Path(__file__).parent / "recorded"
ROOT = Path(__file__).parents[3]
RUN, MR = 0x7F00_0000_0000, 0x5555_0000_1C20
# The call of trace_kvm_run_exit and kvm_cpu_exec's slot of ``run``, read off each build.
SITES = {"7.2": (430, -0x8), "10.0.13": (614, -0x18), "10.2.2": (512, -0x18)}


def _code(version: str) -> str:
    return (RECORDED / f"fast-kvm-exit-{version}.txt").read_text()


@pytest.mark.parametrize("version", sorted(SITES))
def test_the_exit_site_is_the_call_before_the_switch_with_runs_slot(version: str) -> None:
    site = exit_site(parse_disassembly(_code(version)))
    assert site is not None
    assert (site.at.offset, site.run_slot) == SITES[version]
    assert site.at.length == 5 and "<trace_kvm_run_exit>" in site.at.text


def test_a_build_without_the_call_or_the_reload_has_no_exit_site() -> None:
    code = parse_disassembly(_code("10.2.2"))
    call = next(i for i in code if "<trace_kvm_run_exit>" in i.text)
    assert exit_site([i for i in code if i is not call]) is None
    # The switch's reload of run->exit_reason (offset 8) gone: no slot to trust.
    assert exit_site([i for i in code if "0x8(%rax),%eax" not in i.text]) is None


def test_exit_actions_collect_kvm_run_and_guard_the_io_data_address() -> None:
    lines = exit_actions(-0x18)
    assert lines[0] == "teval $q_nop += (0) - $q_nop"  # the agent skips the first teval
    assert "teval $q_mr += (*(unsigned long *)($rbp + -24)) - $q_mr" in lines
    assert "teval $q_off += ($rdi) - $q_off" in lines  # cpu_index
    assert "teval $q_size += ($rsi) - $q_size" in lines  # exit_reason
    # Only a port I/O exit's union holds data_offset: any other exit points inside run.
    assert ("teval $q_val += ($q_mr + ($rsi == 2 ? *(unsigned long *)($q_mr + 40) : 40))"
            " - $q_val") in lines  # fmt: skip
    assert f"collect *(unsigned char (*)[{KVM_RUN_BYTES}])$q_mr" in lines
    assert f"collect *(unsigned char (*)[{IO_DATA_BYTES}])$q_val" in lines
    assert lines[-1] == f"collect *(unsigned char (*)[{RAW_STACK_BYTES}])$q_sp"
    assert all("$r" not in line for line in lines if line.startswith("collect"))


def _run(reason: int, union: bytes = b"", valid: int = 1, rip: int = 0x10ABDA) -> bytes:
    run = bytearray(KVM_RUN_BYTES)
    struct.pack_into("<I", run, 8, reason)
    run[32 : 32 + len(union)] = union
    struct.pack_into("<QQ", run, 288, valid, 0)
    struct.pack_into("<Q", run, 432, rip)
    return bytes(run)


def test_kvm_run_decodes_as_the_breakpoint_collector_reads_it() -> None:
    out = _run(2, struct.pack("<BBHIQ", 1, 4, 0xCFC, 1, 4096))
    assert exit_fields(out, bytes.fromhex("00000080") + bytes(60)) == (
        {"reason": "KVM_EXIT_IO", "guest_pc": 0x10ABDA, "port": 0xCFC, "size": 4, "count": 1,
         "direction": "out", "data": "00000080"}, False)  # fmt: skip
    port_in, _ = exit_fields(_run(2, struct.pack("<BBHIQ", 0, 1, 0xCFE, 1, 4096)), bytes(64))
    assert port_in["direction"] == "in" and "data" not in port_in
    mmio = _run(6, struct.pack("<Q8sIB", 0xFEBE00D0, bytes.fromhex("9d000000"), 4, 1), valid=0)
    assert exit_fields(mmio, None) == (
        {"reason": "KVM_EXIT_MMIO", "phys_addr": 0xFEBE00D0, "len": 4, "is_write": True,
         "data": "9d000000"}, False)  # fmt: skip
    # A string write longer than the block: no data, and said so.
    string = _run(2, struct.pack("<BBHIQ", 1, 1, 0x3F8, 100, 4096))
    fields, truncated = exit_fields(string, bytes(IO_DATA_BYTES))
    assert truncated and "data" not in fields and fields["count"] == 100
    assert exit_fields(_run(99), None)[0]["reason"] == "KVM_EXIT_99"


def test_the_exit_reason_table_is_the_gdb_sides() -> None:
    tree = ast.parse((ROOT / "gdbscripts/qtrace_gdb/kvm_exit.py").read_text())
    table = next(
        node.value for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "EXIT_REASONS"
    )  # fmt: skip
    assert ast.literal_eval(table) == EXIT_REASONS


def _exit_frame(index: int, tp: int, reason: int, run: bytes, io: bytes | None) -> Frame:
    data = RUN + 4096 if reason == 2 else RUN + 40
    values = {"mr": RUN, "off": 0, "size": reason, "val": data, "sp": SP, "bp": BP}
    memory = [(RUN, run), (SP, bytes(0x100))]
    if io is not None:
        memory.append((data, io))
    return Frame(index, tp, memory=tuple(memory),
                 variables={NUMBERS[f"q_{k}"]: v for k, v in values.items()})  # fmt: skip


def test_exit_frames_decode_with_their_blocks_after_the_start_marker() -> None:
    roles = {3: Role("arm", address=0x5), 4: Role("exit", address=0x40, space="exit",
                                                   run_slot=-0x18)}  # fmt: skip
    io = _run(2, struct.pack("<BBHIQ", 1, 4, 0xCF8, 1, 4096))
    frames = (
        _exit_frame(0, 4, 2, io, bytes(IO_DATA_BYTES)),  # before the guest's marker
        Frame(1, 3, variables={NUMBERS["q_sp"]: SP}),
        _exit_frame(2, 4, 2, io, bytes.fromhex("00000080") + bytes(60)),
        _exit_frame(3, 4, 6, _run(6), None),
        _exit_frame(4, 4, 6, b"short", None),  # a block cut short: lost, and counted
    )
    decoded = decode_accesses(frames, roles, {MR}, NUMBERS, lambda pc: False)
    hits = decoded.accesses
    assert [type(h).__name__ for h in hits] == ["ExitHit", "ExitHit"]
    assert isinstance(hits[0], ExitHit) and hits[0].reason == 2 and hits[0].run == io
    assert hits[0].io_data is not None and hits[0].io_data[:4] == bytes.fromhex("00000080")
    assert isinstance(hits[1], ExitHit) and hits[1].io_data is None
    assert hits[0].pcs[0] == 0x40  # the tracepoint's own address first
    assert (decoded.before_arming, decoded.frames_without_values) == (1, 1)


REGIONS = {MR: RegionOf("dev-mmio", "mmio", {"read": "dev_read", "write": "dev_write"})}
KVM = 0xE0  # a return address in kvm_cpu_exec
FLUSH = 0xF0  # one in kvm_flush_coalesced_mmio_buffer
NAMES = {KVM: "kvm_cpu_exec", FLUSH: "kvm_flush_coalesced_mmio_buffer"}


def _symbolize(pcs: tuple[int, ...]) -> tuple[StackFrame, ...]:
    return tuple(StackFrame(func=NAMES.get(pc, f"f{pc:x}")) for pc in pcs)


def _exit(reason: int, union: bytes, sp: int = SP) -> ExitHit:
    return ExitHit(0, reason, _run(reason, union), bytes(IO_DATA_BYTES), (0x40, KVM), 0, sp)


def test_exits_and_accesses_are_written_as_the_breakpoint_collectors() -> None:
    mmio = struct.pack("<Q8sIB", 0xFEBE0008, bytes(8), 4, 0)
    quiet = struct.pack("<BBHIQ", 1, 1, 0x3F8, 1, 4096)
    hits: list[Decoded | ExitHit] = [
        _exit(6, mmio),
        Decoded("read", MR, 0x8, 4, 0x80080783, (0x10, KVM), 1, SP),
        _exit(7, b""),  # KVM_EXIT_IRQ_WINDOW_OPEN: not among this build's cases
        _exit(2, quiet),  # the serial console's port: counted, and no exit for what follows
        Decoded("write", MR, 0x20, 4, 1, (0x12, FLUSH, KVM), 2, SP),  # replayed from the ring
        Decoded("read", MR, 0xC0, 4, 0, (0x10, KVM), 3, SP),
    ]
    labels = frozenset({"KVM_EXIT_IO", "KVM_EXIT_MMIO"})
    maker = RecordMaker(REGIONS, 5, exits=ExitsRecorded(labels, ((0x3F8, 8),)))
    out = list(maker.records(hits, _symbolize, lambda sp: "CPU 0/KVM"))
    exits = [r for r in out if isinstance(r, Exit)]
    accesses = [r for r in out if isinstance(r, Access)]
    assert [(e.seq, e.reason, e.phys_addr, e.vcpu, e.guest_pc) for e in exits] == [
        (5, "KVM_EXIT_MMIO", 0xFEBE0008, 0, 0x10ABDA)]  # fmt: skip
    assert [(a.seq, a.offset, a.exit_seq, a.addr, a.space, a.vcpu, a.coalesced)
            for a in accesses] == [
        (6, 0x8, 5, 0xFEBE0008, "mmio", 0, None),
        (7, 0x20, None, None, "mmio", 0, True),
        (8, 0xC0, None, None, "mmio", 0, None),  # its thread's last exit was a quiet one
    ]  # fmt: skip
    assert (maker.exits_other_reasons, maker.quiet_exits) == (1, 1)
    stacks = {s.id: s for s in out if isinstance(s, Stack)}
    assert [f.func for f in stacks[exits[0].stack or ""].frames] == ["f40", "kvm_cpu_exec"]


def test_an_access_off_kvm_cpu_exec_takes_no_exit() -> None:
    mmio = struct.pack("<Q8sIB", 0xFEBE0008, bytes(8), 4, 0)
    hits: list[Decoded | ExitHit] = [
        _exit(6, mmio),
        Decoded("read", MR, 0x8, 4, 1, (0x10, 0x77), 1, SP),  # the main loop's stack
    ]
    maker = RecordMaker(REGIONS, exits=ExitsRecorded(frozenset({"KVM_EXIT_MMIO"})))
    [access] = [r for r in maker.records(hits, _symbolize) if isinstance(r, Access)]
    assert access.exit_seq is None and access.addr is None


def test_without_exits_traced_an_exit_hit_is_no_record() -> None:
    maker = RecordMaker(REGIONS)
    assert list(maker.records([_exit(6, b"")], _symbolize)) == []
    assert maker.new_stacks([_exit(6, b"")]) == []


def _disassemble(function: str) -> str:
    if function == "kvm_cpu_exec":
        return _code("10.2.2")
    return "   0x0000000000001000 <+0>:\t55\tpush   %rbp\n"


def test_the_plan_adds_the_exit_tracepoint_without_a_condition() -> None:
    plan = plan_tracepoints({}, _disassemble, None, exits=True)
    [tp] = plan.tracepoints
    assert (tp.role.kind, tp.role.run_slot, tp.where) == ("exit", -0x18, "kvm_cpu_exec+512")
    commands = tracepoint_commands(plan)
    assert "condition" not in commands and "ftrace *0x" in commands
    assert plan_tracepoints({}, _disassemble, None).tracepoints == []  # TCG: none

    with pytest.raises(CollectorError) as caught:
        plan_tracepoints({}, lambda f: "", None, exits=True)
    assert "kvm_cpu_exec" in str(caught.value) and "--accel tcg" in str(caught.value.hint)


def test_the_checks_carry_the_exit_counts_only_when_exits_were_traced() -> None:
    tcg = FastChecks().record()
    assert tcg["kvm_exits"] is False and "quiet_exits" not in tcg
    kvm = FastChecks(kvm_exits=True, quiet_exits=3).plus(FastChecks(quiet_exits=2)).record()
    assert kvm["kvm_exits"] is True and kvm["quiet_exits"] == 5 and kvm["ok"] is True


def _summary_of(tmp_path: Path, checks: FastChecks, exits: int) -> dict[str, object]:
    path = tmp_path / "trace.jsonl"
    path.unlink(missing_ok=True)
    with TraceWriter.append_to(path) as writer:
        writer.write(Header(device="e1000", qemu_version="10.2.2", accel="kvm"))
        for seq in range(1, exits + 1):
            writer.write(Exit(seq=seq, reason="KVM_EXIT_MMIO"))
        writer.write(End(status=CaptureStatus.OK, fast_checks=checks.record()))
    tail = TraceTail(path)
    tail.update()
    return summary(tail, {}, CaptureStatus.OK, None, 0, 1.0, tmp_path)


def test_a_fast_summary_counts_exits_only_when_they_were_traced(tmp_path: Path) -> None:
    kvm = _summary_of(tmp_path, FastChecks(kvm_exits=True), 3)
    assert kvm["exits"] == 3 and kvm["exit_reasons"] == {"KVM_EXIT_MMIO": 3}
    assert kvm["collector"] == "fast" and kvm["dmas"] == 0, "DMA copies are counted"
    tcg = _summary_of(tmp_path, FastChecks(), 0)
    assert tcg["exits"] is None and tcg["exit_reasons"] is None
