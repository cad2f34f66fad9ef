"""The qtest client on a scripted stream: replies, FAIL, and asynchronous IRQ lines."""

from __future__ import annotations

import io

import pytest

from qtrace.verify.qtest import QtestClient, QtestError


class ScriptedStream:
    """Answers each written command with the next canned block of lines."""

    def __init__(self, *replies: str) -> None:
        self._replies = list(replies)
        self._out = io.BytesIO()
        self.sent: list[str] = []

    def write(self, data: bytes, /) -> int:
        self.sent.append(data.decode().rstrip("\n"))
        self._out = io.BytesIO(self._replies.pop(0).encode())
        return len(data)

    def readline(self) -> bytes:
        return self._out.readline()


def test_read_value_and_command_text() -> None:
    stream = ScriptedStream("OK 0x0000000080080783\n")
    assert QtestClient(stream).mem_read(0xFEBC0008, 4) == 0x80080783
    assert stream.sent == ["readl 0xfebc0008"]


def test_irq_lines_before_the_answer_update_levels() -> None:
    stream = ScriptedStream("IRQ raise 10\nOK\n", "IRQ lower 10\nIRQ raise 0\nOK 0x4\n")
    client = QtestClient(stream)
    client.mem_write(0xFEBC00C8, 4, 0x4)
    assert client.irq_level(10)
    assert client.in_(0xC000, 1) == 0x4
    assert not client.irq_level(10) and client.irq_level(0)


def test_fail_and_closed_channel_raise() -> None:
    with pytest.raises(QtestError, match="FAIL"):
        QtestClient(ScriptedStream("FAIL unknown command\n")).clock_step()
    with pytest.raises(QtestError, match="closed"):
        QtestClient(ScriptedStream("")).outl(0xCF8, 0)


def test_block_read_and_write() -> None:
    stream = ScriptedStream("OK\n", "OK 0x0102\n")
    client = QtestClient(stream)
    client.write(0x1000, b"\x01\x02")
    assert client.read(0x1000, 2) == b"\x01\x02"
    assert stream.sent == ["write 0x1000 0x2 0x0102", "read 0x1000 0x2"]
