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
    ProbeBridge,
    ProbeCapability,
    ProbeDone,
    ProbeOutputError,
    ProbeWindow,
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


# Real output of the guest (QEMU 10.2.2, q35 under KVM, mmcfg=0xB0000000): an e1000e at
# 01:00.0 behind a pcie-root-port at 00:04.0, cut down to the lines each shape needs.
BRIDGE_SAMPLE = (
    "# qtrace-probe/1 start\r\n"
    "# config ecam\r\n"
    "# pci 00:04.0 1b36:000c class 060400 hdr 01\r\n"
    "# acc 00:04.0 R cfg - 0x0 4 0xc1b36\r\n"
    "# acc 00:04.0 R cfg - 0x18 4 0x10100\r\n"
    "# acc 00:04.0 W cfg - 0x18 4 0xff0100\r\n"
    "ACC R cfg - 0x0 4 0x10d38086\r\n"
    "# pci 01:00.0 8086:10d3 class 020000 hdr 00 target\r\n"
    "# acc 00:04.0 W cfg - 0x1a 1 0x1\r\n"
    "# bridge 00:04.0 bus 00 secondary 01 subordinate 01\r\n"
    "ACC W cfg - 0x1c 4 0xc0040000\r\n"
    "# bar 3 assigned 0xc0040000\r\n"
    "# bar 3 mem32 base 0xc0040000 size 0x4000\r\n"
    "# acc 00:04.0 W cfg - 0x1c 1 0x80\r\n"
    "# acc 00:04.0 R cfg - 0x20 4 0xc000c000\r\n"
    "# bridge 00:04.0 window mem 0xc0000000-0xc00fffff io 0x8000-0x8fff prefetch off"
    " command 0x0107\r\n"
    "ACC R cfg - 0xc8 4 0x22d001\r\n"
    "ACC R cfg - 0xcc 4 0x0\r\n"
    "# cap 0xc8 0x01 pm version 2 pmcsr 0x0 state d0\r\n"
    "ACC R cfg - 0xa0 4 0x40011\r\n"
    "# cap 0xa0 0x11 msix vectors 5 table bar 3 offset 0x0 pba bar 3 offset 0x2000\r\n"
    "ACC R cfg - 0x100 4 0x14020001\r\n"
    "# ecap 0x100 0x0001 aer version 2\r\n"
    "# ecap 0x140 0x0003 dsn version 1 serial 0x525400ffff123456\r\n"
    "# generic bar 3 mmio 0x100 bytes\r\n"
    "ACC R mmio 3 0x0 4 0x0\r\n"
    "# generic bar 3 mmio 0x8 bytes at 0x2000 msix-pba\r\n"
    "ACC R mmio 3 0x2000 4 0x0\r\n"
    "DONE ok\r\n"
)


def test_bridge_accesses_are_kept_apart_from_the_targets() -> None:
    out = parse_serial(BRIDGE_SAMPLE)
    assert out.ok
    assert [a.bdf for a in out.accesses] == [None] * len(out.accesses)
    assert out.accesses[0] == ProbeAccess("read", "pci-config", None, 0x0, 4, 0x10D38086)
    assert len(out.accesses) == 8
    assert [(a.bdf, a.op, a.offset, a.size, a.value) for a in out.bridge_accesses] == [
        ("00:04.0", "read", 0x0, 4, 0xC1B36),
        ("00:04.0", "read", 0x18, 4, 0x10100),
        ("00:04.0", "write", 0x18, 4, 0xFF0100),
        ("00:04.0", "write", 0x1A, 1, 0x1),
        ("00:04.0", "write", 0x1C, 1, 0x80),
        ("00:04.0", "read", 0x20, 4, 0xC000C000),
    ]
    assert all(a.space == "pci-config" and a.bar is None for a in out.bridge_accesses)
    assert not any(line.startswith("acc ") for line in out.info)


def test_bridge_facts_parsed() -> None:
    out = parse_serial(BRIDGE_SAMPLE)
    assert out.bridges == (
        ProbeBridge(
            bdf="00:04.0",
            primary=0,
            secondary=1,
            subordinate=1,
            mem_window=(0xC0000000, 0xC00FFFFF),
            io_window=(0x8000, 0x8FFF),
            command=0x107,
        ),
    )
    target = out.target
    assert target is not None and target.bdf == "01:00.0"


def test_closed_bridge_windows_are_none() -> None:
    out = parse_serial(
        "# qtrace-probe/1 start\n"
        "# bridge 00:1c.0 bus 00 secondary 02 subordinate 03\n"
        "# bridge 00:1c.0 window mem off io off prefetch off command 0x0104\n"
    )
    assert out.bridges == (ProbeBridge("00:1c.0", 0, 2, 3, None, None, 0x104),)


def test_capabilities_and_windows_parsed() -> None:
    out = parse_serial(BRIDGE_SAMPLE)
    assert out.capabilities == (
        ProbeCapability(0xC8, 0x01, "pm", False, "version 2 pmcsr 0x0 state d0"),
        ProbeCapability(
            0xA0, 0x11, "msix", False, "vectors 5 table bar 3 offset 0x0 pba bar 3 offset 0x2000"
        ),
        ProbeCapability(0x100, 0x1, "aer", True, "version 2"),
        ProbeCapability(0x140, 0x3, "dsn", True, "version 1 serial 0x525400ffff123456"),
    )
    assert out.capability("aer", extended=True) == out.capabilities[2]
    assert out.capability("aer") is None
    assert out.windows == (
        ProbeWindow(3, "mmio", 0x0, 0x100),
        ProbeWindow(3, "mmio", 0x2000, 0x8, "msix-pba"),
    )


def test_virtio_capability_detail_and_no_caps() -> None:
    out = parse_serial(
        "# qtrace-probe/1 start\n"
        "# cap 0x70 0x09 vendor virtio notify bar 4 offset 0x3000 length 0x1000 multiplier 4\n"
        "# caps none\n"
        "# ecaps skipped: config through 0xCF8 reaches only 256 bytes\n"
        "# generic bar 0 pio 0x20 bytes\n"
    )
    (cap,) = out.capabilities
    assert (cap.offset, cap.cap_id, cap.name) == (0x70, 0x09, "vendor")
    assert cap.detail == "virtio notify bar 4 offset 0x3000 length 0x1000 multiplier 4"
    assert out.windows == (ProbeWindow(0, "pio", 0, 0x20),)


@pytest.mark.parametrize(
    "line",
    [
        "# acc 00:04.0 R cfg - 0x0 1 0x100",  # value wider than size
        "# acc 00:04.0 R mmio 0 0x0 4 0x0",  # bridges are only config-accessed
        "# acc 00:04.0 X cfg - 0x0 4 0x0",
    ],
)
def test_malformed_bridge_access_rejected(line: str) -> None:
    with pytest.raises(ProbeOutputError) as info:
        parse_serial(f"# qtrace-probe/1 start\n{line}\n")
    assert info.value.line == 2
