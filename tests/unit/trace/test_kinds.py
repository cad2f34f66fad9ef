"""The shared vocabularies (qtrace.trace.kinds): one list each, used by the request, the
trace reader, and the collector inside gdb, whose copy is loaded here from ``gdbscripts/``
with the host's Python and must equal the host's enum."""

from __future__ import annotations

import pytest

from qtrace.errors import TraceFormatError, UsageError
from qtrace.launch.capture import CaptureRequest, guest_plan
from qtrace.trace import (
    Accel,
    AccelChoice,
    CaptureStatus,
    End,
    Guest,
    Machine,
    decode_line,
    record_to_json,
)
from tests.gdb_side import gdb_module


GDB = gdb_module("contract")


def test_the_gdb_side_knows_exactly_the_host_statuses_in_order() -> None:
    assert tuple(GDB.END_STATUSES) == tuple(status.value for status in CaptureStatus)


@pytest.mark.parametrize("status", list(CaptureStatus))
def test_the_gdb_side_accepts_every_host_status(status: CaptureStatus) -> None:
    assert GDB.check_status(status.value) == status


@pytest.mark.parametrize("status", ["OK", "hang", "guest_hang", ""])
def test_the_gdb_side_refuses_a_status_the_reader_would_refuse(status: str) -> None:
    with pytest.raises(
        GDB.ConfigError, match="not one of ok, interrupted, timeout, guest-hang, error"
    ):
        GDB.check_status(status)


def test_an_accel_choice_is_an_accelerator_or_auto() -> None:
    assert {choice.value for choice in AccelChoice} == {accel.value for accel in Accel} | {"auto"}


def test_the_reader_turns_an_end_status_into_the_enum() -> None:
    record = decode_line("t.jsonl", 3, '{"type":"end","status":"guest-hang"}\n')
    assert isinstance(record, End) and record.status is CaptureStatus.GUEST_HANG


def test_an_end_record_round_trips_as_its_plain_string() -> None:
    line = record_to_json(End(status=CaptureStatus.TIMEOUT, accesses=2))
    assert '"status":"timeout"' in line
    assert decode_line("t.jsonl", 1, line + "\n") == End(status=CaptureStatus.TIMEOUT, accesses=2)


def test_an_unknown_end_status_is_a_format_error_naming_the_line() -> None:
    with pytest.raises(TraceFormatError) as info:
        decode_line("t.jsonl", 9, '{"type":"end","status":"finished"}\n')
    assert info.value.line == 9
    assert "'finished'" in str(info.value) and "ok, interrupted, timeout, guest-hang, error" in str(
        info.value
    )


def test_a_request_made_of_strings_holds_the_enums() -> None:
    request = CaptureRequest(device="e1000", accel="tcg", machine="q35", guest="linux")  # type: ignore[arg-type]
    assert (
        request.accel is AccelChoice.TCG
        and request.machine is Machine.Q35
        and request.guest is Guest.LINUX
    )


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("accel", "warp", "accelerator"),
        ("machine", "isapc", "machine"),
        ("guest", "windows", "guest"),
    ],
)
def test_an_unknown_kind_in_a_request_is_a_usage_error_without_cli_flags(
    field: str, value: str, what: str
) -> None:
    with pytest.raises(UsageError) as info:
        CaptureRequest(device="e1000", **{field: value})  # type: ignore[arg-type]
    assert f"unknown {what} {value!r}" in str(info.value) and "--" not in str(info.value)


def test_every_guest_kind_has_a_plan() -> None:
    assert {guest_plan(guest, "e1000", Machine.PC).name for guest in Guest} == {
        guest.value for guest in Guest
    }
