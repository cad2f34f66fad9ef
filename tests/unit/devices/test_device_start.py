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


# ----- backend processes: vhost-user and ivshmem -----


def test_a_vhost_user_device_gets_a_socket_chardev_and_the_stub_behind_it() -> None:
    start = device_start(
        pack_or_default("vhost-user-blk-pci"), _help("vhost-user-blk-pci-10.2.2"), "/out"
    )
    assert dict(start.properties) == {"chardev": "qtrace-vhost-user0"}
    assert start.args == (
        "-chardev",
        "socket,id=qtrace-vhost-user0,path=/out/qtrace-vhost-user.sock",
        "-boot",
        "strict=on",  # the firmware leaves a device whose queues nobody serves alone
    )
    (backend,) = start.backends
    assert backend.name == "vhost-user" and backend.socket == "/out/qtrace-vhost-user.sock"
    assert backend.argv[:5] == (
        "python3",
        "-m",
        "qtrace_backends.vhost_user",
        "--socket",
        "/out/qtrace-vhost-user.sock",
    )
    # the block device's own kind of back-end: its features and configuration space
    assert "--config-field" in backend.argv and "0:8=2048" in backend.argv
    assert start.rules == ("vhost-user", "vhost-user-blk")
    assert "not by QEMU" in backend.serves and backend.log == "backend-vhost-user.log"


def test_a_gpu_front_end_gets_edid_and_a_configuration_space() -> None:
    start = device_start(
        pack_or_default("vhost-user-gpu-pci"), _help("vhost-user-gpu-pci-10.2.2"), "/o"
    )
    assert dict(start.properties) == {"chardev": "qtrace-vhost-user0"}  # its type is <string>
    (backend,) = start.backends
    assert backend.argv[-3:] == ("--features", "1", "--config")


def test_the_generic_vhost_user_device_is_told_which_device_it_is() -> None:
    start = device_start(
        pack_or_default("vhost-user-test-device-pci"),
        _help("vhost-user-test-device-pci-10.2.2"),
        "/o",
    )
    assert dict(start.properties) == {"chardev": "qtrace-vhost-user0", "virtio-id": "4"}
    assert [b.name for b in start.backends] == ["vhost-user"]


def test_a_chardev_of_a_device_that_is_no_vhost_user_one_is_left_alone() -> None:
    start = device_start(pack_or_default("pci-serial"), _help("pci-serial-10.2.2"), "/out")
    assert start.properties == () and start.backends == ()


def test_ivshmem_doorbell_gets_its_server_from_its_pack() -> None:
    pack = pack_or_default("ivshmem-doorbell")
    assert dict(pack.qemu_properties) == {"chardev": "qtrace-ivshmem0"}
    start = device_start(pack, _help("ivshmem-doorbell-10.2.2"), "/out")
    assert start.args == ("-chardev", "socket,id=qtrace-ivshmem0,path=/out/qtrace-ivshmem.sock")
    (backend,) = start.backends
    assert backend.name == "ivshmem-server"
    assert backend.argv[-2:] == ("--vectors", "1") and "1048576" in backend.argv
    assert unstartable_reason("ivshmem-doorbell", "pc") is None


def test_every_backend_a_pack_names_exists() -> None:
    names = {spec.name for spec in start_rules().backends}
    assert {"vhost-user", "ivshmem-server"} <= names
    for pack in all_packs():
        assert pack.start_backend is None or pack.start_backend in names, pack.name
    assert all(spec.serves and spec.why for spec in start_rules().backends)


def test_a_type_may_be_a_pattern() -> None:
    rules = parse_start_rules(_rules(name="r", type="child<vhost-user*>", value="x"))
    start = device_start(
        DevicePack("d", ("d",)), _props(("b", "child<vhost-user-rng>")), "/o", rules
    )
    assert start.properties == (("b", "x"),)
    start = device_start(DevicePack("d", ("d",)), _props(("b", "child<vhost-scsi>")), "/o", rules)
    assert start.properties == ()


def _with_backend(**rule: Any) -> dict[str, Any]:
    return {
        **_rules(**rule),
        "backend": [{"name": "b", "command": ["prog", "{socket}"], "socket": "{out}/b.sock"}],
    }


def test_rules_of_one_backend_share_its_process_and_add_to_its_command() -> None:
    data = _with_backend(name="r1", type="str", backend="b", args=["-x", "{socket}"])
    data["rule"].append({"name": "r2", "type": "uint8", "backend": "b", "backend_args": ["--n"]})
    start = device_start(
        DevicePack("d", ("d",)), _props(("p", "str"), ("q", "uint8")), "/o", parse_start_rules(data)
    )
    assert start.args == ("-x", "/o/b.sock")
    (backend,) = start.backends
    assert backend.argv == ("prog", "/o/b.sock", "--n")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_rules(name="r", type="str", backend="nope"), "names no"),
        (_rules(name="r", type="str", args=["{socket}"]), "need a backend"),
        (_rules(name="r", type="str", backend_args=["-x"]), "need a backend"),
        ({"format": "qtrace-start/1", "backend": [{"name": "b", "socket": "s"}]}, "command"),
        ({"format": "qtrace-start/1", "backend": [{"name": "b", "command": ["x"]}]}, "socket"),
    ],
)
def test_a_bad_backend_is_refused_naming_the_mistake(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ReportError, match=match):
        parse_start_rules(data)
