"""verify finds everything device-specific through the pack registry, and the trace header
carries the device's -device properties (with the argv fallback for older traces)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner
from verify_traces import TraceBuilder

from qtrace.cli.app import app
from qtrace.devices.e1000.model import E1000
from qtrace.errors import UsageError
from qtrace.refemu import PciDevice
from qtrace.trace import Header, read_trace, record_from_json, record_to_json
from qtrace.trace.codec import device_properties
from qtrace.verify import devices_with_model, verify_device, verify_file
from qtrace.verify.qemu_qtest import qtest_argv


def test_the_e1000_pack_gives_verify_its_model_and_qtest_setup() -> None:
    device = verify_device("e1000-82540em")  # a QOM type the pack covers
    assert device.name == "e1000" and device.model is E1000
    assert device.qtest is not None and (device.qtest.slot, device.qtest.gsi) == (5, 10)
    assert isinstance(E1000(), PciDevice)
    assert device.support.scenarios and device.support.volatile
    assert "e1000" in devices_with_model() and "rtl8139" not in devices_with_model()


def test_qtest_argv_comes_from_the_pack() -> None:
    argv = qtest_argv(verify_device("e1000"))
    option = argv[argv.index("-device") + 1].split(",")
    assert option[0] == "e1000" and sorted(option[1:]) == [
        "addr=05.0", "id=qtrace0", "netdev=qtrace-net0", "romfile="
    ]  # fmt: skip
    # A NIC's backend is a stream to the test's own socket: no network anywhere.
    assert argv[argv.index("-netdev") + 1] == (
        "stream,id=qtrace-net0,server=off,addr.type=unix,addr.path=/qt/net.sock"
    )  # fmt: skip


def test_a_device_without_a_model_is_refused_naming_those_with_one(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="devices with one: .*e1000"):
        verify_device("rtl8139")
    path = TraceBuilder(device="rtl8139").read(0x0, 0).save(tmp_path / "t.jsonl")
    with pytest.raises(UsageError, match="no reference model for 'rtl8139'"):
        verify_file(path, "rtl8139")


def test_verify_list_shows_the_devices_with_a_model() -> None:
    result = CliRunner().invoke(app, ["verify", "--list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["devices_with_model"] == devices_with_model()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("e1000,addr=05.0,romfile=", {"addr": "05.0", "romfile": ""}),
        (
            "driver=e1000,mac=52:54:00:00:00:07,netdev=n0",
            {"mac": "52:54:00:00:00:07", "netdev": "n0"},
        ),
        ("e1000,x=a,,b,flag", {"x": "a,b", "flag": "on"}),
        ("e1000", {}),
        ("rtl8139,addr=05.0", None),
    ],
)
def test_device_properties_of_argv(value: str, expected: dict[str, str] | None) -> None:
    argv = ["qemu", "-device", "isa-debug-exit,iobase=0xf4", "-device", value]
    assert device_properties(argv, "e1000") == expected


def test_header_properties_round_trip_and_old_headers_fall_back_to_argv() -> None:
    header = Header("e1000", "10.2.2", "kvm", device_properties={"romfile": ""})
    assert record_from_json(json.loads(record_to_json(header))) == header
    base = {
        "type": "header",
        "schema": header.schema,
        "device": "e1000",
        "qemu_version": "7.2",
        "accel": "tcg",
    }
    old = {**base, "argv": ["q", "-device", "e1000,mac=52:54:00:00:00:09"]}
    decoded = record_from_json(old)
    assert isinstance(decoded, Header) and decoded.device_properties == {"mac": "52:54:00:00:00:09"}
    bare = record_from_json(base)
    assert isinstance(bare, Header) and bare.device_properties is None
    with pytest.raises(ValueError, match="device_properties"):
        record_from_json({**old, "device_properties": {"mac": 1}})


def test_replay_builds_the_model_from_the_header_properties(tmp_path: Path) -> None:
    builder = TraceBuilder().read(0x5400, 0x00005452)  # RAL0: the MAC's low four bytes
    strict = TraceBuilder()
    strict.header = Header("e1000", "10.2.2", "tcg", device_properties={"mac": "52:54:00:00:00:01"})
    strict.read(0x5400, 0x00005452)
    assert verify_file(builder.save(tmp_path / "a.jsonl"), "e1000").ok is False  # default MAC
    assert verify_file(strict.save(tmp_path / "b.jsonl"), "e1000").ok
    assert read_trace(tmp_path / "b.jsonl").header.device_properties == {"mac": "52:54:00:00:00:01"}
