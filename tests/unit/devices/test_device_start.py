"""What a device gets to start: property lists as QEMU prints them, the generic rules of
start.toml, a pack's [start] overrides, and the devices that cannot start here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qtrace.devices import (
    DevicePack,
    DeviceProperty,
    RunFile,
    all_packs,
    device_start,
    pack_or_default,
    parse_device_properties,
    unstartable_reason,
)
from qtrace.devices.start import StartRules, parse_start_rules, start_rules
from qtrace.errors import ReportError

RECORDED = Path(__file__).parent / "recorded"


def _help(name: str) -> tuple[DeviceProperty, ...]:
    return parse_device_properties((RECORDED / f"device-help-{name}.txt").read_text())


def _props(*pairs: tuple[str, str]) -> tuple[DeviceProperty, ...]:
    return tuple(DeviceProperty(name, kind) for name, kind in pairs)


def test_property_lists_parse_as_qemu_prints_them() -> None:
    nvme = {p.name: p for p in _help("nvme-10.2.2")}
    assert nvme["drive"] == DeviceProperty(
        "drive", "str", "Node name or ID of a block device to use as a backend"
    )
    assert nvme["pmrdev"].type == "link<memory-backend>"  # nested brackets
    assert nvme["bootindex"] == DeviceProperty("bootindex", "int32")  # no description
    blk = {p.name: p for p in _help("virtio-blk-pci-10.2.2")}
    # a description with brackets of its own does not end the type early
    assert blk["iothread-vq-mapping"].type == "IOThreadVirtQueueMappingList"
    assert blk["iothread"].type == "link<iothread>"
    assert "drive" in {p.name for p in _help("virtio-blk-pci-7.2")}  # 7.2's form is the same


def test_an_error_or_a_header_is_no_property() -> None:
    assert parse_device_properties("qemu-system-x86_64: -device x,help: Device 'x' not found") == ()
    assert parse_device_properties("edu options:\n  odd line\n  a=<unclosed\n") == ()


def test_a_block_device_gets_a_drive_and_its_image() -> None:
    start = device_start(pack_or_default("virtio-blk-pci"), _help("virtio-blk-pci-10.2.2"), "/out")
    assert ("drive", "qtrace-drive0") in start.properties
    assert start.args[:2] == (
        "-drive",
        "if=none,id=qtrace-drive0,file=/out/qtrace-disk.img,format=raw",
    )
    assert start.files == (RunFile("qtrace-disk.img", 1 << 20),)
    assert start.rules == ("drive",)


def test_nvme_gets_its_serial_from_the_pack_and_its_drive_from_the_rule() -> None:
    pack = pack_or_default("nvme")
    assert dict(pack.qemu_properties) == {"serial": "qtrace0001"}
    start = device_start(pack, _help("nvme-10.2.2"), "/out")
    assert dict(start.properties) == {"drive": "qtrace-drive0"}  # not pmrdev: memdev's name only


def test_every_channel_of_a_can_controller_joins_one_bus_added_once() -> None:
    start = device_start(pack_or_default("ctucan_pci"), _help("ctucan_pci-10.2.2"), "/out")
    assert dict(start.properties) == {"canbus0": "qtrace-can0", "canbus1": "qtrace-can0"}
    assert start.args == ("-object", "can-bus,id=qtrace-can0")


def test_a_rule_sets_its_companions_where_the_device_has_them() -> None:
    start = device_start(pack_or_default("virtio-9p-pci"), _help("virtio-9p-pci-10.2.2"), "/o")
    assert dict(start.properties) == {"fsdev": "qtrace-fs0", "mount_tag": "qtrace"}
    assert start.args == ("-fsdev", "synth,id=qtrace-fs0")


def test_a_rule_without_a_value_only_adds_arguments() -> None:
    props = _props(("memdev", "link<memory-backend>"), ("memaddr", "uint64"))
    start = device_start(DevicePack("virtio-mem-pci", ("virtio-mem-pci",)), props, "/out")
    assert dict(start.properties) == {"memdev": "qtrace-mem0"}
    assert "-m" in start.args and "maxmem=1G" in start.args
    assert start.rules == ("memdev", "memory-device")


def test_ivshmem_memory_is_a_power_of_two_and_a_2mib_multiple() -> None:
    start = device_start(pack_or_default("ivshmem-plain"), _help("ivshmem-plain-10.2.2"), "/out")
    assert start.args == ("-object", "memory-backend-ram,id=qtrace-mem0,size=2M")


def test_a_pack_overrides_the_rules() -> None:
    props = _props(("memdev", "link<memory-backend>"), ("drive", "str"), ("audiodev", "str"))
    pack = DevicePack(
        "dev",
        ("dev",),
        qemu_properties=(("memdev", "mine"),),
        start_args=("-object", "memory-backend-ram,id=mine,size=256M,x={out}/f"),
        start_skip_rules=("audiodev",),
    )
    start = device_start(pack, props, "/run")
    assert start.rules == ("drive",)  # memdev: the pack sets it; audiodev: skipped by name
    assert start.args[:2] == ("-object", "memory-backend-ram,id=mine,size=256M,x=/run/f")


def test_a_device_qemu_did_not_describe_gets_only_its_packs_args() -> None:
    assert device_start(pack_or_default("cxl-type3"), (), "/out").properties == ()
    assert device_start(pack_or_default("cxl-type3"), (), "/out").args[0] == "-object"
    assert device_start(pack_or_default("no-such-device"), (), "/out").args == ()


def test_devices_that_cannot_start_say_why_per_machine_and_topology() -> None:
    assert "VFIO" in (unstartable_reason("vfio-pci", "pc") or "")
    assert unstartable_reason("pxb-pcie", "pc") and not unstartable_reason("pxb-pcie", "q35")
    assert unstartable_reason("pxb-pcie", "q35", "root-port")
    assert unstartable_reason("e1000", "q35", "root-port") is None


def test_qtraces_own_rules_load_and_every_pack_names_real_rules() -> None:
    rules = start_rules()
    names = {rule.name for rule in rules.rules}
    assert {"drive", "audiodev", "memdev", "can-bus"} <= names
    assert all(rule.why for rule in rules.rules), "every rule says what QEMU does without it"
    for pack in all_packs():
        assert set(pack.start_skip_rules) <= names, pack.name
    listed = [d for entry in rules.unstartable for d in entry.devices]
    assert not {d for d in listed if pack_or_default(d).qemu_properties}, (
        "a device the pack starts is not unstartable"
    )


def _rules(**rule: Any) -> dict[str, Any]:
    return {"format": "qtrace-start/1", "rule": [rule]}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"format": "other"}, "format"),
        (_rules(property="x"), "needs a name"),
        (_rules(name="r"), "must match a property, a type or both"),
        (_rules(name="r", type="str", args="-x"), "args must be a list of strings"),
        (_rules(name="r", type="str", files=[{"name": "a"}]), "files must be"),
        (_rules(name="r", type="str", files=[{"name": "../a", "size_bytes": 1}]), "plain name"),
        (_rules(name="r", type="str", also={"a": 1}), "also must be a table of strings"),
        ({"format": "qtrace-start/1", "unstartable": [{"devices": ["x"]}]}, "needs a reason"),
    ],
)
def test_a_bad_rules_file_is_refused_naming_the_mistake(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ReportError, match=match):
        parse_start_rules(data)


def test_rules_apply_in_file_order_and_a_property_takes_the_first() -> None:
    rules = parse_start_rules(
        {
            "format": "qtrace-start/1",
            "rule": [
                {"name": "a", "type": "str", "value": "1", "args": ["-a"]},
                {"name": "b", "property": "p", "value": "2", "args": ["-b"]},
            ],
        }
    )
    assert isinstance(rules, StartRules)
    start = device_start(DevicePack("d", ("d",)), _props(("p", "str")), "/o", rules)
    assert start.properties == (("p", "1"),) and start.args == ("-a",)
