"""The qtrace-trace/1 reader and writer: round trip, validation, torn tails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qtrace.errors import TraceFormatError
from qtrace.trace import (
    SCHEMA_VERSION,
    Access,
    End,
    Exit,
    Frame,
    Header,
    Stack,
    TraceWriter,
    read_trace,
    record_to_json,
    repair_partial_tail,
)

RECORDS = [
    Header(device="e1000", qemu_version="10.2.2", accel="kvm", argv=("qemu", "-m", "64")),
    Stack(
        id="s1", frames=(Frame("e1000_mmio_read", "hw/net/e1000.c", 1291, "0x1"), Frame("clone3"))
    ),
    Exit(seq=1, reason="KVM_EXIT_MMIO", phys_addr=0xFEBC0008, len=4, is_write=False, stack="s1"),
    Access(
        seq=2, op="read", space="mmio", offset=8, size=4, value=0x80080783, exit_seq=1, stack="s1"
    ),
    Access(
        seq=3, op="write", space="mmio", offset=0x14, size=4, value=1, coalesced=True, stack="s1"
    ),
    End(status="ok", accesses=2, stacks=1, elapsed_s=1.5),
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_round_trip_keeps_every_record(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    with TraceWriter.append_to(path) as writer:
        writer.write_all(RECORDS)
    trace = read_trace(tmp_path)
    assert trace.header == RECORDS[0]
    assert trace.stacks["s1"] == RECORDS[1]
    assert trace.records == RECORDS[2:5]
    assert trace.end == RECORDS[5]
    assert [a.value for a in trace.accesses] == [0x80080783, 1]


def test_none_fields_are_left_out_of_the_json() -> None:
    line = json.loads(
        record_to_json(Access(seq=1, op="read", space="pio", offset=0, size=1, value=0))
    )
    assert "exit_seq" not in line and "coalesced" not in line
    assert line["type"] == "access"


def test_unknown_fields_are_ignored_for_forward_compatibility(tmp_path: Path) -> None:
    header = json.loads(record_to_json(RECORDS[0]))
    access = {
        "type": "access",
        "op": "read",
        "space": "mmio",
        "offset": 0,
        "size": 4,
        "value": 5,
        "future": [1],
    }
    trace = read_trace(_write(tmp_path / "t.jsonl", [json.dumps(header), json.dumps(access)]))
    assert trace.accesses[0].value == 5


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"type":"access","op":"read","space":"mmio","offset":0,"size":4}', "lacks value"),
        (
            '{"type":"access","op":"peek","space":"mmio","offset":0,"size":4,"value":1}',
            "not read/write",
        ),
        (
            '{"type":"access","op":"read","space":"dram","offset":0,"size":4,"value":1}',
            "mmio/pio/pci-config",
        ),
        ('{"type":"access","op":"read","space":"mmio","offset":"0","size":4,"value":1}', "integer"),
        ('{"type":"nonsense"}', "unknown record type"),
        ("[1, 2]", "JSON object"),
        ("{not json", "Expecting"),
        ('{"type":"end","status":"fine"}', "end status"),
    ],
)
def test_invalid_lines_name_file_and_line(tmp_path: Path, line: str, needle: str) -> None:
    header = record_to_json(RECORDS[0])
    path = _write(tmp_path / "t.jsonl", [header, line])
    with pytest.raises(TraceFormatError) as info:
        read_trace(path)
    assert info.value.line == 2
    assert needle in str(info.value)
    assert str(path) in str(info.value)


def test_first_record_must_be_a_header_of_this_schema(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="first record"):
        read_trace(_write(tmp_path / "a.jsonl", [record_to_json(RECORDS[5])]))
    other = json.loads(record_to_json(RECORDS[0]))
    other["schema"] = "qtrace-trace/99"
    with pytest.raises(TraceFormatError, match="qtrace-trace/99"):
        read_trace(_write(tmp_path / "b.jsonl", [json.dumps(other)]))


def test_torn_last_line_is_cut_and_the_rest_stays_valid(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    with TraceWriter.append_to(path) as writer:
        writer.write_all(RECORDS[:4])
    with path.open("a") as handle:
        handle.write('{"type":"access","op":"re')
    assert repair_partial_tail(path) is True
    assert repair_partial_tail(path) is False
    assert len(read_trace(path).accesses) == 1


def test_gdb_side_and_host_side_agree_on_the_schema_version() -> None:
    source = (Path(__file__).parents[3] / "gdbscripts" / "qtrace_gdb" / "trace_out.py").read_text()
    assert f'SCHEMA_VERSION = "{SCHEMA_VERSION}"' in source


def test_the_end_records_kvm_evidence_round_trips_and_is_optional(tmp_path: Path) -> None:
    from qtrace.trace import CaptureStatus, CoalescingZone, KvmHost

    kvm = KvmHost(
        {"coalesced_mmio": True, "coalesced_pio": False},
        (
            CoalescingZone("add", "pio", 0xCF8, 4, "pci-conf-idx"),
            CoalescingZone("del", "pio", 0xCF8, 4, "pci-conf-idx"),
            CoalescingZone("add", "pio", 0xCF8, 1, "pci-conf-idx"),
        ),
    )
    path = tmp_path / "trace.jsonl"
    with TraceWriter.append_to(path) as writer:
        writer.write_all([*RECORDS[:-1], End(CaptureStatus.OK, kvm=kvm)])
    end = read_trace(tmp_path).end
    assert end is not None and end.kvm == kvm
    assert [(z.start, z.size) for z in end.kvm.zones_in_effect("pio")] == [(0xCF8, 1)]
    assert end.kvm.zones_in_effect("mmio") == []
    plain = tmp_path / "plain"
    plain.mkdir()
    _write(plain / "trace.jsonl", [record_to_json(r) for r in RECORDS])
    assert read_trace(plain).end.kvm is None  # type: ignore[union-attr]
    bad = tmp_path / "bad"
    bad.mkdir()
    lines = [record_to_json(r) for r in RECORDS[:-1]]
    lines.append('{"type":"end","status":"ok","kvm":{"zones":[{"op":"add","start":1}]}}')
    _write(bad / "trace.jsonl", lines)
    with pytest.raises(TraceFormatError, match="kvm zones"):
        read_trace(bad)
