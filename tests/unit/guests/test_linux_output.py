"""The linux guest's serial lines and verdict (qtrace.guests.linux_output), on serial logs
recorded from real captures (QEMU 10.2.2, TCG, Debian 6.1: ``recorded/linux-serial-*.log``)
and on the failures init can print."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtrace.guests.linux_output import (
    LinuxBinding,
    LinuxLoad,
    linux_verdict,
    parse_linux_serial,
    read_workloads,
)

RECORDED = Path(__file__).resolve().parent / "recorded"
WORKLOADS = read_workloads()


def _recorded(device: str) -> str:
    return (RECORDED / f"linux-serial-{device}.log").read_text()


@pytest.mark.parametrize(
    ("device", "device_class", "driver", "evidence"),
    [
        ("e1000e", "network", "e1000e", ("tx_packets", "9")),
        ("virtio-net-pci", "network", "virtio_net", ("tx_packets", "9")),
        ("virtio-blk-pci", "block", "virtio_blk", ("bytes_read", "4194304")),
        ("nvme", "block", "nvme", ("bytes_read", "4194304")),
        ("virtio-rng-pci", "rng", "virtio_rng", ("bytes_read", "4096")),
        ("rtl8139", "network", "8139cp", ("tx_packets", "9")),
    ],
)
def test_recorded_runs_are_ok(
    device: str, device_class: str, driver: str, evidence: tuple[str, str]
) -> None:
    out = parse_linux_serial(_recorded(device))
    assert out.verdict(WORKLOADS) is None
    assert out.done is not None
    assert (out.done.device_class, out.done.driver) == (device_class, driver)
    assert out.done.fields[evidence[0]] == evidence[1]
    assert out.start["kernel"] == "6.1.0-50-amd64"
    assert out.start["device"] == "pci0000:00/0000:00:05.0"
    assert out.start["modalias"].startswith("pci:v")
    assert out.bindings[-1].module == driver


def test_a_virtio_device_binds_twice_pci_then_virtio() -> None:
    out = parse_linux_serial(_recorded("virtio-blk-pci"))
    assert out.loads == [
        LinuxLoad(
            "pci0000:00/0000:00:05.0",
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
            (
                "virtio",
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio_ring",
                "virtio_pci",
            ),
        ),
        LinuxLoad(
            "pci0000:00/0000:00:05.0/virtio0",
            "virtio:d00000002v00001AF4",
            ("virtio_ring", "virtio", "virtio_blk"),
        ),
    ]
    assert out.bindings == [
        LinuxBinding("pci0000:00/0000:00:05.0", "virtio-pci", "virtio_pci"),
        LinuxBinding("pci0000:00/0000:00:05.0/virtio0", "virtio_blk", "virtio_blk"),
    ]
    assert out.workload == {"name": "block", "disk": "vda", "sectors": "2048"}


def test_lines_amid_kernel_messages_and_crlf_are_found() -> None:
    text = "[    1.2] virtio_net: something\r\nnoise qtrace-linux: FAIL no carrier on eth0\r\n"
    assert parse_linux_serial(text).failure == "no carrier on eth0"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "without its 'qtrace-linux: done' line"),
        ("qtrace-linux: FAIL modprobe pci:v1\n", "the guest failed: modprobe pci:v1"),
        (
            "qtrace-linux: bound x driver=e1000 module=e1000\n"
            "qtrace-linux: done class=network driver=e1000 tx_packets=0\n",
            "no evidence: tx_packets='0'",
        ),
        (
            "qtrace-linux: bound x driver=e1000 module=e1000\n"
            "qtrace-linux: done class=network driver=e1000 bytes_read=9\n",
            "no evidence: tx_packets=''",
        ),
        (
            "qtrace-linux: done class=network driver=e1000 tx_packets=3\n",
            "never seen to bind",
        ),
        ("qtrace-linux: done class=sound driver=snd tx_packets=3\n", "no known class"),
    ],
)
def test_what_is_not_ok(text: str, why: str) -> None:
    verdict = parse_linux_serial(text).verdict(WORKLOADS)
    assert verdict is not None and why in verdict, verdict


def test_an_unmatched_modalias_is_kept() -> None:
    out = parse_linux_serial("qtrace-linux: no-module pci0000:00/x modalias=pci:v0000FFFFd1\n")
    assert out.unmatched == ["pci:v0000FFFFd1"]


def test_the_verdict_reads_the_log(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(_recorded("nvme").encode() + b"\xff\xfe garbage\r\n")
    assert linux_verdict(log) is None
    log.write_text("qtrace-linux: FAIL no PCI device at 0000:00:05.0\n")
    assert linux_verdict(log) == "the guest failed: no PCI device at 0000:00:05.0"
