"""Real captures with the linux and firmware guests (QEMU 10.2.2 under gdb in the container).

linux under TCG must run to its end: the guest loads the driver Debian's modules.alias names
for the device (e1000, e1000e, virtio-net-pci, virtio-blk-pci, nvme), runs its class's
workload (frames out, a disk read), proves it and ends through isa-debug-exit. Under the
nested KVM of our machines the 64-bit kernel never exits to QEMU after decompression: the
capture must say ``guest-hang`` with the advice to use TCG, within its timeout, and leave
nothing running (the autouse ``no_leftover_containers`` fixture checks the containers). The
firmware guest (SeaBIOS + iPXE) is bounded by --max-hits.

Short timeouts keep CI time down: linux/TCG takes about 45 s here, linux/KVM about 40 s.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from qtrace.guests.linux_output import parse_linux_serial
from qtrace.guests.linux_plan import LINUX_DONE_LINE
from qtrace.guests.linux_symbols import INITRAMFS, initramfs_files, initramfs_module_tree
from qtrace.launch.capture import CaptureResult
from qtrace.trace import read_trace

Capture = Callable[..., CaptureResult]

LINUX_TCG = {"guest": "linux", "timeout_s": 240.0}
LINUX_KVM = {"guest": "linux", "hang_timeout_s": 20.0, "timeout_s": 90.0}
FIRMWARE_HITS = 3000


def test_linux_tcg_runs_the_driver_to_the_end(capture: Capture) -> None:
    result = capture("e1000", "tcg", **LINUX_TCG)
    assert result.status == "ok", result.reason
    assert result.summary["qemu_exit_status"] == 1, "the guest ends through isa-debug-exit"
    serial = (result.out_dir / "serial.log").read_text(errors="replace")
    assert LINUX_DONE_LINE in serial, serial[-500:]
    assert result.accesses > 1000
    trace = read_trace(result.out_dir / "trace.jsonl")
    mmio = [a for a in trace.accesses if a.space == "mmio"]
    assert len(mmio) > 1000
    assert {a.op for a in mmio} == {"read", "write"}
    handlers = {f.func for a in mmio[:50] if a.stack for f in trace.stacks[a.stack].frames}
    assert handlers & {"e1000_mmio_read", "e1000_mmio_write"}
    assert result.summary["irqs"] > 0 and result.summary["dmas"] > 0, (
        "a transmit raises IRQs and moves data by DMA"
    )
    assert (result.out_dir / "linux" / "initramfs.cpio.gz").is_file()


# Device -> (the class the driver gave it, the module that ends bound to it). The driver is
# not named anywhere on the host: the guest takes it from modules.alias.
LINUX_DEVICES = {
    "e1000e": ("network", "e1000e"),
    "virtio-net-pci": ("network", "virtio_net"),
    "virtio-blk-pci": ("block", "virtio_blk"),
    "nvme": ("block", "nvme"),
}


@pytest.mark.parametrize("device", sorted(LINUX_DEVICES))
def test_linux_tcg_drives_the_device_with_the_driver_modules_alias_names(
    capture: Capture, device: str
) -> None:
    result = capture(device, "tcg", **LINUX_TCG)
    print(f"\n[linux] {device}: {result.summary['elapsed_s']} s, {result.accesses} accesses")
    assert result.status == "ok", result.reason
    out = parse_linux_serial((result.out_dir / "serial.log").read_text(errors="replace"))
    assert out.done is not None
    assert (out.done.device_class, out.done.driver) == LINUX_DEVICES[device]
    found = initramfs_module_tree(initramfs_files(result.out_dir / INITRAMFS))
    assert found is not None, "the initramfs carries the image's module tree"
    tree = found[1]
    assert out.loads, "the guest loaded what modules.alias named"
    for load in out.loads:
        # What the guest's modprobe loaded is what this kernel's files say, in this order.
        assert tree.load_order(tree.modules_for(load.modalias)) == load.modules, load
    assert out.bindings[-1].module in tree.modules_for(out.loads[-1].modalias)
    assert result.summary["irqs"] > 0 and result.summary["dmas"] > 0, result.summary
    trace = read_trace(result.out_dir / "trace.jsonl")
    assert trace.irqs and trace.dmas
    assert {a.space for a in trace.accesses} >= {"mmio", "pci-config"}


def test_linux_tcg_tx_descriptor_fetch_is_a_dma_read_from_the_transmit_code(
    capture: Capture,
) -> None:
    trace = read_trace(capture("e1000", "tcg", **LINUX_TCG).out_dir)
    fetches = [d for d in trace.dmas if d.op == "read" and d.size == 16]
    assert fetches, "the driver's frames are fetched by 16-byte descriptor reads"
    funcs = [f.func for f in trace.stacks[fetches[0].stack].frames]  # type: ignore[index]
    # Recorded where every copy to or from guest memory ends (dma_memory_rw_relaxed),
    # reached from the e1000's bus-master DMA.
    assert funcs[0] == "dma_memory_rw_relaxed" and "pci_dma_rw" in funcs, funcs[:4]
    assert fetches[0].api == "dma_memory_rw_relaxed"
    assert "start_xmit" in funcs and "e1000_mmio_write" in funcs, funcs
    assert not any(f.startswith("kvm_") for f in funcs), (
        "under TCG the write comes from translated code"
    )
    writebacks = [d for d in trace.dmas if d.op == "write"]
    assert writebacks, "descriptor status (DD) is written back to guest memory"
    raised = [i for i in trace.irqs if i.level == 1]
    assert raised and "pci_set_irq" == trace.stacks[raised[0].stack].frames[0].func  # type: ignore[index]


def test_linux_kvm_is_reported_as_a_hang(capture: Capture) -> None:
    result = capture("e1000", "kvm", **LINUX_KVM)
    assert result.status == "guest-hang", result.reason
    assert result.reason and "--accel tcg" in result.reason
    assert "qtrace-linux" not in (result.out_dir / "serial.log").read_text(errors="replace")


def test_linux_kvm_is_reported_as_a_hang_by_the_fast_collector_too(capture: Capture) -> None:
    """QEMU is never stopped by a fast run: the agent's count of hits (under KVM, every
    exit's) is what stands still, and the capture ends ``guest-hang`` after the hang
    timeout, not at its timeout, keeping the exits that came before."""
    result = capture("e1000", "kvm", collector="fast", **LINUX_KVM)
    assert result.status == "guest-hang", result.reason
    assert result.reason and "no progress for 20 s" in result.reason
    assert "--accel tcg" in result.reason and result.hint and "--accel tcg" in result.hint
    trace = read_trace(result.out_dir)
    assert trace.end is not None and trace.end.status.value == "guest-hang"
    assert trace.exits and trace.end.fast_checks and trace.end.fast_checks["ok"] is True
    assert trace.end.elapsed_s < LINUX_KVM["timeout_s"]


def test_firmware_tcg_stops_at_max_hits(capture: Capture) -> None:
    result = capture("e1000", "tcg", guest="firmware", max_hits=FIRMWARE_HITS, timeout_s=120.0)
    assert result.status == "ok", result.reason
    assert result.reason and "max-hits" in result.reason
    assert result.accesses >= FIRMWARE_HITS
    assert (result.out_dir / "firmware.log").stat().st_size > 0
