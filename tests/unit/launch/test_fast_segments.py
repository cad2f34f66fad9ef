"""A fast run drained in segments (d36049d): the pieces that carry a run's state from one
drain of the agent's buffer to the next, and the ones that time and read each drain.

Why these properties: a long run's trace is written segment by segment, and a reader of
it must not be able to tell where a drain fell. So the decoder and the record maker fed
one segment after another give what they give fed the whole run at once (arming, counts,
seq, stack ids, the first timestamp), the self-checks of the segments add up to the run's,
and a segment is read from the agent's frame layout (bytes or a memory-mapped dump) frame
by frame. Frames here are synthetic, laid out as qtrace.launch.fast.actions collects them
and as the tsave module docstring describes the file.
"""

from __future__ import annotations

import mmap
import struct
import threading
from dataclasses import fields, replace
from pathlib import Path

import pytest

from qtrace.launch.fast.actions import TIMESTAMP, variables
from qtrace.launch.fast.checks import FastChecks
from qtrace.launch.fast.decode import Access as Decoded
from qtrace.launch.fast.decode import AccessDecoder, Role, decode_accesses
from qtrace.launch.fast.records import RecordMaker, RegionOf, fast_records
from qtrace.launch.fast.run import (
    DRAIN_INTERVAL_S,
    SEGMENT_BYTES,
    counted_frames,
    next_drain_s,
    shielded,
)
from qtrace.launch.fast.tsave import Frame, TsaveFormatError, count_frames, iter_frames
from qtrace.trace.schema import Access, Stack
from qtrace.trace.schema import Frame as StackFrame
from tests.unit.launch.fast_frames import BP, SP, chain

# ----- next_drain_s ----------------------------------------------------------------------

SHORTEST_S, LONGEST_S = DRAIN_INTERVAL_S


@pytest.mark.parametrize("used_bytes, ran_s", [(0, 0.5), (1 << 20, 0.0), (0, 0.0), (-1, 1.0)])
def test_without_a_rate_the_next_drain_waits_the_longest_interval(
    used_bytes: int, ran_s: float
) -> None:
    """No bytes or no time in the last segment gives no rate to time from: the run waits
    the longest interval rather than dividing by zero or draining at once."""
    assert next_drain_s(used_bytes, ran_s) == LONGEST_S


def test_the_next_drain_comes_when_the_last_rate_would_fill_a_segment() -> None:
    # A rate at which SEGMENT_BYTES takes a time inside the interval: half-way through it.
    wanted_s = (SHORTEST_S + LONGEST_S) / 2
    ran_s = 0.2
    used_bytes = int(SEGMENT_BYTES * ran_s / wanted_s)
    got = next_drain_s(used_bytes, ran_s)
    assert SHORTEST_S < got < LONGEST_S
    assert got * used_bytes / ran_s == pytest.approx(SEGMENT_BYTES, rel=1e-6)


def test_a_fast_filling_buffer_is_drained_after_the_shortest_interval() -> None:
    """A burst that filled a whole segment in a millisecond still lets QEMU run the
    shortest interval (each drain stops it)."""
    assert next_drain_s(SEGMENT_BYTES, 0.001) == SHORTEST_S


def test_a_slowly_filling_buffer_is_drained_after_the_longest_interval() -> None:
    """A quiet guest is still drained every longest interval: a burst after it must not
    find the buffer nearly full (DRAIN_INTERVAL_S's reason)."""
    assert next_drain_s(1, 0.5) == LONGEST_S


