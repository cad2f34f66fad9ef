"""The fast collector's DMA tracepoints: where they go in each recorded build (``disassemble
/r`` of one copy of dma_memory_rw_relaxed in 7.2, 10.0.13 and 10.2.2), what they collect
(the bytes in chunks that never pass the buffer, a read's from guest RAM), and their frames
written as the breakpoint collector's ``dma`` records."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qtrace.errors import CollectorError
from qtrace.launch.fast.actions import RAW_STACK_BYTES, dma_actions, dma_chunks
from qtrace.launch.fast.decode import DmaHit, Role, decode_accesses, dma_bytes
from qtrace.launch.fast.locate import JUMP_BYTES, dma_site, parse_disassembly
from qtrace.launch.fast.records import RecordMaker
from qtrace.launch.fast.run import DmaCopies, dma_copies, plan_tracepoints, tracepoint_commands
from qtrace.launch.fast.tsave import Frame
from qtrace.trace.codec import record_to_json
from qtrace.trace.schema import Dma, Stack
from qtrace.trace.schema import Frame as StackFrame
from tests.unit.launch.fast_frames import BP, SP
from tests.unit.launch.test_fast_accesses import NUMBERS

RECORDED = Path(__file__).parent / "recorded"
OFFSETS = {"7.2": 71, "10.0.13": 72, "10.2.2": 72}  # the call of address_space_rw, read off
AS = 0x5555_0000_70A8
RAM = ((0x0, 0xA0000, 0x7F00_0000_0000), (0x100000, 0x3F00000, 0x7F00_0010_0000))
BUF = 0x7000_0000_1000


def _copy(version: str) -> str:
    return (RECORDED / f"fast-dma-{version}.txt").read_text()


@pytest.mark.parametrize("version", sorted(OFFSETS))
def test_the_dma_site_is_the_call_of_address_space_rw(version: str) -> None:
    code = parse_disassembly(_copy(version))
    at = dma_site(code)
    assert at is not None and at.offset == OFFSETS[version] and at.length == JUMP_BYTES
    # Why there: after the copy no instruction of 5 bytes is left for the agent's jump.
    after = [i for i in code if i.offset > at.offset]
    assert after[0].text == "leave" and after[-1].text == "ret"
    assert all(i.length < JUMP_BYTES for i in after)


def test_dma_chunks_are_the_powers_of_two_up_to_the_cap() -> None:
    assert dma_chunks(256) == (256, 128, 64, 32, 16, 8, 4, 2, 1)
    with pytest.raises(ValueError):
        dma_chunks(100)


def _chunk_layout(lines: list[str]) -> list[tuple[int, int]]:
    """(chunk size, mask of the larger digits) of each chunk, read off the action lines."""
    pattern = r"\(\$q_mask & (\d+)\) \? \$q_val \+ \(\$q_mask & (0x[0-9a-f]+)\)"
    found = re.findall(pattern, "\n".join(lines))
    return [(int(size), int(before, 16)) for size, before in found]


def test_the_chunks_cover_exactly_the_capped_length_and_never_more() -> None:
    lines = dma_actions(RAM, 256, stack_limit=0x7FFF_F000)
    layout = _chunk_layout(lines)
    assert [size for size, _ in layout] == list(dma_chunks(256))
    for length in range(257):
        covered = sorted((length & before, size) for size, before in layout if length & size)
        offset = 0
        for start, size in covered:
            assert start == offset, (length, covered)
            offset += size
        assert offset == length


def test_dma_actions_collect_no_register_and_the_stack_block_first() -> None:
    lines = dma_actions(RAM, 256, stack_limit=0x7FFF_F000)
    collects = [line for line in lines if line.startswith("collect")]
    assert all("$r" not in line and "?" not in line for line in collects)
    assert collects[1] == f"collect *(unsigned char (*)[{RAW_STACK_BYTES}])$q_base"
    assert collects[2:] == [f"collect *(unsigned char (*)[{n}])$q_at" for n in dma_chunks(256)]
    # One teval per RAM range (gdb refuses an agent expression past 184 bytes).
    reads = [line for line in lines if "!$q_shift" in line]
    assert len(reads) == len(RAM) and "$rsi + 0x7f0000000000" in reads[0]
    assert "$rsi + $q_mask <= 0x4000000" in reads[1]  # the whole capped read inside it
    assert lines.count("teval $q_nop += (0) - $q_nop") == 1 and "$q_nop" not in " ".join(lines[1:])
    assert "teval $q_val += ($q_mr ? $q_val : $q_base) - $q_val" in lines


def _frame(index: int, tp: int, addr: int, size: int, write: bool, source: int,
           blocks: dict[int, bytes], found: int = 1) -> Frame:  # fmt: skip
    values = {"mr": found, "off": addr, "size": size, "sp": SP, "bp": BP, "val": source,
              "shift": int(write), "mask": min(size, 256)}  # fmt: skip
    memory = ((SP, bytes(0x100)), *blocks.items())
    return Frame(index, tp, memory=memory,
                 variables={NUMBERS[f"q_{k}"]: v for k, v in values.items()})  # fmt: skip


def test_dma_frames_decode_into_their_bytes() -> None:
    payload = bytes(range(60))
    chunks = {BUF: payload[:32], BUF + 32: payload[32:48], BUF + 48: payload[48:56],
              BUF + 56: payload[56:]}  # fmt: skip
    frame = _frame(0, 7, 0x107180, 60, False, BUF, chunks)
    assert dma_bytes(frame, BUF, 60, 256) == payload
    roles = {7: Role("dma", address=0x70, space="dma")}
    big = bytes(256)
    frames = (
        frame,
        _frame(1, 7, 0x10720C, 4, True, BUF, {BUF: b"\x01\x02\x03\x04"}),
        _frame(2, 7, 0x108000, 1514, True, BUF, {BUF: big}),  # more than the cap
        _frame(3, 7, 0xFEB00000, 16, False, SP, {}, found=0),  # not guest RAM
        _frame(4, 7, 0x107180, 60, False, BUF, {BUF: payload[:32]}),  # a chunk lost
    )
    decoded = decode_accesses(frames, roles, set(), NUMBERS, lambda pc: False)
    hits = decoded.accesses
    assert all(isinstance(h, DmaHit) for h in hits) and decoded.frames_without_values == 1
    assert [(h.op, h.addr, h.size, h.data) for h in hits if isinstance(h, DmaHit)] == [
        ("read", 0x107180, 60, payload), ("write", 0x10720C, 4, b"\x01\x02\x03\x04"),
        ("write", 0x108000, 1514, big), ("read", 0xFEB00000, 16, None),
    ]  # fmt: skip

    out = list(RecordMaker({}, 5).records(hits, lambda pcs: (StackFrame("dma_memory_rw_relaxed"),)))
    dmas = [r for r in out if isinstance(r, Dma)]
    assert {d.api for d in dmas} == {"dma_memory_rw_relaxed"}
    assert [(d.seq, d.op, d.size, d.truncated) for d in dmas] == [
        (5, "read", 60, False), (6, "write", 4, False), (7, "write", 1514, True),
        (8, "read", 16, False),
    ]
    assert dmas[0].data == payload.hex() and len([s for s in out if isinstance(s, Stack)]) == 1
    assert '"data"' not in record_to_json(dmas[3]), "bytes not collected are not written"


def test_the_plan_puts_one_tracepoint_in_each_copy_filtered_on_the_bus_master_as() -> None:
    copies = DmaCopies(AS, (0x1000, 0x2000), RAM)

    def disassemble(where: str) -> str:
        assert where in ("0x1000", "0x2000")
        return _copy("10.2.2")

    plan = plan_tracepoints({}, disassemble, None, dma=copies)
    dma = [t for t in plan.tracepoints if t.role.kind == "dma"]
    assert [t.where for t in dma] == ["dma_memory_rw_relaxed@0x1000+72",
                                      "dma_memory_rw_relaxed@0x2000+72"]
    commands = tracepoint_commands(plan)
    assert commands.count(f"condition $bpnum $rdi == {AS:#x}\n") == 2
    assert "tvariable $q_at" in commands

    with pytest.raises(CollectorError) as caught:
        plan_tracepoints({}, lambda where: "", None, dma=copies)
    assert "address_space_rw" in str(caught.value)
    assert "--collector breakpoint" in str(caught.value.hint)


def test_dma_copies_come_from_the_discovery_reply() -> None:
    reply = {"bus_master_as": f"{AS:#x}", "dma_copies": ["0x1000", "0x2000"],
             "guest_ram": [list(r) for r in RAM]}  # fmt: skip
    assert dma_copies(reply) == DmaCopies(AS, (0x1000, 0x2000), RAM)
    assert dma_copies({"bus_master_as": f"{AS:#x}"}) is None  # no copy in this build
