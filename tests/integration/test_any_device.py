"""Any PCI(e) device, discovered from the running QEMU: real captures of devices with no pack.

Each capture runs once per session (the ``capture`` fixture) with the probe guest's generic
sequence. What is checked is what discovery promises: the region map in the header is read
from QEMU (no device-specific code decided it), every recorded register access went through
a callback of a discovered region, stacks run through ``kvm_cpu_exec``, and RAM-backed BARs
are reported as never reaching a handler.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from qtrace.devices import PACKS_ENV, clear_registry_cache, pack_for
from qtrace.errors import QtraceError
from qtrace.launch.capture import CaptureRequest, CaptureResult, run_capture
from qtrace.trace.codec import Trace, read_trace
from qtrace.trace.schema import Region
from tests.integration.conftest import RecordingEvents

Capture = Callable[..., CaptureResult]


def _ok_trace(result: CaptureResult) -> Trace:
    assert result.status == "ok", (result.out_dir, result.reason)
    return read_trace(result.out_dir / "trace.jsonl")


def _regions(trace: Trace, kind: str | None = None) -> list[Region]:
    return [r for r in trace.header.regions if kind is None or r.kind == kind]


def _through_discovered_handlers(trace: Trace) -> None:
    """Every register access names a discovered io region and one of its callbacks, and its
    stack runs from the callback up through kvm_cpu_exec (a synchronous exit)."""
    by_name: dict[str, set[str]] = {}
    for region in _regions(trace, "io"):
        by_name.setdefault(region.name, set()).update(region.handlers.values())
    registers = [a for a in trace.accesses if a.space != "pci-config"]
    assert registers, "the probe reached none of the device's registers"
    for access in registers:
        assert access.region in by_name, (access.region, sorted(by_name))
        assert access.handler in by_name[access.region], (access.region, access.handler)
        assert access.stack is not None
        funcs = [f.func for f in trace.stacks[access.stack].frames]
        assert funcs[0] == access.handler, funcs[:3]
        assert "kvm_cpu_exec" in funcs, funcs


@pytest.mark.parametrize(
    "device",
    ["virtio-net-pci", "virtio-blk-pci", "virtio-rng-pci", "nvme", "ich9-ahci", "qemu-xhci", "igb"],
)
def test_device_without_a_pack_is_captured_through_its_own_handlers(
    capture: Capture, device: str
) -> None:
    trace = _ok_trace(capture(device, "kvm"))
    assert trace.header.qdev_id == "qtrace0"
    assert _regions(trace, "pci-config"), "the config hooks are part of the map"
    _through_discovered_handlers(trace)


def test_virtio_pci_windows_msix_and_the_legacy_bar_are_found(capture: Capture) -> None:
    trace = _ok_trace(capture("virtio-net-pci", "kvm"))
    io = {r.name: r for r in _regions(trace, "io")}
    for window in ("common", "isr", "device", "notify"):
        name = f"virtio-pci-{window}-virtio-net"
        assert name in io and io[name].space == "mmio", sorted(io)
    assert {"msix-table", "msix-pba"} <= set(io)
    # On pc the device is transitional: BAR 0 is the legacy virtio I/O window.
    legacy = [r for r in io.values() if r.bar == 0]
    assert legacy and legacy[0].space == "pio"
    # The capability list told the probe where the windows are; it read them.
    reached = {a.region for a in trace.accesses}
    assert {"virtio-pci-common-virtio-net", "msix-table"} <= reached, reached


def test_xhci_subregions_come_out_of_the_same_walk(capture: Capture) -> None:
    trace = _ok_trace(capture("qemu-xhci", "kvm"))
    names = {r.name for r in _regions(trace, "io")}
    assert {"capabilities", "operational", "runtime", "doorbell", "msix-table"} <= names
    containers = _regions(trace, "container")
    assert containers and containers[0].bar == 0 and containers[0].depth == 0


def test_ivshmem_plain_ram_bar_never_reaches_a_handler(capture: Capture) -> None:
    trace = _ok_trace(capture("ivshmem-plain", "kvm"))
    ram = _regions(trace, "ram")
    assert ram and all(not r.handlers for r in ram)
    assert not [a for a in trace.accesses if a.region in {r.name for r in ram}]


@pytest.mark.parametrize("topology", ["root-bus", "root-port"])
def test_q35_captures_the_device_and_in_root_port_topology_the_port(
    capture: Capture, topology: str
) -> None:
    trace = _ok_trace(capture("virtio-net-pci", "kvm", "q35", topology=topology))
    assert trace.header.topology == topology
    _through_discovered_handlers(trace)
    config = [a for a in trace.accesses if a.space == "pci-config"]
    port = [a for a in config if a.device == "pcie-root-port"]
    device = [a for a in config if a.device is None]
    assert device
    if topology == "root-port":
        assert port, "the probe programs the root port's bus numbers and windows"
        # On q35 config space is reached through ECAM (MMCONFIG), for the port and the device.
        for access in (port[0], device[0]):
            assert access.stack is not None
            funcs = [f.func for f in trace.stacks[access.stack].frames]
            assert "pcie_mmcfg_data_read" in funcs or "pcie_mmcfg_data_write" in funcs, funcs
    else:
        assert not port


REFUSED_DEVICE = "virtio-balloon-pci"  # a device no pack in the tree claims (checked below)
REFUSED_PACK = """
format = "qtrace-device/1"
name = "virtio-balloon-pci"
summary = "virtio-balloon-pci with a property QEMU does not have (this test's pack)"
qom_types = ["virtio-balloon-pci"]

[start]
properties = { qtrace-no-such-property = "1" }
"""


def test_a_device_qemu_refuses_fails_with_qemus_own_message(
    debug_image: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QEMU exits before vm_start: the capture says what QEMU said, not a symptom."""
    assert pack_for(REFUSED_DEVICE) is None
    folder = tmp_path / "packs" / REFUSED_DEVICE
    folder.mkdir(parents=True)
    (folder / "pack.toml").write_text(REFUSED_PACK, encoding="utf-8")
    monkeypatch.setenv(PACKS_ENV, str(tmp_path / "packs"))
    clear_registry_cache()
    try:
        with pytest.raises(QtraceError) as failure:
            run_capture(
                CaptureRequest(device=REFUSED_DEVICE, accel="tcg", out_dir=tmp_path / "run"),
                RecordingEvents(),
            )
    finally:
        monkeypatch.delenv(PACKS_ENV)
        clear_registry_cache()
    message = str(failure.value)
    assert message.startswith("QEMU refused to start: "), message
    assert "qtrace-no-such-property" in message and "not found" in message, message
    assert failure.value.hint
    assert "serial" not in message  # never the symptom ("no start line")
    trace = read_trace(tmp_path / "run" / "trace.jsonl")
    assert trace.end is not None and trace.end.status == "error"
    assert trace.header.regions == ()
