"""Unit tests for the probe guest's serial-protocol parser (no QEMU needed).

The sample below is real output of the guest (QEMU 7.2, ``-machine pc``, TCG), cut
down, with the SeaBIOS banner that shares the UART in front of it.
"""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from qtrace.guests import Q35_ECAM_BASE, probe_append
from qtrace.guests.probe_output import (
    ProbeAccess,
    ProbeDone,
    ProbeOutputError,
    parse_serial,
    read_serial_log,
)
from qtrace.trace import schema

SAMPLE = (
    "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)\r\n"
    "Booting from ROM..\r\n"
    "\r\n"
    "# qtrace-probe/1 start\r\n"
    "# arg target=00:05.0\r\n"
    "# arg seq=e1000\r\n"
    "# config cf8\r\n"
    "# pci 00:00.0 8086:1237 class 060000 hdr 00\r\n"
    "# pci 00:01.0 8086:7000 class 060100 hdr 80\r\n"
    "ACC R cfg - 0x0 4 0x100e8086\r\n"
    "ACC R cfg - 0x8 4 0x2000003\r\n"
    "ACC R cfg - 0xe 1 0x0\r\n"
    "# pci 00:05.0 8086:100e class 020000 hdr 00 target\r\n"
    "ACC W cfg - 0x4 2 0x100\r\n"
    "ACC R cfg - 0x10 4 0xfebe0000\r\n"
    "ACC W cfg - 0x10 4 0xffffffff\r\n"
    "ACC R cfg - 0x10 4 0xfffe0000\r\n"
    "ACC W cfg - 0x10 4 0xfebe0000\r\n"
    "# bar 0 mem32 base 0xfebe0000 size 0x20000\r\n"
    "# bar 1 io base 0xc000 size 0x40\r\n"
    "# bar 2 none\r\n"
    "ACC R mmio 0 0x0 4 0x140240\r\n"
    "ACC R mmio 0 0x8 4 0x80080783\r\n"
    "# ctrl 0x00140240 status 0x80080783\r\n"
    "ACC W mmio 0 0x14 4 0x1\r\n"
    "ACC R mmio 0 0x14 4 0x54520010\r\n"
    "ACC R pio 1 0x4 4 0xffffffff\r\n"
    "# suppressed 400\r\n"
    "DONE ok\r\n"
)


def test_sample_accesses_in_order() -> None:
    out = parse_serial(SAMPLE)
    assert out.ok
    assert out.done == ProbeDone(ok=True)
    assert not out.truncated
    assert len(out.accesses) == 13
    assert out.accesses[0] == ProbeAccess("read", "pci-config", None, 0x0, 4, 0x100E8086)
    assert out.accesses[2] == ProbeAccess("read", "pci-config", None, 0xE, 1, 0)
    assert out.accesses[3] == ProbeAccess("write", "pci-config", None, 0x4, 2, 0x100)
    assert out.accesses[9] == ProbeAccess("read", "mmio", 0, 0x8, 4, 0x80080783)
    assert out.accesses[10] == ProbeAccess("write", "mmio", 0, 0x14, 4, 0x1)
    assert out.accesses[-1] == ProbeAccess("read", "pio", 1, 0x4, 4, 0xFFFFFFFF)
    # Line numbers count CR/LF lines of the whole log, firmware included.
    assert out.accesses[0].lineno == 10


def test_sample_structured_info() -> None:
    out = parse_serial(SAMPLE)
    assert [d.bdf for d in out.devices] == ["00:00.0", "00:01.0", "00:05.0"]
    target = out.target
    assert target is not None
    assert (target.vendor, target.device, target.class_code) == (0x8086, 0x100E, 0x020000)
    assert out.devices[1].header_type == 0x80 and not out.devices[1].is_target
    bar0, bar1 = out.bar(0), out.bar(1)
    assert bar0 is not None and (bar0.kind, bar0.base, bar0.size) == ("mem32", 0xFEBE0000, 0x20000)
    assert bar1 is not None and (bar1.kind, bar1.base, bar1.size) == ("io", 0xC000, 0x40)
    assert out.bar(2) is None
    assert out.suppressed_accesses == 400
    assert "ctrl 0x00140240 status 0x80080783" in out.info


def test_lineno_does_not_affect_equality() -> None:
    a = ProbeAccess("read", "mmio", 0, 8, 4, 1, lineno=3)
    assert a == ProbeAccess("read", "mmio", 0, 8, 4, 1, lineno=99)


