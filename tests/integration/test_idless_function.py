"""A PCI function whose IDs read 0000:0000 is still a function: vfio-pci-igd-lpc-bridge.

QEMU's stand-in LPC bridge for Intel graphics passthrough has no vendor or device ID until a
graphics device gives it the host's; it sits at 00:1f.0 (its pack's slot) with only its class
(ISA bridge). The probe guest used to take a zero vendor ID for an empty slot and never found
it (target-not-found); the capture now ends ok with its configuration space traced.
"""

from __future__ import annotations

from collections.abc import Callable

from qtrace.launch.capture import CaptureResult
from tests.integration.test_any_device import _ok_trace


def test_a_function_without_ids_of_its_own_is_found_and_traced(
    capture: Callable[..., CaptureResult],
) -> None:
    result = capture("vfio-pci-igd-lpc-bridge", "kvm")
    trace = _ok_trace(result)
    serial = (result.out_dir / "serial.log").read_text()
    assert "# target 00:1f.0 0000:0000 class 060100" in serial
    config = [a for a in trace.accesses if a.space == "pci-config"]
    assert config and {a.handler for a in config} <= {
        "pci_default_read_config",
        "pci_default_write_config",
    }
