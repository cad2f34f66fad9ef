"""Where the captured device sits and what it gets to start, as the capture's QEMU command
line and the probe's target say it (no Docker: the builders are pure)."""

from __future__ import annotations

import pytest

from qtrace.devices import DeviceStart, RunFile
from qtrace.errors import UsageError
from qtrace.launch.capture import CaptureRequest, capture_argv, guest_plan
from qtrace.launch.qemu_argv import QemuConfig, qemu_argv
from qtrace.trace.kinds import Machine, Topology


def _devices(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]


def test_root_port_topology_puts_the_device_behind_a_pcie_root_port() -> None:
    argv = qemu_argv(
        QemuConfig(device="e1000e", accel="tcg", machine="q35", topology=Topology.ROOT_PORT)
    )
    port, device = _devices(argv)[-2:]
    assert port == "pcie-root-port,id=qtrace-rp0,bus=pcie.0,chassis=1,addr=04.0"
    assert device == "e1000e,id=qtrace0,bus=qtrace-rp0,addr=00.0,romfile="


def test_what_the_device_needs_comes_before_it() -> None:
    start = DeviceStart(
        properties=(("drive", "qtrace-drive0"),),
        args=("-drive", "if=none,id=qtrace-drive0,file=/out/qtrace-disk.img,format=raw"),
        files=(RunFile("qtrace-disk.img", 1 << 20),),
        rules=("drive",),
    )
    argv = qemu_argv(QemuConfig(device="virtio-blk-pci", accel="tcg", start=start))
    device = "virtio-blk-pci,id=qtrace0,addr=05.0,drive=qtrace-drive0,romfile="
    assert device in argv
    assert argv.index("-drive") < argv.index(device), "a link names an object made before it"


def test_the_probe_is_told_where_the_device_is() -> None:
    def target(plan_append: str | None) -> str:
        assert plan_append is not None
        return next(w for w in plan_append.split() if w.startswith("target="))

    assert target(guest_plan("probe", "e1000e", "q35").append) == "target=00:05.0"
    behind = guest_plan("probe", "e1000e", "q35", topology="root-port")
    assert target(behind.append) == "target=01:00.0"


def test_a_pack_that_needs_a_slot_gets_it_in_qemu_and_in_the_probe() -> None:
    device = "vfio-pci-igd-lpc-bridge"
    plan = guest_plan("probe", device, "pc")
    assert plan.append is not None and "target=00:1f.0" in plan.append.split()
    assert f"{device},id=qtrace0,addr=1f.0,romfile=" in capture_argv(device, "tcg", "pc", plan)


def test_capture_argv_gives_the_pack_its_start_without_a_property_list() -> None:
    argv = capture_argv("nvme", "tcg", "pc", guest_plan("probe", "nvme", "pc"))
    assert "nvme,id=qtrace0,addr=05.0,serial=qtrace0001,romfile=" in argv
    argv = capture_argv("pxb-cxl", "tcg", "q35", guest_plan("probe", "pxb-cxl", "q35"))
    assert argv[argv.index("cxl=on") - 1] == "-machine"


def test_root_port_needs_q35() -> None:
    request = CaptureRequest(device="e1000e", machine="q35", topology="root-port")  # type: ignore[arg-type]
    assert request.topology is Topology.ROOT_PORT and request.machine is Machine.Q35
    assert CaptureRequest(device="e1000e").topology is Topology.ROOT_BUS
    with pytest.raises(UsageError) as info:
        CaptureRequest(device="e1000e", topology="root-port")  # type: ignore[arg-type]
    assert "pc machine" in str(info.value) and "q35" in (info.value.hint or "")
    with pytest.raises(UsageError, match="unknown topology 'tree'"):
        CaptureRequest(device="e1000e", topology="tree")  # type: ignore[arg-type]
