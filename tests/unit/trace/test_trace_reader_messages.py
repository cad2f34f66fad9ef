"""What the trace reader says about a corrupt or cut-off trace: the line, what was wrong,
what a valid line looks like (issue 9: it said "value: line 1 column 1 (char 0)")."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtrace.errors import TraceFormatError
from qtrace.trace import Access, End, Header, TraceWriter, decode_line, read_trace

HEADER = Header(device="e1000", qemu_version="10.2.2", accel="tcg")
ACCESS = Access(seq=1, op="read", space="mmio", offset=8, size=4, value=1)


def _trace(path: Path, tail: str) -> Path:
    with TraceWriter.append_to(path) as writer:
        writer.write_all([HEADER, ACCESS, ACCESS])
    with path.open("a", encoding="utf-8") as handle:
        handle.write(tail)
    return path


def _error(path: Path) -> TraceFormatError:
    with pytest.raises(TraceFormatError) as info:
        read_trace(path)
    return info.value


def test_a_cut_off_last_line_is_named_and_called_cut_off(tmp_path: Path) -> None:
    error = _error(_trace(tmp_path / "t.jsonl", '{"type":"access","op":"re'))
    assert error.line == 4
    assert ":4:" in str(error)
    assert "ends in the middle of this record" in str(error)
    assert "lines before it are intact" in str(error)
    assert "line 1 column" not in str(error), (
        "json's own line count (of a one-line document) misleads"
    )


def test_garbage_says_what_a_line_must_be_and_shows_it(tmp_path: Path) -> None:
    error = _error(_trace(tmp_path / "t.jsonl", "garbage\n"))
    assert error.line == 4
    assert (
        "not JSON" in str(error)
        and "one JSON object per line" in str(error)
        and "'garbage'" in str(error)
    )


def test_a_record_closed_too_early_is_told_apart_from_garbage(tmp_path: Path) -> None:
    error = _error(_trace(tmp_path / "t.jsonl", '{"type":"access"\n'))
    assert "stops before its JSON object is complete" in str(error)


def test_an_empty_file_says_a_header_was_expected(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("")
    error = _error(path)
    assert error.line == 1 and "empty" in str(error) and '"type":"header"' in str(error)


def test_a_second_header_names_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter.append_to(path) as writer:
        writer.write_all([HEADER, ACCESS, HEADER, End(status="ok")])
    error = _error(path)
    assert error.line == 3 and "second header" in str(error)


def test_the_first_record_not_a_header_says_what_it_found(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter.append_to(path) as writer:
        writer.write(ACCESS)
    error = _error(path)
    assert error.line == 1 and "found a record of type 'access'" in str(error)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '{"type":"access","op":"read","space":"mmio","offset":0,"size":4}',
            "needs op, space, offset, size, value",
        ),
        ('{"type":"nonsense"}', "one of header, stack, exit, access, irq, dma, async, end"),
        ('"just a string"', "not a JSON string"),
        (
            '{"type":"access","op":"read","space":"mmio","offset":"0","size":4,"value":1}',
            "found '0'",
        ),
    ],
)
def test_invalid_records_say_what_was_expected(line: str, expected: str) -> None:
    with pytest.raises(TraceFormatError) as info:
        decode_line("t.jsonl", 7, line + "\n")
    assert info.value.line == 7 and expected in str(info.value)


def test_invalid_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"type"\xff}\n')
    assert "UTF-8" in str(_error(path))
