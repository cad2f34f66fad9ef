"""The capture's pure and file-level parts without Docker: the one trace reader, the end
record the host writes, the output-directory rule, and what a KVM internal error says."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtrace.errors import UsageError
from qtrace.launch import evidence
from qtrace.launch.kvm_error import from_exit_record, merge, parse_qemu_log
from qtrace.launch.live import TextTail, TraceTail
from qtrace.launch.out_dir import check_out_dir, create_out_dir
from qtrace.trace import Access, End, Exit, Frame, Header, Stack, TraceWriter, read_trace

RECORDED_LOG = Path(__file__).parent / "recorded" / "qemu-kvm-internal-error.log"
HEADER = Header(device="e1000", qemu_version="10.2.2", accel="kvm")
STACK = Stack(id="s1", frames=(Frame("e1000_mmio_read"),))


def _append(path: Path, *records: object) -> None:
    with TraceWriter.append_to(path) as writer:
        writer.write_all(records)  # type: ignore[arg-type]


# ----- the one incremental reader -----


def test_the_tail_reads_each_complete_line_once_and_waits_for_a_torn_one(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    tail = TraceTail(path)
    assert tail.update().records == 0, "no file yet is no records"
    _append(path, HEADER, STACK, Access(seq=1, op="read", space="mmio", offset=8, size=4, value=1))
    with path.open("a") as handle:
        handle.write('{"type":"access","op":"wri')
    stats = tail.update()
    assert (stats.records, stats.accesses, stats.stacks) == (3, 1, 1)
    assert [s.id for s in tail.stack_records] == ["s1"]
    with path.open("a") as handle:
        handle.write('te","space":"mmio","offset":8,"size":4,"value":2}\n')
    _append(path, End(status="ok", accesses=2))
    stats = tail.update()
    assert (stats.records, stats.accesses) == (5, 2)
    assert stats.per_register[("mmio", 8)] == 2
    assert stats.ended is not None and stats.ended.status == "ok"
    assert tail.update().records == 5, "nothing read twice"


def test_a_bad_line_is_kept_as_evidence_and_counted_out(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    _append(path, HEADER)
    with path.open("a") as handle:
        handle.write("garbage\n")
    _append(path, Access(seq=2, op="read", space="mmio", offset=0, size=4, value=0))
    stats = TraceTail(path).update()
    assert (
        stats.accesses == 1 and stats.first_bad_line is not None and stats.first_bad_line.line == 2
    )


def test_the_internal_error_exit_record_keeps_kvms_words(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    _append(path, HEADER, Exit(seq=1, reason="KVM_EXIT_INTERNAL_ERROR"))
    # What the collector adds to the record (gdbscripts/qtrace_gdb/kvm_exit.py).
    path.write_text(
        path.read_text().replace(
            '"reason":"KVM_EXIT_INTERNAL_ERROR"',
            '"reason":"KVM_EXIT_INTERNAL_ERROR","suberror":1,"ndata":3,'
            '"internal_data":[1,18425005649842065167,1801996766473093121]',
        )
    )
    error = TraceTail(path).update().kvm_error
    assert error is not None and error.suberror == 1
    assert error.insn_bytes == "cf 66 c7 04 c5 b2 ff 01 00 08 00 83 fa 01 19", (
        "emulation_failure.insn_bytes"
    )


def test_the_text_tail_follows_a_growing_log(tmp_path: Path) -> None:
    path = tmp_path / "qemu.log"
    tail = TextTail(path, keep_chars=10)
    assert tail.update() == ""
    path.write_text("abcdef")
    assert tail.update() == "abcdef"
    with path.open("a") as handle:
        handle.write("ghijkl")
    assert tail.update() == "cdefghijkl", "only the last keep_chars"


# ----- the end record the host writes -----


def test_the_host_closes_a_trace_the_collector_left_open_and_cuts_a_torn_tail(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trace.jsonl"
    _append(path, HEADER, STACK, Access(seq=1, op="read", space="mmio", offset=8, size=4, value=1))
    with path.open("a") as handle:
        handle.write('{"type":"acc')
    tail = TraceTail(path)
    assert evidence.close_trace(tail, "interrupted", "SIGTERM received", 12.5) is True
    trace = read_trace(path)
    assert trace.end is not None and trace.end.status == "interrupted"
    assert trace.end.reason == "SIGTERM received" + evidence.HOST_CLOSED
    assert (trace.end.accesses, trace.end.stacks) == (1, 1)
    assert tail.stats.ended == trace.end
    assert evidence.close_trace(tail, "error", "again", 13.0) is False, (
        "an ended trace is left alone"
    )


def test_an_ok_the_collector_never_confirmed_is_not_written_as_ok(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    _append(path, HEADER)
    evidence.close_trace(TraceTail(path), "ok", None, 1.0)
    end = read_trace(path).end
    assert (
        end is not None
        and end.status == "error"
        and "did not close the trace" in (end.reason or "")
    )


def test_what_the_collector_noted_reaches_the_summary_and_a_clean_run_says_nothing(
    tmp_path: Path,
) -> None:
    noted = tmp_path / "noted"
    noted.mkdir()
    path = noted / "trace.jsonl"
    _append(path, HEADER, STACK)
    message = "kvm exits decoded through gdb from now on: run or cpu is not in a stack slot"
    with path.open("a") as handle:  # as gdbscripts/qtrace_gdb/session.py writes it
        handle.write(
            '{"type":"end","status":"ok","accesses":0,"stacks":1,"collector_errors":3,'
            '"collector_error_messages":["%s"]}\n' % message
        )
    end = read_trace(path).end
    assert end is not None and end.collector_errors == 3
    assert end.collector_error_messages == (message,)
    tail = TraceTail(path)
    tail.update()
    found = evidence.summary(tail, {}, "ok", None, 0, 1.0, noted)
    assert (found["collector_errors"], found["collector_error_messages"]) == (3, [message])

    clean = tmp_path / "clean"
    clean.mkdir()
    _append(clean / "trace.jsonl", HEADER, STACK, End(status="ok", accesses=0, stacks=1))
    tail = TraceTail(clean / "trace.jsonl")
    tail.update()
    found = evidence.summary(tail, {}, "ok", None, 0, 1.0, clean)
    assert "collector_errors" not in found and "collector_error_messages" not in found
    assert "collector_errors" not in (clean / "trace.jsonl").read_text()


# ----- the output-directory rule -----


def test_out_must_be_new_or_empty(tmp_path: Path) -> None:
    check_out_dir(tmp_path / "new" / "deeper")  # created later, with its parents
    check_out_dir(tmp_path)  # empty
    (tmp_path / "trace.jsonl").write_text("x")
    with pytest.raises(UsageError, match="is not empty .*trace.jsonl"):
        check_out_dir(tmp_path)


def test_out_that_is_a_file_or_under_a_file_is_refused(tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_text("x")
    with pytest.raises(UsageError, match="is an existing file, not a directory") as info:
        check_out_dir(regular)
    assert info.value.hint and "--out" in info.value.hint
    with pytest.raises(UsageError, match="is a file, not a directory"):
        check_out_dir(regular / "sub")


def test_creating_out_reports_what_it_made(tmp_path: Path) -> None:
    made = create_out_dir(tmp_path / "a" / "b")
    assert made == [tmp_path / "a", tmp_path / "a" / "b"] and (tmp_path / "a" / "b").is_dir()


# ----- KVM internal errors -----


def test_qemus_internal_error_report_is_parsed_from_its_log() -> None:
    error = parse_qemu_log(RECORDED_LOG.read_text())
    assert error is not None
    assert (error.suberror, error.kind, error.ip, error.cs_base) == (
        1,
        "emulation failure",
        "EIP=0x00005654",
        0x03F3D000,
    )
    assert error.insn_bytes is not None and error.insn_bytes.startswith("cf 66 c7")
    assert error.dump_complete
    text = error.describe()
    assert "Suberror: 1" in text and "EIP=0x00005654" in text and "linear 0x3f42654" in text


def test_a_dump_still_being_written_is_not_complete() -> None:
    text = RECORDED_LOG.read_text()
    partial = parse_qemu_log(text[: text.index("Code=") + 12])
    assert partial is not None and not partial.dump_complete
    assert parse_qemu_log("qemu-system-x86_64: warning: nic e1000.0 has no peer\n") is None


def test_code_bytes_come_from_the_marked_byte_when_kvm_gave_none() -> None:
    error = parse_qemu_log("KVM internal error. Suberror: 3\nEIP=00001000\nCode=90 90 <0f> 0b 90\n")
    assert (
        error is not None
        and error.kind == "error during event delivery"
        and error.insn_bytes == "0f 0b 90"
    )


def test_both_sources_merge_into_one_description() -> None:
    from_gdb = from_exit_record({"suberror": 1, "internal_data": [0]})
    from_log = parse_qemu_log(RECORDED_LOG.read_text())
    merged = merge(from_gdb, from_log)
    assert (
        merged is not None
        and merged.ip == "EIP=0x00005654"
        and merged.dump_complete
        and merged.suberror == 1
    )
    assert merge(None, from_log) == from_log and merge(from_gdb, None) == from_gdb