@pytest.mark.parametrize(
    "used_bytes", [1, 4096, SEGMENT_BYTES // 7, SEGMENT_BYTES, 3 * SEGMENT_BYTES]
)
@pytest.mark.parametrize("ran_s", [0.001, 0.25, 0.6, 1.0, 30.0])
def test_the_next_drain_always_lies_within_the_interval(used_bytes: int, ran_s: float) -> None:
    assert SHORTEST_S <= next_drain_s(used_bytes, ran_s) <= LONGEST_S


# ----- counted_frames --------------------------------------------------------------------


def _segment_frames() -> list[Frame]:
    return [
        Frame(0, 1, variables={2: 1}),
        Frame(1, 1, zeroed=True),
        Frame(2, 2, variables={2: 2}, undecodable="block b'X' at byte 12 of 40"),
        Frame(3, 2, variables={2: 3}),
        Frame(4, 1, zeroed=True),
    ]


def test_counted_frames_hands_on_every_frame_unchanged() -> None:
    frames = _segment_frames()
    out: list[FastChecks] = []
    passed = list(counted_frames(iter(frames), out, created=5, full=False))
    assert len(passed) == len(frames)
    assert all(got is sent for got, sent in zip(passed, frames))


def test_counted_frames_appends_the_segments_counts_once_the_frames_are_exhausted() -> None:
    """The counts are known only after the last frame: the decoder consumes the frames as
    they go by, and the run reads the checks after it (run.FastRun._drain)."""
    out: list[FastChecks] = []
    counted = counted_frames(iter(_segment_frames()), out, created=7, full=True)
    next(counted), next(counted)
    assert out == []
    for _ in counted:
        pass
    assert out == [FastChecks(hits_by_agent=7, frames_saved=5, frames_decoded=2, zeroed=2,
                              undecodable=1, buffer_full=True)]  # fmt: skip


def test_an_empty_segment_counts_no_frames_against_what_the_agent_created() -> None:
    out: list[FastChecks] = []
    assert list(counted_frames(iter(()), out, created=3, full=False)) == []
    assert out == [FastChecks(hits_by_agent=3)]
    assert not out[0].ok  # 3 hits counted, none saved: a loss the checks name


# ----- FastChecks.plus -------------------------------------------------------------------


def test_plus_adds_every_count_of_two_segments() -> None:
    one = FastChecks(10, 9, 8, 1, 0, False, 2, 3, 4, 1)
    two = FastChecks(100, 90, 80, 10, 5, False, 20, 30, 40, 1)
    total = one.plus(two)
    assert total == FastChecks(110, 99, 88, 11, 5, False, 22, 33, 44, 2)
    counted = [f.name for f in fields(FastChecks) if f.name != "buffer_full"]
    assert all(getattr(total, n) == getattr(one, n) + getattr(two, n) for n in counted)


@pytest.mark.parametrize("first, second", [(False, False), (True, False), (False, True),
                                           (True, True)])  # fmt: skip
def test_a_buffer_that_filled_in_either_segment_filled_in_the_run(
    first: bool, second: bool
) -> None:
    got = FastChecks(buffer_full=first).plus(FastChecks(buffer_full=second))
    assert got.buffer_full is (first or second)


def test_plus_starting_from_no_checks_gives_the_segment_itself() -> None:
    """The run starts its sum from ``FastChecks()`` (run.FastRun.frame_checks)."""
    segment = FastChecks(5, 5, 4, 1, 0, True, 0, 0, 2, 1)
    assert FastChecks().plus(segment) == segment


def test_hits_beyond_max_hits_and_segments_are_not_losses() -> None:
    """--max-hits leaves decoded accesses out on purpose, and a drain loses nothing: the
    checks stay ok and the end record still carries both counts."""
    checks = FastChecks(hits_by_agent=50, frames_saved=50, frames_decoded=50, beyond_max_hits=20,
                        segments=3)  # fmt: skip
    assert checks.ok and checks.problems() == []
    record = checks.record()
    assert (record["ok"], record["beyond_max_hits"], record["segments"]) == (True, 20, 3)
    assert "problems" not in record and "hint" not in record


def test_a_loss_in_one_segment_is_a_loss_of_the_summed_run() -> None:
    clean = FastChecks(4, 4, 4, segments=1)
    lossy = FastChecks(4, 3, 3, segments=1)
    total = clean.plus(lossy)
    assert clean.ok and not total.ok
    assert total.record()["problems"] == ["the agent counted 8 hits but saved 7 frames"]


# ----- AccessDecoder: segments as one run -------------------------------------------------
# Synthetic frames as tests/unit/launch/test_fast_accesses.py builds them (copied: a test
# module's helpers are not an interface).

MR, OTHER_MR = 0x5555_0000_1C20, 0x5555_0000_9000
READ_AT, WRITE_AT = 0x5555_0000_04DF, 0x5555_0000_067F
ROLES = {1: Role("read", address=READ_AT), 2: Role("write", address=WRITE_AT),
         3: Role("arm", address=0x5555_0000_0234)}  # fmt: skip
NUMBERS = {TIMESTAMP: 1, **{name: number for number, name in enumerate(variables(), start=2)}}


def _frame(index: int, tp: int, block: bytes = b"", numbers: dict[str, int] = NUMBERS,
           **values: int) -> Frame:  # fmt: skip
    got = {(k if k == "us" else f"q_{k}"): v for k, v in values.items()}
    memory = ((got["q_sp"], block or bytes(0x100)),) if "q_sp" in got else ()
    named = {(TIMESTAMP if k == "us" else k): v for k, v in got.items()}
    return Frame(index, tp, memory=memory, variables={numbers[k]: v for k, v in named.items()})




def _read(index: int, mr: int, off: int, val: int, block: bytes = b"", us: int = 0,
          numbers: dict[str, int] = NUMBERS) -> Frame:  # fmt: skip
    return _frame(index, 1, block, numbers, mr=mr, off=off, size=4, val=val, sp=SP, bp=BP, us=us)


def _write(index: int, off: int, val: int, us: int = 0) -> Frame:
    return _frame(index, 2, mr=MR, off=off, size=4, val=val, shift=0, mask=0xFFFFFFFF, sp=SP,
                  bp=BP, us=us)  # fmt: skip


CHAIN = chain((BP + 0x20, 0xA1), (BP + 0x40, 0xA2), (0, 0xA3))
SEGMENT_1 = (
    _read(0, MR, 0x8, 0x1, us=90),  # firmware's, before the start marker
    _read(1, OTHER_MR, 0x0, 0xFF, us=95),  # another device's region
    _frame(2, 3, sp=SP),  # the guest's start marker
    _read(3, MR, 0x8, 0x80080783, CHAIN, us=100),
)
SEGMENT_2 = (
    _write(4, 0xD0, 0x1F, us=140),
    _read(5, MR, 0xC0, 0x4, us=150),
    _frame(6, 1, mr=MR, off=0, size=4, sp=SP, bp=BP),  # its value is missing
    _read(7, OTHER_MR, 0x4, 0xFF, us=160),
    Frame(8, 1, zeroed=True),
    _write(9, 0xD8, 0x4, us=170),
)


def _decoder() -> AccessDecoder:
    return AccessDecoder(ROLES, {MR}, NUMBERS, lambda pc: False)


def test_two_segments_decode_to_the_accesses_of_the_whole_run() -> None:
    decoder = _decoder()
    segmented = decoder.feed(SEGMENT_1) + decoder.feed(SEGMENT_2)
    whole = decode_accesses(SEGMENT_1 + SEGMENT_2, ROLES, {MR}, NUMBERS, lambda pc: False)
    assert segmented == whole.accesses
    assert [a.frame for a in segmented] == [3, 4, 5, 9]  # the frames kept, in buffer order
    assert segmented[0].pcs == (READ_AT, 0xA1, 0xA2, 0xA3)


def test_the_decoders_counts_add_up_over_the_segments() -> None:
    decoder = _decoder()
    decoder.feed(SEGMENT_1)
    decoder.feed(SEGMENT_2)
    whole = decode_accesses(SEGMENT_1 + SEGMENT_2, ROLES, {MR}, NUMBERS, lambda pc: False)
    got = decoder.counts
    assert (got.frames_without_values, got.before_arming, got.other_devices) == (
        whole.frames_without_values, whole.before_arming, whole.other_devices)  # fmt: skip
    assert (got.frames_without_values, got.before_arming, got.other_devices) == (1, 1, 2)


def test_a_start_marker_in_one_segment_arms_the_next() -> None:
    """The guest's marker is hit once, early; every device access after it, in whatever
    segment it lands, is the guest's and is kept."""
    decoder = _decoder()
    assert decoder.feed(SEGMENT_1[2:3]) == []  # only the marker
    kept = decoder.feed(SEGMENT_2)
    assert [a.frame for a in kept] == [4, 5, 9] and decoder.counts.before_arming == 0
    fresh = _decoder()  # without the marker's segment the same frames are firmware's
    assert fresh.feed(SEGMENT_2) == [] and fresh.counts.before_arming == 3


def test_a_segment_read_with_its_own_variable_numbers_decodes_the_same() -> None:
    """A segment read through tsave names the variables' numbers in its own header; the
    decoder takes them for that segment only."""
    renumbered = {name: number + 40 for name, number in NUMBERS.items()}
    decoder = _decoder()
    decoder.feed(SEGMENT_1)
    again = decoder.feed((_read(4, MR, 0xC0, 0x4, us=150, numbers=renumbered),), renumbered)
    later = decoder.feed((_read(5, MR, 0xC0, 0x5, us=160),))  # back to the run's numbers
    assert [(a.offset, a.value, a.us) for a in again + later] == [(0xC0, 0x4, 150),
                                                                  (0xC0, 0x5, 160)]  # fmt: skip


# ----- RecordMaker: segments as one run ---------------------------------------------------

MMIO, IO = 0x100, 0x200
REGIONS = {
    MMIO: RegionOf("dev-mmio", "mmio", {"read": "dev_read", "write": "dev_write"}),
    IO: RegionOf("dev-io", "pio", {"read": "dev_io_read", "write": "dev_io_write"}),
}
PCS_A, PCS_B, PCS_C = (1, 2, 3), (1, 2, 4), (1, 5, 6)
ACCESSES_1 = [
    Decoded("read", MMIO, 8, 4, 0x80080783, PCS_A, 0, us=None),  # the agent did not stamp it
    Decoded("write", MMIO, 0xD0, 4, 0x1F, PCS_B, 1, us=1_000),
    Decoded("read", 0x999, 0, 4, 1, PCS_C, 2, us=1_100),  # not the device's
    Decoded("read", MMIO, 8, 4, 5, PCS_A, 3, us=1_500),
]
ACCESSES_2 = [
    Decoded("read", MMIO, 8, 4, 6, PCS_A, 4, us=2_000),
    Decoded("read", MMIO, 0xC0, 4, 0, PCS_C, 5, us=2_250),
    Decoded("write", MMIO, 0xD0, 4, 0x4, PCS_B, 6, us=None),
]


def _symbolize(pcs: tuple[int, ...]) -> tuple[StackFrame, ...]:
    return tuple(StackFrame(func=f"f{pc}", pc=hex(pc)) for pc in pcs)


def _accesses(records: list[Access | Stack]) -> list[Access]:
    return [r for r in records if isinstance(r, Access)]


def _stacks(records: list[Access | Stack]) -> list[Stack]:
    return [r for r in records if isinstance(r, Stack)]


def test_two_segments_make_the_records_of_the_whole_run() -> None:
    maker = RecordMaker(REGIONS)
    segmented = [*maker.records(ACCESSES_1, _symbolize), *maker.records(ACCESSES_2, _symbolize)]
    assert segmented == list(fast_records(ACCESSES_1 + ACCESSES_2, REGIONS, _symbolize))


def test_seq_numbers_continue_into_the_next_segment() -> None:
    maker = RecordMaker(REGIONS, first_seq=10)
    first = _accesses(list(maker.records(ACCESSES_1, _symbolize)))
    second = _accesses(list(maker.records(ACCESSES_2, _symbolize)))
    seqs = [a.seq for a in first + second]
    assert seqs == list(range(10, 10 + len(seqs)))


def test_a_stack_of_an_earlier_segment_is_not_written_again() -> None:
    maker = RecordMaker(REGIONS)
    first = list(maker.records(ACCESSES_1, _symbolize))
    second = list(maker.records(ACCESSES_2, _symbolize))
    id_of = {s.frames[1:]: s.id for s in _stacks(first)}
    assert [s.frames[1:] for s in _stacks(second)] == [_symbolize(PCS_C)]  # the one new path
    a_read, _, b_write = _accesses(second)
    assert a_read.stack == id_of[_symbolize(PCS_A)] and b_write.stack == id_of[_symbolize(PCS_B)]
    all_ids = [s.id for s in _stacks(first + second)]
    assert len(all_ids) == len(set(all_ids))


def test_new_stacks_names_only_return_addresses_without_a_stack_record_yet() -> None:
    maker = RecordMaker(REGIONS)
    assert maker.new_stacks(ACCESSES_1) == [PCS_A, PCS_B]  # each once; not the other region's
    list(maker.records(ACCESSES_1, _symbolize))
    assert maker.new_stacks(ACCESSES_2) == [PCS_C]
    list(maker.records(ACCESSES_2, _symbolize))
    assert maker.new_stacks(ACCESSES_1 + ACCESSES_2) == []


def test_new_stacks_is_what_records_asks_symbolize_for() -> None:
    """The run symbolizes new_stacks() with gdb and hands records() that table
    (run.FastRun._drain): any path records() asks for must be in it."""
    maker = RecordMaker(REGIONS)
    for segment in (ACCESSES_1, ACCESSES_2):
        asked: list[tuple[int, ...]] = []
        table = {pcs: _symbolize(pcs) for pcs in maker.new_stacks(segment)}

        def symbolize(pcs: tuple[int, ...]) -> tuple[StackFrame, ...]:
            asked.append(pcs)
            return table[pcs]

        list(maker.records(segment, symbolize))
        assert asked == list(table)


def test_a_path_seen_with_another_handler_in_an_earlier_segment_is_symbolized() -> None:
    """records() keys stacks by (handler, path): a known path through another region of
    the device in a later segment is a new stack, and new_stacks names it (found by this
    test: it once left it out, and the drain's symbol lookup failed)."""
    maker = RecordMaker(REGIONS)
    segments = ([Decoded("read", MMIO, 8, 4, 1, PCS_A, 0)],
                [Decoded("read", IO, 0, 4, 1, PCS_A, 1)])  # fmt: skip
    written: list[Access | Stack] = []
    for segment in segments:
        table = {pcs: _symbolize(pcs) for pcs in maker.new_stacks(segment)}
        written += maker.records(segment, table.__getitem__)
    assert [s.frames[0].func for s in _stacks(written)] == ["dev_read", "dev_io_read"]


def test_t_counts_from_the_first_stamped_access_across_segments() -> None:
    """The first access may carry no timestamp (t is then unknown, not 0); t counts from
    the first one that has one, in every later segment too."""
    maker = RecordMaker(REGIONS)
    first = _accesses(list(maker.records(ACCESSES_1, _symbolize)))
    second = _accesses(list(maker.records(ACCESSES_2, _symbolize)))
    kept = [a for a in ACCESSES_1 + ACCESSES_2 if a.region in REGIONS]
    start_us = next(a.us for a in kept if a.us is not None)
    expected = [None if a.us is None else (a.us - start_us) / 1e6 for a in kept]
    assert [a.t for a in first + second] == expected
    assert first[0].t is None and first[1].t == 0.0


def test_t_starts_in_the_segment_that_has_the_first_stamp() -> None:
    maker = RecordMaker(REGIONS)
    unstamped = [replace(a, us=None) for a in ACCESSES_1]
    assert [a.t for a in _accesses(list(maker.records(unstamped, _symbolize)))] == [None] * 3
    second = _accesses(list(maker.records(ACCESSES_2, _symbolize)))
    assert second[0].t == 0.0 and second[1].t == pytest.approx(250e-6)


# ----- tsave: frames from bytes ------------------------------------------------------------


def _v(number: int, value: int) -> bytes:
    """A trace state variable block: 'V', i32 number, i64 value."""
    return b"V" + struct.pack("<iq", number, value)


def _m(addr: int, data: bytes) -> bytes:
    """A memory block: 'M', u64 address, u16 length, the bytes."""
    return b"M" + struct.pack("<QH", addr, len(data)) + data


def _raw(tracepoint: int, *blocks: bytes) -> bytes:
    """One frame: u16 tracepoint number, u32 data size, the blocks."""
    body = b"".join(blocks)
    return struct.pack("<HI", tracepoint, len(body)) + body


END = struct.pack("<H", 0)  # tracepoint number 0 ends the trace
FRAMES = (
    _raw(1, _v(2, 0x1C20), _v(3, 8), _m(0x7000, b"\x01\x02\x03\x04")),
    _raw(2, _v(2, -2), _m(0x7000, b""), _m(0x7100, b"\xff" * 3)),
    _raw(1, bytes(16)),  # the agent wrote it as zeros
    _raw(3, _v(9, 1 << 40)),
)
DATA = b"".join(FRAMES) + END


def test_frames_are_read_with_their_blocks() -> None:
    frames = list(iter_frames(DATA))
    assert [f.tracepoint for f in frames] == [1, 2, 1, 3]
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert frames[0].variables == {2: 0x1C20, 3: 8}
    assert frames[0].block_at(0x7000) == b"\x01\x02\x03\x04"
    assert frames[1].variables == {2: -2}  # i64: the decoder masks it to 64 bits
    assert frames[1].memory == ((0x7000, b""), (0x7100, b"\xff\xff\xff"))
    assert frames[2].zeroed and frames[3].variables == {9: 1 << 40}
    assert all(f.undecodable is None for f in frames)


def test_iter_frames_stops_at_its_limit_and_numbers_from_first_index() -> None:
    """A segment is read a known number of frames at a time, numbered on from the
    frames already read."""
    frames = list(iter_frames(DATA, limit=2, first_index=1000))
    assert [(f.index, f.tracepoint) for f in frames] == [(1000, 1), (1001, 2)]
    assert list(iter_frames(DATA, limit=0)) == []


def test_iter_frames_reads_from_a_position() -> None:
    frames = list(iter_frames(DATA, pos=len(FRAMES[0]), first_index=1))
    assert [(f.index, f.tracepoint) for f in frames] == [(1, 2), (2, 1), (3, 3)]


def test_tracepoint_number_zero_ends_the_frames() -> None:
    data = FRAMES[0] + END + FRAMES[1]
    assert [f.tracepoint for f in iter_frames(data)] == [1]
    assert count_frames(data) == 1


def test_iter_frames_says_where_a_frame_runs_past_the_end() -> None:
    cut = DATA[: len(FRAMES[0]) + len(FRAMES[1]) - 3]
    frames = iter_frames(cut)
    assert next(frames).index == 0
    with pytest.raises(TsaveFormatError, match="frame 1 cut short"):
        next(frames)


def test_count_frames_agrees_with_iter_frames_on_whole_frames() -> None:
    assert count_frames(DATA) == len(list(iter_frames(DATA))) == len(FRAMES)
    assert count_frames(b"".join(FRAMES)) == len(FRAMES)  # no end marker: the data's end


def test_count_frames_stops_at_its_limit() -> None:
    assert count_frames(DATA, limit=3) == 3


@pytest.mark.parametrize("missing", [1, 6, len(FRAMES[3]) - 1])
def test_count_frames_leaves_out_a_frame_that_runs_past_the_end(missing: int) -> None:
    """A read of the agent's buffer can end inside a frame the agent is still writing:
    it counts only whole frames (the run then reads through tsave)."""
    assert count_frames(b"".join(FRAMES)[:-missing]) == len(FRAMES) - 1


def test_frames_from_a_memory_mapped_file_are_the_frames_from_its_bytes(tmp_path: Path) -> None:
    dump = tmp_path / "agent-buffer"
    dump.write_bytes(DATA)
    with dump.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        assert list(iter_frames(data)) == list(iter_frames(DATA))
        assert list(iter_frames(data, limit=2, first_index=7)) == list(
            iter_frames(DATA, limit=2, first_index=7))  # fmt: skip
        assert count_frames(data) == count_frames(DATA)


# ----- shielded --------------------------------------------------------------------------


def test_shielded_returns_what_the_work_returned() -> None:
    result = object()
    said: list[str] = []
    assert shielded(lambda: result, said.append) is result
    assert said == []  # no interrupt, nothing to say


def test_shielded_raises_the_works_own_exception() -> None:
    failure = OSError("tsave failed")

    def work() -> None:
        raise failure

    with pytest.raises(OSError) as raised:
        shielded(work, lambda text: None, [])
    assert raised.value is failure


def test_shielded_runs_the_work_off_the_calling_thread() -> None:
    """An interrupt lands on the main thread; the work runs where it cannot be cut short."""

    ran_on = shielded(threading.current_thread, lambda text: None)
    assert ran_on is not threading.current_thread()
