"""Every committed capture (reports/captures/, and the real captures kept as test fixtures)
exports to files that keep each format's rules (format_rules.py), and the exports say what
the trace says: one slice per exit, access and async record, on the right thread's track, a
flow per caused access, one folded sample per access."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest

from format_rules import (
    chrome_trace_problems,
    folded_problems,
    parse_folded,
    speedscope_problems,
)
from qtrace.export import ExportFormat, export_trace
from qtrace.export.perfetto import chrome_trace
from qtrace.export.stacks import frame_label
from qtrace.export.timing import SYNTHETIC_STEP_US
from qtrace.trace import Access, Async, Dma, Exit, Frame, Irq, Trace, read_trace

ROOT = Path(__file__).resolve().parents[3]
TRACES = sorted(
    [
        *(ROOT / "reports" / "captures").glob("*/trace.jsonl"),
        *(ROOT / "tests" / "fixtures" / "traces").glob("*/trace.jsonl"),
        *(ROOT / "tests" / "fixtures" / "devices").glob("*.jsonl"),
    ]
)
IDS = [str(p.relative_to(ROOT).parent / p.stem) for p in TRACES]
TIMELINE = (Exit, Access, Irq, Dma, Async)


@pytest.fixture(scope="module", params=TRACES, ids=IDS)
def trace(request: pytest.FixtureRequest) -> Trace:
    path: Path = request.param
    return read_trace(path)


def _timed(trace: Trace) -> Trace:
    """The trace as a capture with ``t`` writes it: 0.7 ms per record, every fifth record in
    the same microsecond as the one before (ties happen at microsecond resolution)."""
    records, t = [], 0.5
    for n, record in enumerate(trace.records):
        t += 0.0 if n % 5 == 4 else 0.0007
        if isinstance(record, TIMELINE):
            record = dataclasses.replace(record, t=round(t, 6))
        records.append(record)
    return dataclasses.replace(trace, records=records)


def _measured(trace: Trace) -> bool:
    core = [r for r in trace.records if isinstance(r, (Exit, Access, Irq, Dma))]
    return bool(core) and all(r.t is not None for r in core)


def test_the_committed_captures_are_all_found() -> None:
    names = {p.parent.name for p in TRACES}
    assert {"e1000-kvm-probe", "e1000-tcg-linux", "e1000-q35-probe", "e1000-tcg-probe"} <= names


@pytest.mark.parametrize("timed", [False, True], ids=["as-committed", "with-t"])
def test_perfetto_export_keeps_the_trace_event_format_rules(trace: Trace, timed: bool) -> None:
    source = _timed(trace) if timed else trace
    obj = json.loads(export_trace(source, ExportFormat.PERFETTO))
    assert chrome_trace_problems(obj) == []
    events = obj["traceEvents"]
    slices = [e for e in events if e["ph"] == "X"]
    expected = {"exit": source.exits, "access": source.accesses, "async": source.asyncs}
    assert Counter(e["args"]["kind"] for e in slices) == {
        kind: len(records) for kind, records in expected.items() if records
    }
    instants = [e for e in events if e["ph"] == "i"]
    assert len(instants) == len(source.irqs) + len(source.dmas)
    exits = {e.seq for e in source.exits}
    caused = [a for a in source.accesses if a.exit_seq in exits]
    starts = Counter(e["name"] for e in events if e["ph"] == "s")
    assert starts["exit -> access"] == len(caused)
    assert set(starts) <= {"exit -> access", "timer arm -> run", "bh schedule -> run"}
    note = obj["otherData"]["timestamps"]
    assert note.startswith("measured" if _measured(source) else "synthetic"), note


def test_the_timestamps_are_the_records_t_or_seq_spaced(trace: Trace) -> None:
    first = trace.accesses[0]
    as_committed = chrome_trace(trace)["traceEvents"]
    ts = {e["args"]["seq"]: e["ts"] for e in as_committed if e["ph"] == "X"}  # type: ignore[index]
    if not _measured(trace):
        assert ts[first.seq] == first.seq * SYNTHETIC_STEP_US
    timed = _timed(trace)
    measured = chrome_trace(timed)["traceEvents"]
    ts = {e["args"]["seq"]: e["ts"] for e in measured if e["ph"] == "X"}  # type: ignore[index]
    record = timed.accesses[0]
    assert record.t is not None and abs(ts[record.seq] - record.t * 1e6) < 0.01


def test_tracks_are_the_host_threads_named_as_qemu_names_them(trace: Trace) -> None:
    obj = chrome_trace(trace)
    names = {
        e["args"]["name"]  # type: ignore[index]
        for e in obj["traceEvents"]  # type: ignore[attr-defined]
        if e["name"] == "thread_name"
    }
    vcpus = {r.vcpu for r in trace.records if isinstance(r, (Access, Exit)) and r.vcpu is not None}
    accel = trace.header.accel.upper()
    assert {f"CPU {n}/{accel}" for n in vcpus} <= names
    timeline = [r for r in trace.records if isinstance(r, TIMELINE)]
    named = {r.thread for r in timeline if r.thread}
    assert {n for n in named if n != "main"} <= names
    main_loop = "main" in named or any(
        "qemu_main_loop" in {f.func for f in trace.stacks[r.stack].frames}
        for r in timeline
        if not r.thread and r.stack in trace.stacks and not isinstance(r, (Access, Exit))
    )
    assert ("main loop" in names) == main_loop


def test_an_access_slice_carries_value_register_handler_and_stack(trace: Trace) -> None:
    obj = chrome_trace(trace)
    access = next(a for a in trace.accesses if a.space == "mmio" or a is trace.accesses[-1])
    event = next(
        e
        for e in obj["traceEvents"]  # type: ignore[attr-defined]
        if e["ph"] == "X" and e["args"]["kind"] == "access" and e["args"]["seq"] == access.seq
    )
    args = event["args"]
    assert args["value"] == hex(access.value) and args["handler"] == access.handler
    assert args["register"] and event["name"].startswith(access.op)
    if access.stack in trace.stacks:
        frames = trace.stacks[access.stack].frames
        assert args["stack"] == [frame_label(f) for f in frames]


def test_an_exit_and_the_access_it_caused_are_joined_by_a_flow() -> None:
    trace = read_trace(ROOT / "reports" / "captures" / "e1000-kvm-probe" / "trace.jsonl")
    obj = chrome_trace(trace)
    events = obj["traceEvents"]  # type: ignore[assignment]
    access = next(a for a in trace.accesses if a.exit_seq is not None)
    pair = [e for e in events if e["ph"] in "sf" and e["id"] == access.seq]  # type: ignore[index]
    slices = {
        e["args"]["seq"]: e  # type: ignore[index]
        for e in events  # type: ignore[attr-defined]
        if e["ph"] == "X"
    }
    start, finish = sorted(pair, key=lambda e: e["ph"] == "f")  # type: ignore[no-any-return]
    assert start["ts"] == slices[access.exit_seq]["ts"]
    assert finish["ts"] == slices[access.seq]["ts"]
    exit_slice, access_slice = slices[access.exit_seq], slices[access.seq]
    assert exit_slice["ts"] < access_slice["ts"]
    assert access_slice["ts"] + access_slice["dur"] <= exit_slice["ts"] + exit_slice["dur"]


def test_folded_export_is_one_sample_per_access_weighted_by_count(trace: Trace) -> None:
    text = export_trace(trace, ExportFormat.FOLDED)
    assert folded_problems(text) == []
    stacks = parse_folded(text)
    assert sum(stacks.values()) == len(trace.accesses)
    leaves = Counter(stack[-1].split(" (")[0] for stack, n in stacks.items() for _ in range(n))
    expected = Counter(
        trace.stacks[a.stack].frames[0].func if a.stack in trace.stacks else "(no stack recorded)"
        for a in trace.accesses
    )
    assert leaves == expected


def test_speedscope_export_keeps_its_schema_and_counts_every_access(trace: Trace) -> None:
    obj = json.loads(export_trace(trace, ExportFormat.SPEEDSCOPE))
    assert speedscope_problems(obj) == []
    profile = obj["profiles"][0]
    assert profile["type"] == "sampled" and sum(profile["weights"]) == len(trace.accesses)
    frames = obj["shared"]["frames"]
    handler = next(a for a in trace.accesses if a.stack in trace.stacks)
    leaf = trace.stacks[handler.stack].frames[0]  # type: ignore[index]
    assert frame_label(leaf) in {f["name"] for f in frames}
    first = [frames[i]["name"] for i in profile["samples"][0]]
    stack = trace.stacks.get(trace.accesses[0].stack or "")
    assert first[-1] == (frame_label(stack.frames[0]) if stack else "(no stack recorded)")


def test_exports_are_deterministic(trace: Trace) -> None:
    for fmt in ExportFormat:
        assert export_trace(trace, fmt) == export_trace(trace, fmt)


def test_frame_labels() -> None:
    assert frame_label(Frame("f", "a/b.c", 3)) == "f (a/b.c:3)"
    assert frame_label(Frame("f", "libc.so.6")) == "f (libc.so.6)"
    assert frame_label(Frame("??")) == "??"
    assert frame_label(Frame("a;b", "x\ny", 1)) == "a:b (x y:1)"


def test_the_rules_catch_what_they_are_for() -> None:
    good = {"traceEvents": [{"name": "a", "ph": "X", "ts": 1, "dur": 5, "pid": 1, "tid": 1}]}
    assert chrome_trace_problems(good) == []
    overlap = {
        "traceEvents": [
            {"name": "a", "ph": "X", "ts": 1, "dur": 5, "pid": 1, "tid": 1},
            {"name": "b", "ph": "X", "ts": 3, "dur": 5, "pid": 1, "tid": 1},
        ]
    }
    assert any("overlaps" in p for p in chrome_trace_problems(overlap))
    back = {
        "traceEvents": [
            {"name": "a", "ph": "i", "ts": 5, "pid": 1, "tid": 1},
            {"name": "b", "ph": "i", "ts": 3, "pid": 1, "tid": 1},
        ]
    }
    assert any("goes back" in p for p in chrome_trace_problems(back))
    unmatched = {
        "traceEvents": [
            {"name": "a", "ph": "B", "ts": 1, "pid": 1, "tid": 1},
            {"name": "f", "ph": "s", "id": 1, "ts": 1, "pid": 1, "tid": 1},
        ]
    }
    problems = chrome_trace_problems(unmatched)
    assert any("B without E" in p for p in problems) and any(
        "one s and one f" in p for p in problems
    )
    assert chrome_trace_problems(
        {"traceEvents": [{"name": "a", "ph": "X", "ts": 1, "dur": -1, "pid": 1, "tid": 1}]}
    )
    assert folded_problems("a;b 0\n") and folded_problems("a;;b 1\n") and folded_problems("a 1")
    assert speedscope_problems({"shared": {"frames": []}, "profiles": []})  # no $schema