def test_vocabulary_matches_trace_schema() -> None:
    """ACC records must compare directly with trace Access records."""
    from qtrace.guests.probe_output import ProbeOp, ProbeSpace

    assert set(typing.get_args(ProbeOp)) == set(typing.get_args(schema.AccessOp))
    assert set(typing.get_args(ProbeSpace)) == set(typing.get_args(schema.AccessSpace))


@pytest.mark.parametrize(
    ("tail", "done"),
    [
        ("DONE ok\n", ProbeDone(True)),
        ("DONE fail timeout-eerd-0\n", ProbeDone(False, "timeout-eerd-0")),
        ("DONE fail target-not-found\n", ProbeDone(False, "target-not-found")),
        ("", None),
    ],
)
def test_done_line(tail: str, done: ProbeDone | None) -> None:
    out = parse_serial("# qtrace-probe/1 start\n# timeout eerd-0\n" + tail)
    assert out.done == done
    assert out.ok == (done is not None and done.ok)
    assert out.timeouts == ("eerd-0",)


def test_truncated_last_line_is_not_parsed() -> None:
    out = parse_serial("# qtrace-probe/1 start\nACC R mmio 0 0x8 4 0x1\nACC R mm")
    assert out.truncated
    assert len(out.accesses) == 1
    assert out.done is None


def test_last_start_line_wins() -> None:
    text = "# qtrace-probe/1 start\nACC R mmio 0 0x0 4 0x1\n# qtrace-probe/1 start\nDONE ok\n"
    out = parse_serial(text)
    assert out.accesses == ()
    assert out.ok


def test_upper_case_hex_accepted() -> None:
    out = parse_serial("# qtrace-probe/1 start\nACC W mmio 0 0x5404 4 0xFFFFFFFF\n")
    assert out.accesses[0].value == 0xFFFFFFFF
    assert out.accesses[0].offset == 0x5404


@pytest.mark.parametrize(
    "line",
    [
        "ACC X mmio 0 0x0 4 0x0",  # unknown op
        "ACC R dma 0 0x0 4 0x0",  # unknown space
        "ACC R mmio - 0x0 4 0x0",  # mmio without a BAR
        "ACC R cfg 0 0x0 4 0x0",  # cfg with a BAR
        "ACC R mmio 6 0x0 4 0x0",  # no BAR 6
        "ACC R mmio 0 0x0 3 0x0",  # odd size
        "ACC R mmio 0 0x0 1 0x100",  # value wider than size
        "ACC R mmio 0 8 4 0x0",  # offset without 0x
        "ACC R mmio 0 0x0 4 0x0 extra",
        "DONE maybe",
        "garbage",
    ],
)
def test_malformed_lines_rejected(line: str) -> None:
    with pytest.raises(ProbeOutputError) as info:
        parse_serial(f"# qtrace-probe/1 start\n{line}\n")
    assert info.value.line == 2


def test_output_after_done_rejected() -> None:
    with pytest.raises(ProbeOutputError, match="after DONE"):
        parse_serial("# qtrace-probe/1 start\nDONE ok\nACC R mmio 0 0x0 4 0x0\n")


def test_missing_start_line_rejected() -> None:
    with pytest.raises(ProbeOutputError, match="start"):
        parse_serial("SeaBIOS\nDONE ok\n")


def test_read_serial_log_tolerates_binary_firmware_noise(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(b"\xff\xfe\x1b[2J\r\n# qtrace-probe/1 start\r\nDONE ok\r\n")
    assert read_serial_log(log).ok


def test_probe_append() -> None:
    assert probe_append("00:05.0", "e1000") == "target=00:05.0 seq=e1000"
    assert (
        probe_append("00:05.0", "generic", mmcfg=Q35_ECAM_BASE, count=10, quiet=True)
        == "target=00:05.0 seq=generic mmcfg=0xb0000000 count=10 quiet=1"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target": "0:5.0"},
        {"target": "00:20.0"},
        {"target": "00:05.8"},
        {"target": "zz:05.0"},
        {"mmcfg": 0xB0001000},
        {"count": -1},
    ],
)
def test_probe_append_rejects(kwargs: dict[str, typing.Any]) -> None:
    args: dict[str, typing.Any] = {"target": "00:05.0", "seq": "e1000"} | kwargs
    with pytest.raises(ValueError):
        probe_append(**args)
